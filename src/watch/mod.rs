//! Watch coalescing: watchers on the same key range share one upstream watch.
//!
//! - [`hub`]: the broadcasts, each one upstream watch kept open across failures.
//! - [`shared_response`]: a broadcast's events encoded once for all its watchers.
//! - [`control`]: a client's own upstream watch stream, for answers only a member may give.

pub mod control;
pub mod hub;
pub mod shared_response;
