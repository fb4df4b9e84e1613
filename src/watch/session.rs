//! A broadcast's upstream watch as a resilient stream: the loop of
//! [`crate::upstream::resilient_stream::run`] picks the member, backs off and fails over;
//! this session (re)opens the watch from the broadcast's position + 1, so a
//! re-open after a failure leaves no gap and no duplicate, and hands each
//! response to the hub.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest, WatchResponse};
use crate::upstream::resilient_stream::{Session, Step};

use super::broadcast::Broadcast;
use super::hub::{Flow, WatchHub};

/// A broadcast's upstream watch, as a [`Session`]: each
/// (re)open creates the watch from the broadcast's position + 1.
pub(super) struct BroadcastSession {
    /// Where responses go, and the counters of failovers.
    pub(super) hub: Arc<WatchHub>,
    /// The broadcast this upstream watch serves.
    pub(super) b: Arc<Broadcast>,
}

#[tonic::async_trait]
impl Session for BroadcastSession {
    type Message = WatchResponse;

    async fn ready(&mut self) -> Step {
        if self.b.is_empty() {
            Step::Stop
        } else {
            Step::Continue
        }
    }

    async fn open(
        &mut self,
        backend: &Arc<crate::upstream::Backend>,
        reopened: bool,
    ) -> Result<tonic::Streaming<WatchResponse>, Status> {
        let b = &self.b;
        if reopened {
            self.hub.stats.failovers.fetch_add(1, Ordering::Relaxed);
        }
        let start = b.open_from();
        let (req_tx, req_rx) = mpsc::channel(16);
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b.key.key.clone(),
                    range_end: b.key.range_end.clone(),
                    start_revision: start,
                    progress_notify: true,
                    prev_kv: true,
                    ..Default::default()
                },
            )),
        };
        let _ = req_tx.send(create).await;
        let mut client =
            WatchClient::new(backend.channel.clone()).max_decoding_message_size(usize::MAX);
        let stream = client
            .watch(
                b.credentials(self.hub.pool())
                    .request(ReceiverStream::new(req_rx)),
            )
            .await?
            .into_inner();
        b.attach(req_tx);
        Ok(stream)
    }

    async fn message(&mut self, resp: WatchResponse) -> Step {
        match self.hub.deliver(&self.b, resp).await {
            Flow::Done => Step::Stop,
            Flow::More => Step::Continue,
        }
    }

    async fn event(&mut self) -> Step {
        self.b.emptied().await;
        if self.b.is_empty() {
            Step::Stop
        } else {
            Step::Continue
        }
    }

    fn closed(&mut self) {
        self.b.detach();
    }
}
