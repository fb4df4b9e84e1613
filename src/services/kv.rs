//! The KV service: Range, Put, DeleteRange, Txn and Compact.
//!
//! Reads are retried on another member when one is unavailable; writes only
//! when they never reached a member (see [`crate::backend::retry`]).

use tonic::{Request, Response};

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
    async fn range(&self, mut request: Request<RangeRequest>) -> RpcResult<RangeResponse> {
        let ns = self.ctx.namespace.clone();
        if let Some(ns) = &ns {
            ns.range_in(request.get_mut())?;
        }
        let mut resp: Response<RangeResponse> = forward_unary!(self, request, KvClient, range, RetryPolicy::Idempotent)?;
        if let Some(ns) = &ns {
            ns.range_out(resp.get_mut());
        }
        Ok(resp)
    }

    async fn put(&self, mut request: Request<PutRequest>) -> RpcResult<PutResponse> {
        let ns = self.ctx.namespace.clone();
        if let Some(ns) = &ns {
            ns.put_in(request.get_mut())?;
        }
        let mut resp: Response<PutResponse> = forward_unary!(self, request, KvClient, put, RetryPolicy::UnlessApplied)?;
        if let Some(ns) = &ns {
            ns.put_out(resp.get_mut());
        }
        Ok(resp)
    }

    async fn delete_range(&self, mut request: Request<DeleteRangeRequest>) -> RpcResult<DeleteRangeResponse> {
        let ns = self.ctx.namespace.clone();
        if let Some(ns) = &ns {
            ns.delete_in(request.get_mut())?;
        }
        let mut resp: Response<DeleteRangeResponse> = forward_unary!(self, request, KvClient, delete_range, RetryPolicy::UnlessApplied)?;
        if let Some(ns) = &ns {
            ns.delete_out(resp.get_mut());
        }
        Ok(resp)
    }

    async fn txn(&self, mut request: Request<TxnRequest>) -> RpcResult<TxnResponse> {
        let ns = self.ctx.namespace.clone();
        if let Some(ns) = &ns {
            ns.txn_in(request.get_mut())?;
        }
        let policy = if txn_is_read_only(request.get_ref()) {
            RetryPolicy::Idempotent
        } else {
            RetryPolicy::UnlessApplied
        };
        let mut resp: Response<TxnResponse> = forward_unary!(self, request, KvClient, txn, policy)?;
        if let Some(ns) = &ns {
            ns.txn_out(resp.get_mut());
        }
        Ok(resp)
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> RpcResult<CompactionResponse> {
        forward_unary!(self, request, KvClient, compact, RetryPolicy::UnlessApplied)
    }
}
