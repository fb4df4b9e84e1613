//! Which requests the cache may answer, and when an entry may answer
//! them: a serializable read only while the watch has applied every
//! revision this proxy has already shown, a linearizable one once the
//! watch reached its read barrier's revision.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prost::Message;

use super::RangeCache;
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse};

impl RangeCache {
    /// The lookup key of a request the cache may answer, or `None` when it
    /// must go to etcd (historical, authenticated, or the cache is off).
    /// Serializable and linearizable reads of the same range share the key;
    /// only how they may be answered differs.
    pub fn cache_key(
        &self,
        req: &RangeRequest,
        caller: &crate::upstream::Caller,
    ) -> Option<Vec<u8>> {
        if self.limits.max_entries == 0 || req.revision != 0 {
            return None;
        }
        if !caller.is_anonymous() {
            return None;
        }
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        if req.serializable {
            return Some(req.encode_to_vec());
        }
        let as_serializable = RangeRequest {
            serializable: true,
            ..req.clone()
        };
        Some(as_serializable.encode_to_vec())
    }

    /// Waits (at most `patience`) until the watch has applied every event
    /// up to `revision`; false when it did not get there in time.
    pub async fn caught_up_to(&self, revision: i64, patience: Duration) -> bool {
        if *self.applied.borrow() >= revision {
            return true;
        }
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(patience, applied.wait_for(|r| *r >= revision)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// An answer made at `revision` went to a client: from now on no hit
    /// may show an older state (see [`RangeCache::current`]).
    pub fn answered(&self, revision: i64) {
        self.floor.fetch_max(revision, Ordering::AcqRel);
    }

    /// The cached answer for `cache_key` for a serializable read, only
    /// while the watch has applied every event up to the floor: an entry
    /// is the state as of the last event applied, and this proxy may have
    /// shown later revisions (a write through it, any answer) whose events
    /// the watch has not brought yet (a write through another proxy could
    /// be among them). Its header revision is the one it is current at.
    pub fn current(&self, cache_key: &[u8]) -> Option<RangeResponse> {
        let applied = *self.applied.borrow();
        if applied < self.floor() {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let mut hit = self.get(cache_key)?;
        if let Some(header) = hit.header.as_mut() {
            header.revision = header.revision.max(applied);
        }
        Some(hit)
    }
}
