//! `--experimental-leasing-prefix`: linearizable single-key reads served
//! from memory while this proxy holds a lease on the key.
//!
//! The protocol is etcd's client-side "leasing KV", done in the proxy:
//! - A linearizable Get of key `K` tries to acquire the leasing key
//!   `<prefix>K`, bound to this proxy's session lease, in the same Txn that
//!   reads `K`. While it holds `<prefix>K`, later Gets of `K` are answered
//!   from the copy read then.
//! - Every proxy watches the whole leasing prefix. A writer that finds
//!   `<prefix>K` held puts a revoke marker in it (a non-empty value, lease
//!   kept); the owner, seeing the marker, drops its copy of `K` first and
//!   then deletes `<prefix>K`. The writer waits for that delete (at most
//!   the session TTL: a dead owner's lease expires by then), then writes
//!   in a Txn guarded by "no leasing key covers what I write", so an owner
//!   that acquired again in between makes it start over.
//! - Writes through the owner itself drop its copy and release the key.
//! - The owner only serves while its session is provably alive (last
//!   keep-alive answer's TTL not yet run out) and its watch is open; when
//!   either is lost every copy is dropped and the session lease revoked.
//!
//! Not covered, as in etcd: writers that bypass leasing proxies (direct
//! clients of etcd) do not revoke, so owners keep serving the old value.
//! Calls that carry an auth token are never served from or guarded by
//! leases (cached answers are not shared across users).

use crate::sync::lock;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tracing::{debug, info, info_span, warn, Instrument};

use super::Kv;

/// Keys whose leasing copy one proxy holds at most.
pub const MAX_OWNED: usize = 10_000;
use crate::error::ProxyError;
use crate::keepalive::KeepAliveHub;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::*;
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::KeyValue;
use crate::upstream::resilient_stream::{Choice, Session, Step};
use crate::upstream::Forwarded;
use crate::upstream::{Credentials, Upstream};
use crate::upstream::{Pool, RetryPolicy};

/// TTL of the session lease, in seconds; also the longest a writer waits
/// for an owner to give a key up.
pub const SESSION_TTL_SECS: i64 = 10;

/// The value a writer puts in a leasing key to ask its owner to give it up.
const REVOKE: &[u8] = b"REVOKE";

/// Keep-alive answers are trusted for their TTL minus this margin.
const SAFETY_MARGIN: Duration = Duration::from_secs(1);

/// The leasing state of one proxy: its session, the keys it holds and the
/// copies it serves.
pub struct Leasing {
    prefix: Vec<u8>,
    /// For the leasing watch, which picks its member itself.
    pool: Pool,
    /// Every call the leasing makes to a member.
    upstream: Upstream,
    /// Owner of its background releases.
    tasks: crate::tasks::Tasks,
    state: Mutex<State>,
}

/// A key this proxy holds, with the answer it serves for it.
struct Owned {
    /// `create_revision` of our `<prefix>K`; events for other incarnations are ignored.
    create_rev: i64,
    answer: RangeResponse,
}

#[derive(Default)]
struct State {
    /// The session lease and until when it is surely alive.
    session: Option<(i64, Instant)>,
    /// Whether the watch on the leasing prefix is open for this session.
    watching: bool,
    /// Bumped at every reset, so an acquisition begun before one is not kept.
    generation: u64,
    owned: HashMap<Vec<u8>, Owned>,
    /// Acquisitions under way, per key.
    pending: HashMap<Vec<u8>, usize>,
    /// `create_revision`s of our leasing keys revoked or deleted while an
    /// acquisition of the key was under way.
    lost: HashMap<Vec<u8>, Vec<i64>>,
}

impl State {
    fn usable_lease(&self) -> Option<i64> {
        match self.session {
            Some((lease, until)) if self.watching && Instant::now() < until => Some(lease),
            _ => None,
        }
    }
}

/// Whether a Range may be served from a lease: one key, linearizable, no options.
pub fn servable(r: &RangeRequest) -> bool {
    r.range_end.is_empty()
        && !r.key.is_empty()
        && r.limit == 0
        && r.revision == 0
        && r.sort_order == 0
        && r.sort_target == 0
        && !r.serializable
        && !r.keys_only
        && !r.count_only
        && r.min_mod_revision == 0
        && r.max_mod_revision == 0
        && r.min_create_revision == 0
        && r.max_create_revision == 0
}

