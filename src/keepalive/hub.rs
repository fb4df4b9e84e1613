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

use crate::error::ProxyError;
use crate::sync::lock;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::Status;
use tracing::{debug, info_span, Instrument};

use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use crate::upstream::resilient_stream::{self, Choice, Session, Step};
use crate::upstream::retry::Failure;
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
        .filter(|(_, (r, _))| lock(&r.state).waiters.is_empty())
        .min_by_key(|(_, (_, used))| *used)
        .map(|(k, _)| k.clone());
    match idle {
        Some(k) => map.remove(&k).is_some(),
        None => false,
    }
}

fn shard_of(id: i64, shards: usize) -> usize {
    (id.unsigned_abs() % shards.max(1) as u64) as usize
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

type Waiter = oneshot::Sender<Result<LeaseKeepAliveResponse, Status>>;

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

/// The coalesced renewals of one auth token, on their own upstream streams.
struct Renewals {
    pool: Pool,
    /// Sent with every upstream stream: the token, if any.
    metadata: MetadataMap,
    shards: usize,
    state: Mutex<State>,
    /// Lease IDs to send upstream, one queue per shard's upstream task.
    queues: Vec<mpsc::UnboundedSender<i64>>,
    stats: Arc<KeepAliveStats>,
}

#[derive(Default)]
struct State {
    waiters: HashMap<i64, Vec<Waiter>>,
    inflight: HashSet<i64>,
    recent: HashMap<i64, (Instant, LeaseKeepAliveResponse)>,
}

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
                map.retain(|_, (r, used)| {
                    used.elapsed() < IDLE_TOKEN || !lock(&r.state).waiters.is_empty()
                });
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

impl Renewals {
    /// Renewals under `metadata`, with their upstream tasks running.
    fn start(
        pool: Pool,
        metadata: MetadataMap,
        shards: usize,
        stats: Arc<KeepAliveStats>,
        tasks: &crate::tasks::Tasks,
    ) -> Arc<Renewals> {
        let (queues, receivers): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| mpsc::unbounded_channel()).unzip();
        let hub = Arc::new(Renewals {
            pool,
            metadata,
            shards,
            state: Mutex::new(State::default()),
            queues,
            stats,
        });
        for (shard, rx) in receivers.into_iter().enumerate() {
            let weak = Arc::downgrade(&hub);
            tasks.spawn(
                upstream(weak, shard, rx).instrument(info_span!("upstream_keepalive", shard)),
            );
        }
        hub
    }

    /// Renews lease `id`, sharing the upstream request with every other
    /// client renewing it at the same moment.
    async fn keep_alive(&self, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
        let rx = {
            let mut st = lock(&self.state);
            if let Some((at, resp)) = st.recent.get(&id) {
                if at.elapsed() < FRESH {
                    self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                    return Ok(*resp);
                }
            }
            let (tx, rx) = oneshot::channel();
            st.waiters.entry(id).or_default().push(tx);
            if st.inflight.insert(id) {
                self.stats.upstream_requests.fetch_add(1, Ordering::Relaxed);
                if let Some(q) = self.queues.get(shard_of(id, self.shards)) {
                    let _ = q.send(id);
                }
            } else {
                self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
            }
            rx
        };
        rx.await
            .unwrap_or_else(|_| Err(ProxyError::Lost("keep-alive stream closed").status()))
    }

    fn forget(&self, id: i64) {
        lock(&self.state).recent.remove(&id);
    }

    fn answer(&self, resp: LeaseKeepAliveResponse) {
        let mut st = lock(&self.state);
        st.inflight.remove(&resp.id);
        let waiters = st.waiters.remove(&resp.id).unwrap_or_default();
        if st.recent.len() > 100_000 {
            st.recent.retain(|_, (at, _)| at.elapsed() < FRESH);
        }
        st.recent.insert(resp.id, (Instant::now(), resp));
        drop(st);
        for w in waiters {
            let _ = w.send(Ok(resp));
        }
    }

    /// An etcd answer that ends a shard's stream reaches all its waiters.
    fn fail_shard(&self, shard: usize, status: &Status) {
        let mut st = lock(&self.state);
        let shards = self.shards;
        st.inflight.retain(|id| shard_of(*id, shards) != shard);
        let ids: Vec<i64> = st
            .waiters
            .keys()
            .copied()
            .filter(|id| shard_of(*id, shards) == shard)
            .collect();
        let waiters: Vec<Waiter> = ids
            .iter()
            .filter_map(|id| st.waiters.remove(id))
            .flatten()
            .collect();
        drop(st);
        for w in waiters {
            let _ = w.send(Err(status.clone()));
        }
    }

    fn inflight(&self, shard: usize) -> Vec<i64> {
        lock(&self.state)
            .inflight
            .iter()
            .copied()
            .filter(|id| shard_of(*id, self.shards) == shard)
            .collect()
    }
}

