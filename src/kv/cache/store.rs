//! The cache's entries: answers by request, bounded by the limits with
//! least-recently-used eviction, and forgotten when a write or an event
//! touches a key they read. Storing refuses any answer older than the
//! floor, so a read that raced a write never outlives its invalidation.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use prost::Message;

use super::{CacheLimits, RangeCache};
use crate::kv::ranges::{self, KeyRange};
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse};

/// One stored answer, with the range it read (for invalidation) and its
/// size and last use (for eviction).
struct Entry {
    key: Vec<u8>,
    range_end: Vec<u8>,
    answer: RangeResponse,
    bytes: usize,
    last_used: u64,
}

/// Every entry, by encoded request, with their total size and a use clock.
#[derive(Default)]
pub(super) struct Entries {
    by_request: HashMap<Vec<u8>, Entry>,
    bytes: usize,
    tick: u64,
}

impl RangeCache {
    /// Entries held now (`etcd_grpc_proxy_cache_keys_total`).
    pub fn len(&self) -> usize {
        lock(&self.entries).by_request.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an answer is held for `cache_key` (not counted as a hit or
    /// miss): a linearizable read only waits for a barrier when it is.
    pub fn holds(&self, cache_key: &[u8]) -> bool {
        lock(&self.entries).by_request.contains_key(cache_key)
    }

    /// The cached answer for `cache_key`, counting the hit or miss.
    pub fn get(&self, cache_key: &[u8]) -> Option<RangeResponse> {
        let mut e = lock(&self.entries);
        e.tick += 1;
        let tick = e.tick;
        match e.by_request.get_mut(cache_key) {
            Some(entry) => {
                entry.last_used = tick;
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                crate::trace::event("cache hit", Vec::new);
                Some(entry.answer.clone())
            }
            None => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Stores an answer unless it may predate what the cache has seen.
    pub fn put(&self, cache_key: Vec<u8>, req: &RangeRequest, answer: &RangeResponse) {
        let revision = answer.header.as_ref().map_or(0, |h| h.revision);
        if !self.active.load(Ordering::Acquire) || revision < self.floor.load(Ordering::Acquire) {
            return;
        }
        let bytes = answer.encoded_len() + cache_key.len();
        if bytes > self.limits.max_bytes {
            return;
        }
        let mut e = lock(&self.entries);
        // Re-check under the lock: an invalidation may have raised the
        // floor, or the watch may have been lost (events it never saw could
        // make this answer stale; the cache was just cleared for that).
        if !self.active.load(Ordering::Acquire) || revision < self.floor.load(Ordering::Acquire) {
            return;
        }
        e.tick += 1;
        let entry = Entry {
            key: req.key.clone(),
            range_end: req.range_end.clone(),
            answer: answer.clone(),
            bytes,
            last_used: e.tick,
        };
        if let Some(old) = e.by_request.insert(cache_key, entry) {
            e.bytes -= old.bytes;
        }
        e.bytes += bytes;
        if e.by_request.len() > self.limits.max_entries || e.bytes > self.limits.max_bytes {
            Self::evict(&mut e, self.limits);
        }
    }

    /// Drops the least recently used eighth (at least what is over the limits).
    fn evict(e: &mut Entries, limits: CacheLimits) {
        let mut ages: Vec<(u64, Vec<u8>)> = e
            .by_request
            .iter()
            .map(|(k, v)| (v.last_used, k.clone()))
            .collect();
        ages.sort_unstable_by_key(|(t, _)| *t);
        let batch = (limits.max_entries / 8).max(1);
        let mut dropped = 0;
        for (_, k) in ages {
            let over = e.by_request.len() > limits.max_entries || e.bytes > limits.max_bytes;
            if !over && dropped >= batch {
                break;
            }
            if let Some(old) = e.by_request.remove(&k) {
                e.bytes -= old.bytes;
                dropped += 1;
            }
        }
    }

    /// Forgets every entry that reads any key of `[key, range_end)` and
    /// refuses answers older than `revision` from now on.
    pub fn invalidate(&self, key: &[u8], range_end: &[u8], revision: i64) {
        let mut e = lock(&self.entries);
        self.floor.fetch_max(revision, Ordering::AcqRel);
        let before = e.by_request.len();
        let mut freed = 0;
        e.by_request.retain(|_, entry| {
            let keep = !ranges::overlap(&entry.key, &entry.range_end, key, range_end);
            if !keep {
                freed += entry.bytes;
            }
            keep
        });
        e.bytes -= freed;
        let dropped = before - e.by_request.len();
        if dropped > 0 {
            self.stats
                .invalidations
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    /// Forgets everything (watch lost, compaction, auth change).
    pub fn clear(&self) {
        let mut e = lock(&self.entries);
        e.by_request.clear();
        e.bytes = 0;
    }

    /// A write through this proxy succeeded at `revision`: forget what it
    /// touched now, without waiting for the watch (read-your-writes).
    pub fn written(&self, touched: &[KeyRange], revision: i64) {
        for (key, end) in touched {
            self.invalidate(key, end, revision);
        }
        if touched.is_empty() {
            self.floor.fetch_max(revision, Ordering::AcqRel);
        }
    }
}
