//! The KV service: Range, RangeStream (see [`crate::services::range_stream`]),
//! Put, DeleteRange, Txn and Compact.
//!
//! Reads are retried on another member when one is unavailable; writes only
//! when they never reached a member (see [`crate::backend::retry`]).

use std::sync::atomic::Ordering;

use tonic::{Request, Response};

use crate::backend::RetryPolicy;
use crate::cache;
use crate::error::RpcResult;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::*;
use crate::services::{Context, Forwarded};

/// The write's own answer inside the Txn the leasing path wrapped it in,
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
    crate::error::ProxyError::Internal("unexpected answer to a leasing write").into()
}

/// Serves `etcdserverpb.KV`.
pub struct KvService {
    /// Pool and limits shared by all services.
    pub ctx: Context,
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

impl KvService {
    /// With `--experimental-leasing-prefix` and no auth token, the write
    /// goes through [`crate::leasing::Leasing::write`]; otherwise the
    /// request comes back to be forwarded as usual.
    #[allow(clippy::type_complexity)]
    fn leasing_write<T>(
        &self,
        request: Request<T>,
    ) -> Result<(std::sync::Arc<crate::leasing::Leasing>, Forwarded, T), Request<T>> {
        match &self.ctx.leasing {
            Some(leasing) if !request.metadata().contains_key("token") => {
                let (fwd, msg) = Forwarded::split(request);
                Ok((leasing.clone(), fwd, msg))
            }
            _ => Err(request),
        }
    }

    /// A linearizable read answered from the cache: only once a read
    /// barrier sent after it arrived came back and the cache's watch has
    /// applied everything up to the barrier's revision, so the answer holds
    /// every write that finished before the read began. `None` sends the
    /// read to etcd (nothing cached, no member answered, watch behind).
    async fn linearizable_hit(&self, cache_key: &[u8]) -> Option<RangeResponse> {
        let cache = &self.ctx.cache;
        if !cache.holds(cache_key) {
            return None;
        }
        let barrier = self.ctx.read_barrier.revision().await?;
        if !cache.caught_up_to(barrier, WATCH_PATIENCE).await {
            return None;
        }
        let mut hit = cache.get(cache_key)?;
        // The answer is the state at the barrier's revision (or later).
        if let Some(header) = hit.header.as_mut() {
            header.revision = header.revision.max(barrier);
        }
        Some(hit)
    }

    async fn range_once(&self, mut request: Request<RangeRequest>) -> RpcResult<RangeResponse> {
        let ns = self.ctx.namespace.clone();
        if let Some(ns) = &ns {
            ns.range_in(request.get_mut())?;
        }
        if let Some(leasing) = &self.ctx.leasing {
            if !request.get_ref().serializable {
                let (fwd, msg) = Forwarded::split(request);
                if let Some(answer) = leasing.get(&fwd, &msg).await {
                    let mut answer = answer?;
                    if let Some(ns) = &ns {
                        ns.range_out(&mut answer);
                    }
                    return Ok(Response::new(answer));
                }
                request = fwd.request(msg);
            }
        }
        let cache = &self.ctx.cache;
        let cache_key = cache.cache_key(request.get_ref(), request.metadata());
        if let Some(key) = &cache_key {
            let hit = if request.get_ref().serializable {
                cache.get(key)
            } else {
                self.linearizable_hit(key).await
            };
            if let Some(mut hit) = hit {
                if let Some(ns) = &ns {
                    ns.range_out(&mut hit);
                }
                return Ok(Response::new(hit));
            }
        }
        let asked = cache_key
            .as_ref()
            .map(|_| (request.metadata().clone(), request.get_ref().clone()));
        let mut resp: Response<RangeResponse> = self
            .ctx
            .upstream
            .forward("/etcdserverpb.KV/Range", RetryPolicy::Idempotent, request)
            .await?;
        if let (Some(key), Some((metadata, asked))) = (cache_key, asked) {
            if asked.serializable && revision(&resp.get_ref().header) < cache.floor() {
                // A member behind what this proxy has already seen (a write
                // acknowledged through it, or a watch event) would answer
                // with the old value: read it again linearizably instead.
                let mut fresh = asked.clone();
                fresh.serializable = false;
                let again = Request::from_parts(metadata, tonic::Extensions::default(), fresh);
                resp = self
                    .ctx
                    .upstream
                    .forward("/etcdserverpb.KV/Range", RetryPolicy::Idempotent, again)
                    .await?;
            }
            cache.put(key, &asked, resp.get_ref());
        }
        if let Some(ns) = &ns {
            ns.range_out(resp.get_mut());
        }
        Ok(resp)
    }
}

/// How long a linearizable read waits for the cache's watch to reach a
/// barrier's revision before it goes to etcd instead.
const WATCH_PATIENCE: std::time::Duration = std::time::Duration::from_millis(100);

/// The revision an answer was made at (0 when etcd sent no header).
fn revision(header: &Option<ResponseHeader>) -> i64 {
    header.as_ref().map_or(0, |h| h.revision)
}

#[tonic::async_trait]
impl Kv for KvService {
    /// Serializable reads may be answered from the [`RangeCache`]; every
    /// answer that may be cached is stored on its way back.
    async fn range(&self, request: Request<RangeRequest>) -> RpcResult<RangeResponse> {
        let Some(floor) = self.ctx.serializable_floor.clone() else {
            return self.range_once(request).await;
        };
        if !request.get_ref().serializable {
            return self.range_once(request).await;
        }
        // --experimental-serializable-ordering: an answer older than one
        // already given is replaced by a linearizable read, which cannot be.
        let (metadata, extensions, msg) = request.into_parts();
        let retry = (metadata.clone(), extensions.clone(), msg.clone());
        let answer = self
            .range_once(Request::from_parts(metadata, extensions, msg))
            .await?;
        let rev = revision(&answer.get_ref().header);
        if rev >= floor.fetch_max(rev, Ordering::AcqRel) {
            return Ok(answer);
        }
        let (metadata, extensions, mut msg) = retry;
        msg.serializable = false;
        let fresh = self
            .range_once(Request::from_parts(metadata, extensions, msg))
            .await?;
        floor.fetch_max(revision(&fresh.get_ref().header), Ordering::AcqRel);
        Ok(fresh)
    }

