//! `--namespace`: every key a client names is moved under the prefix on its
//! way down, and back out of it on the way up.

use tonic::Request;

use crate::error::RpcResult;
use crate::kv::namespace::Namespace;
use crate::kv::{Kv, SharedKv};
use crate::proto::etcdserverpb::*;
use std::sync::Arc;

/// The namespace layer.
pub struct Namespaced {
    ns: Arc<Namespace>,
    inner: SharedKv,
}

impl Namespaced {
    /// Keys of calls to `inner` moved under `ns`.
    pub fn new(ns: Arc<Namespace>, inner: SharedKv) -> Namespaced {
        Namespaced { ns, inner }
    }
}

#[tonic::async_trait]
impl Kv for Namespaced {
    async fn range(&self, mut request: Request<RangeRequest>) -> RpcResult<RangeResponse> {
        self.ns.range_in(request.get_mut())?;
        let mut resp = self.inner.range(request).await?;
        self.ns.range_out(resp.get_mut());
        Ok(resp)
    }

    async fn put(&self, mut request: Request<PutRequest>) -> RpcResult<PutResponse> {
        self.ns.put_in(request.get_mut())?;
        let mut resp = self.inner.put(request).await?;
        self.ns.put_out(resp.get_mut());
        Ok(resp)
    }

    async fn delete_range(
        &self,
        mut request: Request<DeleteRangeRequest>,
    ) -> RpcResult<DeleteRangeResponse> {
        self.ns.delete_in(request.get_mut())?;
        let mut resp = self.inner.delete_range(request).await?;
        self.ns.delete_out(resp.get_mut());
        Ok(resp)
    }

    async fn txn(&self, mut request: Request<TxnRequest>) -> RpcResult<TxnResponse> {
        self.ns.txn_in(request.get_mut())?;
        let mut resp = self.inner.txn(request).await?;
        self.ns.txn_out(resp.get_mut());
        Ok(resp)
    }

    /// Compaction names a revision, not a key.
    async fn compact(&self, request: Request<CompactionRequest>) -> RpcResult<CompactionResponse> {
        self.inner.compact(request).await
    }
}
