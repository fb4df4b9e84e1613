//! `--experimental-serializable-ordering`: a serializable read never
//! answers with a revision older than one this proxy already answered a
//! serializable read with. An older answer is replaced by a linearizable
//! read, which cannot be older.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tonic::Request;

use crate::error::RpcResult;
use crate::kv::{again, revision, Kv, SharedKv};
use crate::proto::etcdserverpb::*;

/// The serializable-ordering layer.
pub struct Ordered {
    floor: Arc<AtomicI64>,
    inner: SharedKv,
}

impl Ordered {
    /// Serializable reads of `inner` kept at or above `floor`.
    pub fn new(floor: Arc<AtomicI64>, inner: SharedKv) -> Ordered {
        Ordered { floor, inner }
    }
}

#[tonic::async_trait]
impl Kv for Ordered {
    async fn range(&self, request: Request<RangeRequest>) -> RpcResult<RangeResponse> {
        if !request.get_ref().serializable {
            return self.inner.range(request).await;
        }
        let mut fresh = again(&request, request.get_ref().clone());
        fresh.get_mut().serializable = false;
        let answer = self.inner.range(request).await?;
        let rev = revision(&answer.get_ref().header);
        if rev >= self.floor.fetch_max(rev, Ordering::AcqRel) {
            return Ok(answer);
        }
        let fresh = self.inner.range(fresh).await?;
        self.floor
            .fetch_max(revision(&fresh.get_ref().header), Ordering::AcqRel);
        Ok(fresh)
    }

    async fn put(&self, request: Request<PutRequest>) -> RpcResult<PutResponse> {
        self.inner.put(request).await
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> RpcResult<DeleteRangeResponse> {
        self.inner.delete_range(request).await
    }

    async fn txn(&self, request: Request<TxnRequest>) -> RpcResult<TxnResponse> {
        self.inner.txn(request).await
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> RpcResult<CompactionResponse> {
        self.inner.compact(request).await
    }
}
