//! Scale benchmark: curves of this proxy (the release binary) side by side
//! with etcd's own `grpc-proxy`, each pushed until it fails (or the last
//! point): watchers, idle client connections, lease keep-alive clients and
//! CPU per call by concurrency. Every point gets a fresh one-member etcd
//! cluster and a fresh proxy, so RSS deltas are clean; a watchdog kills a
//! proxy past the RSS cap and records it as what failed.
//!
//! Run with `make bench-scale` (or `cargo bench --bench scale` after
//! `cargo build --release`). Knobs (env): `SCALE_WATCHERS`
//! ("1000,10000,100000,1000000"), `SCALE_CONNS` ("1000,10000,100000"),
//! `SCALE_LEASES` ("10000,100000"), `SCALE_CLIENTS` ("4,64,1024,10000"),
//! `SCALE_TARGETS` ("ours,etcd-proxy"; direct etcd is added as a reference
//! to the watchers and CPU curves unless `SCALE_DIRECT=0`), `SCALE_SKIP`
//! (comma list of `watchers`, `connections`, `keepalive`, `cpu`),
//! `SCALE_DIRECT_WATCHERS_MAX` (100000: direct etcd is not run above it),
//! `SCALE_RSS_CAP_GIB` (12, per proxy), `SCALE_GEN_RSS_CAP_GIB` (8, the load
//! generator), `SCALE_WATCH_PER_STREAM` (1000 watch ids per Watch stream),
//! `SCALE_WATCH_STREAMS_PER_CONN` (10), `SCALE_WATCHERS_PER_KEY` (100),
//! `SCALE_WATCH_PUTS` (20), `SCALE_LEASE_TTL` (30 s), `SCALE_LEASE_WINDOW_SECS`
//! (35), `SCALE_LEASE_STREAMS_PER_CONN` (1000), `SCALE_CPU_SECS` (5),
//! `SCALE_SERIALIZABLE=1` (serializable Gets, which both proxies may answer
//! from their caches; linearizable by default), `SCALE_CONN_HOLD_SECS` (5),
//! `SCALE_TMPDIR` (/dev/shm: where the etcd member keeps its data),
//! `BENCH_PROXY_BIN`, `SCALE_OUT` (bench/results/scale).

#[allow(dead_code)]
#[path = "../side_by_side/procs.rs"]
mod procs;

mod common;
mod conns;
mod cpu;
mod keepalive;
mod report;
mod watchers;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Kind, Watchdog};
use etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient;
use etcd_grpc_proxy::proto::etcdserverpb::PutRequest;
use procs::{Cluster, ProxyKind, ProxyProc};
use report::{m, Curve, Metric, Point, Series};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|v| v.trim().replace('_', "").parse().ok())
        .collect()
}

struct Settings {
    watchers: Vec<u64>,
    conns: Vec<u64>,
    leases: Vec<u64>,
    clients: Vec<u64>,
    targets: Vec<Kind>,
    direct: bool,
    skip: Vec<String>,
    direct_watchers_max: u64,
    rss_cap_kib: u64,
    gen_rss_cap_kib: u64,
    watch: watchers::Params,
    conn: conns::Params,
    lease: keepalive::Params,
    cpu: cpu::Params,
    ours_bin: PathBuf,
    out_dir: PathBuf,
    ours_args: Vec<String>,
}

