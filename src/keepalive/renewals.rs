//! The renewals of one auth token: a table per lease of the clients
//! waiting for its renewal, the renewals in flight upstream, and the
//! recent answers that serve a keep-alive without asking again. Each lease
//! goes to one shard's upstream stream (`shard.rs`) by its id.

use crate::error::ProxyError;
use crate::sync::lock;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::Status;
use tracing::{info_span, Instrument};

use super::hub::{KeepAliveStats, FRESH};
use super::shard::upstream;
use crate::proto::etcdserverpb::LeaseKeepAliveResponse;
use crate::upstream::Pool;

/// The shard (upstream stream) that renews lease `id`: always the same one.
fn shard_of(id: i64, shards: usize) -> usize {
    (id.unsigned_abs() % shards.max(1) as u64) as usize
}

/// A client waiting for the answer to its keep-alive.
type Waiter = oneshot::Sender<Result<LeaseKeepAliveResponse, Status>>;

/// The coalesced renewals of one auth token, on their own upstream streams.
pub(super) struct Renewals {
    /// The members, for the shards' streams.
    pub(super) pool: Pool,
    /// Sent with every upstream stream: the token, if any.
    pub(super) metadata: MetadataMap,
    shards: usize,
    state: Mutex<State>,
    /// Lease IDs to send upstream, one queue per shard's upstream task.
    queues: Vec<mpsc::UnboundedSender<i64>>,
    pub(super) stats: Arc<KeepAliveStats>,
}

/// Per lease: who waits for its renewal, whether one is in flight, and
/// its last answer.
#[derive(Default)]
struct State {
    waiters: HashMap<i64, Vec<Waiter>>,
    inflight: HashSet<i64>,
    recent: HashMap<i64, (Instant, LeaseKeepAliveResponse)>,
}

impl Renewals {
    /// Renewals under `metadata`, with their upstream tasks running.
    pub(super) fn start(
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
    pub(super) async fn keep_alive(&self, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
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

    /// Whether no client waits for a renewal (the token may be dropped).
    pub(super) fn is_idle(&self) -> bool {
        lock(&self.state).waiters.is_empty()
    }

    /// Drops the reusable answer for `id`, if any.
    pub(super) fn forget(&self, id: i64) {
        lock(&self.state).recent.remove(&id);
    }

    /// An upstream answer: to every client waiting for it, and kept for
    /// [`FRESH`] to serve the next ones.
    pub(super) fn answer(&self, resp: LeaseKeepAliveResponse) {
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
    pub(super) fn fail_shard(&self, shard: usize, status: &Status) {
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

    /// The renewals of `shard` sent and not yet answered.
    pub(super) fn inflight(&self, shard: usize) -> Vec<i64> {
        lock(&self.state)
            .inflight
            .iter()
            .copied()
            .filter(|id| shard_of(*id, self.shards) == shard)
            .collect()
    }
}
