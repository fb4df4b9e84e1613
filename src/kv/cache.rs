//! The range cache: serializable Range answers served from memory, kept
//! coherent with writes from anywhere.
//!
//! etcd's own proxy only forgets an entry when a write passes through the
//! same proxy. This cache follows one upstream watch over the whole key
//! space (through the [`crate::watch::hub::WatchHub`], so it fails over
//! without a gap) and forgets every entry an event touches. An answer is
//! only stored when its revision is at least the last revision the cache
//! has seen (from the watch or from a write through this proxy), so a read
//! that raced a write can never be stored after that write's event was
//! applied.
//!
//! It serves only what is safe to share: serializable reads at the current
//! revision from clients without an auth token, and only while the cache's
//! own token-less watch is open, which etcd refuses once auth is enabled.
//! With auth on, every call goes to etcd, which checks it per user.
//!
//! Linearizable reads share its entries too: they are answered from it only
//! after a [`crate::kv::read_barrier::ReadBarrier`] issued after the read arrived
//! came back, and the watch has applied every event up to the barrier's
//! revision ([`RangeCache::caught_up_to`]).
//!
//! This file holds the shared state and whether the cache is on; beside it:
//! - `store`: the entries, their LRU eviction and their invalidation;
//! - `lookup`: which requests the cache may answer, and when an entry is
//!   current enough to answer them;
//! - `follow`: the coherence watch over the key space, and the auth probe
//!   that turns the cache off.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::info;

mod follow;
mod lookup;
mod store;

use store::Entries;

/// How big the cache may grow (`--cache-max-entries`, `--cache-max-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most answers kept; 0 turns the cache off.
    pub max_entries: usize,
    /// Most bytes of encoded answers kept.
    pub max_bytes: usize,
}

impl Default for CacheLimits {
    /// etcd's proxy keeps 2,048 entries; we also bound the bytes.
    fn default() -> Self {
        CacheLimits {
            max_entries: 2048,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Counters behind etcd's `etcd_grpc_proxy_cache_*` metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Answers served from the cache.
    pub hits: AtomicU64,
    /// Cacheable requests that went to etcd.
    pub misses: AtomicU64,
    /// Entries dropped because an event or a write touched them.
    pub invalidations: AtomicU64,
}

/// The shared range cache of one proxy.
pub struct RangeCache {
    limits: CacheLimits,
    entries: Mutex<Entries>,
    /// Answers older than this revision are never stored.
    floor: AtomicI64,
    /// Whether the coherence watch is open (and auth is off).
    active: AtomicBool,
    /// The revision up to which every event of the watch has been applied.
    applied: tokio::sync::watch::Sender<i64>,
    /// Counters for metrics.
    pub stats: CacheStats,
}

impl RangeCache {
    /// An empty cache, inactive until [`RangeCache::follow`] opens its watch.
    pub fn new(limits: CacheLimits) -> Arc<RangeCache> {
        Arc::new(RangeCache {
            limits,
            entries: Mutex::new(Entries::default()),
            floor: AtomicI64::new(0),
            active: AtomicBool::new(false),
            applied: tokio::sync::watch::Sender::new(0),
            stats: CacheStats::default(),
        })
    }

    /// The last revision the cache has seen, from its watch or from a write
    /// through this proxy: a serializable answer older than this is stale
    /// to this proxy's clients.
    pub fn floor(&self) -> i64 {
        self.floor.load(Ordering::Acquire)
    }

    /// Serves and stores as if the coherence watch were open, for unit
    /// tests of the layers above that have no member to watch.
    #[cfg(test)]
    pub(crate) fn activate_for_tests(&self) {
        self.active.store(true, Ordering::Release);
    }

    /// Stops serving from memory until the coherence watch is re-opened
    /// (auth was just enabled through this proxy).
    pub fn suspend(&self) {
        self.set_active(false);
    }

    fn set_active(&self, active: bool) {
        // Off first, then cleared: an answer stored in between would outlive
        // the clear (see the re-check in `put`).
        let was = self.active.swap(active, Ordering::AcqRel);
        if !active {
            self.clear();
            self.applied.send_replace(0);
        }
        if was != active {
            info!(
                active,
                "range cache {}",
                if active {
                    "following the key space"
                } else {
                    "off"
                }
            );
        }
    }
}

#[cfg(test)]
mod tests;
