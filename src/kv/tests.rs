//! Each layer of the stack alone, over a recording layer below it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use prost::Message;
use tonic::{Request, Response};

use super::*;
use crate::kv::namespace::Namespace;
use crate::proto::mvccpb::KeyValue;

/// The layer below under test: remembers what reached it and answers
/// Ranges with the revisions it is given, one per call.
#[derive(Default)]
struct Below {
    ranges: Mutex<Vec<RangeRequest>>,
    puts: Mutex<Vec<PutRequest>>,
    revisions: Mutex<Vec<i64>>,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

#[tonic::async_trait]
impl Kv for Below {
    async fn range(&self, request: Request<RangeRequest>) -> RpcResult<RangeResponse> {
        let req = request.into_inner();
        let revision = {
            let mut revs = self.revisions.lock().unwrap();
            if revs.is_empty() {
                7
            } else {
                revs.remove(0)
            }
        };
        let kvs = vec![KeyValue {
            key: req.key.clone(),
            ..Default::default()
        }];
        self.ranges.lock().unwrap().push(req);
        Ok(Response::new(RangeResponse {
            header: header(revision),
            kvs,
            count: 1,
            ..Default::default()
        }))
    }

    async fn put(&self, request: Request<PutRequest>) -> RpcResult<PutResponse> {
        self.puts.lock().unwrap().push(request.into_inner());
        Ok(Response::new(PutResponse {
            header: header(9),
            ..Default::default()
        }))
    }

    async fn delete_range(
        &self,
        _request: Request<DeleteRangeRequest>,
    ) -> RpcResult<DeleteRangeResponse> {
        Ok(Response::new(DeleteRangeResponse::default()))
    }

    async fn txn(&self, _request: Request<TxnRequest>) -> RpcResult<TxnResponse> {
        Ok(Response::new(TxnResponse::default()))
    }

    async fn compact(&self, _request: Request<CompactionRequest>) -> RpcResult<CompactionResponse> {
        Ok(Response::new(CompactionResponse::default()))
    }
}

fn get(key: &str, serializable: bool) -> Request<RangeRequest> {
    Request::new(RangeRequest {
        key: key.as_bytes().to_vec(),
        serializable,
        ..Default::default()
    })
}

#[tokio::test]
async fn namespaced_moves_keys_under_the_prefix_and_back() {
    let below = Arc::new(Below::default());
    let ns = Arc::new(Namespace::new("tenant/").unwrap());
    let kv = Namespaced::new(ns, below.clone());
    let answer = kv.range(get("k", false)).await.unwrap().into_inner();
    assert_eq!(below.ranges.lock().unwrap()[0].key, b"tenant/k");
    assert_eq!(answer.kvs[0].key, b"k");
    kv.put(Request::new(PutRequest {
        key: b"p".to_vec(),
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(below.puts.lock().unwrap()[0].key, b"tenant/p");
}

#[tokio::test]
async fn ordered_reads_an_older_serializable_answer_again_linearizably() {
    let below = Arc::new(Below::default());
    *below.revisions.lock().unwrap() = vec![10, 5, 12];
    let floor = Arc::new(AtomicI64::new(0));
    let kv = Ordered::new(floor.clone(), below.clone());
    let first = kv.range(get("k", true)).await.unwrap().into_inner();
    assert_eq!(revision(&first.header), 10);
    let second = kv.range(get("k", true)).await.unwrap().into_inner();
    assert_eq!(revision(&second.header), 12);
    let asked: Vec<bool> = below
        .ranges
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.serializable)
        .collect();
    assert_eq!(asked, vec![true, true, false]);
    assert_eq!(floor.load(Ordering::Acquire), 12);
}

#[tokio::test]
async fn ordered_leaves_linearizable_reads_alone() {
    let below = Arc::new(Below::default());
    *below.revisions.lock().unwrap() = vec![10, 5];
    let kv = Ordered::new(Arc::new(AtomicI64::new(0)), below.clone());
    kv.range(get("k", false)).await.unwrap();
    let again = kv.range(get("k", false)).await.unwrap().into_inner();
    assert_eq!(revision(&again.header), 5);
    assert_eq!(below.ranges.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn cached_tells_the_cache_what_a_write_touched_and_when() {
    let below = Arc::new(Below::default());
    let cache = crate::kv::cache::RangeCache::new(Default::default());
    let barrier = crate::kv::read_barrier::ReadBarrier::new(test_upstream());
    let kv = Cached::new(cache.clone(), barrier, below.clone());
    // Two answers held, one reading k and one not: the write to k must
    // forget the first and keep the second.
    cache.activate_for_tests();
    let held = |k: &str| {
        let read = RangeRequest {
            key: k.as_bytes().to_vec(),
            serializable: true,
            ..Default::default()
        };
        let key = read.encode_to_vec();
        let answer = RangeResponse {
            header: Some(ResponseHeader {
                revision: 8,
                ..Default::default()
            }),
            ..Default::default()
        };
        cache.put(key.clone(), &read, &answer);
        key
    };
    let (k, other) = (held("k"), held("other"));
    assert!(cache.holds(&k) && cache.holds(&other));
    kv.put(Request::new(PutRequest {
        key: b"k".to_vec(),
        ..Default::default()
    }))
    .await
    .unwrap();
    assert!(!cache.holds(&k), "the entry reading k is forgotten");
    assert!(cache.holds(&other), "an entry not reading k stays");
    assert_eq!(cache.floor(), 9);
    cache.suspend();
    // An inactive cache answers nothing itself: the read goes below, and
    // its revision raises the floor.
    *below.revisions.lock().unwrap() = vec![11];
    kv.range(get("k", true)).await.unwrap();
    assert_eq!(below.ranges.lock().unwrap().len(), 1);
    assert_eq!(cache.floor(), 11);
}

/// An upstream with no members, for layers that hold one but must not use it.
fn test_upstream() -> crate::upstream::Upstream {
    let pool =
        crate::upstream::Pool::new(Vec::new(), Default::default()).expect("a pool without members");
    crate::upstream::Upstream::new(pool, 1 << 20, 1 << 20)
}