/// The key ranges a transaction writes, in every branch, nested ones included.
pub fn txn_writes(txn: &TxnRequest, out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    for op in txn.success.iter().chain(txn.failure.iter()) {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => out.push((p.key.clone(), Vec::new())),
            Some(request_op::Request::RequestDeleteRange(d)) => {
                out.push((d.key.clone(), d.range_end.clone()))
            }
            Some(request_op::Request::RequestTxn(inner)) => txn_writes(inner, out),
            Some(request_op::Request::RequestRange(_)) | None => {}
        }
    }
}

fn create_rev_is(key: Vec<u8>, range_end: Vec<u8>, rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key,
        range_end,
        target_union: Some(TargetUnion::CreateRevision(rev)),
    }
}

fn op(r: request_op::Request) -> RequestOp {
    RequestOp { request: Some(r) }
}

/// Whether `key` lies in `[start, end)` with etcd's range conventions.
fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

impl Leasing {
    /// Leasing under `prefix`; nothing happens until [`Leasing::run`] runs.
    pub fn new(prefix: Vec<u8>, upstream: Upstream, tasks: crate::tasks::Tasks) -> Arc<Leasing> {
        Arc::new(Leasing {
            prefix,
            pool: upstream.pool().clone(),
            upstream,
            tasks,
            state: Mutex::new(State::default()),
        })
    }

