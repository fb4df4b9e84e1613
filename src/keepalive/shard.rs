//! One shard's upstream LeaseKeepAlive stream, kept open across member
//! failures by the resilient-stream loop: it opens when there is a lease
//! to renew, sends each renewal the table queues, and hands each answer
//! (or a failure etcd sends) back to the table.

use crate::error::ProxyError;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;
use tracing::debug;

use super::renewals::Renewals;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use crate::upstream::resilient_stream::{self, Choice, Session, Step};
use crate::upstream::retry::Failure;

/// Keeps shard `shard`'s upstream LeaseKeepAlive stream, while the hub lives.
pub(super) async fn upstream(
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
