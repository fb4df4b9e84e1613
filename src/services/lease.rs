//! The Lease service. Grant, Revoke, TimeToLive and Leases are forwarded;
//! keep-alives go through the [`KeepAliveHub`], which coalesces them.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::error::RpcResult;
use crate::lease::keepalive::KeepAliveHub;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::*;
use crate::services::Context;
use crate::upstream::RetryPolicy;

/// Serves `etcdserverpb.Lease`.
pub struct LeaseService {
    /// Pool and limits shared by all services.
    pub ctx: Context,
    /// Keep-alives of every client stream.
    pub hub: Arc<KeepAliveHub>,
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> RpcResult<LeaseGrantResponse> {
        self.ctx
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
            .ctx
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
        let pool = self.ctx.upstream.pool().clone();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let hub = self.hub.clone();
        let task = async move {
            let lost = crate::upstream::require_leader::lost(&pool, required);
            tokio::pin!(lost);
            loop {
                tokio::select! {
                    () = &mut lost => {
                        let _ = tx.send(Err(crate::upstream::require_leader::no_leader())).await;
                        break;
                    }
                    msg = inbound.message() => match msg {
                        Ok(Some(req)) => {
                            let (hub, tx, token) = (hub.clone(), tx.clone(), token.clone());
                            tokio::spawn(async move {
                                let answer = hub.keep_alive(token.as_ref(), req.id).await;
                                let _ = tx.send(answer).await;
                            });
                        }
                        _ => break,
                    },
                    _ = tx.closed() => break,
                }
            }
        };
        tokio::spawn(task.instrument(tracing::info_span!("keepalive_stream")));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> RpcResult<LeaseTimeToLiveResponse> {
        let mut resp: Response<LeaseTimeToLiveResponse> = self
            .ctx
            .upstream
            .forward(
                "/etcdserverpb.Lease/LeaseTimeToLive",
                RetryPolicy::Idempotent,
                request,
            )
            .await?;
        if let Some(ns) = &self.ctx.namespace {
            ns.lease_keys_out(resp.get_mut());
        }
        Ok(resp)
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> RpcResult<LeaseLeasesResponse> {
        self.ctx
            .upstream
            .forward(
                "/etcdserverpb.Lease/LeaseLeases",
                RetryPolicy::Idempotent,
                request,
            )
            .await
    }
}