/// Keeps shard `shard`'s upstream LeaseKeepAlive stream, while the hub lives.
async fn upstream(
    hub: std::sync::Weak<Renewals>,
    shard: usize,
    queue: mpsc::UnboundedReceiver<i64>,
) {
    let Some(pool) = hub.upgrade().map(|h| h.pool.clone()) else {
        return;
    };
    let session = ShardSession {
        hub,
        shard,
        queue,
        pending: None,
        tx: None,
    };
    resilient_stream::run(&pool, Choice::LeaderFirst, "keep-alive", session).await;
}

/// One shard's upstream LeaseKeepAlive stream, as a
/// [`resilient_stream::Session`]: each (re)open sends the shard's
/// in-flight renewals again.
struct ShardSession {
    hub: std::sync::Weak<Renewals>,
    shard: usize,
    /// Lease ids to renew, as clients ask.
    queue: mpsc::UnboundedReceiver<i64>,
    /// An id taken from the queue that no open stream has sent yet.
    pending: Option<i64>,
    /// The open stream's requests (unbounded: sending never waits, so
    /// answers are always read).
    tx: Option<mpsc::UnboundedSender<LeaseKeepAliveRequest>>,
}

#[tonic::async_trait]
impl Session for ShardSession {
    type Message = LeaseKeepAliveResponse;

    /// Opens only when there is something to send.
    async fn ready(&mut self) -> Step {
        if self.pending.is_none() {
            match self
                .hub
                .upgrade()
                .map(|h| h.inflight(self.shard).is_empty())
            {
                None => return Step::Stop,
                Some(true) => match self.queue.recv().await {
                    Some(id) => self.pending = Some(id),
                    None => return Step::Stop,
                },
                Some(false) => {}
            }
        }
        if self.hub.strong_count() == 0 {
            return Step::Stop;
        }
        Step::Continue
    }

    async fn open(
        &mut self,
        backend: &Arc<crate::upstream::Backend>,
        _reopened: bool,
    ) -> Result<tonic::Streaming<LeaseKeepAliveResponse>, Status> {
        let Some(h) = self.hub.upgrade() else {
            return Err(ProxyError::Lost("keep-alive renewals").status());
        };
        let (tx, rx) = mpsc::unbounded_channel::<LeaseKeepAliveRequest>();
        let mut resend: Vec<i64> = h.inflight(self.shard);
        if let Some(id) = self.pending.take() {
            if !resend.contains(&id) {
                resend.push(id);
            }
        }
        for id in resend {
            let _ = tx.send(LeaseKeepAliveRequest { id });
        }
        h.stats.streams_opened.fetch_add(1, Ordering::Relaxed);
        let request = tonic::Request::from_parts(
            h.metadata.clone(),
            tonic::Extensions::default(),
            UnboundedReceiverStream::new(rx),
        );
        drop(h);
        let stream = LeaseClient::new(backend.channel.clone())
            .lease_keep_alive(request)
            .await?
            .into_inner();
        self.tx = Some(tx);
        Ok(stream)
    }

    async fn message(&mut self, resp: LeaseKeepAliveResponse) -> Step {
        match self.hub.upgrade() {
            Some(h) => {
                h.answer(resp);
                Step::Continue
            }
            None => Step::Stop,
        }
    }

    async fn event(&mut self) -> Step {
        let Some(id) = self.queue.recv().await else {
            return Step::Stop;
        };
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(LeaseKeepAliveRequest { id }).is_ok());
        if sent {
            Step::Continue
        } else {
            self.pending = Some(id);
            Step::Reopen
        }
    }

    /// Transport trouble and "no leader" move to another member (the
    /// loop does that); any other etcd answer reaches the waiting clients.
    fn failed(&mut self, backend: &crate::upstream::Backend, status: &Status) {
        if let Some(h) = self.hub.upgrade() {
            if Failure::of(status) == Failure::Answer
                && status.metadata().get("content-type").is_some()
            {
                h.fail_shard(self.shard, status);
            }
        }
        debug!(backend = %backend.url, error = %status.message(), "upstream keep-alive stream failed");
    }

    fn closed(&mut self) {
        self.tx = None;
    }
}
