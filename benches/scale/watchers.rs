//! Watchers curve: `n` watchers over `n / per_key` keys, created through a
//! pipeline of WatchCreateRequests on multiplexed Watch streams
//! (`per_stream` watch ids per stream, `streams_per_conn` streams per
//! HTTP/2 connection); then puts straight to the member, each timed from
//! its ack to every watcher's receipt.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient;
use etcd_grpc_proxy::proto::etcdserverpb::watch_client::WatchClient;
use etcd_grpc_proxy::proto::etcdserverpb::{
    watch_request, PutRequest, WatchCreateRequest, WatchRequest,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::common::{self, new_hist, q_ms, FirstError, Watchdog};
use crate::report::Point;

/// How the watchers are laid out.
pub struct Params {
    /// Watch ids per Watch stream.
    pub per_stream: usize,
    /// Watch streams per HTTP/2 connection.
    pub streams_per_conn: usize,
    /// Watchers per key.
    pub per_key: usize,
    /// Puts (to distinct keys) whose delivery is timed.
    pub puts: usize,
    /// Creation fails when no watcher was created for this long.
    pub stall: Duration,
    /// Creation fails when not done in this long.
    pub limit: Duration,
}

fn key(k: usize) -> Vec<u8> {
    format!("scale/w/{k:07}").into_bytes()
}

struct Load {
    tasks: Vec<JoinHandle<()>>,
    _senders: Vec<mpsc::Sender<WatchRequest>>,
    created: Arc<AtomicUsize>,
    canceled: Arc<AtomicUsize>,
    broken: Arc<AtomicUsize>,
    first_error: FirstError,
    receipts: mpsc::UnboundedReceiver<(u64, Instant)>,
}

impl Drop for Load {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn open(addr: &str, n: usize, keys: usize, p: &Params) -> Result<Load, String> {
    let streams = n.div_ceil(p.per_stream);
    let conns = streams.div_ceil(p.streams_per_conn);
    let channels = common::connect_n(addr, conns).await?;
    let created = Arc::new(AtomicUsize::new(0));
    let canceled = Arc::new(AtomicUsize::new(0));
    let broken = Arc::new(AtomicUsize::new(0));
    let first_error = FirstError::default();
    let (rtx, receipts) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(streams);
    let mut senders = Vec::with_capacity(streams);
    for s in 0..streams {
        let lo = s * p.per_stream;
        let hi = (lo + p.per_stream).min(n);
        let (tx, rx) = mpsc::channel(hi - lo + 1);
        // The whole pipeline of creates is queued before the call starts:
        // they go out back to back, no round trip each.
        for j in lo..hi {
            let create = WatchCreateRequest {
                key: key(j % keys),
                ..Default::default()
            };
            tx.try_send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
            })
            .expect("queue create");
        }
        senders.push(tx);
        let mut client = WatchClient::new(channels[s / p.streams_per_conn].clone())
            .max_decoding_message_size(64 << 20);
        let (created, canceled, broken, first_error, rtx) = (
            created.clone(),
            canceled.clone(),
            broken.clone(),
            first_error.clone(),
            rtx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut stream = match client.watch(ReceiverStream::new(rx)).await {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    broken.fetch_add(1, Ordering::Relaxed);
                    first_error.set(format!(
                        "open Watch stream: {:?}: {}",
                        e.code(),
                        e.message()
                    ));
                    return;
                }
            };
            loop {
                match stream.message().await {
                    Ok(Some(resp)) => {
                        let now = Instant::now();
                        if resp.created {
                            created.fetch_add(1, Ordering::Relaxed);
                        }
                        if resp.canceled {
                            canceled.fetch_add(1, Ordering::Relaxed);
                            first_error.set(format!(
                                "watch canceled: {}",
                                String::from_utf8_lossy(&resp.cancel_reason)
                            ));
                        }
                        for ev in &resp.events {
                            let seq = ev
                                .kv
                                .as_ref()
                                .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse().ok());
                            if let Some(seq) = seq {
                                let _ = rtx.send((seq, now));
                            }
                        }
                    }
                    Ok(None) => {
                        broken.fetch_add(1, Ordering::Relaxed);
                        first_error.set("Watch stream ended by the server");
                        return;
                    }
                    Err(e) => {
                        broken.fetch_add(1, Ordering::Relaxed);
                        first_error.set(format!("Watch stream: {:?}: {}", e.code(), e.message()));
                        return;
                    }
                }
            }
        }));
    }
    // The channels live on inside the clients the tasks hold.
    Ok(Load {
        tasks,
        _senders: senders,
        created,
        canceled,
        broken,
        first_error,
        receipts,
    })
}

