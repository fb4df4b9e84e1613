//! The v3lock service. Lock blocks until the lock is held; if the client
//! goes away the upstream call is dropped with it, and etcd releases what
//! the client's lease held when the lease expires.

use tonic::Request;

use crate::backend::RetryPolicy;
use crate::error::RpcResult;
use crate::forward_unary;
use crate::proto::v3lockpb::lock_client::LockClient;
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::*;
use crate::services::Context;

/// Serves `v3lockpb.Lock`.
pub struct LockService {
    /// Pool and limits shared by all services.
    pub ctx: Context,
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> RpcResult<LockResponse> {
        forward_unary!(self, request, LockClient, lock, RetryPolicy::UnlessApplied)
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> RpcResult<UnlockResponse> {
        forward_unary!(self, request, LockClient, unlock, RetryPolicy::UnlessApplied)
    }
}
