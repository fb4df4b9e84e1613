//! Lease keep-alive coalescing: every client keep-alive for a lease joins
//! the one upstream request for that lease that is in flight, and answers
//! less than [`FRESH`] old are reused. All leases share one upstream
//! LeaseKeepAlive stream, re-opened on another member when its member fails,
//! with the in-flight requests sent again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::{debug, info_span, warn, Instrument};

use crate::backend::retry::Failure;
use crate::backend::Pool;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};

/// An upstream answer younger than this serves other clients' keep-alives
/// for the same lease. The lease then expires at most this much earlier
/// than its TTL says, never later.
pub const FRESH: Duration = Duration::from_millis(500);

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

/// Shared by every client keep-alive stream of one proxy.
pub struct KeepAliveHub {
    pool: Pool,
    state: Mutex<State>,
    /// Lease IDs to send upstream, read by the upstream task.
    queue: mpsc::UnboundedSender<i64>,
    /// Counters for metrics.
    pub stats: KeepAliveStats,
}

#[derive(Default)]
struct State {
    waiters: HashMap<i64, Vec<Waiter>>,
    inflight: HashSet<i64>,
    recent: HashMap<i64, (Instant, LeaseKeepAliveResponse)>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl KeepAliveHub {
    /// A hub over `pool`, with its upstream task running.
    pub fn new(pool: Pool) -> Arc<KeepAliveHub> {
        let (queue, rx) = mpsc::unbounded_channel();
        let hub = Arc::new(KeepAliveHub { pool, state: Mutex::new(State::default()), queue, stats: Default::default() });
        let weak = Arc::downgrade(&hub);
        tokio::spawn(upstream(weak, rx).instrument(info_span!("upstream_keepalive")));
        hub
    }

    /// Renews lease `id`, sharing the upstream request with every other
    /// client renewing it at the same moment.
    pub async fn keep_alive(&self, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
        let rx = {
            let mut st = lock(&self.state);
            if let Some((at, resp)) = st.recent.get(&id) {
                if at.elapsed() < FRESH {
                    self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                    return Ok(resp.clone());
                }
            }
            let (tx, rx) = oneshot::channel();
            st.waiters.entry(id).or_default().push(tx);
            if st.inflight.insert(id) {
                self.stats.upstream_requests.fetch_add(1, Ordering::Relaxed);
                let _ = self.queue.send(id);
            } else {
                self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
            }
            rx
        };
        rx.await.unwrap_or_else(|_| Err(Status::unavailable("etcd-grpc-proxy: keep-alive stream closed")))
    }

    /// Drops any reusable answer for `id` (after a revoke through this proxy).
    pub fn forget(&self, id: i64) {
        lock(&self.state).recent.remove(&id);
    }

    fn answer(&self, resp: LeaseKeepAliveResponse) {
        let mut st = lock(&self.state);
        st.inflight.remove(&resp.id);
        let waiters = st.waiters.remove(&resp.id).unwrap_or_default();
        if st.recent.len() > 100_000 {
            st.recent.retain(|_, (at, _)| at.elapsed() < FRESH);
        }
        st.recent.insert(resp.id, (Instant::now(), resp.clone()));
        drop(st);
        for w in waiters {
            let _ = w.send(Ok(resp.clone()));
        }
    }

    fn fail_all(&self, status: &Status) {
        let mut st = lock(&self.state);
        st.inflight.clear();
        let waiters: Vec<Waiter> = st.waiters.drain().flat_map(|(_, v)| v).collect();
        drop(st);
        for w in waiters {
            let _ = w.send(Err(status.clone()));
        }
    }

    fn inflight(&self) -> Vec<i64> {
        lock(&self.state).inflight.iter().copied().collect()
    }
}

/// Keeps one upstream LeaseKeepAlive stream for the hub, while it lives.
async fn upstream(hub: std::sync::Weak<KeepAliveHub>, mut queue: mpsc::UnboundedReceiver<i64>) {
    let mut backoff = Duration::from_millis(50);
    let mut pending: Option<i64> = None;
    loop {
        // Open only when there is something to send.
        if pending.is_none() {
            match hub.upgrade().map(|h| h.inflight().is_empty()) {
                None => return,
                Some(true) => match queue.recv().await {
                    Some(id) => pending = Some(id),
                    None => return,
                },
                Some(false) => {}
            }
        }
        let Some(h) = hub.upgrade() else { return };
        let Some(backend) = h.pool.pick(&[]) else {
            tokio::time::sleep(backoff).await;
            continue;
        };
        let (tx, rx) = mpsc::channel::<LeaseKeepAliveRequest>(1024);
        let mut resend: Vec<i64> = h.inflight();
        if let Some(id) = pending.take() {
            if !resend.contains(&id) {
                resend.push(id);
            }
        }
        for id in resend {
            let _ = tx.try_send(LeaseKeepAliveRequest { id });
        }
        let mut client = LeaseClient::new(backend.channel.clone());
        h.stats.streams_opened.fetch_add(1, Ordering::Relaxed);
        drop(h);
        let mut stream = match client.lease_keep_alive(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                if let Some(h) = hub.upgrade() {
                    on_error(&h, &backend, &status);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let mut health = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                id = queue.recv() => match id {
                    Some(id) => {
                        if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                            pending = Some(id);
                            break;
                        }
                    }
                    None => return,
                },
                msg = stream.message() => {
                    let Some(h) = hub.upgrade() else { return };
                    match msg {
                        Ok(Some(resp)) => {
                            backoff = Duration::from_millis(50);
                            h.answer(resp);
                        }
                        Ok(None) => break,
                        Err(status) => {
                            on_error(&h, &backend, &status);
                            break;
                        }
                    }
                }
                _ = health.tick() => {
                    let Some(h) = hub.upgrade() else { return };
                    if !backend.is_healthy() && h.pool.backends().iter().any(|b| b.is_healthy()) {
                        warn!(backend = %backend.url, "member left rotation; moving keep-alive stream");
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// A failed upstream stream: transport trouble and "no leader" move to
/// another member; any other etcd answer reaches the waiting clients.
fn on_error(hub: &KeepAliveHub, backend: &crate::backend::Backend, status: &Status) {
    let failure = Failure::of(status);
    if failure.member_unhealthy() {
        hub.pool.mark_unhealthy(backend, status.message());
    }
    if failure == Failure::Answer && status.metadata().get("content-type").is_some() {
        hub.fail_all(status);
    }
    debug!(backend = %backend.url, error = %status.message(), "upstream keep-alive stream failed");
}
