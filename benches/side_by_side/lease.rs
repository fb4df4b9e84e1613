//! Lease keep-alive load: many clients, each with its own lease and its
//! own LeaseKeepAlive stream, sending a keep-alive every `pause` (TTL/3 by
//! default, the cadence of etcd's Go client).

use std::time::{Duration, Instant};

use etcd_grpc_proxy::proto::etcdserverpb::lease_client::LeaseClient;
use etcd_grpc_proxy::proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::load::{new_hist, Round};

/// Grants `n` leases of `ttl` seconds through `channels`.
pub async fn grant(channels: &[Channel], n: usize, ttl: i64) -> Vec<i64> {
    let mut tasks = Vec::new();
    let per = n.div_ceil(64);
    for t in 0..64 {
        let mut client = LeaseClient::new(channels[t % channels.len()].clone());
        let count = per.min(n.saturating_sub(t * per));
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..count {
                ids.push(
                    client
                        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                        .await
                        .expect("lease grant")
                        .into_inner()
                        .id,
                );
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.expect("grant task"));
    }
    ids
}

/// One keep-alive stream per lease for `warmup + window`; only the window
/// is measured. An answer slower than `timeout` counts as failed.
pub async fn run_round(
    channels: &[Channel],
    leases: &[i64],
    pause: Duration,
    timeout: Duration,
    warmup: Duration,
    window: Duration,
) -> Round {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + window;
    let mut tasks = Vec::new();
    for (i, &id) in leases.iter().enumerate() {
        let mut client = LeaseClient::new(channels[i % channels.len()].clone());
        tasks.push(tokio::spawn(async move {
            let mut r = Round {
                ops: 0,
                errors: 0,
                hist: new_hist(),
                calls: 0,
                first_error: None,
            };
            let (tx, rx) = mpsc::channel(1);
            // Spread the clients' phases over one pause.
            tokio::time::sleep(pause.mul_f64(fastrand::f64())).await;
            // The first keep-alive goes with the call: a server may send its
            // response headers only with its first answer.
            let mut t0 = Instant::now();
            tx.send(LeaseKeepAliveRequest { id })
                .await
                .expect("queue first keep-alive");
            let mut stream = match client.lease_keep_alive(ReceiverStream::new(rx)).await {
                Ok(s) => s.into_inner(),
                Err(e) => {
                    r.errors += 1;
                    r.first_error = Some(format!("open keep-alive stream: {e}"));
                    return r;
                }
            };
            let mut first = true;
            loop {
                if !first {
                    t0 = Instant::now();
                }
                if t0 >= end {
                    break;
                }
                let res = async {
                    if !first {
                        tx.send(LeaseKeepAliveRequest { id })
                            .await
                            .map_err(|_| "stream closed".to_string())?;
                    }
                    match tokio::time::timeout(timeout, stream.message()).await {
                        Ok(Ok(Some(resp))) if resp.ttl > 0 => Ok(()),
                        Ok(Ok(Some(_))) => Err("lease expired".to_string()),
                        Ok(Ok(None)) => Err("stream ended".to_string()),
                        Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
                        Err(_) => Err("client timeout".to_string()),
                    }
                }
                .await;
                first = false;
                let us = t0.elapsed().as_micros() as u64;
                r.calls += 1;
                let failed = res.is_err();
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
                if failed {
                    break;
                }
                let next = t0 + pause;
                if next >= end {
                    break;
                }
                tokio::time::sleep_until(next.into()).await;
            }
            r
        }));
    }
    let mut total = Round {
        ops: 0,
        errors: 0,
        hist: new_hist(),
        calls: 0,
        first_error: None,
    };
    for t in tasks {
        let r = t.await.expect("keep-alive task");
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
