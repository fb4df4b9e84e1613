//! The Lease service. Grant, Revoke, TimeToLive and Leases are forwarded;
//! keep-alives go through the [`KeepAliveHub`], which coalesces them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tonic::metadata::AsciiMetadataValue;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::error::RpcResult;
use crate::keepalive::KeepAliveHub;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::*;
use crate::services::ServiceDeps;
use crate::upstream::RetryPolicy;

/// Serves `etcdserverpb.Lease`.
pub struct LeaseService {
    /// Pool and limits shared by all services.
    pub deps: ServiceDeps,
    /// Keep-alives of every client stream.
    pub hub: Arc<KeepAliveHub>,
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> RpcResult<LeaseGrantResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Lease/LeaseGrant",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> RpcResult<LeaseRevokeResponse> {
        let id = request.get_ref().id;
        self.hub.forget(id);
        let result: RpcResult<LeaseRevokeResponse> = self
            .deps
            .upstream
            .forward(
                "/etcdserverpb.Lease/LeaseRevoke",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await;
        self.hub.forget(id);
        result
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> RpcResult<Self::LeaseKeepAliveStream> {
        // Renewed under the client's own token (etcd checks each renewal's rights).
        let token = crate::upstream::Caller::of_request(&request)
            .token()
            .cloned();
        let required = crate::upstream::require_leader::requested(request.metadata());
        let pool = self.deps.upstream.pool().clone();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let hub = self.hub.clone();
        let task = async move {
            let lost = crate::upstream::require_leader::lost(&pool, required);
            tokio::pin!(lost);
            // One renewal in flight per lease on this stream, as etcd's proxy
            // keeps one loop per lease: requests for a lease already being
            // renewed are counted, and each gets the answer that renewal
            // brings. A client's messages cost a counter, never a task.
            let mut renewing: HashMap<i64, usize> = HashMap::new();
            let mut inflight = FuturesUnordered::new();
            let mut inbound_done = false;
            loop {
                tokio::select! {
                    () = &mut lost => {
                        let _ = tx.send(Err(crate::upstream::require_leader::no_leader())).await;
                        break;
                    }
                    msg = inbound.message(), if !inbound_done => match msg {
                        Ok(Some(req)) => match renewing.get_mut(&req.id) {
                            Some(waiting) => *waiting += 1,
                            None => {
                                renewing.insert(req.id, 1);
                                inflight.push(renew(hub.clone(), token.clone(), req.id));
                            }
                        },
                        // The client has sent its last request: etcd answers
                        // every one it read before ending the stream.
                        Ok(None) if !inflight.is_empty() => inbound_done = true,
                        _ => break,
                    },
                    Some((id, answer)) = inflight.next(), if !inflight.is_empty() => {
                        let waiting = renewing.remove(&id).unwrap_or(0);
                        if let Some(answer) = answer {
                            for _ in 0..waiting {
                                if tx.send(answer.clone()).await.is_err() {
                                    return;
                                }
                            }
                        }
                        if inbound_done && inflight.is_empty() {
                            break;
                        }
                    }
                    _ = tx.closed() => break,
                }
            }
        };
        self.hub
            .tasks()
            .spawn(task.instrument(tracing::info_span!("keepalive_stream")));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> RpcResult<LeaseTimeToLiveResponse> {
        let mut resp: Response<LeaseTimeToLiveResponse> = self
            .deps
            .upstream
            .forward(
                "/etcdserverpb.Lease/LeaseTimeToLive",
                RetryPolicy::Idempotent,
                request,
            )
            .await?;
        if let Some(ns) = &self.deps.namespace {
            ns.lease_keys_out(resp.get_mut());
        }
        Ok(resp)
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> RpcResult<LeaseLeasesResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Lease/LeaseLeases",
                RetryPolicy::Idempotent,
                request,
            )
            .await
    }
}

/// How long one renewal may wait for a member's answer. Past it the
/// requests it covered get no answer (the client renews again at its next
/// interval, as after a lost message), and the stream takes new ones.
const RENEWAL_WAIT: Duration = Duration::from_secs(10);

/// One renewal of lease `id`, bounded by [`RENEWAL_WAIT`]: its answer, or
/// `None` when none came in time.
async fn renew(
    hub: Arc<KeepAliveHub>,
    token: Option<AsciiMetadataValue>,
    id: i64,
) -> (i64, Option<Result<LeaseKeepAliveResponse, Status>>) {
    let answer = tokio::time::timeout(RENEWAL_WAIT, hub.keep_alive(token.as_ref(), id)).await;
    (id, answer.ok())
}
