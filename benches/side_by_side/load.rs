//! Closed-loop unary load: many tasks over a few HTTP/2 connections, each
//! sending its next call as soon as the previous one answers.

use std::time::{Duration, Instant};

use etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient;
use etcd_grpc_proxy::proto::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use hdrhistogram::Histogram;
use tonic::transport::Channel;

/// Keys the unary workloads spread over.
pub const KEYS: usize = 1000;
/// Value size written by Put and Txn.
pub const VALUE_BYTES: usize = 256;
/// A call slower than this counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The unary workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Range with etcd's default (linearizable) consistency.
    LinGet,
    /// Range with serializable=true (a member answers from its own store).
    SerGet,
    /// Put of a 256-byte value.
    Put,
    /// Compare mod_revision > 0, then Put, else Range.
    Txn,
    /// 90% linearizable Get, 10% Put.
    Mixed,
}

impl Workload {
    /// All unary workloads, in report order.
    pub const ALL: [Workload; 5] = [
        Workload::LinGet,
        Workload::SerGet,
        Workload::Put,
        Workload::Txn,
        Workload::Mixed,
    ];

    /// Name used in tables.
    pub fn label(self) -> &'static str {
        match self {
            Workload::LinGet => "Get (linearizable)",
            Workload::SerGet => "Get (serializable)",
            Workload::Put => "Put",
            Workload::Txn => "Txn",
            Workload::Mixed => "Mixed 90/10 get/put",
        }
    }
}

/// The key for index `i`.
pub fn key(i: usize) -> Vec<u8> {
    format!("bench/key/{i:04}").into_bytes()
}

fn range(i: usize, serializable: bool) -> RangeRequest {
    RangeRequest {
        key: key(i),
        serializable,
        ..Default::default()
    }
}

fn put(i: usize) -> PutRequest {
    PutRequest {
        key: key(i),
        value: vec![b'v'; VALUE_BYTES],
        ..Default::default()
    }
}

fn txn(i: usize) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Greater as i32,
            target: compare::CompareTarget::Mod as i32,
            key: key(i),
            target_union: Some(compare::TargetUnion::ModRevision(0)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put(i))),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(range(i, false))),
        }],
    }
}

/// Sends one call of `w`; Err on any failure or timeout.
pub async fn one_call(client: &mut KvClient<Channel>, w: Workload) -> Result<(), String> {
    let i = fastrand::usize(..KEYS);
    let call = async {
        match w {
            Workload::LinGet => client.range(range(i, false)).await.map(drop),
            Workload::SerGet => client.range(range(i, true)).await.map(drop),
            Workload::Put => client.put(put(i)).await.map(drop),
            Workload::Txn => client.txn(txn(i)).await.map(drop),
            Workload::Mixed if fastrand::u8(..10) == 0 => client.put(put(i)).await.map(drop),
            Workload::Mixed => client.range(range(i, false)).await.map(drop),
        }
    };
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err("client timeout".into()),
    }
}

/// Writes every key once, so reads find data.
pub async fn preload(ch: Channel) {
    let mut c = KvClient::new(ch);
    for i in 0..KEYS {
        c.put(put(i)).await.expect("preload put");
    }
}

/// A new latency histogram in microseconds (1 µs to 60 s, 3 digits).
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// What one round measured.
pub struct Round {
    /// Successful calls inside the measured window.
    pub ops: u64,
    /// Failed calls inside the measured window.
    pub errors: u64,
    /// Latency of the successful calls in the window (µs).
    pub hist: Histogram<u64>,
    /// Every call sent, warm-up included (for CPU per call).
    pub calls: u64,
    /// First error seen, if any.
    pub first_error: Option<String>,
}

/// Runs `w` on `channels` with `inflight` tasks per channel: `warmup`
/// unmeasured, then `window` measured.
pub async fn run_round(
    channels: &[Channel],
    inflight: usize,
    w: Workload,
    warmup: Duration,
    window: Duration,
) -> Round {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + window;
    let mut tasks = Vec::new();
    for ch in channels {
        for _ in 0..inflight {
            let mut client = KvClient::new(ch.clone());
            tasks.push(tokio::spawn(async move {
                let mut r = Round {
                    ops: 0,
                    errors: 0,
                    hist: new_hist(),
                    calls: 0,
                    first_error: None,
                };
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let res = one_call(&mut client, w).await;
                    let us = t0.elapsed().as_micros() as u64;
                    r.calls += 1;
                    if t0 >= measure_from {
                        match res {
                            Ok(()) => {
                                r.ops += 1;
                                let _ = r.hist.record(us.max(1));
                            }
                            Err(e) => {
                                r.errors += 1;
                                r.first_error.get_or_insert(e);
                            }
                        }
                    }
                }
                r
            }));
        }
    }
    let mut total = Round {
        ops: 0,
        errors: 0,
        hist: new_hist(),
        calls: 0,
        first_error: None,
    };
    for t in tasks {
        let r = t.await.expect("load task");
        total.ops += r.ops;
        total.errors += r.errors;
        total.calls += r.calls;
        total.hist.add(&r.hist).expect("merge histograms");
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
    }
    total
}