impl Settings {
    fn from_env(root: &Path) -> Settings {
        let targets = std::env::var("SCALE_TARGETS")
            .unwrap_or_else(|_| "ours,etcd-proxy".to_string())
            .split(',')
            .filter_map(|t| match t.trim() {
                "ours" => Some(Kind::Ours),
                "etcd-proxy" => Some(Kind::EtcdProxy),
                "direct" => Some(Kind::Direct),
                "" => None,
                other => panic!("SCALE_TARGETS: unknown target {other}"),
            })
            .collect();
        let rss_cap_kib = env_num("SCALE_RSS_CAP_GIB", 12) << 20;
        let lease_ttl = env_num("SCALE_LEASE_TTL", 30) as i64;
        Settings {
            watchers: env_list("SCALE_WATCHERS", "1000,10000,100000,1000000"),
            conns: env_list("SCALE_CONNS", "1000,10000,100000"),
            leases: env_list("SCALE_LEASES", "10000,100000"),
            clients: env_list("SCALE_CLIENTS", "4,64,1024,10000"),
            targets,
            direct: std::env::var("SCALE_DIRECT").map_or(true, |v| v != "0"),
            skip: std::env::var("SCALE_SKIP")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
            direct_watchers_max: env_num("SCALE_DIRECT_WATCHERS_MAX", 100_000),
            rss_cap_kib,
            gen_rss_cap_kib: env_num("SCALE_GEN_RSS_CAP_GIB", 8) << 20,
            watch: watchers::Params {
                per_stream: env_num("SCALE_WATCH_PER_STREAM", 1000) as usize,
                streams_per_conn: env_num("SCALE_WATCH_STREAMS_PER_CONN", 10) as usize,
                per_key: env_num("SCALE_WATCHERS_PER_KEY", 100) as usize,
                puts: env_num("SCALE_WATCH_PUTS", 20) as usize,
                stall: Duration::from_secs(30),
                limit: Duration::from_secs(env_num("SCALE_WATCH_CREATE_LIMIT_SECS", 300)),
            },
            conn: conns::Params {
                parallel: 256,
                per_source: 20_000,
                hold: Duration::from_secs(env_num("SCALE_CONN_HOLD_SECS", 5)),
            },
            lease: keepalive::Params {
                ttl: lease_ttl,
                window: Duration::from_secs(env_num("SCALE_LEASE_WINDOW_SECS", 35)),
                per_conn: env_num("SCALE_LEASE_STREAMS_PER_CONN", 1000) as usize,
                ramp_parallel: 512,
            },
            cpu: cpu::Params {
                warmup: Duration::from_secs(1),
                window: Duration::from_secs(env_num("SCALE_CPU_SECS", 5)),
                serializable: std::env::var("SCALE_SERIALIZABLE").is_ok_and(|v| v == "1"),
                max_conns: 100,
            },
            ours_bin: std::env::var("BENCH_PROXY_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join("target/release/etcd-grpc-proxy")),
            out_dir: std::env::var("SCALE_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join("bench/results/scale")),
            // Ours' own guards, raised so the curves find the process's
            // limits rather than the configured ones.
            ours_args: vec![
                "--max-connections=2000000".to_string(),
                "--max-watchers-per-stream=1000000".to_string(),
                format!("--memory-budget-bytes={}", rss_cap_kib << 10),
            ],
        }
    }

    fn runs(&self, curve: &str) -> bool {
        !self.skip.iter().any(|s| s == curve)
    }
}

/// Raises RLIMIT_NOFILE (children inherit it) to min(fs.nr_open, 2^20);
/// where the hard limit cannot be raised (no CAP_SYS_RESOURCE), the soft
/// limit goes up to the hard one. Says what it got.
fn raise_nofile() -> String {
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20);
    let want = nr_open.min(1 << 20);
    let mut got = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        let lim = libc::rlimit {
            rlim_cur: want as libc::rlim_t,
            rlim_max: want as libc::rlim_t,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            return format!("RLIMIT_NOFILE raised to {want}");
        }
        let err = std::io::Error::last_os_error();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut got);
        got.rlim_cur = got.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &got);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut got);
        format!(
            "RLIMIT_NOFILE {} (raising it to {want} failed: {err}, i.e. no CAP_SYS_RESOURCE here; \
             the soft limit was raised to the hard one)",
            got.rlim_cur
        )
    }
}

/// One point's processes: a fresh one-member cluster and, unless direct,
/// a fresh proxy.
struct Run {
    addr: String,
    member: String,
    pid: Option<u32>,
    _proxy: Option<ProxyProc>,
    _cluster: Cluster,
}

impl Run {
    fn start(rt: &tokio::runtime::Runtime, kind: Kind, s: &Settings) -> Result<Run, String> {
        let cluster = Cluster::start(1);
        let member = cluster.members[0].addr.clone();
        let proxy = match kind {
            Kind::Direct => None,
            Kind::EtcdProxy => Some(ProxyProc::start(
                ProxyKind::Etcd,
                &member,
                cluster.dir.path(),
                &s.ours_bin,
            )),
            Kind::Ours => Some(ProxyProc::start_with_args(
                ProxyKind::Ours,
                &member,
                cluster.dir.path(),
                &s.ours_bin,
                "ours",
                &s.ours_args,
            )),
        };
        let addr = proxy.as_ref().map_or(member.clone(), |p| p.addr.clone());
        rt.block_on(procs::wait_ready(&addr, Duration::from_secs(30)))?;
        Ok(Run {
            addr,
            member,
            pid: proxy.as_ref().map(|p| p.proc.pid),
            _proxy: proxy,
            _cluster: cluster,
        })
    }
}

