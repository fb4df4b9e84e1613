//! The Maintenance service. Unary calls are forwarded; Snapshot is relayed
//! chunk by chunk from one member, never buffered whole.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::backend::RetryPolicy;
use crate::error::RpcResult;
use crate::forward_unary;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::*;
use crate::services::{Context, Forwarded};

/// Serves `etcdserverpb.Maintenance`.
pub struct MaintenanceService {
    /// Pool and limits shared by all services.
    pub ctx: Context,
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, request: Request<AlarmRequest>) -> RpcResult<AlarmResponse> {
        let policy = if request.get_ref().action == alarm_request::AlarmAction::Get as i32 {
            RetryPolicy::Idempotent
        } else {
            RetryPolicy::UnlessApplied
        };
        forward_unary!(self, request, MaintenanceClient, alarm, policy)
    }

    /// Answered by the leader when one is known: the proxy stands for the
    /// whole cluster, and tools such as `etcdctl move-leader` look for the
    /// endpoint whose Status says it leads.
    async fn status(&self, request: Request<StatusRequest>) -> RpcResult<StatusResponse> {
        if let Some(leader) = self.ctx.pool.leader() {
            let (fwd, msg) = Forwarded::split(request);
            let _inflight = leader.start_call();
            let answer = MaintenanceClient::new(leader.channel.clone())
                .status(fwd.request(msg))
                .await;
            if let Ok(resp) = answer {
                return Ok(resp);
            }
            // The leader just went away: any other member will do.
            let request = fwd.request(msg);
            return forward_unary!(
                self,
                request,
                MaintenanceClient,
                status,
                RetryPolicy::Idempotent
            );
        }
        forward_unary!(
            self,
            request,
            MaintenanceClient,
            status,
            RetryPolicy::Idempotent
        )
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> RpcResult<DefragmentResponse> {
        forward_unary!(
            self,
            request,
            MaintenanceClient,
            defragment,
            RetryPolicy::UnlessApplied
        )
    }

    async fn hash(&self, request: Request<HashRequest>) -> RpcResult<HashResponse> {
        forward_unary!(
            self,
            request,
            MaintenanceClient,
            hash,
            RetryPolicy::Idempotent
        )
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> RpcResult<HashKvResponse> {
        forward_unary!(
            self,
            request,
            MaintenanceClient,
            hash_kv,
            RetryPolicy::Idempotent
        )
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(&self, request: Request<SnapshotRequest>) -> RpcResult<Self::SnapshotStream> {
        let (fwd, msg) = Forwarded::split(request);
        let ctx = &self.ctx;
        let upstream: Streaming<SnapshotResponse> = ctx
            .pool
            .call(RetryPolicy::Idempotent, |ch| {
                let req = fwd.request(msg);
                let mut client =
                    MaintenanceClient::new(ch).max_decoding_message_size(ctx.upstream_max_recv);
                async move { client.snapshot(req).await.map(Response::into_inner) }
            })
            .await?;
        Ok(Response::new(Box::pin(upstream)))
    }

    /// etcd only accepts MoveLeader on the current leader, so the call goes
    /// to the member the probes last saw leading; without one, any member
    /// answers (etcd then says "not leader" as it would directly).
    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> RpcResult<MoveLeaderResponse> {
        let Some(leader) = self.ctx.pool.leader() else {
            return forward_unary!(
                self,
                request,
                MaintenanceClient,
                move_leader,
                RetryPolicy::UnlessApplied
            );
        };
        let (fwd, msg) = Forwarded::split(request);
        let _inflight = leader.start_call();
        let resp = MaintenanceClient::new(leader.channel.clone())
            .move_leader(fwd.request(msg))
            .await
            .map_err(|s| Status::from(crate::error::ProxyError::Upstream(s)))?;
        self.ctx.pool.request_refresh();
        Ok(resp)
    }

    async fn downgrade(&self, request: Request<DowngradeRequest>) -> RpcResult<DowngradeResponse> {
        forward_unary!(
            self,
            request,
            MaintenanceClient,
            downgrade,
            RetryPolicy::UnlessApplied
        )
    }
}
