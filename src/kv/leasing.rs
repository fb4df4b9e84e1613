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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tracing::{debug, info, info_span, warn, Instrument};

use super::Kv;
use crate::error::ProxyError;
use crate::lease::keepalive::KeepAliveHub;
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

/// Whether the call carries an auth token (then leasing stays out of it).
pub fn has_token(fwd: &Forwarded) -> bool {
    fwd.metadata().contains_key("token")
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

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
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
    pub fn new(prefix: Vec<u8>, upstream: Upstream) -> Arc<Leasing> {
        Arc::new(Leasing {
            prefix,
            pool: upstream.pool().clone(),
            upstream,
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
                        .saturating_sub(SAFETY_MARGIN + crate::lease::keepalive::FRESH);
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

    /// Follows every leasing key for session `lease`, moving to another
    /// member when its member fails and resuming after the last event seen;
    /// returns when etcd cancels the watch (compacted past it, say). While
    /// no watch is open nothing is served, and every copy held when a watch
    /// closes is dropped (it is acquired again on its next read).
    async fn watch(&self, lease: i64) {
        let session = LeasingWatch {
            leasing: self,
            lease,
            position: None,
        };
        crate::upstream::resilient_stream::run(
            &self.pool,
            Choice::Balanced,
            "leasing watch",
            session,
        )
        .await;
    }

    /// What one leasing watch event means for the copies of session `lease`.
    fn apply(&self, lease: i64, ev: &crate::proto::mvccpb::Event) {
        let Some(kv) = &ev.kv else { return };
        let Some(key) = kv.key.strip_prefix(self.prefix.as_slice()) else {
            return;
        };
        if ev.r#type == EventType::Put as i32 {
            if !kv.value.is_empty() && kv.lease == lease {
                self.lose(key, Some(kv.create_revision));
                self.release_later(kv.key.clone(), kv.create_revision);
            }
        } else {
            match &ev.prev_kv {
                Some(prev) if prev.lease == lease => self.lose(key, Some(prev.create_revision)),
                Some(_) => {}
                None => self.lose(key, None),
            }
        }
    }

    /// The leasing watch closed: nothing is served until one is open
    /// again, and no copy held now is trusted after.
    fn stop_serving(&self) {
        let mut st = lock(&self.state);
        st.watching = false;
        st.owned.clear();
        st.lost.clear();
        st.generation += 1;
    }

    /// Our `<prefix>key` (of that incarnation) is going or gone: stop serving it.
    fn lose(&self, key: &[u8], create_rev: Option<i64>) {
        let mut st = lock(&self.state);
        let ours = st
            .owned
            .get(key)
            .is_some_and(|o| create_rev.is_none_or(|r| r == o.create_rev));
        if ours {
            st.owned.remove(key);
            debug!(key = %String::from_utf8_lossy(key), "leased copy dropped");
        }
        if st.pending.contains_key(key) {
            st.lost
                .entry(key.to_vec())
                .or_default()
                .push(create_rev.unwrap_or(0));
        }
    }

    /// Deletes our leasing key (that incarnation only), in the background.
    fn release_later(&self, leasing_key: Vec<u8>, create_rev: i64) {
        let upstream = self.upstream.clone();
        let txn = self.release_txn(leasing_key, create_rev);
        tokio::spawn(async move {
            let r = upstream
                .unary::<_, TxnResponse>(
                    "/etcdserverpb.KV/Txn",
                    RetryPolicy::Idempotent,
                    Credentials::Own,
                    txn,
                )
                .await;
            if let Err(e) = r {
                warn!(error = %e, "could not release a revoked leasing key; it goes with the session lease");
            }
        });
    }

    fn release_txn(&self, leasing_key: Vec<u8>, create_rev: i64) -> TxnRequest {
        TxnRequest {
            compare: vec![create_rev_is(leasing_key.clone(), Vec::new(), create_rev)],
            success: vec![op(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: leasing_key,
                    ..Default::default()
                },
            ))],
            failure: vec![],
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
        if !servable(req) || has_token(fwd) {
            return None;
        }
        let (lease, generation) = {
            let mut st = lock(&self.state);
            let lease = st.usable_lease()?;
            if let Some(owned) = st.owned.get(&req.key) {
                return Some(Ok(owned.answer.clone()));
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

    /// Lists the leasing keys covering `ranges`, at one revision.
    async fn holders(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(Vec<KeyValue>, i64), ProxyError> {
        let reads = ranges
            .iter()
            .map(|(k, e)| {
                op(request_op::Request::RequestRange(RangeRequest {
                    key: k.clone(),
                    range_end: e.clone(),
                    ..Default::default()
                }))
            })
            .collect();
        let resp = self
            .own_txn(
                TxnRequest {
                    compare: vec![],
                    success: reads,
                    failure: vec![],
                },
                RetryPolicy::Idempotent,
            )
            .await?;
        let mut seen = HashSet::new();
        let mut kvs = Vec::new();
        for r in resp.responses {
            if let Some(response_op::Response::ResponseRange(r)) = r.response {
                for kv in r.kvs {
                    if seen.insert(kv.key.clone()) {
                        kvs.push(kv);
                    }
                }
            }
        }
        Ok((kvs, resp.header.map_or(0, |h| h.revision)))
    }

    /// Runs a write (the ops of `write`) once no other proxy holds a lease
    /// on what it writes: holders are asked to give their keys up, our own
    /// are dropped and released. Returns the outer Txn's answer; its first
    /// response is the write's. After waiting a session TTL for holders,
    /// the write goes ahead unguarded.
    pub async fn write(
        &self,
        below: &dyn Kv,
        fwd: &Forwarded,
        write: Vec<RequestOp>,
        touched: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<TxnResponse, ProxyError> {
        let ranges: Vec<(Vec<u8>, Vec<u8>)> = touched
            .iter()
            .map(|(k, e)| self.leasing_range(k, e))
            .collect();
        let guards: Vec<Compare> = ranges
            .iter()
            .map(|(k, e)| create_rev_is(k.clone(), e.clone(), 0))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(SESSION_TTL_SECS as u64);
        let mut guarded = true;
        loop {
            {
                let mut st = lock(&self.state);
                st.owned
                    .retain(|k, _| !touched.iter().any(|(s, e)| in_range(k, s, e)));
            }
            let compare = if guarded { guards.clone() } else { Vec::new() };
            let txn = TxnRequest {
                compare,
                success: write.clone(),
                failure: vec![],
            };
            let resp = self.client_txn(below, fwd, txn).await?;
            if resp.succeeded {
                return Ok(resp);
            }
            let (holders, rev) = self.holders(&ranges).await?;
            let lease = lock(&self.state).session.map(|(l, _)| l);
            let mut wait = Vec::new();
            for kv in holders {
                let Some(key) = kv.key.strip_prefix(self.prefix.as_slice()) else {
                    continue;
                };
                if Some(kv.lease) == lease {
                    self.lose(key, Some(kv.create_revision));
                    let _ = self
                        .own_txn(
                            self.release_txn(kv.key.clone(), kv.create_revision),
                            RetryPolicy::Idempotent,
                        )
                        .await;
                    continue;
                }
                if kv.value.is_empty() {
                    let mark = TxnRequest {
                        compare: vec![create_rev_is(
                            kv.key.clone(),
                            Vec::new(),
                            kv.create_revision,
                        )],
                        success: vec![op(request_op::Request::RequestPut(PutRequest {
                            key: kv.key.clone(),
                            value: REVOKE.to_vec(),
                            ignore_lease: true,
                            ..Default::default()
                        }))],
                        failure: vec![],
                    };
                    self.own_txn(mark, RetryPolicy::UnlessApplied).await?;
                }
                wait.push(kv.key);
            }
            if !wait.is_empty() && !self.wait_deleted(wait, rev + 1, deadline).await {
                if Instant::now() >= deadline {
                    warn!("a leasing key holder did not give its key up in time; writing anyway");
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            if Instant::now() >= deadline {
                guarded = false;
            }
        }
    }

    /// Waits until every key in `keys` is deleted at or after `from`;
    /// false when `deadline` came first.
    async fn wait_deleted(&self, keys: Vec<Vec<u8>>, from: i64, deadline: Instant) -> bool {
        let Some(backend) = self.pool.pick(&[]) else {
            return false;
        };
        let mut left: HashSet<Vec<u8>> = keys.iter().cloned().collect();
        let creates: Vec<WatchRequest> = keys
            .into_iter()
            .map(|key| WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(
                    WatchCreateRequest {
                        key,
                        start_revision: from,
                        filters: vec![watch_create_request::FilterType::Noput as i32],
                        ..Default::default()
                    },
                )),
            })
            .collect();
        let requests = futures::stream::iter(creates).chain(futures::stream::pending());
        let mut client = WatchClient::new(backend.channel.clone())
            .max_decoding_message_size(self.upstream.max_recv());
        let waiting = async {
            let mut stream = client
                .watch(self.pool.own_request(requests))
                .await
                .ok()?
                .into_inner();
            while let Ok(Some(resp)) = stream.message().await {
                if resp.canceled {
                    return None;
                }
                for ev in resp.events {
                    if let Some(kv) = ev.kv {
                        left.remove(&kv.key);
                    }
                }
                if left.is_empty() {
                    return Some(());
                }
            }
            None
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        matches!(tokio::time::timeout(remaining, waiting).await, Ok(Some(())))
    }
}

/// The watch on the leasing prefix, as a resilient-stream session.
struct LeasingWatch<'a> {
    leasing: &'a Leasing,
    lease: i64,
    /// The revision through which every event has been applied.
    position: Option<i64>,
}

#[tonic::async_trait]
impl Session for LeasingWatch<'_> {
    type Message = WatchResponse;

    async fn open(
        &mut self,
        backend: &Arc<crate::upstream::Backend>,
        _reopened: bool,
    ) -> Result<tonic::Streaming<WatchResponse>, tonic::Status> {
        let l = self.leasing;
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: l.prefix.clone(),
                    range_end: crate::kv::namespace::prefix_end(&l.prefix),
                    start_revision: self.position.map_or(0, |p| p + 1),
                    prev_kv: true,
                    ..Default::default()
                },
            )),
        };
        let requests = futures::stream::iter(vec![create]).chain(futures::stream::pending());
        let mut client = WatchClient::new(backend.channel.clone())
            .max_decoding_message_size(l.upstream.max_recv());
        Ok(client
            .watch(l.pool.own_request(requests))
            .await?
            .into_inner())
    }

    async fn message(&mut self, resp: WatchResponse) -> Step {
        if resp.canceled {
            warn!(reason = %String::from_utf8_lossy(&resp.cancel_reason), "leasing watch cancelled");
            return Step::Stop;
        }
        if resp.created {
            if self.position.is_none() {
                // From now: every later event is above the creation's revision.
                self.position = resp.header.as_ref().map(|h| h.revision);
            }
            lock(&self.leasing.state).watching = true;
            debug!("leasing watch open");
        }
        for ev in &resp.events {
            self.leasing.apply(self.lease, ev);
            if let Some(kv) = &ev.kv {
                self.position = Some(self.position.unwrap_or(0).max(kv.mod_revision));
            }
        }
        Step::Continue
    }

    fn closed(&mut self) {
        self.leasing.stop_serving();
    }
}

#[cfg(test)]
mod tests;
