//! Lease keep-alive coalescing: every client keep-alive for a lease joins
//! the one upstream request for that lease that is in flight, and answers
//! less than [`FRESH`] old are reused. Leases are spread by id over
//! [`SHARDS`] upstream LeaseKeepAlive streams (etcd renews the requests of
//! one stream one after another, so one stream would cap the whole proxy at
//! one renewal per round trip), opened on the leader when it is known (a
//! follower forwards every renewal to it), each re-opened on another member
//! when its member fails, with its in-flight requests sent again.
//!
//! Renewals are coalesced per auth token, never across tokens: etcd 3.5.28,
//! 3.6.9 and later renew a lease only for a user who may write every key
//! attached to it, so each client's keep-alive is sent under its own token
//! and an answer to one token never serves another. Without auth every
//! client has no token and all share one set of streams.
//!
//! This file is the hub: the tokens' renewals, made on first use and
//! dropped when idle. One token's per-lease table is `renewals.rs`; its
//! upstream streams, one per shard, are `shard.rs`.

use crate::error::ProxyError;
use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::AsciiMetadataValue;
use tonic::Status;

use super::renewals::Renewals;
use crate::proto::etcdserverpb::LeaseKeepAliveResponse;
use crate::upstream::Pool;

/// An upstream answer younger than this serves other clients' keep-alives
/// for the same lease. The lease then expires at most this much earlier
/// than its TTL says, never later.
pub const FRESH: Duration = Duration::from_millis(500);

/// Upstream keep-alive streams at most; a lease always uses the same one.
pub const SHARDS: usize = 8;

/// Upstream keep-alive streams per auth token (leases of one user).
pub const SHARDS_PER_TOKEN: usize = 1;

/// A token's renewals, dropped after this long unused.
const IDLE_TOKEN: Duration = Duration::from_secs(600);

/// Tokens with renewal state at once. Past it the least recently used one
/// with nobody waiting is dropped; when every one has waiters, a new
/// token's keep-alive is answered as etcd answers overload.
const MAX_TOKENS: usize = 10_000;

/// Drops the least recently used token with no waiting renewal; false when
/// every token has one.
fn evict_least_recent(map: &mut HashMap<Option<AsciiMetadataValue>, TokenRenewals>) -> bool {
    let idle = map
        .iter()
        .filter(|(_, (r, _))| r.is_idle())
        .min_by_key(|(_, (_, used))| *used)
        .map(|(k, _)| k.clone());
    match idle {
        Some(k) => map.remove(&k).is_some(),
        None => false,
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct KeepAliveStats {
    /// Keep-alives sent upstream.
    pub upstream_requests: AtomicU64,
    /// Client keep-alives answered by joining or reusing another's.
    pub coalesced: AtomicU64,
    /// Upstream keep-alive streams opened (more than one means failovers).
    pub streams_opened: AtomicU64,
}

/// Shared by every client keep-alive stream of one proxy: the renewals of
/// each auth token (none without auth).
pub struct KeepAliveHub {
    pool: Pool,
    /// Owner of the renewal shards and the client keep-alive streams.
    tasks: crate::tasks::Tasks,
    by_token: Mutex<HashMap<Option<AsciiMetadataValue>, TokenRenewals>>,
    /// Counters for metrics.
    pub stats: Arc<KeepAliveStats>,
}

/// A token's renewals and when a client last used them.
type TokenRenewals = (Arc<Renewals>, Instant);

impl KeepAliveHub {
    /// A hub over `pool`; upstream streams open on first use.
    pub fn new(pool: Pool, tasks: crate::tasks::Tasks) -> Arc<KeepAliveHub> {
        Arc::new(KeepAliveHub {
            pool,
            tasks,
            by_token: Mutex::new(HashMap::new()),
            stats: Default::default(),
        })
    }

    /// Renews lease `id` under `token` (the client's, or the proxy's own
    /// for its registration and leasing), sharing the upstream request with
    /// every other client of the same token renewing it at the same moment.
    pub async fn keep_alive(
        &self,
        token: Option<&AsciiMetadataValue>,
        id: i64,
    ) -> Result<LeaseKeepAliveResponse, Status> {
        let renewals = {
            let mut map = lock(&self.by_token);
            let key = token.cloned();
            if !map.contains_key(&key) {
                map.retain(|_, (r, used)| used.elapsed() < IDLE_TOKEN || !r.is_idle());
                if map.len() >= MAX_TOKENS && !evict_least_recent(&mut map) {
                    return Err(ProxyError::TooManyRequests.status());
                }
                let shards = if key.is_some() {
                    SHARDS_PER_TOKEN
                } else {
                    SHARDS
                };
                let metadata = crate::upstream::Caller::metadata(key.as_ref());
                map.insert(
                    key.clone(),
                    (
                        Renewals::start(
                            self.pool.clone(),
                            metadata,
                            shards,
                            self.stats.clone(),
                            &self.tasks,
                        ),
                        Instant::now(),
                    ),
                );
            }
            match map.get_mut(&key) {
                Some((r, used)) => {
                    *used = Instant::now();
                    r.clone()
                }
                None => return Err(ProxyError::Internal("keep-alive renewals").status()),
            }
        };
        let answer = renewals.keep_alive(id).await;
        if let (Err(status), Some(_)) = (&answer, token) {
            if status.code() == tonic::Code::Unauthenticated {
                // etcd does not accept the token: keep no state for it.
                let mut map = lock(&self.by_token);
                if map
                    .get(&token.cloned())
                    .is_some_and(|(r, _)| Arc::ptr_eq(r, &renewals))
                {
                    map.remove(&token.cloned());
                }
            }
        }
        answer
    }

    /// The owner of the proxy's tasks, for the client streams this hub serves.
    pub fn tasks(&self) -> &crate::tasks::Tasks {
        &self.tasks
    }

    /// Tokens with renewal state now (each has its own upstream streams).
    pub fn tokens(&self) -> usize {
        lock(&self.by_token).len()
    }

    /// Drops any reusable answer for `id` (after a revoke through this proxy).
    pub fn forget(&self, id: i64) {
        let map = lock(&self.by_token);
        for (r, _) in map.values() {
            r.forget(id);
        }
    }
}
