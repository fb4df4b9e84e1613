//! Steady client load for the high-availability test (`scripts/test-ha.sh`).
//!
//! One `etcd_client::Client` (one HTTP/2 connection, as an application has)
//! talks to a single endpoint, the virtual IP or HAProxy, and runs three
//! tasks until a stop file appears:
//!
//! * unary: a Put then a Get every `--interval-ms`, each bounded by 2 s;
//!   counts failures and the longest gap between two successful calls;
//! * watch: one watch on every key from the revision at start; when the
//!   stream ends it is re-opened from the last revision seen + 1, and every
//!   event must carry exactly the next revision (no gap, no duplicate);
//! * keep-alive: a lease (TTL 6 s) with a key attached, refreshed every
//!   second over a LeaseKeepAlive stream that is re-opened when it ends.
//!
//! It prints `READY` once all three work, then, after the stop file shows up
//! and the watch caught up with the last Put, one line
//! `RESULT key=value ...` that the shell harness parses.
//!
//! Usage: `ha_load ENDPOINT STOP_FILE [INTERVAL_MS]`

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::{Client, ConnectOptions, PutOptions, WatchOptions};
use tokio::time::{sleep, timeout};

/// Every call gets this long before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// The lease's TTL: keep-alive continuity means it never runs out.
const LEASE_TTL: i64 = 6;
/// A safety net: the driver exits on its own after this long.
const MAX_RUN: Duration = Duration::from_secs(600);

/// Milliseconds since the Unix epoch, to line events up with the harness's clock.
fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Longest interval between successive successes of one activity.
#[derive(Default)]
struct Gaps {
    last: Option<(Instant, u128)>,
    max: Duration,
    /// Epoch ms at which the longest gap ended (the first success after it).
    max_end_epoch_ms: u128,
}

impl Gaps {
    fn success(&mut self) {
        let now = (Instant::now(), epoch_ms());
        if let Some((prev, _)) = self.last {
            let gap = now.0 - prev;
            if gap > self.max {
                self.max = gap;
                self.max_end_epoch_ms = now.1;
            }
        }
        self.last = Some(now);
    }
}

/// Counters shared by the tasks and read for the final report.
#[derive(Default)]
struct Stats {
    calls_ok: AtomicU64,
    calls_failed: AtomicU64,
    unary: Mutex<Gaps>,
    last_put_rev: AtomicI64,
    watch_events: AtomicU64,
    watch_gaps: AtomicU64,
    watch_dups: AtomicU64,
    watch_restarts: AtomicU64,
    watch_next_rev: AtomicI64,
    watch: Mutex<Gaps>,
    ka_ok: AtomicU64,
    ka_restarts: AtomicU64,
    ka_lost: AtomicBool,
    ka: Mutex<Gaps>,
    stop: AtomicBool,
}

/// Logs a failure with a timestamp on stderr (the harness keeps the log).
fn log_err(what: &str, e: impl std::fmt::Display) {
    eprintln!("{} {what}: {e}", epoch_ms());
}

/// Put then Get, forever, counting failures and the longest gap between successes.
async fn unary(mut c: Client, s: Arc<Stats>, interval: Duration, prefix: String) {
    let mut n: u64 = 0;
    while !s.stop.load(SeqCst) {
        n += 1;
        let key = format!("{prefix}k{}", n % 16);
        let res = if n.is_multiple_of(2) {
            timeout(CALL_TIMEOUT, c.put(key, n.to_string(), None))
                .await
                .map(|r| {
                    r.map(|p| {
                        if let Some(h) = p.header() {
                            s.last_put_rev.fetch_max(h.revision(), SeqCst);
                        }
                    })
                })
        } else {
            timeout(CALL_TIMEOUT, c.get(key, None))
                .await
                .map(|r| r.map(|_| ()))
        };
        match res {
            Ok(Ok(())) => {
                s.calls_ok.fetch_add(1, SeqCst);
                s.unary.lock().unwrap().success();
            }
            Ok(Err(e)) => {
                s.calls_failed.fetch_add(1, SeqCst);
                log_err("call", e);
            }
            Err(_) => {
                s.calls_failed.fetch_add(1, SeqCst);
                log_err("call", "timed out");
            }
        }
        sleep(interval).await;
    }
}

/// One watch on all keys, re-opened from the next expected revision whenever it ends.
async fn watch(mut c: Client, s: Arc<Stats>) {
    while !s.stop.load(SeqCst) {
        let from = s.watch_next_rev.load(SeqCst);
        let opts = WatchOptions::new()
            .with_all_keys()
            .with_start_revision(from);
        let mut stream = match timeout(CALL_TIMEOUT, c.watch("", Some(opts))).await {
            Ok(Ok(st)) => st,
            Ok(Err(e)) => {
                log_err("watch open", e);
                s.watch_restarts.fetch_add(1, SeqCst);
                sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => {
                log_err("watch open", "timed out");
                s.watch_restarts.fetch_add(1, SeqCst);
                continue;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    if resp.canceled() {
                        log_err("watch", format!("canceled: {}", resp.cancel_reason()));
                        break;
                    }
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let rev = kv.mod_revision();
                        let next = s.watch_next_rev.load(SeqCst);
                        if rev < next {
                            s.watch_dups.fetch_add(1, SeqCst);
                            log_err(
                                "watch",
                                format!("duplicate revision {rev} (expected {next})"),
                            );
                            continue;
                        }
                        if rev > next {
                            s.watch_gaps.fetch_add(1, SeqCst);
                            log_err("watch", format!("gap: revision {rev}, expected {next}"));
                        }
                        s.watch_next_rev.store(rev + 1, SeqCst);
                        s.watch_events.fetch_add(1, SeqCst);
                        s.watch.lock().unwrap().success();
                    }
                }
                Ok(None) => {
                    log_err("watch", "stream ended");
                    break;
                }
                Err(e) => {
                    log_err("watch", e);
                    break;
                }
            }
        }
        s.watch_restarts.fetch_add(1, SeqCst);
    }
}

