//! The Cluster service. Member changes are forwarded and make the pool
//! refresh at once, so a member added through the proxy is used without
//! waiting for the next sync.

use tonic::Request;

use crate::error::RpcResult;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::*;
use crate::registration::{self, Registered, Registration};
use crate::services::ServiceDeps;
use crate::upstream::RetryPolicy;

/// Serves `etcdserverpb.Cluster`.
pub struct ClusterService {
    /// Pool and limits shared by all services.
    pub deps: ServiceDeps,
    /// With `--resolver-prefix`, MemberList lists the registered proxies.
    pub registration: Option<Registration>,
}

impl ClusterService {
    fn changed<T>(&self, result: RpcResult<T>) -> RpcResult<T> {
        if result.is_ok() {
            self.deps.upstream.pool().request_refresh();
        }
        result
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> RpcResult<MemberAddResponse> {
        let r: RpcResult<MemberAddResponse> = self
            .deps
            .upstream
            .forward(
                "/etcdserverpb.Cluster/MemberAdd",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await;
        self.changed(r)
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> RpcResult<MemberRemoveResponse> {
        let r: RpcResult<MemberRemoveResponse> = self
            .deps
            .upstream
            .forward(
                "/etcdserverpb.Cluster/MemberRemove",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await;
        self.changed(r)
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> RpcResult<MemberUpdateResponse> {
        let r: RpcResult<MemberUpdateResponse> = self
            .deps
            .upstream
            .forward(
                "/etcdserverpb.Cluster/MemberUpdate",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await;
        self.changed(r)
    }

    /// Without `--resolver-prefix`, the cluster's own list. With it, the
    /// proxies registered under the prefix (this one alone until any is
    /// visible), so clients that sync endpoints only ever learn addresses
    /// where a proxy listens.
    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> RpcResult<MemberListResponse> {
        let Some(reg) = &self.registration else {
            return self
                .deps
                .upstream
                .forward(
                    "/etcdserverpb.Cluster/MemberList",
                    RetryPolicy::Idempotent,
                    request,
                )
                .await;
        };
        let (header, mut found) = registration::list(&self.deps.upstream, reg).await?;
        if found.is_empty() {
            found.push(Registered {
                addr: reg.advertise.clone(),
                name: reg.hostname.clone(),
            });
        }
        let members = found
            .into_iter()
            .map(|r| Member {
                id: registration::member_id(&r.addr),
                name: r.name.into_bytes(),
                peer_ur_ls: Vec::new(),
                client_ur_ls: vec![r.addr.into_bytes()],
                is_learner: false,
            })
            .collect();
        Ok(tonic::Response::new(MemberListResponse { header, members }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> RpcResult<MemberPromoteResponse> {
        let r: RpcResult<MemberPromoteResponse> = self
            .deps
            .upstream
            .forward(
                "/etcdserverpb.Cluster/MemberPromote",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await;
        self.changed(r)
    }
}
