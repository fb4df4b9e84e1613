//! The Watch service: one task per client stream reads its requests and
//! registers watchers with the shared [`WatchHub`], which coalesces them
//! onto upstream watches and fails them over between members.
//!
//! This file is the tonic binding ([`WatchGrpc`], [`WatchService`]); beside
//! it, one file per job of a client's stream:
//! - `client_stream.rs`: the task reading the client's requests;
//! - `answers.rs`: what goes back to the client (namespaced, fragmented, counted);
//! - `fragmenting.rs`: responses split for watchers that asked for `fragment`;
//! - `permission.rs`: the member's word on each create, bounded over the proxy;
//! - `progress.rs`: progress requests answered once every watcher is synced.

mod answers;
mod client_stream;
mod fragmenting;
mod permission;
mod progress;

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::error::RpcResult;
use crate::proto::etcdserverpb::*;
use crate::services::ServiceDeps;
use crate::upstream::Forwarded;
use crate::watch::hub::WatchHub;
use crate::watch::shared_response::WatchOut;

use client_stream::ClientStream;
use fragmenting::Fragmenting;

pub use fragmenting::{fragments, FRAGMENT_BYTES};
pub use permission::PERMISSION_CHECKS;

/// Responses queued per client stream before its watchers count as slow.
pub const CLIENT_QUEUE: usize = 1024;

/// etcd's id for responses not tied to one watcher (progress answers).
const NO_WATCH_ID: i64 = -1;

/// Serves `etcdserverpb.Watch`.
pub struct WatchService {
    /// Pool and limits shared by all services.
    pub deps: ServiceDeps,
    /// Watchers of every client stream.
    pub hub: Arc<WatchHub>,
    /// Watchers one client stream may hold (`--max-watchers-per-stream`).
    pub max_watchers_per_stream: usize,
    /// Where refusals are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The outbound side of one client's Watch call.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchOut, Status>> + Send + 'static>>;

impl WatchService {
    /// Serves one client's watch stream: a task reads its requests, and
    /// what the hub delivers goes back out (namespaced and fragmented per
    /// watcher where needed; shared responses otherwise pass as they are).
    pub async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> RpcResult<WatchStream> {
        // Set by the limits layer when per-client limits are on.
        let client = match &self.deps.limits {
            Some(limits) => request
                .extensions()
                .get::<crate::limits::ClientId>()
                .cloned()
                .map(|c| (limits.clone(), c)),
            None => None,
        };
        let (fwd, inbound) = Forwarded::split(request);
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let fragmenting: Fragmenting = Arc::default();
        let stream = ClientStream::new(self, fwd, tx, fragmenting.clone(), client);
        self.hub.tasks().spawn(
            stream
                .run(inbound)
                .instrument(tracing::info_span!("watch_stream")),
        );
        let answers = answers::answer_stream(
            rx,
            fragmenting,
            self.deps.namespace.clone(),
            self.metrics.prefixes.clone(),
        );
        Ok(Response::new(answers))
    }
}

/// `etcdserverpb.Watch` on the wire: tonic's streaming handler, with a
/// codec whose responses may be shared ones, written without being encoded
/// again for each watcher (see [`crate::watch::shared_response`]).
#[derive(Clone)]
pub struct WatchGrpc {
    service: Arc<WatchService>,
    max_decoding: usize,
}

impl WatchGrpc {
    /// Serves `service`, refusing client messages over `max_decoding` bytes.
    pub fn new(service: WatchService, max_decoding: usize) -> WatchGrpc {
        WatchGrpc {
            service: Arc::new(service),
            max_decoding,
        }
    }
}

/// The route etcd clients call.
const WATCH_PATH: &str = "/etcdserverpb.Watch/Watch";

impl<B> tower::Service<http::Request<B>> for WatchGrpc
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let call = WatchCall(self.service.clone());
        let max_decoding = self.max_decoding;
        Box::pin(async move {
            if req.uri().path() != WATCH_PATH {
                return Ok(Status::from(crate::error::WireError::MalformedMethod(
                    req.uri().path().to_string(),
                ))
                .into_http());
            }
            let codec = crate::codec::LeanCodec::<WatchOut, WatchRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec)
                .apply_max_message_size_config(Some(max_decoding), Some(usize::MAX))
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .send_compressed(tonic::codec::CompressionEncoding::Gzip);
            Ok(grpc.streaming(call, req).await)
        })
    }
}

impl tonic::server::NamedService for WatchGrpc {
    const NAME: &'static str = "etcdserverpb.Watch";
}

/// One Watch call handed to [`WatchService::watch`].
struct WatchCall(Arc<WatchService>);

impl tonic::server::StreamingService<WatchRequest> for WatchCall {
    type Response = WatchOut;
    type ResponseStream = WatchStream;
    type Future = tonic::codegen::BoxFuture<Response<WatchStream>, Status>;

    fn call(&mut self, request: Request<Streaming<WatchRequest>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.watch(request).await })
    }
}