/// Refreshes `lease` every second, re-opening the keep-alive stream when it fails.
async fn keep_alive(mut c: Client, s: Arc<Stats>, lease: i64) {
    while !s.stop.load(SeqCst) {
        let (mut keeper, mut stream) = match timeout(CALL_TIMEOUT, c.lease_keep_alive(lease)).await
        {
            Ok(Ok(p)) => p,
            other => {
                log_err(
                    "keep-alive open",
                    format!("{other:?}").chars().take(200).collect::<String>(),
                );
                s.ka_restarts.fetch_add(1, SeqCst);
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while !s.stop.load(SeqCst) {
            if let Err(e) = keeper.keep_alive().await {
                log_err("keep-alive send", e);
                break;
            }
            match timeout(CALL_TIMEOUT, stream.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    s.ka_ok.fetch_add(1, SeqCst);
                    s.ka.lock().unwrap().success();
                }
                Ok(Ok(Some(_))) => {
                    log_err("keep-alive", "lease expired (TTL 0)");
                    s.ka_lost.store(true, SeqCst);
                    return;
                }
                other => {
                    log_err(
                        "keep-alive",
                        format!("{other:?}").chars().take(200).collect::<String>(),
                    );
                    break;
                }
            }
            sleep(Duration::from_secs(1)).await;
        }
        if !s.stop.load(SeqCst) {
            s.ka_restarts.fetch_add(1, SeqCst);
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: ha_load ENDPOINT STOP_FILE [INTERVAL_MS]");
        std::process::exit(2);
    }
    let (endpoint, stop_file) = (args[1].clone(), args[2].clone());
    let interval = Duration::from_millis(args.get(3).map_or(20, |a| a.parse().unwrap()));
    let started = Instant::now();

    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    let mut c = Client::connect([endpoint.as_str()], Some(opts))
        .await
        .expect("connect");
    let prefix = format!("/ha/{}/", epoch_ms());
    let s = Arc::new(Stats::default());

    // The lease and its key, then the watch's starting revision.
    let lease = c
        .lease_grant(LEASE_TTL, None)
        .await
        .expect("lease grant")
        .id();
    let lease_key = format!("{prefix}lease");
    let put = c
        .put(
            lease_key.clone(),
            "held",
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .expect("put lease key");
    s.watch_next_rev
        .store(put.header().unwrap().revision() + 1, SeqCst);

    let tasks = [
        tokio::spawn(unary(c.clone(), s.clone(), interval, prefix.clone())),
        tokio::spawn(watch(c.clone(), s.clone())),
        tokio::spawn(keep_alive(c.clone(), s.clone(), lease)),
    ];

    // READY once a Put went through the watch and a keep-alive was answered.
    while s.watch_events.load(SeqCst) == 0 || s.ka_ok.load(SeqCst) == 0 {
        sleep(Duration::from_millis(20)).await;
    }
    println!("READY");

    while !std::path::Path::new(&stop_file).exists() && started.elapsed() < MAX_RUN {
        sleep(Duration::from_millis(50)).await;
    }
    s.stop.store(true, SeqCst);
    let [u, w, k] = tasks;
    let _ = u.await;
    let _ = k.await;

    // Let the watch catch up with the last Put (it may be reconnecting).
    let caught_up_by = Instant::now() + Duration::from_secs(10);
    let last_put = s.last_put_rev.load(SeqCst);
    while s.watch_next_rev.load(SeqCst) <= last_put && Instant::now() < caught_up_by {
        sleep(Duration::from_millis(50)).await;
    }
    w.abort();

    // Continuity: the lease still has time left and its key is still there.
    let ttl = timeout(CALL_TIMEOUT, c.lease_time_to_live(lease, None))
        .await
        .ok()
        .and_then(|r| r.ok())
        .map_or(-1, |r| r.ttl());
    let key_kept = timeout(CALL_TIMEOUT, c.get(lease_key, None))
        .await
        .ok()
        .and_then(|r| r.ok())
        .is_some_and(|r| r.count() == 1);
    let _ = c.lease_revoke(lease).await;

    let (ug, wg, kg) = (
        s.unary.lock().unwrap(),
        s.watch.lock().unwrap(),
        s.ka.lock().unwrap(),
    );
    println!(
        "RESULT calls_ok={} calls_failed={} max_gap_ms={} max_gap_end_ms={} \
         watch_events={} watch_gaps={} watch_dups={} watch_restarts={} watch_caught_up={} watch_max_gap_ms={} \
         ka_ok={} ka_restarts={} ka_max_gap_ms={} lease_lost={} lease_ttl_left={} lease_key_kept={}",
        s.calls_ok.load(SeqCst),
        s.calls_failed.load(SeqCst),
        ug.max.as_millis(),
        ug.max_end_epoch_ms,
        s.watch_events.load(SeqCst),
        s.watch_gaps.load(SeqCst),
        s.watch_dups.load(SeqCst),
        s.watch_restarts.load(SeqCst),
        s.watch_next_rev.load(SeqCst) > last_put,
        wg.max.as_millis(),
        s.ka_ok.load(SeqCst),
        s.ka_restarts.load(SeqCst),
        kg.max.as_millis(),
        s.ka_lost.load(SeqCst),
        ttl,
        key_kept,
    );
}