    fn leasing_key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(key);
        k
    }

    /// The leasing-key range covering the client range `[key, end)`.
    fn leasing_range(&self, key: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let start = self.leasing_key(key);
        let end = if end.is_empty() {
            Vec::new()
        } else if end == [0] {
            crate::kv::namespace::prefix_end(&self.prefix)
        } else {
            self.leasing_key(end)
        };
        (start, end)
    }

    /// A Txn made for a client's call, sent down the KV stack (`below`)
    /// with the client's credentials.
    async fn client_txn(
        &self,
        below: &dyn Kv,
        fwd: &Forwarded,
        txn: TxnRequest,
    ) -> Result<TxnResponse, ProxyError> {
        below
            .txn(fwd.request(txn))
            .await
            .map(tonic::Response::into_inner)
            .map_err(ProxyError::Upstream)
    }

    /// A Txn of the leasing's own bookkeeping, as the proxy's own user.
    async fn own_txn(
        &self,
        txn: TxnRequest,
        policy: RetryPolicy,
    ) -> Result<TxnResponse, ProxyError> {
        self.upstream
            .unary("/etcdserverpb.KV/Txn", policy, Credentials::Own, txn)
            .await
    }

    /// Keeps the session and the watch going until the task is dropped;
    /// any loss drops every copy and starts a new session.
    pub async fn run(self: Arc<Self>, hub: Arc<KeepAliveHub>) {
        let span = info_span!("leasing", prefix = %String::from_utf8_lossy(&self.prefix));
        async move {
            loop {
                let grant: Result<LeaseGrantResponse, _> = self
                    .upstream
                    .unary(
                        "/etcdserverpb.Lease/LeaseGrant",
                        RetryPolicy::UnlessApplied,
                        Credentials::Own,
                        LeaseGrantRequest { ttl: SESSION_TTL_SECS, id: 0 },
                    )
                    .await;
                let lease = match grant {
                    Ok(g) if g.error.is_empty() && g.id != 0 => g.id,
                    Ok(g) => {
                        warn!(error = %String::from_utf8_lossy(&g.error), "leasing session lease refused; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(e) => {
                        warn!(error = %e, "could not grant the leasing session lease; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let until = Instant::now() + Duration::from_secs(SESSION_TTL_SECS as u64) - SAFETY_MARGIN;
                lock(&self.state).session = Some((lease, until));
                info!(lease, "leasing session started");
                tokio::select! {
                    _ = self.keep_alive(&hub, lease) => {}
                    _ = self.watch(lease) => {}
                }
                self.reset();
                self.revoke_session(lease).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        .instrument(span)
        .await
    }

    /// Drops every copy and the session; nothing is served until a new one is up.
    pub fn reset(&self) {
        let mut st = lock(&self.state);
        let dropped = st.owned.len();
        st.owned.clear();
        st.lost.clear();
        st.session = None;
        st.watching = false;
        st.generation += 1;
        warn!(dropped, "leasing session lost: every leased copy dropped");
    }

    /// Revokes a lost session's lease so its leasing keys vanish at once.
    pub async fn revoke_session(&self, lease: i64) {
        let call = self.upstream.unary::<_, LeaseRevokeResponse>(
            "/etcdserverpb.Lease/LeaseRevoke",
            RetryPolicy::UnlessApplied,
            Credentials::Own,
            LeaseRevokeRequest { id: lease },
        );
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), call).await {
            debug!(lease, error = %e, "could not revoke the old leasing session; it expires");
        }
    }

    /// The current session lease, for revoking it on shutdown.
    pub fn session_lease(&self) -> Option<i64> {
        lock(&self.state).session.map(|(l, _)| l)
    }

    /// Returns when the session can no longer be shown alive.
    async fn keep_alive(&self, hub: &KeepAliveHub, lease: i64) {
        let tick = Duration::from_millis(SESSION_TTL_SECS as u64 * 1000 / 3);
        loop {
            tokio::time::sleep(tick).await;
            let sent = Instant::now();
            match hub.keep_alive(self.pool.own_token().as_ref(), lease).await {
                Ok(resp) if resp.ttl > 0 => {
                    let life = Duration::from_secs(resp.ttl as u64)
                        .saturating_sub(SAFETY_MARGIN + crate::keepalive::FRESH);
                    if let Some(s) = lock(&self.state).session.as_mut() {
                        s.1 = s.1.max(sent + life);
                    }
                }
                Ok(_) => {
                    warn!(lease, "leasing session lease expired");
                    return;
                }
                Err(status) => {
                    warn!(lease, error = %status.message(), "leasing keep-alive failed");
                    let expired = lock(&self.state)
                        .session
                        .is_none_or(|(_, until)| Instant::now() >= until);
                    if expired {
                        return;
                    }
                }
            }
        }
    }

    /// A linearizable single-key Get through leasing: the held copy, or a
    /// read that also tries to acquire the key. `None`: not for leasing
    /// (the caller forwards it as usual).
    pub async fn get(
        &self,
        below: &dyn Kv,
        fwd: &Forwarded,
        req: &RangeRequest,
    ) -> Option<Result<RangeResponse, ProxyError>> {
        if !servable(req) || !fwd.caller().is_anonymous() {
            return None;
        }
        let (lease, generation) = {
            let mut st = lock(&self.state);
            let lease = st.usable_lease()?;
            if let Some(owned) = st.owned.get(&req.key) {
                return Some(Ok(owned.answer.clone()));
            }
            if st.owned.len() >= MAX_OWNED {
                // Holding more copies would grow memory with every new key
                // read: past the bound, reads go to etcd as without leasing.
                return None;
            }
            *st.pending.entry(req.key.clone()).or_default() += 1;
            (lease, st.generation)
        };
        let lk = self.leasing_key(&req.key);
        let read = op(request_op::Request::RequestRange(req.clone()));
        let read_lk = op(request_op::Request::RequestRange(RangeRequest {
            key: lk.clone(),
            ..Default::default()
        }));
        let txn = TxnRequest {
            compare: vec![create_rev_is(lk.clone(), Vec::new(), 0)],
            success: vec![
                op(request_op::Request::RequestPut(PutRequest {
                    key: lk,
                    lease,
                    ..Default::default()
                })),
                read.clone(),
                read_lk.clone(),
            ],
            failure: vec![read, read_lk],
        };
        let result = self.client_txn(below, fwd, txn).await;
        let mut st = lock(&self.state);
        let lost = match st.pending.get_mut(&req.key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                st.lost.get(&req.key).cloned().unwrap_or_default()
            }
            _ => {
                st.pending.remove(&req.key);
                st.lost.remove(&req.key).unwrap_or_default()
            }
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                debug!(error = %e, "leasing acquire failed; reading without a lease");
                return None;
            }
        };
        let mut ranges = resp.responses.into_iter().filter_map(|r| match r.response {
            Some(response_op::Response::ResponseRange(r)) => Some(r),
            _ => None,
        });
        let (Some(mut answer), Some(lk_now)) = (ranges.next(), ranges.next()) else {
            return None;
        };
        answer.header = resp.header;
        if let Some(kv) = lk_now.kvs.first() {
            let current = st.generation == generation && st.usable_lease() == Some(lease);
            if current
                && kv.lease == lease
                && kv.value.is_empty()
                && !lost.contains(&kv.create_revision)
                && !lost.contains(&0)
            {
                st.owned.insert(
                    req.key.clone(),
                    Owned {
                        create_rev: kv.create_revision,
                        answer: answer.clone(),
                    },
                );
                debug!(key = %String::from_utf8_lossy(&req.key), "key leased");
            }
        }
        Some(Ok(answer))
    }
}

mod watch;
mod write;

#[cfg(test)]
mod tests;
