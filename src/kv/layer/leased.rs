//! `--experimental-leasing-prefix` in the stack: linearizable single-key
//! Gets of clients without a token are served from keys this proxy holds a
//! lease on, and such clients' writes first take those leases back (see
//! [`Leasing`]). Everything the layer sends goes down the stack, so the
//! cache below sees the writes.

use std::sync::Arc;

use tonic::{Request, Response};

use crate::error::{ProxyError, RpcResult};
use crate::kv::leasing::Leasing;
use crate::kv::ranges::{self, KeyRange};
use crate::kv::{txn_is_read_only, Kv, SharedKv};
use crate::proto::etcdserverpb::*;
use crate::upstream::{Caller, Forwarded};

/// The leasing layer.
pub struct Leased {
    leasing: Arc<Leasing>,
    inner: SharedKv,
}

impl Leased {
    /// Calls of `inner` served through `leasing` where they may be.
    pub fn new(leasing: Arc<Leasing>, inner: SharedKv) -> Leased {
        Leased { leasing, inner }
    }

    /// A write of a client without a token, run as the first op of a Txn
    /// guarded by the leasing keys of `writes`; its own answer comes back.
    async fn write(
        &self,
        fwd: Forwarded,
        op: request_op::Request,
        writes: &[KeyRange],
    ) -> Result<response_op::Response, tonic::Status> {
        let ops = vec![RequestOp { request: Some(op) }];
        let outer = self
            .leasing
            .write(self.inner.as_ref(), &fwd, ops, writes)
            .await?;
        inner_response(outer).ok_or_else(unexpected)
    }
}

/// The write's own answer inside the Txn the leasing layer wrapped it in,
/// with the Txn's header (etcd leaves the inner headers empty).
fn inner_response(outer: TxnResponse) -> Option<response_op::Response> {
    let header = outer.header;
    let mut inner = outer.responses.into_iter().next()?.response?;
    match &mut inner {
        response_op::Response::ResponsePut(r) => r.header = header,
        response_op::Response::ResponseDeleteRange(r) => r.header = header,
        response_op::Response::ResponseTxn(r) => r.header = header,
        response_op::Response::ResponseRange(r) => r.header = header,
    }
    Some(inner)
}

/// A leasing-path answer that is not the expected kind (never from etcd).
fn unexpected() -> tonic::Status {
    ProxyError::Internal("unexpected answer to a leasing write").status()
}

#[tonic::async_trait]
impl Kv for Leased {
    async fn range(&self, request: Request<RangeRequest>) -> RpcResult<RangeResponse> {
        if request.get_ref().serializable {
            return self.inner.range(request).await;
        }
        let (fwd, msg) = Forwarded::split(request);
        if let Some(answer) = self.leasing.get(self.inner.as_ref(), &fwd, &msg).await {
            return Ok(Response::new(answer?));
        }
        self.inner.range(fwd.request(msg)).await
    }

    async fn put(&self, request: Request<PutRequest>) -> RpcResult<PutResponse> {
        if !Caller::of_request(&request).is_anonymous() {
            return self.inner.put(request).await;
        }
        let (fwd, msg) = Forwarded::split(request);
        let writes = ranges::written_by_put(&msg);
        match self
            .write(fwd, request_op::Request::RequestPut(msg), &writes)
            .await?
        {
            response_op::Response::ResponsePut(r) => Ok(Response::new(r)),
            _ => Err(unexpected()),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> RpcResult<DeleteRangeResponse> {
        if !Caller::of_request(&request).is_anonymous() {
            return self.inner.delete_range(request).await;
        }
        let (fwd, msg) = Forwarded::split(request);
        let writes = ranges::written_by_delete(&msg);
        match self
            .write(fwd, request_op::Request::RequestDeleteRange(msg), &writes)
            .await?
        {
            response_op::Response::ResponseDeleteRange(r) => Ok(Response::new(r)),
            _ => Err(unexpected()),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> RpcResult<TxnResponse> {
        if !Caller::of_request(&request).is_anonymous() || txn_is_read_only(request.get_ref()) {
            return self.inner.txn(request).await;
        }
        let (fwd, msg) = Forwarded::split(request);
        let writes = ranges::written_by_txn(&msg);
        match self
            .write(fwd, request_op::Request::RequestTxn(msg), &writes)
            .await?
        {
            response_op::Response::ResponseTxn(r) => Ok(Response::new(r)),
            _ => Err(unexpected()),
        }
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> RpcResult<CompactionResponse> {
        self.inner.compact(request).await
    }
}
