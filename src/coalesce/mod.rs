//! Folding identical client work into one upstream stream.
//!
//! - [`watch`]: watchers on the same key range share one upstream watch.
//! - [`shared_response`]: a broadcast's events encoded once for all its watchers.
//! - [`control`]: a client's own upstream watch stream, for answers only a member may give.
//! - [`keepalive`]: keep-alives of one lease share one upstream request.

pub mod control;
pub mod keepalive;
pub mod shared_response;
pub mod watch;
