//! `--metrics-prefixes`: counts each keyed KV call in its key's prefix
//! bucket ([`PrefixMetrics`]): method, final gRPC code, request bytes in
//! and response bytes out (encoded sizes of the messages). The layer is
//! the outermost of the stack, so it sees the client's own keys (before
//! `--namespace`) and counts answers from the cache like any other.
//! Compact carries no key and is not counted.

use std::sync::Arc;

use prost::Message;
use tonic::Request;

use crate::error::RpcResult;
use crate::kv::{Kv, SharedKv};
use crate::metrics::prefixes::{KeyedMethod, PrefixMetrics};
use crate::proto::etcdserverpb::*;

/// The per-prefix counting layer.
pub struct Prefixed {
    metrics: Arc<PrefixMetrics>,
    inner: SharedKv,
}

impl Prefixed {
    /// `inner`'s keyed calls counted in `metrics`.
    pub fn new(metrics: Arc<PrefixMetrics>, inner: SharedKv) -> Prefixed {
        Prefixed { metrics, inner }
    }
}

/// The key a transaction is counted under: its first compare's, else its
/// first operation's (success branch first, nested transactions looked into).
pub fn txn_key(txn: &TxnRequest) -> &[u8] {
    if let Some(c) = txn.compare.first() {
        return &c.key;
    }
    txn.success
        .iter()
        .chain(txn.failure.iter())
        .find_map(|op| match &op.request {
            Some(request_op::Request::RequestRange(r)) => Some(r.key.as_slice()),
            Some(request_op::Request::RequestPut(r)) => Some(r.key.as_slice()),
            Some(request_op::Request::RequestDeleteRange(r)) => Some(r.key.as_slice()),
            Some(request_op::Request::RequestTxn(t)) => Some(txn_key(t)).filter(|k| !k.is_empty()),
            None => None,
        })
        .unwrap_or_default()
}

#[tonic::async_trait]
impl Kv for Prefixed {
    async fn range(&self, request: Request<RangeRequest>) -> RpcResult<RangeResponse> {
        let bucket = self.metrics.bucket(&request.get_ref().key);
        let received = request.get_ref().encoded_len();
        let answer = self.inner.range(request).await;
        let (code, sent) = outcome(&answer);
        self.metrics
            .request(bucket, KeyedMethod::Range, code, received, sent);
        answer
    }

    async fn put(&self, request: Request<PutRequest>) -> RpcResult<PutResponse> {
        let bucket = self.metrics.bucket(&request.get_ref().key);
        let received = request.get_ref().encoded_len();
        let answer = self.inner.put(request).await;
        let (code, sent) = outcome(&answer);
        self.metrics
            .request(bucket, KeyedMethod::Put, code, received, sent);
        answer
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> RpcResult<DeleteRangeResponse> {
        let bucket = self.metrics.bucket(&request.get_ref().key);
        let received = request.get_ref().encoded_len();
        let answer = self.inner.delete_range(request).await;
        let (code, sent) = outcome(&answer);
        self.metrics
            .request(bucket, KeyedMethod::DeleteRange, code, received, sent);
        answer
    }

    async fn txn(&self, request: Request<TxnRequest>) -> RpcResult<TxnResponse> {
        let bucket = self.metrics.bucket(txn_key(request.get_ref()));
        let received = request.get_ref().encoded_len();
        let answer = self.inner.txn(request).await;
        let (code, sent) = outcome(&answer);
        self.metrics
            .request(bucket, KeyedMethod::Txn, code, received, sent);
        answer
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> RpcResult<CompactionResponse> {
        self.inner.compact(request).await
    }
}

/// The final code of an answer and the bytes of its message.
fn outcome<T: Message>(answer: &RpcResult<T>) -> (tonic::Code, usize) {
    match answer {
        Ok(resp) => (tonic::Code::Ok, resp.get_ref().encoded_len()),
        Err(status) => (status.code(), 0),
    }
}
