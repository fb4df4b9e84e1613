//! The KV service: Range, Put, DeleteRange, Txn and Compact.
//!
//! Reads are retried on another member when one is unavailable; writes only
//! when they never reached a member (see [`crate::backend::retry`]).

use tonic::Request;

use crate::backend::RetryPolicy;
use crate::error::RpcResult;
use crate::forward_unary;
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::*;
use crate::services::Context;

/// Serves `etcdserverpb.KV`.
pub struct KvService {
    /// Pool and limits shared by all services.
    pub ctx: Context,
}

/// A transaction is read-only when none of its branches writes; such a
/// transaction may be retried like a Range.
pub fn txn_is_read_only(txn: &TxnRequest) -> bool {
    txn.success.iter().chain(txn.failure.iter()).all(|op| match &op.request {
        Some(request_op::Request::RequestRange(_)) | None => true,
        Some(request_op::Request::RequestTxn(inner)) => txn_is_read_only(inner),
        Some(_) => false,
    })
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> RpcResult<RangeResponse> {
        forward_unary!(self, request, KvClient, range, RetryPolicy::Idempotent)
    }

    async fn put(&self, request: Request<PutRequest>) -> RpcResult<PutResponse> {
        forward_unary!(self, request, KvClient, put, RetryPolicy::UnlessApplied)
    }

    async fn delete_range(&self, request: Request<DeleteRangeRequest>) -> RpcResult<DeleteRangeResponse> {
        forward_unary!(self, request, KvClient, delete_range, RetryPolicy::UnlessApplied)
    }

    async fn txn(&self, request: Request<TxnRequest>) -> RpcResult<TxnResponse> {
        let policy = if txn_is_read_only(request.get_ref()) {
            RetryPolicy::Idempotent
        } else {
            RetryPolicy::UnlessApplied
        };
        forward_unary!(self, request, KvClient, txn, policy)
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> RpcResult<CompactionResponse> {
        forward_unary!(self, request, KvClient, compact, RetryPolicy::UnlessApplied)
    }
}
