//! The Cluster service. Member changes are forwarded and make the pool
//! refresh at once, so a member added through the proxy is used without
//! waiting for the next sync.

use tonic::Request;

use crate::error::RpcResult;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::*;
use crate::registration::{self, Registered, Registration};
use crate::services::forward::forward;
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
    /// A member change that took effect makes the pool refresh at once.
    fn changed<T>(&self, result: RpcResult<T>) -> RpcResult<T> {
        if result.is_ok() {
            self.deps.upstream.pool().request_refresh();
        }
        result
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    forward!(member_add: MemberAddRequest => MemberAddResponse, "/etcdserverpb.Cluster/MemberAdd", UnlessApplied, then changed);
    forward!(member_remove: MemberRemoveRequest => MemberRemoveResponse, "/etcdserverpb.Cluster/MemberRemove", UnlessApplied, then changed);
    forward!(member_update: MemberUpdateRequest => MemberUpdateResponse, "/etcdserverpb.Cluster/MemberUpdate", UnlessApplied, then changed);

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

    forward!(member_promote: MemberPromoteRequest => MemberPromoteResponse, "/etcdserverpb.Cluster/MemberPromote", UnlessApplied, then changed);
}
