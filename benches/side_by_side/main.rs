//! Side-by-side benchmark: direct etcd, etcd's own `grpc-proxy`, and this
//! proxy (the release binary), with two L4 (TCP-forwarding) floors, HAProxy
//! `mode tcp` and `etcd gateway`, on one local 3-member etcd cluster, driven
//! by the project's own generated gRPC clients with the same load,
//! alternating targets round by round so machine drift hits all equally.
//!
//! Run with `make bench` (builds the release binary first). Knobs (env):
//! `BENCH_FULL=1` (10k watchers / 10k lease clients), `BENCH_SECS` (measured
//! seconds per round, 3), `BENCH_WARMUP_MS` (300), `BENCH_ROUNDS` (3),
//! `BENCH_CONNS` (4 HTTP/2 connections), `BENCH_INFLIGHT` (64 calls in flight
//! per connection), `BENCH_WATCHERS`, `BENCH_WATCH_PUTS` (20 per round),
//! `BENCH_LEASES`, `BENCH_LEASE_TTL` (3 s, 10 s full), `BENCH_KEEPALIVE_MS`
//! (TTL/3), `BENCH_PICKUP_LIMIT_SECS`
//! (20), `BENCH_FAILOVER_SECS` (8), `BENCH_SKIP` (comma list of `unary`,
//! `watch`, `lease`, `membership`, `failover`, `kubernetes`), `BENCH_K8S_APISERVERS` (3), `BENCH_PROXY_BIN`,
//! `BENCH_PROXY_BIN_B` (a second build of ours, measured as `ours-b` in the
//! same run, for A/B comparisons), `BENCH_OUT` (bench/results), `BENCH_TARGETS` (comma list of `direct`,
//! `etcd-proxy`, `ours`, `haproxy`, `etcd-gateway`, `ours-b`; all by default;
//! `HAPROXY_BIN` overrides the haproxy found in PATH or /usr/sbin), `BENCH_KEEP=1` (keep the member and
//! proxy logs), `BENCH_OURS_RUST_LOG` (RUST_LOG for our proxy; unset by default).

mod lease;
mod load;
mod procs;
mod report;
mod scenario;
mod target;
mod watch;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use procs::{Cluster, L4Kind, ProxyKind, ProxyProc};
use report::{Cell, Report, WatchRow};
use target::Target;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Everything the environment can tune.
pub struct Settings {
    /// BENCH_FULL=1.
    pub full: bool,
    /// Measured window per round.
    pub window: Duration,
    /// Unmeasured start of each round.
    pub warmup: Duration,
    /// Rounds per target and workload.
    pub rounds: usize,
    /// HTTP/2 connections per target for unary load.
    pub conns: usize,
    /// Calls in flight per connection.
    pub inflight: usize,
    /// Watchers on the one key, per target.
    pub watchers: usize,
    /// Puts per watch round.
    pub watch_puts: usize,
    /// Lease clients per target.
    pub leases: usize,
    /// TTL of the benchmark's leases (s): long enough to grant them all first.
    pub lease_ttl: i64,
    /// Pause between one client's keep-alives.
    pub keepalive_every: Duration,
    /// Longest wait for a new member's first Range.
    pub pickup_limit: Duration,
    /// Reading time after the kill.
    pub failover_after: Duration,
    skip: Vec<String>,
}

impl Settings {
    fn from_env() -> Settings {
        let full = std::env::var("BENCH_FULL").is_ok_and(|v| v == "1");
        let scale = if full { 10_000 } else { 1_000 };
        let lease_ttl = env_num("BENCH_LEASE_TTL", if full { 10 } else { 3 }) as i64;
        Settings {
            full,
            window: Duration::from_millis(env_num("BENCH_SECS", 3) * 1000),
            warmup: Duration::from_millis(env_num("BENCH_WARMUP_MS", 300)),
            rounds: env_num("BENCH_ROUNDS", 3) as usize,
            conns: env_num("BENCH_CONNS", 4) as usize,
            inflight: env_num("BENCH_INFLIGHT", 64) as usize,
            watchers: env_num("BENCH_WATCHERS", scale) as usize,
            watch_puts: env_num("BENCH_WATCH_PUTS", 20) as usize,
            leases: env_num("BENCH_LEASES", scale) as usize,
            lease_ttl,
            keepalive_every: Duration::from_millis(env_num(
                "BENCH_KEEPALIVE_MS",
                lease_ttl as u64 * 1000 / 3,
            )),
            pickup_limit: Duration::from_secs(env_num("BENCH_PICKUP_LIMIT_SECS", 20)),
            failover_after: Duration::from_secs(env_num("BENCH_FAILOVER_SECS", 8)),
            skip: std::env::var("BENCH_SKIP")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
        }
    }