/// Runs one point: `n` watchers through `addr`, puts to `member`.
pub async fn run(
    addr: &str,
    member: &str,
    pid: Option<u32>,
    n: usize,
    p: &Params,
    wd: &Watchdog,
) -> Point {
    let mut pt = Point::new(n as u64);
    let keys = (n / p.per_key).max(1);
    // Warm-up: one watcher through the target, so the baseline includes
    // the proxy's upstream watch machinery.
    if let Ok(mut w) = open(addr, 1, 1, p).await {
        let t = Instant::now();
        while w.created.load(Ordering::Relaxed) < 1 && t.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        w.receipts.close();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = pid.and_then(common::rss_kib);
    let cpu0 = pid.and_then(crate::procs::cpu_seconds);
    let gen0 = crate::procs::cpu_seconds(std::process::id());
    let start = Instant::now();
    let mut load = match open(addr, n, keys, p).await {
        Ok(l) => l,
        Err(e) => {
            pt.failure = Some(format!("connection error: {e}"));
            return pt;
        }
    };
    let mut last = (0usize, Instant::now());
    let failure = loop {
        let c = load.created.load(Ordering::Relaxed);
        if c >= n {
            break None;
        }
        if let Some(r) = wd.failed() {
            break Some(format!("{r} after {} watchers created", c));
        }
        let canceled = load.canceled.load(Ordering::Relaxed);
        let broken = load.broken.load(Ordering::Relaxed);
        if canceled > 0 || broken > 0 {
            break Some(format!(
                "{} created, {canceled} canceled, {broken} streams broken; first: {}",
                c,
                load.first_error.get().unwrap_or_default()
            ));
        }
        if start.elapsed() > p.limit {
            break Some(format!(
                "timeout: only {c} of {n} watchers created in {:?}",
                p.limit
            ));
        }
        if c != last.0 {
            last = (c, Instant::now());
        } else if last.1.elapsed() > p.stall {
            break Some(format!(
                "timeout: creation stalled at {c} of {n} for {:?}",
                p.stall
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let created_in = start.elapsed();
    let created = load.created.load(Ordering::Relaxed);
    let per_watcher_us = |a: Option<f64>, b: Option<f64>| {
        a.zip(b)
            .filter(|_| created > 0)
            .map(|(a, b)| (a - b) / created as f64 * 1e6)
    };
    pt.set(
        "create_cpu_us",
        per_watcher_us(pid.and_then(crate::procs::cpu_seconds), cpu0),
    );
    pt.set(
        "gen_cpu_us",
        per_watcher_us(crate::procs::cpu_seconds(std::process::id()), gen0),
    );
    pt.set("created", Some(created as f64));
    pt.set("create_s", Some(created_in.as_secs_f64()));
    pt.set(
        "create_rate",
        Some(created as f64 / created_in.as_secs_f64().max(1e-9)),
    );
    if failure.is_some() {
        pt.failure = failure;
        return pt;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = pid.and_then(common::rss_kib);
    if let (Some(a), Some(b)) = (after, before) {
        pt.set("rss_b", Some((a as f64 - b as f64) * 1024.0 / n as f64));
        pt.set("rss_mib", Some(a as f64 / 1024.0));
    }

    // Delivery: puts to distinct keys straight to the member.
    let mut kv = match common::connect(member).await {
        Ok(c) => KvClient::new(c),
        Err(e) => {
            pt.failure = Some(format!("bench: member connection: {e}"));
            return pt;
        }
    };
    let mut hist = new_hist();
    let mut missed = 0u64;
    let puts = p.puts.min(keys);
    for i in 0..puts {
        let k = i * keys / puts;
        let expected = n / keys + usize::from(k < n % keys);
        let seq = i as u64 + 1;
        if let Err(e) = kv
            .put(PutRequest {
                key: key(k),
                value: seq.to_string().into_bytes(),
                ..Default::default()
            })
            .await
        {
            pt.failure = Some(format!("bench: put to the member: {e}"));
            return pt;
        }
        let ack = Instant::now();
        let deadline = ack + Duration::from_secs(10);
        let mut got = 0usize;
        while got < expected {
            match tokio::time::timeout_at(deadline.into(), load.receipts.recv()).await {
                Ok(Some((s, at))) if s == seq => {
                    got += 1;
                    let _ =
                        hist.record((at.saturating_duration_since(ack).as_micros() as u64).max(1));
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        missed += (expected - got) as u64;
    }
    pt.set("p50_ms", q_ms(&hist, 0.5));
    pt.set("p99_ms", q_ms(&hist, 0.99));
    pt.set("missed", Some(missed as f64));
    if let Some(r) = wd.failed() {
        pt.failure = Some(r);
    } else if missed > 0 {
        pt.failure = Some(format!(
            "missed events: {missed} of {} deliveries{}",
            hist.len() + missed,
            load.first_error
                .get()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    } else if load.broken.load(Ordering::Relaxed) > 0 {
        pt.failure = load.first_error.get();
    }
    pt.set("peak_mib", pid.map(|_| wd.peak_kib() as f64 / 1024.0));
    drop(load);
    pt
}
