//! The v3lock service. Lock blocks until the lock is held; if the client
//! goes away the upstream call is dropped with it, and etcd releases what
//! the client's lease held when the lease expires.

use tonic::Request;

use crate::error::RpcResult;
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::*;
use crate::services::ServiceDeps;
use crate::upstream::RetryPolicy;

/// Serves `v3lockpb.Lock`.
pub struct LockService {
    /// Pool and limits shared by all services.
    pub deps: ServiceDeps,
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, mut request: Request<LockRequest>) -> RpcResult<LockResponse> {
        let ns = self.deps.namespace.clone();
        if let Some(ns) = &ns {
            ns.name_in(&mut request.get_mut().name);
        }
        let mut resp: tonic::Response<LockResponse> = self
            .deps
            .upstream
            .forward("/v3lockpb.Lock/Lock", RetryPolicy::UnlessApplied, request)
            .await?;
        if let Some(ns) = &ns {
            ns.key_out(&mut resp.get_mut().key);
        }
        Ok(resp)
    }

    async fn unlock(&self, mut request: Request<UnlockRequest>) -> RpcResult<UnlockResponse> {
        if let Some(ns) = &self.deps.namespace {
            ns.key_in(&mut request.get_mut().key);
        }
        self.deps
            .upstream
            .forward("/v3lockpb.Lock/Unlock", RetryPolicy::UnlessApplied, request)
            .await
    }
}
