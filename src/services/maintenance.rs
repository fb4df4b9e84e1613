//! The Maintenance service. Unary calls are forwarded; Snapshot is relayed
//! chunk by chunk from one member, never buffered whole.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::RpcResult;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::*;
use crate::services::Context;
use crate::upstream::Forwarded;
use crate::upstream::{Credentials, RetryPolicy};

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
        self.ctx
            .upstream
            .forward("/etcdserverpb.Maintenance/Alarm", policy, request)
            .await
    }

    /// Answered by the leader when one is known: the proxy stands for the
    /// whole cluster, and tools such as `etcdctl move-leader` look for the
    /// endpoint whose Status says it leads.
    async fn status(&self, request: Request<StatusRequest>) -> RpcResult<StatusResponse> {
        if let Some(leader) = self.ctx.upstream.pool().leader() {
            let (fwd, msg) = Forwarded::split(request);
            let answer = self
                .ctx
                .upstream
                .unary_on(
                    &leader,
                    "/etcdserverpb.Maintenance/Status",
                    fwd.request(msg),
                )
                .await;
            if let Ok(resp) = answer {
                return Ok(Response::new(resp));
            }
            // The leader just went away: any other member will do.
            let request = fwd.request(msg);
            return self
                .ctx
                .upstream
                .forward(
                    "/etcdserverpb.Maintenance/Status",
                    RetryPolicy::Idempotent,
                    request,
                )
                .await;
        }
        self.ctx
            .upstream
            .forward(
                "/etcdserverpb.Maintenance/Status",
                RetryPolicy::Idempotent,
                request,
            )
            .await
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> RpcResult<DefragmentResponse> {
        self.ctx
            .upstream
            .forward(
                "/etcdserverpb.Maintenance/Defragment",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }

    async fn hash(&self, request: Request<HashRequest>) -> RpcResult<HashResponse> {
        self.ctx
            .upstream
            .forward(
                "/etcdserverpb.Maintenance/Hash",
                RetryPolicy::Idempotent,
                request,
            )
            .await
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> RpcResult<HashKvResponse> {
        self.ctx
            .upstream
            .forward(
                "/etcdserverpb.Maintenance/HashKV",
                RetryPolicy::Idempotent,
                request,
            )
            .await
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(&self, request: Request<SnapshotRequest>) -> RpcResult<Self::SnapshotStream> {
        let (fwd, msg) = Forwarded::split(request);
        let upstream: Streaming<SnapshotResponse> = self
            .ctx
            .upstream
            .server_stream(
                "/etcdserverpb.Maintenance/Snapshot",
                RetryPolicy::Idempotent,
                Credentials::Client(&fwd),
                msg,
            )
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
        let Some(leader) = self.ctx.upstream.pool().leader() else {
            return self
                .ctx
                .upstream
                .forward(
                    "/etcdserverpb.Maintenance/MoveLeader",
                    RetryPolicy::UnlessApplied,
                    request,
                )
                .await;
        };
        let (fwd, msg) = Forwarded::split(request);
        let resp = self
            .ctx
            .upstream
            .unary_on(
                &leader,
                "/etcdserverpb.Maintenance/MoveLeader",
                fwd.request(msg),
            )
            .await?;
        self.ctx.upstream.pool().request_refresh();
        Ok(Response::new(resp))
    }

    async fn downgrade(&self, request: Request<DowngradeRequest>) -> RpcResult<DowngradeResponse> {
        self.ctx
            .upstream
            .forward(
                "/etcdserverpb.Maintenance/Downgrade",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }
}