/// Runs a curve: points in ascending order, every target at each point,
/// a target's later points skipped once one has failed.
#[allow(clippy::too_many_arguments)]
fn run_curve(
    rt: &tokio::runtime::Runtime,
    s: &Settings,
    file: &'static str,
    title: String,
    x_label: &'static str,
    metrics: Vec<Metric>,
    xs: &[u64],
    targets: &[Kind],
    skip: impl Fn(Kind, u64) -> Option<String>,
    mut point: impl FnMut(&Run, Kind, u64, &Watchdog) -> Point,
) -> Curve {
    let mut series: Vec<Series> = targets.iter().map(|k| Series::new(k.name())).collect();
    let mut xs = xs.to_vec();
    xs.sort_unstable();
    for &x in &xs {
        for (i, &kind) in targets.iter().enumerate() {
            if series[i].has_failed() {
                series[i]
                    .skipped
                    .push((x, "a smaller point failed".to_string()));
                continue;
            }
            if let Some(why) = skip(kind, x) {
                series[i].skipped.push((x, why));
                continue;
            }
            eprintln!("== {file}: {} at {}", kind.name(), report::fmt_count(x));
            let t = Instant::now();
            let pt = match Run::start(rt, kind, s) {
                Ok(run) => {
                    let wd = Watchdog::start(run.pid, s.rss_cap_kib, s.gen_rss_cap_kib);
                    let pt = point(&run, kind, x, &wd);
                    drop(wd);
                    drop(run);
                    pt
                }
                Err(e) => {
                    let mut p = Point::new(x);
                    p.failure = Some(format!("did not start: {e}"));
                    p
                }
            };
            eprintln!(
                "   {:?} {} in {:.0?}",
                pt.v.iter()
                    .map(|(k, v)| format!("{k}={v:.3}"))
                    .collect::<Vec<_>>(),
                pt.failure
                    .as_deref()
                    .map(|f| format!("FAILED: {f}"))
                    .unwrap_or_else(|| "ok".to_string()),
                t.elapsed()
            );
            series[i].points.push(pt);
            // Let the sockets of the torn-down processes go.
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Curve {
        file,
        title,
        x_label,
        metrics,
        series,
        notes: Vec::new(),
    }
}

fn utc_stamp() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}{:02}{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn write_report(s: &Settings, stamp: &str, header: &str, curves: &[Curve], took: Duration) {
    let mut md = String::from(header);
    md.push_str(&format!(
        "Total run time: {:.1} min.\n\n",
        took.as_secs_f64() / 60.0
    ));
    std::fs::create_dir_all(&s.out_dir).expect("create the results directory");
    for c in curves {
        md.push_str(&c.markdown());
        if let Err(e) = c.svg(&s.out_dir.join(format!("{}.svg", c.file))) {
            eprintln!("cannot draw {}.svg: {e}", c.file);
        }
    }
    std::fs::write(s.out_dir.join(format!("{stamp}.md")), &md).expect("write the report");
    std::fs::write(s.out_dir.join("latest.md"), &md).expect("write latest.md");
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, where a half-hour benchmark has no place.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("scale: benchmark skipped (run it with `make bench-scale` or `cargo bench --bench scale`)");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let s = Settings::from_env(&root);
    assert!(
        s.ours_bin.is_file(),
        "{} missing: run `cargo build --release` first (make bench-scale does)",
        s.ours_bin.display()
    );
    let tmp = std::env::var("SCALE_TMPDIR").unwrap_or_else(|_| "/dev/shm".to_string());
    if Path::new(&tmp).is_dir() {
        std::env::set_var("TMPDIR", &tmp);
    }
    let nofile = raise_nofile();
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|v| v.trim().replace('\t', " "))
            .unwrap_or_else(|_| "?".to_string())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let stamp = utc_stamp();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |k| k / 1048576.0);
    let header = format!(
        "# Scale curves: ours vs etcd's grpc-proxy ({stamp})\n\n\
         Machine: {cores} cores, {mem_gib:.1} GiB; the load generator, the proxy and one etcd member share it \
         (loopback). etcd: `{}`. Ours: `{}` with `{}` (its guards raised so the curves find the \
         process's limits). etcd's grpc-proxy runs with its defaults. Each point gets a fresh \
         one-member etcd cluster (data in {tmp}) and a fresh proxy. {nofile} \
         (fs.nr_open {}, fs.file-max {}), ephemeral ports {}. A point fails on: proxy RSS over \
         {} GiB (the watchdog kills it), process exit, connection errors, timeouts, missed \
         events, expired leases, failed calls; a target's later points are then not run.\n\n",
        String::from_utf8_lossy(
            &std::process::Command::new(procs::find_bin("ETCD_BIN", "etcd"))
                .arg("--version")
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        )
        .lines()
        .next()
        .unwrap_or("?"),
        s.ours_bin.display(),
        s.ours_args.join(" "),
        read("/proc/sys/fs/nr_open"),
        read("/proc/sys/fs/file-max"),
        read("/proc/sys/net/ipv4/ip_local_port_range"),
        s.rss_cap_kib >> 20,
    );
    let mut targets = s.targets.clone();
    let mut curves: Vec<Curve> = Vec::new();

    let asked_direct = targets.contains(&Kind::Direct);
    if s.runs("watchers") {
        if s.direct && !asked_direct {
            targets.push(Kind::Direct);
        }
        let w = &s.watch;
        let mut c = run_curve(
            &rt,
            &s,
            "watchers",
            "Watchers".to_string(),
            "watchers",
            vec![
                m("rss_b", "RSS B/watcher", 0, true),
                m("create_s", "create s", 2, true),
                m("create_rate", "watchers/s", 0, false),
                m("create_cpu_us", "create CPU µs/watcher", 1, false),
                m("gen_cpu_us", "generator CPU µs/watcher", 1, false),
                m("p50_ms", "p50 ms", 2, false),
                m("p99_ms", "p99 ms", 2, true),
                m("rss_mib", "RSS MiB", 0, false),
                m("peak_mib", "peak MiB", 0, false),
            ],
            &s.watchers,
            &targets,
            |k, x| {
                (k == Kind::Direct && x > s.direct_watchers_max).then(|| {
                    format!(
                        "direct etcd above SCALE_DIRECT_WATCHERS_MAX={} (kept out of the time budget)",
                        s.direct_watchers_max
                    )
                })
            },
            |run, _, x, wd| {
                rt.block_on(watchers::run(
                    &run.addr,
                    &run.member,
                    run.pid,
                    x as usize,
                    w,
                    wd,
                ))
            },
        );
        c.notes.push(format!(
            "{} watchers per key (keys = watchers / {}), {} watch ids per Watch stream created by a \
             pipeline of WatchCreateRequests, {} streams per HTTP/2 connection. RSS B/watcher = \
             (proxy RSS after all are created - RSS before) / watchers (target ≤ 300 B). Delivery: \
             {} puts to distinct keys straight to the member, latency from the put's ack to each \
             watcher's receipt (0 when the event beat the ack).",
            w.per_key, w.per_key, w.per_stream, w.streams_per_conn, w.puts
        ));
        curves.push(c);
        write_report(&s, &stamp, &header, &curves, started.elapsed());
    }
    if !asked_direct {
        targets.retain(|k| *k != Kind::Direct);
    }

    if s.runs("connections") {
        let mut net = 10u8;
        let mut c = run_curve(
            &rt,
            &s,
            "connections",
            "Idle client connections".to_string(),
            "connections",
            vec![
                m("rss_kb", "kB/conn", 2, true),
                m("ok", "established", 0, false),
                m("connect_s", "connect s", 1, true),
                m("rss_mib", "RSS MiB", 0, false),
                m("gen_kb", "generator kB/conn", 2, false),
            ],
            &s.conns,
            &targets,
            |_, _| None,
            |run, _, x, wd| {
                net = net.wrapping_add(1).max(10);
                rt.block_on(conns::run(&run.addr, run.pid, x as usize, net, &s.conn, wd))
            },
        );
        c.notes.push(format!(
            "Each connection: TCP from one of several loopback source addresses (127.N.x.y, ≤ {} per \
             address), HTTP/2 preface and SETTINGS, one serializable Range on stream 1 read to its \
             trailers, then left idle (the generator keeps only the socket). kB/conn = (proxy RSS after \
             - before) / connections (target ≤ 8 kB); after {:?} idle each socket is checked for \
             having been closed by the server.",
            s.conn.per_source, s.conn.hold
        ));
        curves.push(c);
        write_report(&s, &stamp, &header, &curves, started.elapsed());
    }

    if s.runs("keepalive") {
        let l = &s.lease;
        let mut c = run_curve(
            &rt,
            &s,
            "keepalive",
            "Lease keep-alive clients".to_string(),
            "clients",
            vec![
                m("expired", "expired", 0, false),
                m("p99_ms", "keep-alive p99 ms", 2, true),
                m("p50_ms", "p50 ms", 2, false),
                m("rss_mib", "RSS MiB", 0, true),
                m("rss_kb", "kB/client", 2, false),
                m("cpu_pct", "CPU %", 1, true),
                m("gen_pct", "generator CPU %", 1, false),
                m("ka_s", "keep-alives/s", 0, false),
                m("ramp_s", "ramp s", 1, false),
            ],
            &s.leases,
            &targets,
            |_, _| None,
            |run, _, x, wd| {
                rt.block_on(keepalive::run(
                    &run.addr,
                    &run.member,
                    run.pid,
                    x as usize,
                    l,
                    wd,
                ))
            },
        );
        c.notes.push(format!(
            "Each client grants its own {} s lease at the member, opens its own LeaseKeepAlive stream \
             through the proxy ({} streams per HTTP/2 connection) and sends a keep-alive every {} s \
             (TTL/3); after the ramp a {:?} window is measured (CPU % = proxy CPU seconds / window; \
             p50/p99 = keep-alives after each stream's first; a keep-alive unanswered within the TTL \
             fails). expired = granted leases the member no longer has at the end (target 0). etcd's \
             grpc-proxy answers a client's keep-alive when its own lessor's next keep-alive (every \
             TTL/3) comes back, so its latency is up to TTL/3 by design.",
            l.ttl,
            l.per_conn,
            l.ttl / 3,
            l.window
        ));
        curves.push(c);
        write_report(&s, &stamp, &header, &curves, started.elapsed());
    }

    if s.runs("cpu") {
        if s.direct && !asked_direct {
            targets.push(Kind::Direct);
        }
        let p = &s.cpu;
        let mut c = run_curve(
            &rt,
            &s,
            "cpu",
            "CPU per call by concurrent clients".to_string(),
            "clients",
            vec![
                m("cpu_10k", "CPU s/10k calls", 3, true),
                m("ops_s", "ops/s", 0, true),
                m("p99_ms", "p99 ms", 2, true),
                m("cpu_pct", "CPU %", 1, false),
                m("gen_10k", "generator CPU s/10k", 3, false),
                m("rss_mib", "RSS MiB", 0, false),
            ],
            &s.clients,
            &targets,
            |_, _| None,
            |run, _, x, wd| {
                rt.block_on(async {
                    let mut kv = KvClient::new(common::connect(&run.member).await.ok()?);
                    kv.put(PutRequest {
                        key: cpu::KEY.to_vec(),
                        value: vec![b'v'; 256],
                        ..Default::default()
                    })
                    .await
                    .ok()?;
                    Some(())
                })
                .map_or_else(
                    || {
                        let mut p = Point::new(x);
                        p.failure = Some("bench: preload put failed".to_string());
                        p
                    },
                    |_| rt.block_on(cpu::run(&run.addr, run.pid, x as usize, p, wd)),
                )
            },
        );
        c.notes.push(format!(
            "{} Gets of one 256-byte value in closed loops over min(clients, {}) HTTP/2 connections; \
             {:?} warm-up, {:?} measured. CPU s/10k calls = proxy utime+stime over the window per \
             10,000 calls (direct: the generator's only). The load generator shares the 2 cores: see \
             its own CPU per 10k calls.",
            if p.serializable {
                "Serializable"
            } else {
                "Linearizable"
            },
            p.max_conns,
            p.warmup,
            p.window
        ));
        curves.push(c);
    }

    write_report(&s, &stamp, &header, &curves, started.elapsed());
    eprintln!(
        "== done in {:.1} min: {}",
        started.elapsed().as_secs_f64() / 60.0,
        s.out_dir.join("latest.md").display()
    );
}
