//! KV as a stack, as etcd's own proxy builds it
//! (`namespace.NewKV(ordering.NewKV(client.KV, …), ns)`): each layer does
//! one thing and hands the call to the layer below, down to the
//! [`Upstream`]. A Range reads top-down:
//!
//! 0. [`Prefixed`], for `--metrics-prefixes`: counts each keyed call by its key's prefix;
//! 1. [`Ordered`], for `--experimental-serializable-ordering`;
//! 2. [`Namespaced`], for `--namespace`: keys in and out;
//! 3. [`Leased`], for `--experimental-leasing-prefix`: linearizable Gets from held leases;
//! 4. [`Cached`], the range cache and its read barrier;
//! 5. [`Upstream`], a member, with the client's credentials and the retry policy.
//!
//! Layers that are off are left out of the stack ([`build`]). Beside the
//! layers live what they use: [`cache`] (the range cache, kept coherent by
//! one watch), [`read_barrier`], [`namespace`] (key mapping, also used by
//! Watch, Election and Lock), [`leasing`] (the leasing state machine) and
//! [`ranges`] (etcd's key ranges, and what a write touches, for both).

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use tonic::Request;

use crate::error::RpcResult;
use crate::proto::etcdserverpb::*;
use crate::upstream::Upstream;

pub mod cache;
pub mod layer;
pub mod leasing;
pub mod namespace;
pub mod ranges;
pub mod read_barrier;
mod upstream;

pub use layer::{Cached, Leased, Namespaced, Ordered, Prefixed};

/// The five KV calls, as every layer of the stack serves them.
#[tonic::async_trait]
pub trait Kv: Send + Sync + 'static {
    /// `KV.Range`.
    async fn range(&self, request: Request<RangeRequest>) -> RpcResult<RangeResponse>;
    /// `KV.Put`.
    async fn put(&self, request: Request<PutRequest>) -> RpcResult<PutResponse>;
    /// `KV.DeleteRange`.
    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> RpcResult<DeleteRangeResponse>;
    /// `KV.Txn`.
    async fn txn(&self, request: Request<TxnRequest>) -> RpcResult<TxnResponse>;
    /// `KV.Compact`.
    async fn compact(&self, request: Request<CompactionRequest>) -> RpcResult<CompactionResponse>;
}

/// A layer of the stack, or the whole stack, shared by every call.
pub type SharedKv = Arc<dyn Kv>;

/// What the stack is built from: each feature that is on adds its layer.
pub struct Features {
    /// `--namespace`.
    pub namespace: Option<Arc<crate::kv::namespace::Namespace>>,
    /// `--experimental-serializable-ordering`: the highest revision a
    /// serializable read has answered with.
    pub serializable_floor: Option<Arc<AtomicI64>>,
    /// `--experimental-leasing-prefix`.
    pub leasing: Option<Arc<leasing::Leasing>>,
    /// The range cache (always in the stack; it serves nothing while off).
    pub cache: Arc<crate::kv::cache::RangeCache>,
    /// Shared linearizable read barriers for the cache.
    pub read_barrier: Arc<crate::kv::read_barrier::ReadBarrier>,
    /// `--metrics-prefixes`: per-prefix counters, `None` when none is configured.
    pub prefix_metrics: Option<Arc<crate::metrics::prefixes::PrefixMetrics>>,
}

/// The KV stack over `upstream`, built once from the configuration.
pub fn build(upstream: Upstream, features: &Features) -> SharedKv {
    let mut kv: SharedKv = Arc::new(upstream);
    kv = Arc::new(Cached::new(
        features.cache.clone(),
        features.read_barrier.clone(),
        kv,
    ));
    if let Some(leasing) = &features.leasing {
        kv = Arc::new(Leased::new(leasing.clone(), kv));
    }
    if let Some(ns) = &features.namespace {
        kv = Arc::new(Namespaced::new(ns.clone(), kv));
    }
    if let Some(floor) = &features.serializable_floor {
        kv = Arc::new(Ordered::new(floor.clone(), kv));
    }
    if let Some(metrics) = &features.prefix_metrics {
        kv = Arc::new(Prefixed::new(metrics.clone(), kv));
    }
    kv
}

/// A transaction is read-only when none of its branches writes; such a
/// transaction may be retried like a Range.
pub fn txn_is_read_only(txn: &TxnRequest) -> bool {
    txn.success
        .iter()
        .chain(txn.failure.iter())
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(_)) | None => true,
            Some(request_op::Request::RequestTxn(inner)) => txn_is_read_only(inner),
            Some(_) => false,
        })
}

/// The revision an answer was made at (0 when etcd sent no header).
pub fn revision(header: &Option<ResponseHeader>) -> i64 {
    header.as_ref().map_or(0, |h| h.revision)
}

/// `request` again, with the same metadata and `msg` in place of its message.
pub fn again<T, U>(request: &Request<T>, msg: U) -> Request<U> {
    Request::from_parts(
        request.metadata().clone(),
        tonic::Extensions::default(),
        msg,
    )
}

#[cfg(test)]
mod tests;
