//! The range cache in the stack: Ranges it may answer are answered from it
//! (serializable ones at once, linearizable ones behind a read barrier),
//! the answers it may keep are stored on their way up, and every write
//! tells it what it touched and at which revision.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response};

use crate::error::RpcResult;
use crate::kv::cache::RangeCache;
use crate::kv::ranges;
use crate::kv::read_barrier::ReadBarrier;
use crate::kv::{revision, Kv, SharedKv};
use crate::proto::etcdserverpb::*;
use crate::upstream::Caller;

/// How long a linearizable read waits for the cache's watch to reach a
/// barrier's revision before it goes to etcd instead.
const WATCH_PATIENCE: Duration = Duration::from_millis(100);

/// The cache layer.
pub struct Cached {
    cache: Arc<RangeCache>,
    read_barrier: Arc<ReadBarrier>,
    inner: SharedKv,
}

impl Cached {
    /// Ranges of `inner` served from `cache` where it may, linearizable
    /// ones behind `read_barrier`.
    pub fn new(cache: Arc<RangeCache>, read_barrier: Arc<ReadBarrier>, inner: SharedKv) -> Cached {
        Cached {
            cache,
            read_barrier,
            inner,
        }
    }

    /// A linearizable read answered from the cache: only once a read
    /// barrier sent after it arrived came back and the cache's watch has
    /// applied everything up to the barrier's revision, so the answer holds
    /// every write that finished before the read began. `None` sends the
    /// read to etcd (nothing cached, no member answered, watch behind).
    async fn linearizable_hit(&self, cache_key: &[u8]) -> Option<RangeResponse> {
        if !self.cache.holds(cache_key) {
            return None;
        }
        let barrier = self.read_barrier.revision().await?;
        if !self.cache.caught_up_to(barrier, WATCH_PATIENCE).await {
            return None;
        }
        let mut hit = self.cache.get(cache_key)?;
        // The answer is the state at the barrier's revision (or later).
        if let Some(header) = hit.header.as_mut() {
            header.revision = header.revision.max(barrier);
        }
        Some(hit)
    }
}

#[tonic::async_trait]
impl Kv for Cached {
    async fn range(&self, request: Request<RangeRequest>) -> RpcResult<RangeResponse> {
        let Some(key) = self
            .cache
            .cache_key(request.get_ref(), &Caller::of_request(&request))
        else {
            let resp = self.inner.range(request).await?;
            self.cache.answered(revision(&resp.get_ref().header));
            return Ok(resp);
        };
        let hit = if request.get_ref().serializable {
            self.cache.current(&key)
        } else {
            self.linearizable_hit(&key).await
        };
        if let Some(hit) = hit {
            self.cache.answered(revision(&hit.header));
            return Ok(Response::new(hit));
        }
        let asked = request.get_ref().clone();
        let metadata = request.metadata().clone();
        let mut resp = self.inner.range(request).await?;
        if asked.serializable && revision(&resp.get_ref().header) < self.cache.floor() {
            // A member behind what this proxy has already seen (a write
            // acknowledged through it, or a watch event) would answer
            // with the old value: read it again linearizably instead.
            let linearizable = RangeRequest {
                serializable: false,
                ..asked.clone()
            };
            let fresh = Request::from_parts(metadata, tonic::Extensions::default(), linearizable);
            resp = self.inner.range(fresh).await?;
        }
        self.cache.put(key, &asked, resp.get_ref());
        self.cache.answered(revision(&resp.get_ref().header));
        Ok(resp)
    }

    async fn put(&self, request: Request<PutRequest>) -> RpcResult<PutResponse> {
        let touched = ranges::written_by_put(request.get_ref());
        let resp = self.inner.put(request).await?;
        self.cache
            .written(&touched, revision(&resp.get_ref().header));
        Ok(resp)
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> RpcResult<DeleteRangeResponse> {
        let touched = ranges::written_by_delete(request.get_ref());
        let resp = self.inner.delete_range(request).await?;
        self.cache
            .written(&touched, revision(&resp.get_ref().header));
        Ok(resp)
    }

    async fn txn(&self, request: Request<TxnRequest>) -> RpcResult<TxnResponse> {
        let touched = ranges::written_by_txn(request.get_ref());
        let resp = self.inner.txn(request).await?;
        self.cache
            .written(&touched, revision(&resp.get_ref().header));
        Ok(resp)
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> RpcResult<CompactionResponse> {
        self.inner.compact(request).await
    }
}
