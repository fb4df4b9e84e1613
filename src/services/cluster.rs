//! The Cluster service. Member changes are forwarded and make the pool
//! refresh at once, so a member added through the proxy is used without
//! waiting for the next sync.

use tonic::Request;

use crate::backend::RetryPolicy;
use crate::error::RpcResult;
use crate::forward_unary;
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::*;
use crate::services::Context;

/// Serves `etcdserverpb.Cluster`.
pub struct ClusterService {
    /// Pool and limits shared by all services.
    pub ctx: Context,
}

impl ClusterService {
    fn changed<T>(&self, result: RpcResult<T>) -> RpcResult<T> {
        if result.is_ok() {
            self.ctx.pool.request_refresh();
        }
        result
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> RpcResult<MemberAddResponse> {
        let r: RpcResult<MemberAddResponse> =
            forward_unary!(self, request, ClusterClient, member_add, RetryPolicy::UnlessApplied);
        self.changed(r)
    }

    async fn member_remove(&self, request: Request<MemberRemoveRequest>) -> RpcResult<MemberRemoveResponse> {
        let r: RpcResult<MemberRemoveResponse> =
            forward_unary!(self, request, ClusterClient, member_remove, RetryPolicy::UnlessApplied);
        self.changed(r)
    }

    async fn member_update(&self, request: Request<MemberUpdateRequest>) -> RpcResult<MemberUpdateResponse> {
        let r: RpcResult<MemberUpdateResponse> =
            forward_unary!(self, request, ClusterClient, member_update, RetryPolicy::UnlessApplied);
        self.changed(r)
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> RpcResult<MemberListResponse> {
        forward_unary!(self, request, ClusterClient, member_list, RetryPolicy::Idempotent)
    }

    async fn member_promote(&self, request: Request<MemberPromoteRequest>) -> RpcResult<MemberPromoteResponse> {
        let r: RpcResult<MemberPromoteResponse> =
            forward_unary!(self, request, ClusterClient, member_promote, RetryPolicy::UnlessApplied);
        self.changed(r)
    }
}
