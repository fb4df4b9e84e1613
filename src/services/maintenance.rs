//! The Maintenance service. Every call here is about one member (its
//! status, hash, database, alarms, leadership), so each goes to the proxy's
//! pinned member ([`crate::upstream::Pool::pinned`]): a proxy in front of
//! one member answers as that member, as etcd's proxy does, and fails over
//! when it dies. Snapshot is relayed chunk by chunk, never buffered whole.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::RpcResult;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::*;
use crate::services::forward::forward;
use crate::services::ServiceDeps;
use crate::upstream::Forwarded;
use crate::upstream::{Credentials, RetryPolicy, Target};

/// Serves `etcdserverpb.Maintenance`.
pub struct MaintenanceService {
    /// Pool and limits shared by all services.
    pub deps: ServiceDeps,
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, request: Request<AlarmRequest>) -> RpcResult<AlarmResponse> {
        let policy = if request.get_ref().action == alarm_request::AlarmAction::Get as i32 {
            RetryPolicy::Idempotent
        } else {
            RetryPolicy::UnlessApplied
        };
        self.deps
            .upstream
            .forward_to(
                Target::Pinned,
                "/etcdserverpb.Maintenance/Alarm",
                policy,
                request,
            )
            .await
    }

    forward!(
        /// The pinned member's own status, so `etcdctl endpoint status` over
        /// several proxies shows each one's member, and `move-leader` finds the
        /// leader's endpoint.
        status: StatusRequest => StatusResponse, "/etcdserverpb.Maintenance/Status", Idempotent, to Pinned
    );

    forward!(defragment: DefragmentRequest => DefragmentResponse, "/etcdserverpb.Maintenance/Defragment", UnlessApplied, to Pinned);
    forward!(hash: HashRequest => HashResponse, "/etcdserverpb.Maintenance/Hash", Idempotent, to Pinned);
    forward!(hash_kv: HashKvRequest => HashKvResponse, "/etcdserverpb.Maintenance/HashKV", Idempotent, to Pinned);

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(&self, request: Request<SnapshotRequest>) -> RpcResult<Self::SnapshotStream> {
        let (fwd, msg) = Forwarded::split(request);
        let upstream: Streaming<SnapshotResponse> = self
            .deps
            .upstream
            .server_stream_to(
                Target::Pinned,
                "/etcdserverpb.Maintenance/Snapshot",
                RetryPolicy::Idempotent,
                Credentials::Client(&fwd),
                msg,
            )
            .await?;
        Ok(Response::new(Box::pin(upstream)))
    }

    /// On the pinned member, as a client of that member would send it: etcd
    /// accepts it on the leader only and answers "not leader" elsewhere, so
    /// `etcdctl move-leader` (which finds the leader's endpoint by Status)
    /// behaves through proxies as through members.
    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> RpcResult<MoveLeaderResponse> {
        let answer = self
            .deps
            .upstream
            .forward_to(
                Target::Pinned,
                "/etcdserverpb.Maintenance/MoveLeader",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await;
        self.deps.upstream.pool().request_refresh();
        answer
    }

    forward!(downgrade: DowngradeRequest => DowngradeResponse, "/etcdserverpb.Maintenance/Downgrade", UnlessApplied);
}
