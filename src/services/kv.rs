//! The KV service: the tonic binding of the [`crate::kv`] stack, plus
//! RangeStream (see [`crate::services::range_stream`]).

use tonic::Request;

use crate::error::RpcResult;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::*;
use crate::services::ServiceDeps;

/// Serves `etcdserverpb.KV`.
pub struct KvService {
    /// The stack every KV call goes down, and what RangeStream needs.
    pub deps: ServiceDeps,
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> RpcResult<RangeResponse> {
        self.deps.kv.range(request).await
    }

    type RangeStreamStream = crate::services::range_stream::RangeStream;

    async fn range_stream(
        &self,
        request: Request<RangeRequest>,
    ) -> RpcResult<Self::RangeStreamStream> {
        crate::services::range_stream::range_stream(&self.deps, request).await
    }

    async fn put(&self, request: Request<PutRequest>) -> RpcResult<PutResponse> {
        self.deps.kv.put(request).await
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> RpcResult<DeleteRangeResponse> {
        self.deps.kv.delete_range(request).await
    }

    async fn txn(&self, request: Request<TxnRequest>) -> RpcResult<TxnResponse> {
        self.deps.kv.txn(request).await
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> RpcResult<CompactionResponse> {
        self.deps.kv.compact(request).await
    }
}
