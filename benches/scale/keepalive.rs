//! Lease keep-alive curve: `n` clients, each granting its own lease
//! (straight at the member) and keeping it alive through the target on its
//! own LeaseKeepAlive stream (`per_conn` streams per HTTP/2 connection),
//! one keep-alive every TTL/3 as etcd's Go client does. After the ramp a
//! steady window runs; then the member is asked which leases still live.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_grpc_proxy::proto::etcdserverpb::lease_client::LeaseClient;
use etcd_grpc_proxy::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest,
};
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

use crate::common::{self, new_hist, q_ms, FirstError, Watchdog};
use crate::report::Point;

/// The shape of the load.
pub struct Params {
    /// Lease TTL (s).
    pub ttl: i64,
    /// Steady window after the ramp.
    pub window: Duration,
    /// Keep-alive streams per HTTP/2 connection.
    pub per_conn: usize,
    /// Lease grants in flight at once during the ramp.
    pub ramp_parallel: usize,
}

#[derive(Default)]
struct Counters {
    ramped: AtomicUsize,
    expired: AtomicUsize,
    errors: AtomicUsize,
    calls: AtomicUsize,
}

/// Runs one point: `n` clients through `addr`, leases granted at `member`.
pub async fn run(
    addr: &str,
    member: &str,
    pid: Option<u32>,
    n: usize,
    p: &Params,
    wd: &Watchdog,
) -> Point {
    let mut pt = Point::new(n as u64);
    let conns = n.div_ceil(p.per_conn).max(1);
    let channels = match common::connect_n(addr, conns).await {
        Ok(c) => c,
        Err(e) => {
            pt.failure = Some(format!("connection error: {e}"));
            return pt;
        }
    };
    let members = match common::connect_n(member, 8).await {
        Ok(c) => c,
        Err(e) => {
            pt.failure = Some(format!("bench: member connection: {e}"));
            return pt;
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = pid.and_then(common::rss_kib);
    let pause = Duration::from_millis(p.ttl as u64 * 1000 / 3);
    let c = Arc::new(Counters::default());
    let hist = Arc::new(Mutex::new(new_hist()));
    let first_error = FirstError::default();
    let stop = Arc::new(AtomicBool::new(false));
    let ids = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let sem = Arc::new(Semaphore::new(p.ramp_parallel));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut lease = LeaseClient::new(channels[i / p.per_conn].clone());
        let mut grant = LeaseClient::new(members[i % members.len()].clone());
        let (c, hist, first_error, stop, ids, sem) = (
            c.clone(),
            hist.clone(),
            first_error.clone(),
            stop.clone(),
            ids.clone(),
            sem.clone(),
        );
        let ttl = p.ttl;
        tasks.push(tokio::spawn(async move {
            let fail = |c: &Counters, e: String| {
                c.errors.fetch_add(1, Ordering::Relaxed);
                first_error.set(e);
            };
            let permit = sem.acquire_owned().await.expect("semaphore");
            let id = match grant.lease_grant(LeaseGrantRequest { ttl, id: 0 }).await {
                Ok(r) => r.into_inner().id,
                Err(e) => return fail(&c, format!("bench: lease grant at the member: {e}")),
            };
            ids.lock().unwrap().push(id);
            // Only the grants are paced: etcd's grpc-proxy answers a first
            // keep-alive only with its own lessor's (up to TTL/3 later).
            drop(permit);
            let (tx, rx) = mpsc::channel(1);
            let _ = tx.try_send(LeaseKeepAliveRequest { id });
            let mut stream = match lease.lease_keep_alive(ReceiverStream::new(rx)).await {
                Ok(s) => s.into_inner(),
                Err(e) => {
                    return fail(
                        &c,
                        format!("open LeaseKeepAlive: {:?}: {}", e.code(), e.message()),
                    )
                }
            };
            // One round trip: send (except the first, queued with the
            // call), wait for the answer up to one pause.
            async fn once(
                tx: &mpsc::Sender<LeaseKeepAliveRequest>,
                stream: &mut tonic::Streaming<
                    etcd_grpc_proxy::proto::etcdserverpb::LeaseKeepAliveResponse,
                >,
                id: i64,
                send: bool,
                limit: Duration,
            ) -> Result<i64, String> {
                if send {
                    tx.send(LeaseKeepAliveRequest { id })
                        .await
                        .map_err(|_| "keep-alive stream closed".to_string())?;
                }
                match tokio::time::timeout(limit, stream.message()).await {
                    Ok(Ok(Some(r))) => Ok(r.ttl),
                    Ok(Ok(None)) => Err("keep-alive stream ended by the server".to_string()),
                    Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
                    Err(_) => Err(format!("timeout: no keep-alive answer in {limit:?}")),
                }
            }
            let limit = Duration::from_secs(ttl as u64);
            match once(&tx, &mut stream, id, false, limit).await {
                Ok(t) if t > 0 => {}
                Ok(_) => {
                    c.expired.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => return fail(&c, e),
            }
            c.ramped.fetch_add(1, Ordering::Relaxed);
            // Spread the clients' phases over one pause.
            tokio::time::sleep(pause.mul_f64(fastrand::f64())).await;
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let r = once(&tx, &mut stream, id, true, limit).await;
                c.calls.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(t) if t > 0 => {
                        let us = t0.elapsed().as_micros() as u64;
                        let _ = hist.lock().unwrap().record(us.max(1));
                    }
                    Ok(_) => {
                        c.expired.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => return fail(&c, e),
                }
                tokio::time::sleep_until((t0 + pause).into()).await;
            }
        }));
    }
    // Ramp: wait until every client has its first keep-alive answered.
    let mut last = (0usize, Instant::now());
    let mut failure = loop {
        let r = c.ramped.load(Ordering::Relaxed);
        let done = r + c.errors.load(Ordering::Relaxed) + c.expired.load(Ordering::Relaxed);
        if done >= n {
            break None;
        }
        if let Some(f) = wd.failed() {
            break Some(format!("{f} after {r} clients started"));
        }
        if r != last.0 {
            last = (r, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            break Some(format!("timeout: ramp stalled at {r} of {n} clients"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ramp = start.elapsed();
    pt.set("ramp_s", Some(ramp.as_secs_f64()));
    // Steady window.
    let cpu0 = pid.and_then(crate::procs::cpu_seconds);
    let gen0 = crate::procs::cpu_seconds(std::process::id());
    let calls0 = c.calls.load(Ordering::Relaxed);
    let w0 = Instant::now();
    if failure.is_none() {
        while w0.elapsed() < p.window {
            if let Some(f) = wd.failed() {
                failure = Some(f);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let secs = w0.elapsed().as_secs_f64();
    let cpu = pid
        .and_then(crate::procs::cpu_seconds)
        .zip(cpu0)
        .map(|(a, b)| a - b);
    let calls = c.calls.load(Ordering::Relaxed) - calls0;
    pt.set("cpu_pct", cpu.map(|c| c / secs * 100.0));
    pt.set(
        "gen_pct",
        crate::procs::cpu_seconds(std::process::id())
            .zip(gen0)
            .map(|(a, b)| (a - b) / secs * 100.0),
    );
    pt.set(
        "cpu_10k",
        cpu.filter(|_| calls > 0)
            .map(|c| c / calls as f64 * 10_000.0),
    );
    pt.set("ka_s", Some(calls as f64 / secs));
    pt.set(
        "rss_mib",
        pid.and_then(common::rss_kib).map(|k| k as f64 / 1024.0),
    );
    if let (Some(a), Some(b)) = (pid.and_then(common::rss_kib), before) {
        pt.set("rss_kb", Some((a as f64 - b as f64) / n as f64 * 1.024));
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    {
        let h: Histogram<u64> = hist.lock().unwrap().clone();
        pt.set("p50_ms", q_ms(&h, 0.5));
        pt.set("p99_ms", q_ms(&h, 0.99));
    }
    // Which leases the member still has.
    let granted: Vec<i64> = ids.lock().unwrap().clone();
    let alive: Option<HashSet<i64>> = LeaseClient::new(members[0].clone())
        .max_decoding_message_size(256 << 20)
        .lease_leases(LeaseLeasesRequest {})
        .await
        .ok()
        .map(|r| r.into_inner().leases.into_iter().map(|l| l.id).collect());
    let expired_seen = c.expired.load(Ordering::Relaxed);
    let expired = match &alive {
        Some(a) => granted.iter().filter(|id| !a.contains(id)).count(),
        None => expired_seen,
    };
    pt.set("expired", Some(expired as f64));
    let errors = c.errors.load(Ordering::Relaxed);
    pt.set("errors", Some(errors as f64));
    pt.set("peak_mib", pid.map(|_| wd.peak_kib() as f64 / 1024.0));
    if failure.is_none() {
        if expired > 0 {
            failure = Some(format!(
                "{expired} leases expired ({expired_seen} keep-alives answered TTL 0){}",
                first_error
                    .get()
                    .map(|e| format!("; first error: {e}"))
                    .unwrap_or_default()
            ));
        } else if errors > 0 {
            failure = Some(format!(
                "{errors} keep-alive errors; first: {}",
                first_error.get().unwrap_or_default()
            ));
        }
    }
    pt.failure = failure;
    pt
}
