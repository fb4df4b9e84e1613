//! Folding identical client work into one upstream stream.
//!
//! - [`watch`]: watchers on the same key range share one upstream watch.
//! - [`keepalive`]: keep-alives of one lease share one upstream request.

pub mod keepalive;
pub mod watch;