    fn runs(&self, phase: &str) -> bool {
        !self.skip.iter().any(|s| s == phase)
    }
}

/// Our proxy's membership refresh interval (its `--endpoints-auto-sync-interval` default).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, where a multi-minute benchmark has no place.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("side_by_side: benchmark skipped (run it with `make bench` or `cargo bench --bench side_by_side`)");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let settings = Settings::from_env();
    let ours_bin = std::env::var("BENCH_PROXY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/release/etcd-grpc-proxy"));
    assert!(
        ours_bin.is_file(),
        "{} missing: run `cargo build --release` first (make bench does)",
        ours_bin.display()
    );
    let out_dir = std::env::var("BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("bench/results"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();

    eprintln!("== starting a 3-member etcd cluster");
    let mut cluster = Cluster::start(3);
    let endpoints = cluster.endpoints();
    let member_addrs: Vec<String> = cluster.members.iter().map(|m| m.addr.clone()).collect();
    eprintln!("== starting etcd grpc-proxy and {}", ours_bin.display());
    let etcd_proxy = ProxyProc::start(ProxyKind::Etcd, &endpoints, cluster.dir.path(), &ours_bin);
    let ours = ProxyProc::start(ProxyKind::Ours, &endpoints, cluster.dir.path(), &ours_bin);
    let mut targets = vec![
        Target {
            name: "direct",
            addrs: member_addrs.clone(),
            pid: None,
            idle_rss_kib: None,
        },
        Target {
            name: "etcd-proxy",
            addrs: vec![etcd_proxy.addr.clone()],
            pid: Some(etcd_proxy.proc.pid),
            idle_rss_kib: None,
        },
        Target {
            name: "ours",
            addrs: vec![ours.addr.clone()],
            pid: Some(ours.proc.pid),
            idle_rss_kib: None,
        },
    ];
    // BENCH_PROXY_BIN_B: a second build of ours, measured in the same run
    // (A/B comparisons on a machine whose speed drifts between runs).
    let ours_b = std::env::var("BENCH_PROXY_BIN_B").ok().map(|bin| {
        ProxyProc::start_logged(
            ProxyKind::Ours,
            &endpoints,
            cluster.dir.path(),
            Path::new(&bin),
            "ours-b",
        )
    });
    if let Some(b) = &ours_b {
        targets.push(Target {
            name: "ours-b",
            addrs: vec![b.addr.clone()],
            pid: Some(b.proc.pid),
            idle_rss_kib: None,
        });
    }
    let only = std::env::var("BENCH_TARGETS").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|n| n.trim() == name))
    };
    // L4 floors, started only when selected (so a machine without haproxy can leave it out).
    let mut l4 = Vec::new();
    for kind in [L4Kind::HaProxy, L4Kind::Gateway] {
        if wanted(kind.name()) {
            eprintln!("== starting {}", kind.name());
            let p = ProxyProc::start_l4(kind, &member_addrs, cluster.dir.path());
            targets.push(Target {
                name: kind.name(),
                addrs: vec![p.addr.clone()],
                pid: Some(p.proc.pid),
                idle_rss_kib: None,
            });
            l4.push(p);
        }
    }
    targets.retain(|t| wanted(t.name));
    for t in &mut targets {
        rt.block_on(t.wait_ready(Duration::from_secs(30)));
        t.idle_rss_kib = t.pid.and_then(|p| procs::status_kib(p, "VmRSS"));
    }
    let writer = rt.block_on(target::connect_one(&member_addrs[0]));
    rt.block_on(load::preload(writer.clone()));

    let mut report = Report::new(&settings, &targets);

    if settings.runs("unary") {
        let channels: Vec<_> = targets
            .iter()
            .map(|t| rt.block_on(t.connect(settings.conns)))
            .collect();
        for w in load::Workload::ALL {
            eprintln!("== {}", w.label());
            let mut cells: Vec<Cell> = targets
                .iter()
                .map(|t| Cell::new(w.label(), t.name))
                .collect();
            reset_peaks(&targets);
            for round in 0..settings.rounds {
                for (i, t) in targets.iter().enumerate() {
                    let cpu0 = t.cpu();
                    let client0 = procs::cpu_seconds(std::process::id());
                    let r = rt.block_on(load::run_round(
                        &channels[i],
                        settings.inflight,
                        w,
                        settings.warmup,
                        settings.window,
                    ));
                    let cpu = t.cpu().zip(cpu0).map(|(a, b)| a - b);
                    let client_cpu = procs::cpu_seconds(std::process::id())
                        .zip(client0)
                        .map(|(a, b)| a - b);
                    print_round(round, t.name, "ops/s", &r, settings.window);
                    cells[i].add(&r, settings.window, cpu, client_cpu);
                }
            }
            record_peaks(&mut cells, &targets);
            report.cells.extend(cells);
        }
    }

    if settings.runs("watch") {
        eprintln!(
            "== watch fan-out: {} watchers per target",
            settings.watchers
        );
        let mut rows = Vec::new();
        let mut sets = Vec::new();
        reset_peaks(&targets);
        for t in &targets {
            let before = t.pid.and_then(|p| procs::status_kib(p, "VmRSS"));
            let set = rt.block_on(watch::WatchSet::open(
                t,
                format!("bench/watch/{}", t.name).into_bytes(),
                settings.watchers,
            ));
            let after = t.pid.and_then(|p| procs::status_kib(p, "VmRSS"));
            let mut row = WatchRow::new(t.name, settings.watchers);
            row.rss_per_watcher_bytes = after
                .zip(before)
                .map(|(a, b)| (a as f64 - b as f64) * 1024.0 / settings.watchers as f64);
            rows.push(row);
            sets.push(set);
        }
        for round in 0..settings.rounds {
            for (i, t) in targets.iter().enumerate() {
                let cpu0 = t.cpu();
                let (hist, missed) =
                    rt.block_on(sets[i].round(writer.clone(), settings.watch_puts));
                let cpu = t.cpu().zip(cpu0).map(|(a, b)| a - b);
                eprintln!(
                    "   round {} {:<12} delivery p50 {:.2} ms p99 {:.2} ms missed {missed}",
                    round + 1,
                    t.name,
                    hist.value_at_quantile(0.5) as f64 / 1000.0,
                    hist.value_at_quantile(0.99) as f64 / 1000.0
                );
                rows[i].add(&hist, missed, cpu);
            }
        }
        for (i, t) in targets.iter().enumerate() {
            rows[i].peak_rss_kib = t.pid.and_then(|p| procs::status_kib(p, "VmHWM"));
        }
        drop(sets);
        report.watch = rows;
    }

    if settings.runs("lease") {
        eprintln!(
            "== lease keep-alive: {} clients per target, one keep-alive each per {:?}",
            settings.leases, settings.keepalive_every
        );
        let conns = (settings.leases / 100).max(settings.conns);
        let channels: Vec<_> = targets
            .iter()
            .map(|t| rt.block_on(t.connect(conns)))
            .collect();
        let label = "Lease keep-alive";
        let mut cells: Vec<Cell> = targets.iter().map(|t| Cell::new(label, t.name)).collect();
        reset_peaks(&targets);
        for round in 0..settings.rounds {
            for (i, t) in targets.iter().enumerate() {
                // Fresh short leases each round (granting is not measured).
                let leases = rt.block_on(lease::grant(
                    &channels[i],
                    settings.leases,
                    settings.lease_ttl,
                ));
                let cpu0 = t.cpu();
                let r = rt.block_on(lease::run_round(
                    &channels[i],
                    &leases,
                    settings.keepalive_every,
                    Duration::from_secs(settings.lease_ttl as u64),
                    settings.warmup.max(settings.keepalive_every),
                    settings.window,
                ));
                let cpu = t.cpu().zip(cpu0).map(|(a, b)| a - b);
                print_round(round, t.name, "keep-alives/s", &r, settings.window);
                cells[i].add(&r, settings.window, cpu, None);
            }
        }
        record_peaks(&mut cells, &targets);
        report.cells.extend(cells);
    }

    if settings.runs("membership") {
        // Static L4 forwarders never learn of a new member: not measured here.
        for t in targets
            .iter()
            .filter(|t| t.pid.is_some() && !t.is_static_l4())
        {
            eprintln!("== membership pickup through {}", t.name);
            let channels = rt.block_on(t.connect(2));
            let p = scenario::membership_pickup(
                &rt,
                &mut cluster,
                t.name,
                &channels,
                settings.pickup_limit,
            );
            eprintln!(
                "   first Range on the new member {:?} after it started",
                p.after_start
            );
            report.pickups.push(p);
        }
    }

    if settings.runs("failover") {
        // A static L4 list keeps pinned connections on the dead member: not measured here.
        for t in targets
            .iter()
            .filter(|t| t.pid.is_some() && !t.is_static_l4())
        {
            eprintln!("== failover through {}", t.name);
            let channels = rt.block_on(t.connect(2));
            let f = scenario::failover(
                &rt,
                &mut cluster,
                t.name,
                &channels,
                settings.failover_after,
            );
            eprintln!(
                "   killed {}: {} failed reads, recovered after {:?}",
                f.victim, f.failed_reads, f.recovery
            );
            report.failovers.push(f);
        }
    }

    if settings.runs("kubernetes") {
        eprintln!("== Kubernetes-shaped traffic (tests/kubernetes/cmd/k8sbench)");
        report.kubernetes =
            kubernetes_workload(&root, &ours_bin, settings.window * settings.rounds as u32);
    }

    report.total = started.elapsed();
    if std::env::var("BENCH_KEEP").is_ok_and(|v| v == "1") {
        let kept =
            std::mem::replace(&mut cluster.dir, tempfile::tempdir().expect("temp dir")).keep();
        eprintln!("kept data dirs and logs in {}", kept.display());
    }
    let md = report.markdown();
    println!("{md}");
    report.write(&out_dir, &md);
    drop(l4);
    drop(ours);
    drop(etcd_proxy);
    drop(cluster);
}

