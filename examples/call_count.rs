//! Fixed call load for the instruction-count benchmark
//! (`scripts/bench-instructions.sh`).
//!
//! Instructions per call, counted by callgrind, hold on a noisy shared
//! machine where CPU seconds do not. This driver makes a known number of
//! calls of one kind through one HTTP/2 connection, and brackets the
//! measured ones with two shell commands (the script's `callgrind_control
//! -i on` / `-i off`), so warm-up, connection set-up and the proxy's own
//! start-up stay out of the count.
//!
//! Usage: `call_count ADDR KIND COUNT`, where KIND is `get-cached`
//! (serializable Get of a key read before: served from the proxy's cache),
//! `get` (linearizable Get: forwarded), `put` or `txn`.
//! Env: `CALLS_BEFORE` / `CALLS_AFTER` (shell commands run around the
//! measured calls), `CALLS_INFLIGHT` (calls in flight, default 8),
//! `CALLS_WARMUP` (default 200).

use std::process::Command;
use std::time::Duration;

use etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient;
use etcd_grpc_proxy::proto::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tonic::transport::{Channel, Endpoint};

/// The value every Put writes: the side-by-side benchmark's size.
const VALUE_BYTES: usize = 256;
/// Distinct keys the calls cycle over.
const KEYS: usize = 100;

/// One call of the chosen kind on key `i`.
async fn call(kv: &mut KvClient<Channel>, kind: &str, i: usize) -> Result<(), tonic::Status> {
    let key = format!("count/{:04}", i % KEYS).into_bytes();
    match kind {
        "get-cached" | "get" => {
            kv.range(RangeRequest {
                key,
                serializable: kind == "get-cached",
                ..Default::default()
            })
            .await?;
        }
        "put" => {
            kv.put(PutRequest {
                key,
                value: vec![b'v'; VALUE_BYTES],
                ..Default::default()
            })
            .await?;
        }
        "txn" => {
            kv.txn(TxnRequest {
                compare: vec![Compare {
                    key: key.clone(),
                    result: compare::CompareResult::Greater as i32,
                    target: compare::CompareTarget::Version as i32,
                    target_union: Some(compare::TargetUnion::Version(0)),
                    ..Default::default()
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key,
                        value: vec![b'v'; VALUE_BYTES],
                        ..Default::default()
                    })),
                }],
                ..Default::default()
            })
            .await?;
        }
        other => panic!("unknown call kind {other}: get-cached, get, put or txn"),
    }
    Ok(())
}

/// `count` calls, `inflight` at a time, each on its own clone of the channel.
async fn calls(ch: &Channel, kind: &str, count: usize, inflight: usize) {
    let per = count.div_ceil(inflight);
    let mut tasks = Vec::new();
    for t in 0..inflight {
        let mut kv = KvClient::new(ch.clone());
        let kind = kind.to_string();
        tasks.push(tokio::spawn(async move {
            for n in 0..per {
                let i = t * per + n;
                if i >= count {
                    break;
                }
                call(&mut kv, &kind, i)
                    .await
                    .expect("call through the proxy");
            }
        }));
    }
    for t in tasks {
        t.await.expect("call task");
    }
}

/// Runs the shell command in `var`, if set.
fn run_hook(var: &str) {
    if let Ok(cmd) = std::env::var(var) {
        let ok = Command::new("sh")
            .args(["-c", &cmd])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{var} ({cmd}) failed");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, kind, count] = &args[..] else {
        panic!("usage: call_count ADDR get-cached|get|put|txn COUNT");
    };
    let count: usize = count.parse().expect("COUNT is a number");
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let inflight = env("CALLS_INFLIGHT", 8);
    let warmup = env("CALLS_WARMUP", 200);
    let ch = Endpoint::from_shared(format!("http://{addr}"))
        .expect("address")
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .connect()
        .await
        .expect("connect to the proxy");
    // Every key exists and has been read once, so cached reads hit.
    let mut kv = KvClient::new(ch.clone());
    for i in 0..KEYS {
        call(&mut kv, "put", i).await.expect("preload");
    }
    calls(&ch, kind, warmup.max(KEYS), inflight).await;
    run_hook("CALLS_BEFORE");
    calls(&ch, kind, count, inflight).await;
    run_hook("CALLS_AFTER");
    println!("calls {count}");
}
