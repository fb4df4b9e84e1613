//! Watch coalescing: watchers on the same key range share one upstream watch.
//!
//! - [`hub`]: the map of broadcasts, where watchers are added, removed and
//!   asked about their progress.
//! - `broadcast`: one shared upstream watch of a key range and its watchers
//!   (`broadcast/fanout.rs`: one upstream response handed to each of them).
//! - `session`: a broadcast's upstream watch, kept open across member failures.
//! - [`shared_response`]: a broadcast's events encoded once for all its watchers.
//! - [`control`]: a client's own upstream watch stream, for answers only a member may give.

mod broadcast;
pub mod control;
pub mod hub;
mod session;
pub mod shared_response;

use crate::proto::etcdserverpb::{watch_request, WatchProgressRequest, WatchRequest};

/// A progress request towards a member: the one way the proxy asks a
/// member's watch stream how far it is, from a broadcast's upstream watch
/// and from a client's own control stream alike.
pub(crate) fn progress_request() -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )),
    }
}