/// Runs the Go Kubernetes workload against its own etcd 3.6 cluster (etcd's
/// 3.6 grpc-proxy, ours, direct) and returns its markdown table; `None`
/// (said on stderr) when Go or the etcd build is missing.
fn kubernetes_workload(root: &Path, ours_bin: &Path, measured: Duration) -> Option<String> {
    let bin = std::process::Command::new("bash")
        .arg(root.join("scripts/etcd-bin.sh"))
        .arg("3.6")
        .output()
        .ok()?;
    if !bin.status.success() {
        eprintln!(
            "   skipped: scripts/etcd-bin.sh 3.6 failed: {}",
            String::from_utf8_lossy(&bin.stderr)
        );
        return None;
    }
    let etcd = PathBuf::from(String::from_utf8_lossy(&bin.stdout).trim()).join("etcd");
    let apiservers = std::env::var("BENCH_K8S_APISERVERS").unwrap_or_else(|_| "3".into());
    let out = std::process::Command::new("go")
        .current_dir(root.join("tests/kubernetes"))
        .env("GOCACHE", root.join("target/go/cache"))
        .env("GOMODCACHE", root.join("target/go/mod"))
        .env("GOFLAGS", "-modcacherw -buildvcs=false")
        .args(["run", "./cmd/k8sbench", "-etcd"])
        .arg(&etcd)
        .arg("-proxy")
        .arg(ours_bin)
        .args([
            "-apiservers",
            &apiservers,
            "-seconds",
            &measured.as_secs().max(1).to_string(),
        ])
        .stderr(std::process::Stdio::inherit())
        .output();
    match out {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => {
            eprintln!("   k8sbench failed: {}", o.status);
            None
        }
        Err(e) => {
            eprintln!("   k8sbench could not run (`go` needed): {e}");
            None
        }
    }
}

/// One round's progress line on stderr.
fn print_round(round: usize, target: &str, unit: &str, r: &load::Round, window: Duration) {
    eprintln!(
        "   round {} {:<12} {:>8.0} {unit}  p99 {:>7.2} ms  errors {}",
        round + 1,
        target,
        r.ops as f64 / window.as_secs_f64(),
        r.hist.value_at_quantile(0.99) as f64 / 1000.0,
        r.errors
    );
}

/// Each proxy's peak RSS since the last [`reset_peaks`], into its cell.
fn record_peaks(cells: &mut [Cell], targets: &[Target]) {
    for (cell, t) in cells.iter_mut().zip(targets) {
        cell.peak_rss_kib = t.pid.and_then(|p| procs::status_kib(p, "VmHWM"));
    }
}

fn reset_peaks(targets: &[Target]) {
    for p in targets.iter().filter_map(|t| t.pid) {
        procs::reset_peak_rss(p);
    }
}
