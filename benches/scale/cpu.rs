//! CPU per call: `clients` concurrent clients, each a loop of Gets of one
//! 256-byte value, spread over min(clients, 100) HTTP/2 connections; the
//! proxy's CPU seconds (utime + stime) over the measured window per 10k
//! calls, ops/s and p99.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient;
use etcd_grpc_proxy::proto::etcdserverpb::RangeRequest;

use crate::common::{self, new_hist, q_ms, FirstError, Watchdog};
use crate::report::Point;

/// The key read.
pub const KEY: &[u8] = b"scale/cpu";

/// The shape of the load.
pub struct Params {
    /// Unmeasured start.
    pub warmup: Duration,
    /// Measured window.
    pub window: Duration,
    /// Serializable Gets (answerable from a proxy's cache) instead of
    /// linearizable ones.
    pub serializable: bool,
    /// Most HTTP/2 connections.
    pub max_conns: usize,
}

/// Runs one point.
pub async fn run(addr: &str, pid: Option<u32>, clients: usize, p: &Params, wd: &Watchdog) -> Point {
    let mut pt = Point::new(clients as u64);
    let conns = clients.min(p.max_conns).max(1);
    let channels = match common::connect_n(addr, conns).await {
        Ok(c) => c,
        Err(e) => {
            pt.failure = Some(format!("connection error: {e}"));
            return pt;
        }
    };
    let hists: Vec<_> = (0..conns)
        .map(|_| Arc::new(Mutex::new(new_hist())))
        .collect();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = FirstError::default();
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let mut kv = KvClient::new(channels[i % conns].clone());
        let (hist, measuring, stop, ok, errors, first_error) = (
            hists[i % conns].clone(),
            measuring.clone(),
            stop.clone(),
            ok.clone(),
            errors.clone(),
            first_error.clone(),
        );
        let serializable = p.serializable;
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    kv.range(RangeRequest {
                        key: KEY.to_vec(),
                        serializable,
                        ..Default::default()
                    }),
                )
                .await;
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match r {
                    Ok(Ok(_)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        let _ = hist
                            .lock()
                            .unwrap()
                            .record((t0.elapsed().as_micros() as u64).max(1));
                    }
                    Ok(Err(e)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.set(format!("{:?}: {}", e.code(), e.message()));
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.set("timeout: no answer in 10 s");
                    }
                }
            }
        }));
    }
    tokio::time::sleep(p.warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let cpu0 = pid.and_then(crate::procs::cpu_seconds);
    let gen0 = crate::procs::cpu_seconds(std::process::id());
    let t0 = Instant::now();
    tokio::time::sleep(p.window).await;
    measuring.store(false, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = pid
        .and_then(crate::procs::cpu_seconds)
        .zip(cpu0)
        .map(|(a, b)| a - b);
    let gen = crate::procs::cpu_seconds(std::process::id())
        .zip(gen0)
        .map(|(a, b)| a - b);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    let mut hist = new_hist();
    for h in &hists {
        hist.add(&*h.lock().unwrap()).expect("merge histograms");
    }
    let ok = ok.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    let calls = ok + errors;
    pt.set("ops_s", Some(ok as f64 / secs));
    pt.set("p99_ms", q_ms(&hist, 0.99));
    pt.set(
        "cpu_10k",
        cpu.filter(|_| calls > 0)
            .map(|c| c / calls as f64 * 10_000.0),
    );
    pt.set("cpu_pct", cpu.map(|c| c / secs * 100.0));
    pt.set(
        "gen_10k",
        gen.filter(|_| calls > 0)
            .map(|c| c / calls as f64 * 10_000.0),
    );
    pt.set(
        "rss_mib",
        pid.and_then(common::rss_kib).map(|k| k as f64 / 1024.0),
    );
    pt.set("errors", Some(errors as f64));
    if let Some(f) = wd.failed() {
        pt.failure = Some(f);
    } else if errors > 0 {
        pt.failure = Some(format!(
            "{errors} of {calls} calls failed; first: {}",
            first_error.get().unwrap_or_default()
        ));
    }
    pt
}
