//! `fragment`: etcd splits a large watch response into several for a
//! watcher created with it. The proxy's broadcasts carry whole responses,
//! so each client stream splits them again, per watcher that asked, where a
//! member with etcd's defaults would have.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::proto::etcdserverpb::WatchResponse;
use crate::sync::lock;

/// The watch ids of one client stream that asked for fragmented responses,
/// shared by the task reading its requests and its answer stream.
pub(super) type Fragmenting = Arc<FragmentingIds>;

/// The watch ids of one client stream that asked for `fragment`.
#[derive(Default)]
pub(super) struct FragmentingIds {
    /// Whether any watcher of the stream ever asked (checked per response
    /// before taking the lock).
    any: AtomicBool,
    ids: Mutex<HashSet<i64>>,
}

impl FragmentingIds {
    /// Notes that watch `watch_id` asked for `fragment`.
    pub(super) fn insert(&self, watch_id: i64) {
        self.any.store(true, Ordering::Release);
        lock(&self.ids).insert(watch_id);
    }

    /// Forgets watch `watch_id` (canceled).
    pub(super) fn remove(&self, watch_id: i64) {
        lock(&self.ids).remove(&watch_id);
    }

    /// Whether responses of watch `watch_id` are to be split.
    pub(super) fn wants(&self, watch_id: i64) -> bool {
        self.any.load(Ordering::Acquire) && lock(&self.ids).contains(&watch_id)
    }
}

/// Size above which a response is split for watchers that asked for
/// `fragment`, where a member with etcd's defaults splits it: its
/// `--max-request-bytes` (1.5 MiB) plus the 512 KiB it allows for gRPC overhead.
pub const FRAGMENT_BYTES: usize = 1536 * 1024 + 512 * 1024;

/// Splits a response over `limit` bytes into several, as etcd does for a
/// watch created with `fragment`: each part holds as many events as fit
/// (at least one), every part but the last is marked `fragment`. A response
/// with fewer than two events, or under the limit, is sent whole.
pub fn fragments(resp: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    use prost::Message;
    if resp.events.len() < 2 || resp.encoded_len() < limit {
        return vec![resp];
    }
    let mut shell = resp.clone();
    shell.events.clear();
    let base = shell.encoded_len();
    let mut parts = Vec::new();
    let mut current = shell.clone();
    let mut size = base;
    for ev in resp.events {
        // Field tag, length prefix and the event itself.
        let ev_len = ev.encoded_len();
        let ev_size = 1 + prost::length_delimiter_len(ev_len) + ev_len;
        if !current.events.is_empty() && size + ev_size > limit {
            let mut full = std::mem::replace(&mut current, shell.clone());
            full.fragment = true;
            parts.push(full);
            size = base;
        }
        size += ev_size;
        current.events.push(ev);
    }
    current.fragment = false;
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests;
