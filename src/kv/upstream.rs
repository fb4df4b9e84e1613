//! The bottom of the KV stack: each call goes to a member as the client
//! sent it. Reads (and read-only transactions) may be retried on another
//! member; writes only when they never reached one.

use tonic::Request;

use super::{txn_is_read_only, Kv};
use crate::error::RpcResult;
use crate::proto::etcdserverpb::*;
use crate::upstream::{RetryPolicy, Upstream};

#[tonic::async_trait]
impl Kv for Upstream {
    async fn range(&self, request: Request<RangeRequest>) -> RpcResult<RangeResponse> {
        self.forward("/etcdserverpb.KV/Range", RetryPolicy::Idempotent, request)
            .await
    }

    async fn put(&self, request: Request<PutRequest>) -> RpcResult<PutResponse> {
        self.forward("/etcdserverpb.KV/Put", RetryPolicy::UnlessApplied, request)
            .await
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> RpcResult<DeleteRangeResponse> {
        self.forward(
            "/etcdserverpb.KV/DeleteRange",
            RetryPolicy::UnlessApplied,
            request,
        )
        .await
    }

    async fn txn(&self, request: Request<TxnRequest>) -> RpcResult<TxnResponse> {
        let policy = if txn_is_read_only(request.get_ref()) {
            RetryPolicy::Idempotent
        } else {
            RetryPolicy::UnlessApplied
        };
        self.forward("/etcdserverpb.KV/Txn", policy, request).await
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> RpcResult<CompactionResponse> {
        self.forward(
            "/etcdserverpb.KV/Compact",
            RetryPolicy::UnlessApplied,
            request,
        )
        .await
    }
}
