//! The Watch service: one task per client stream reads its requests and
//! registers watchers with the shared [`WatchHub`], which coalesces them
//! onto upstream watches and fails them over between members.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, Instrument};

use crate::backend::RetryPolicy;
use crate::coalesce::watch::{WatchHub, WatchKey, WatcherId, WatcherSpec};
use crate::error::RpcResult;
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::*;
use crate::services::{Context, Forwarded};

/// Responses queued per client stream before its watchers count as slow.
pub const CLIENT_QUEUE: usize = 1024;

/// etcd's id for responses not tied to one watcher (progress answers).
const NO_WATCH_ID: i64 = -1;

/// Serves `etcdserverpb.Watch`.
pub struct WatchService {
    /// Pool and limits shared by all services.
    pub ctx: Context,
    /// Watchers of every client stream.
    pub hub: Arc<WatchHub>,
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> RpcResult<Self::WatchStream> {
        let (fwd, inbound) = Forwarded::split(request);
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let stream = ClientStream { hub: self.hub.clone(), ctx: self.ctx.clone(), fwd, tx, ids: HashMap::new(), next_id: 0 };
        tokio::spawn(stream.run(inbound).instrument(tracing::info_span!("watch_stream")));
        let answers = ReceiverStream::new(rx);
        let Some(ns) = self.ctx.namespace.clone() else {
            return Ok(Response::new(Box::pin(answers)));
        };
        // Events come back with keys relative to the client's namespace.
        let relative = answers.map(move |answer| {
            answer.map(|mut resp| {
                ns.watch_out(&mut resp);
                resp
            })
        });
        Ok(Response::new(Box::pin(relative)))
    }
}

/// One client's watch stream.
struct ClientStream {
    hub: Arc<WatchHub>,
    ctx: Context,
    fwd: Forwarded,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
    /// The client's watch ids and the hub's watchers behind them.
    ids: HashMap<i64, WatcherId>,
    next_id: i64,
}

impl ClientStream {
    async fn run(mut self, mut inbound: Streaming<WatchRequest>) {
        loop {
            tokio::select! {
                msg = inbound.message() => match msg {
                    Ok(Some(req)) => {
                        if self.handle(req).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        debug!(error = %status.message(), "client watch stream ended");
                        break;
                    }
                },
                _ = self.tx.closed() => break,
            }
        }
        for id in self.ids.values() {
            self.hub.remove(*id);
        }
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), ()> {
        self.tx.send(Ok(resp)).await.map_err(|_| ())
    }

    async fn handle(&mut self, req: WatchRequest) -> Result<(), ()> {
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(watch_request::RequestUnion::CancelRequest(cancel)) => {
                if let Some(id) = self.ids.remove(&cancel.watch_id) {
                    let header = self.hub.progress(&[id]);
                    self.hub.remove(id);
                    self.send(WatchResponse { header, watch_id: cancel.watch_id, canceled: true, ..Default::default() })
                        .await?;
                }
                Ok(())
            }
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                let ids: Vec<WatcherId> = self.ids.values().copied().collect();
                let header = match self.hub.progress(&ids) {
                    Some(h) => Some(h),
                    None => self.current_header().await,
                };
                self.send(WatchResponse { header, watch_id: NO_WATCH_ID, ..Default::default() }).await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, mut create: WatchCreateRequest) -> Result<(), ()> {
        if let Some(ns) = &self.ctx.namespace {
            ns.watch_in(&mut create);
        }
        let watch_id = if create.watch_id != 0 {
            if self.ids.contains_key(&create.watch_id) {
                return self
                    .send(WatchResponse {
                        watch_id: NO_WATCH_ID,
                        created: true,
                        canceled: true,
                        cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
                        ..Default::default()
                    })
                    .await;
            }
            create.watch_id
        } else {
            while self.ids.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        if let Err(status) = self.check_permission(&create).await {
            return self
                .send(WatchResponse {
                    watch_id,
                    created: true,
                    canceled: true,
                    cancel_reason: crate::error::watch_refusal_reason(&status),
                    ..Default::default()
                })
                .await;
        }
        let key = WatchKey { key: create.key.clone(), range_end: create.range_end.clone() };
        let spec = WatcherSpec::from_create(&create, watch_id);
        let id = self.hub.add(key, spec, self.tx.clone(), self.fwd.clone());
        self.ids.insert(watch_id, id);
        Ok(())
    }

    /// A client may only join a shared upstream watch (opened under another
    /// client's token) on a range it may read itself: checked with a
    /// count-only Range under its own token, or without one, for every create.
    async fn check_permission(&self, create: &WatchCreateRequest) -> Result<(), Status> {
        let probe = RangeRequest {
            key: create.key.clone(),
            range_end: create.range_end.clone(),
            count_only: true,
            serializable: true,
            limit: 1,
            ..Default::default()
        };
        let fwd = &self.fwd;
        self.ctx
            .pool
            .call(RetryPolicy::Idempotent, |ch| {
                let req = fwd.request(probe.clone());
                async move { KvClient::new(ch).range(req).await.map(|_| ()) }
            })
            .await
            .map_err(Status::from)
    }

    /// The cluster's current header, for a progress request with no watchers.
    async fn current_header(&self) -> Option<ResponseHeader> {
        let fwd = &self.fwd;
        self.ctx
            .pool
            .call(RetryPolicy::Idempotent, |ch| {
                let req = fwd.request(RangeRequest { key: vec![0], count_only: true, ..Default::default() });
                async move { KvClient::new(ch).range(req).await.map(|r| r.into_inner().header) }
            })
            .await
            .ok()
            .flatten()
    }
}
