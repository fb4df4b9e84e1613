//! A broadcast's upstream watch as a resilient stream.

use std::sync::Arc;

use super::*;

/// A broadcast's upstream watch, as a [`resilient_stream::Session`]: each
/// (re)open creates the watch from the broadcast's position + 1.
pub(super) struct BroadcastSession {
    pub(super) hub: Arc<WatchHub>,
    pub(super) b: Arc<Broadcast>,
}

#[tonic::async_trait]
impl Session for BroadcastSession {
    type Message = WatchResponse;

    async fn ready(&mut self) -> Step {
        if lock(&self.b.state).watchers.is_empty() {
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
        let start = {
            let st = lock(&b.state);
            if st.created {
                st.position + 1
            } else {
                b.initial_start
            }
        };
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
                b.credentials(&self.hub.pool)
                    .request(ReceiverStream::new(req_rx)),
            )
            .await?
            .into_inner();
        let mut st = lock(&b.state);
        if !st.progress_waiters.is_empty() {
            let _ = req_tx.try_send(progress_request());
        }
        st.upstream = Some(req_tx);
        Ok(stream)
    }

    async fn message(&mut self, resp: WatchResponse) -> Step {
        match self.hub.deliver(&self.b, resp).await {
            Flow::Done => Step::Stop,
            _ => Step::Continue,
        }
    }

    async fn event(&mut self) -> Step {
        self.b.emptied.notified().await;
        if lock(&self.b.state).watchers.is_empty() {
            Step::Stop
        } else {
            Step::Continue
        }
    }

    fn closed(&mut self) {
        lock(&self.b.state).upstream = None;
    }
}
