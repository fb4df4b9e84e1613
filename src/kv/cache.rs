//! The range cache: serializable Range answers served from memory, kept
//! coherent with writes from anywhere.
//!
//! etcd's own proxy only forgets an entry when a write passes through the
//! same proxy. This cache follows one upstream watch over the whole key
//! space (through the [`WatchHub`], so it fails over without a gap) and
//! forgets every entry an event touches. An answer is only stored when its
//! revision is at least the last revision the cache has seen (from the
//! watch or from a write through this proxy), so a read that raced a write
//! can never be stored after that write's event was applied.
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

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, Instrument};

use crate::proto::etcdserverpb::*;
use crate::upstream::Forwarded;
use crate::upstream::RetryPolicy;
use crate::upstream::{Credentials, Upstream};
use crate::watch::hub::{WatchHub, WatchKey, WatcherSpec};

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

struct Entry {
    key: Vec<u8>,
    range_end: Vec<u8>,
    answer: RangeResponse,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct Entries {
    by_request: HashMap<Vec<u8>, Entry>,
    bytes: usize,
    tick: u64,
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

/// Whether `key` lies in `[start, end)` as etcd reads a range: empty end is
/// the single key, `"\0"` is everything from `start` on.
fn covers(start: &[u8], end: &[u8], key: &[u8]) -> bool {
    if end.is_empty() {
        return key == start;
    }
    key >= start && (end == [0] || key < end)
}

/// Whether two ranges share a key (`a_end`/`b_end` as in [`covers`]).
fn overlaps(a: &[u8], a_end: &[u8], b: &[u8], b_end: &[u8]) -> bool {
    if a_end.is_empty() {
        return covers(b, b_end, a);
    }
    if b_end.is_empty() {
        return covers(a, a_end, b);
    }
    let a_before_b_end = b_end == [0] || a < b_end;
    let b_before_a_end = a_end == [0] || b < a_end;
    a_before_b_end && b_before_a_end
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

    /// Entries held now (`etcd_grpc_proxy_cache_keys_total`).
    pub fn len(&self) -> usize {
        lock(&self.entries).by_request.len()
    }

    /// The last revision the cache has seen, from its watch or from a write
    /// through this proxy: a serializable answer older than this is stale
    /// to this proxy's clients.
    pub fn floor(&self) -> i64 {
        self.floor.load(Ordering::Acquire)
    }

    /// Whether etcd is known to run without auth right now: the cache's own
    /// token-less watch over the key space is open and its once-a-second
    /// check found reads without a token allowed.
    pub fn auth_known_off(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

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

    /// Whether an answer is held for `cache_key` (not counted as a hit or
    /// miss): a linearizable read only waits for a barrier when it is.
    pub fn holds(&self, cache_key: &[u8]) -> bool {
        lock(&self.entries).by_request.contains_key(cache_key)
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
            let keep = !overlaps(&entry.key, &entry.range_end, key, range_end);
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
    pub fn written(&self, touched: &[(Vec<u8>, Vec<u8>)], revision: i64) {
        for (key, end) in touched {
            self.invalidate(key, end, revision);
        }
        if touched.is_empty() {
            self.floor.fetch_max(revision, Ordering::AcqRel);
        }
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

    /// Follows every change in the cluster until dropped: keeps one watch
    /// over the whole key space open through `hub` and applies its events.
    pub async fn follow(self: Arc<Self>, hub: Arc<WatchHub>, upstream: Upstream) {
        if self.limits.max_entries == 0 {
            return;
        }
        async move {
            loop {
                self.follow_once(&hub, &upstream).await;
                self.set_active(false);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        .instrument(info_span!("range_cache"))
        .await
    }

    async fn follow_once(&self, hub: &Arc<WatchHub>, upstream: &Upstream) {
        let (tx, mut rx) = mpsc::channel(1024);
        let spec = WatcherSpec {
            watch_id: 0,
            start_revision: 0,
            prev_kv: false,
            progress_notify: true,
            no_put: false,
            no_delete: false,
        };
        let everything = WatchKey {
            key: vec![0],
            range_end: vec![0],
        };
        let (anonymous, ()) = Forwarded::split(tonic::Request::new(()));
        let id = hub.add(everything, spec, tx, anonymous);
        let _remove = WatcherGuard(hub.clone(), id);
        let mut auth_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(Ok(out)) = msg else { return };
                    let resp = out.response();
                    if resp.canceled || resp.compact_revision != 0 {
                        debug!(reason = %String::from_utf8_lossy(&resp.cancel_reason), "cache watch ended");
                        return;
                    }
                    if resp.created {
                        let rev = resp.header.as_ref().map_or(0, |h| h.revision);
                        self.floor.fetch_max(rev, Ordering::AcqRel);
                        self.set_active(true);
                        self.applied.send_replace(rev);
                        continue;
                    }
                    for ev in resp.events.iter() {
                        if let Some(kv) = &ev.kv {
                            self.invalidate(&kv.key, &[], kv.mod_revision);
                        }
                    }
                    if let Some(h) = &resp.header {
                        self.floor.fetch_max(h.revision, Ordering::AcqRel);
                        // A catching-up watch may carry the current revision
                        // in its header while more events follow: count as
                        // applied only up to the last event it brought.
                        let upto = resp.events.iter().filter_map(|e| e.kv.as_ref()).map(|kv| kv.mod_revision).max().unwrap_or(h.revision);
                        self.applied.send_if_modified(|r| {
                            let newer = upto > *r;
                            *r = (*r).max(upto);
                            newer
                        });
                    }
                }
                _ = auth_check.tick() => {
                    if auth_enabled(upstream).await {
                        debug!("auth is enabled: range cache off");
                        return;
                    }
                }
            }
        }
    }
}

/// Removes the cache's watcher from the hub when the follow loop ends.
struct WatcherGuard(Arc<WatchHub>, crate::watch::hub::WatcherId);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

/// Whether etcd refuses a read without a token (auth enabled). Unreachable
/// members count as "not known to be enabled": the watch decides then.
async fn auth_enabled(upstream: &Upstream) -> bool {
    let probe = RangeRequest {
        key: vec![0],
        count_only: true,
        serializable: true,
        limit: 1,
        ..Default::default()
    };
    let answer = upstream
        .unary::<_, RangeResponse>(
            "/etcdserverpb.KV/Range",
            RetryPolicy::Idempotent,
            Credentials::Anonymous,
            probe,
        )
        .await;
    match answer {
        Ok(_) => false,
        Err(e) => {
            let status = tonic::Status::from(e);
            matches!(
                status.code(),
                tonic::Code::InvalidArgument
                    | tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated
            )
        }
    }
}

/// The key ranges a write touches, for invalidation after it succeeds.
pub fn touched_by_put(req: &PutRequest) -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![(req.key.clone(), Vec::new())]
}

/// The key ranges a DeleteRange touches.
pub fn touched_by_delete(req: &DeleteRangeRequest) -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![(req.key.clone(), req.range_end.clone())]
}

/// The key ranges any branch of a Txn may write.
pub fn touched_by_txn(req: &TxnRequest) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for op in req.success.iter().chain(req.failure.iter()) {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => out.extend(touched_by_put(p)),
            Some(request_op::Request::RequestDeleteRange(d)) => out.extend(touched_by_delete(d)),
            Some(request_op::Request::RequestTxn(t)) => out.extend(touched_by_txn(t)),
            Some(request_op::Request::RequestRange(_)) | None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
