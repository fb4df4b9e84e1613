//! Shared read barriers: many linearizable reads, one upstream round trip.
//!
//! A linearizable read must see every write that finished before it began.
//! etcd gets this by asking the leader for its commit index (ReadIndex) and
//! batches every read that arrives while one such request is in flight into
//! the next one. The proxy does the same one level up: a read joins the
//! next barrier, a linearizable Range to a member issued only after the read
//! arrived, so the barrier's revision covers every write that finished
//! before the read began. With the range cache caught up to that revision,
//! the cached answer is one etcd itself could have given, and a thousand
//! concurrent reads cost etcd one linearizable Range instead of a thousand.
//!
//! One barrier is in flight at a time, as in etcd: reads that arrive while
//! it is out wait for the next one, so a read waits at most two round trips.

use crate::sync::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use tracing::debug;

use crate::proto::etcdserverpb::{RangeRequest, RangeResponse};
use crate::upstream::RetryPolicy;
use crate::upstream::{Credentials, Upstream};

/// How long a barrier may take before the reads behind it go to etcd themselves.
const BARRIER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The revision a barrier read at, or `None` when no member answered.
type Barrier = Shared<BoxFuture<'static, Option<i64>>>;

/// The barrier still open to new reads, tagged with its generation.
#[derive(Default)]
struct Next {
    open: Option<(u64, Barrier)>,
    generation: u64,
}

/// Batches linearizable reads behind shared upstream read barriers.
pub struct ReadBarrier {
    upstream: Upstream,
    /// The barrier new reads join (not yet sent, so it will cover them),
    /// and the generation of the last barrier formed.
    next: Mutex<Next>,
    /// Held by the barrier that is in flight.
    in_flight: tokio::sync::Mutex<()>,
    /// Barriers sent to etcd (`etcd_grpc_proxy_read_barriers_total`).
    pub sent: AtomicU64,
}

impl ReadBarrier {
    /// Barriers go to any healthy member behind `upstream`.
    pub fn new(upstream: Upstream) -> Arc<ReadBarrier> {
        Arc::new(ReadBarrier {
            upstream,
            next: Mutex::new(Next::default()),
            in_flight: tokio::sync::Mutex::new(()),
            sent: AtomicU64::new(0),
        })
    }

    /// A revision at least as new as every write that finished before this
    /// call began, read linearizably by a barrier shared with other reads;
    /// `None` when no member answered (the caller then asks etcd itself).
    pub async fn revision(self: &Arc<Self>) -> Option<i64> {
        self.join().await
    }

    fn join(self: &Arc<Self>) -> Barrier {
        let mut next = lock(&self.next);
        if let Some((_, barrier)) = next.open.as_ref() {
            return barrier.clone();
        }
        next.generation += 1;
        let generation = next.generation;
        let this = self.clone();
        let barrier = async move { this.send(generation).await }.boxed().shared();
        next.open = Some((generation, barrier.clone()));
        barrier
    }

    async fn send(self: Arc<Self>, generation: u64) -> Option<i64> {
        let _turn = self.in_flight.lock().await;
        {
            // From here on the barrier is closed: later reads form the next one.
            let mut next = lock(&self.next);
            if next.open.as_ref().is_some_and(|(g, _)| *g == generation) {
                next.open = None;
            }
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let probe = RangeRequest {
            key: vec![0],
            count_only: true,
            limit: 1,
            ..Default::default()
        };
        let call = self.upstream.unary::<_, RangeResponse>(
            "/etcdserverpb.KV/Range",
            RetryPolicy::Idempotent,
            Credentials::Anonymous,
            probe,
        );
        // A member that stopped answering must not hold every later read:
        // they go to etcd themselves instead.
        match tokio::time::timeout(BARRIER_TIMEOUT, call).await {
            Ok(Ok(resp)) => resp.header.map(|h| h.revision),
            Ok(Err(e)) => {
                debug!(error = %e, "read barrier failed");
                None
            }
            Err(_) => {
                debug!("read barrier timed out");
                None
            }
        }
    }
}