    type RangeStreamStream = crate::services::range_stream::RangeStream;

    async fn range_stream(
        &self,
        request: Request<RangeRequest>,
    ) -> RpcResult<Self::RangeStreamStream> {
        crate::services::range_stream::range_stream(&self.ctx, request).await
    }

    async fn put(&self, mut request: Request<PutRequest>) -> RpcResult<PutResponse> {
        let ns = self.ctx.namespace.clone();
        if let Some(ns) = &ns {
            ns.put_in(request.get_mut())?;
        }
        let touched = cache::touched_by_put(request.get_ref());
        let mut resp: Response<PutResponse> = match self.leasing_write(request) {
            Ok((leasing, fwd, msg)) => {
                let writes = vec![(msg.key.clone(), Vec::new())];
                let ops = vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(msg)),
                }];
                match inner_response(leasing.write(&fwd, ops, &writes).await?) {
                    Some(response_op::Response::ResponsePut(r)) => Response::new(r),
                    _ => return Err(unexpected()),
                }
            }
            Err(request) => {
                self.ctx
                    .upstream
                    .forward("/etcdserverpb.KV/Put", RetryPolicy::UnlessApplied, request)
                    .await?
            }
        };
        self.ctx
            .cache
            .written(&touched, revision(&resp.get_ref().header));
        if let Some(ns) = &ns {
            ns.put_out(resp.get_mut());
        }
        Ok(resp)
    }

    async fn delete_range(
        &self,
        mut request: Request<DeleteRangeRequest>,
    ) -> RpcResult<DeleteRangeResponse> {
        let ns = self.ctx.namespace.clone();
        if let Some(ns) = &ns {
            ns.delete_in(request.get_mut())?;
        }
        let touched = cache::touched_by_delete(request.get_ref());
        let mut resp: Response<DeleteRangeResponse> = match self.leasing_write(request) {
            Ok((leasing, fwd, msg)) => {
                let writes = vec![(msg.key.clone(), msg.range_end.clone())];
                let ops = vec![RequestOp {
                    request: Some(request_op::Request::RequestDeleteRange(msg)),
                }];
                match inner_response(leasing.write(&fwd, ops, &writes).await?) {
                    Some(response_op::Response::ResponseDeleteRange(r)) => Response::new(r),
                    _ => return Err(unexpected()),
                }
            }
            Err(request) => {
                self.ctx
                    .upstream
                    .forward(
                        "/etcdserverpb.KV/DeleteRange",
                        RetryPolicy::UnlessApplied,
                        request,
                    )
                    .await?
            }
        };
        self.ctx
            .cache
            .written(&touched, revision(&resp.get_ref().header));
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
        let touched = cache::touched_by_txn(request.get_ref());
        let leased = if txn_is_read_only(request.get_ref()) {
            Err(request)
        } else {
            self.leasing_write(request)
        };
        let mut resp: Response<TxnResponse> = match leased {
            Ok((leasing, fwd, msg)) => {
                let mut writes = Vec::new();
                crate::leasing::txn_writes(&msg, &mut writes);
                let ops = vec![RequestOp {
                    request: Some(request_op::Request::RequestTxn(msg)),
                }];
                match inner_response(leasing.write(&fwd, ops, &writes).await?) {
                    Some(response_op::Response::ResponseTxn(r)) => Response::new(r),
                    _ => return Err(unexpected()),
                }
            }
            Err(request) => {
                self.ctx
                    .upstream
                    .forward("/etcdserverpb.KV/Txn", policy, request)
                    .await?
            }
        };
        self.ctx
            .cache
            .written(&touched, revision(&resp.get_ref().header));
        if let Some(ns) = &ns {
            ns.txn_out(resp.get_mut());
        }
        Ok(resp)
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> RpcResult<CompactionResponse> {
        self.ctx
            .upstream
            .forward(
                "/etcdserverpb.KV/Compact",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }
}
