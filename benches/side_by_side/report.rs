//! Aggregates the rounds and writes the Markdown report (with ratios and
//! PASS/MISS against the project's targets) and the SVG bar chart.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::load::{new_hist, Round};
use crate::scenario::{Failover, Pickup};
use crate::target::Target;
use crate::{Settings, REFRESH_INTERVAL};

/// One workload on one target, summed over its rounds.
pub struct Cell {
    /// Workload label.
    pub workload: &'static str,
    /// Target name.
    pub target: &'static str,
    ops: u64,
    errors: u64,
    secs: f64,
    hist: Histogram<u64>,
    calls: u64,
    cpu: Option<f64>,
    /// CPU seconds of the load generator itself (this process).
    client_cpu: Option<f64>,
    /// Peak RSS of the proxy during this workload.
    pub peak_rss_kib: Option<u64>,
    first_error: Option<String>,
}

impl Cell {
    /// An empty cell.
    pub fn new(workload: &'static str, target: &'static str) -> Cell {
        Cell {
            workload,
            target,
            ops: 0,
            errors: 0,
            secs: 0.0,
            hist: new_hist(),
            calls: 0,
            cpu: Some(0.0),
            client_cpu: Some(0.0),
            peak_rss_kib: None,
            first_error: None,
        }
    }

    /// Adds one round: `cpu` of the proxy, `client_cpu` of the load generator.
    pub fn add(&mut self, r: &Round, window: Duration, cpu: Option<f64>, client_cpu: Option<f64>) {
        self.ops += r.ops;
        self.errors += r.errors;
        self.secs += window.as_secs_f64();
        self.calls += r.calls;
        self.hist.add(&r.hist).expect("merge histograms");
        self.cpu = self.cpu.zip(cpu).map(|(a, b)| a + b);
        self.client_cpu = self.client_cpu.zip(client_cpu).map(|(a, b)| a + b);
        if self.first_error.is_none() {
            self.first_error.clone_from(&r.first_error);
        }
    }

    /// Successful calls per second.
    pub fn ops_s(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }

    fn q_ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// CPU seconds `total` spread over this cell's calls, per 10k calls.
    fn per_10k_calls(&self, total: Option<f64>) -> Option<f64> {
        total
            .filter(|_| self.calls > 0)
            .map(|c| c / self.calls as f64 * 10_000.0)
    }

    fn cpu_per_10k(&self) -> Option<f64> {
        self.per_10k_calls(self.cpu)
    }

    fn client_cpu_per_10k(&self) -> Option<f64> {
        self.per_10k_calls(self.client_cpu)
    }
}

/// Watch fan-out on one target.
pub struct WatchRow {
    target: &'static str,
    watchers: usize,
    hist: Histogram<u64>,
    missed: u64,
    cpu: Option<f64>,
    /// Growth of the proxy's RSS per watcher opened.
    pub rss_per_watcher_bytes: Option<f64>,
    /// Peak RSS during the fan-out.
    pub peak_rss_kib: Option<u64>,
}

impl WatchRow {
    /// An empty row.
    pub fn new(target: &'static str, watchers: usize) -> WatchRow {
        WatchRow {
            target,
            watchers,
            hist: new_hist(),
            missed: 0,
            cpu: Some(0.0),
            rss_per_watcher_bytes: None,
            peak_rss_kib: None,
        }
    }

    /// Adds one round.
    pub fn add(&mut self, h: &Histogram<u64>, missed: u64, cpu: Option<f64>) {
        self.hist.add(h).expect("merge histograms");
        self.missed += missed;
        self.cpu = self.cpu.zip(cpu).map(|(a, b)| a + b);
    }

    fn q_ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Everything measured in one run.
pub struct Report {
    header: String,
    targets: Vec<(&'static str, Option<u64>)>,
    /// Unary and keep-alive results.
    pub cells: Vec<Cell>,
    /// Watch fan-out results.
    pub watch: Vec<WatchRow>,
    /// Membership pickup results.
    pub pickups: Vec<Pickup>,
    /// Failover results.
    pub failovers: Vec<Failover>,
    /// The Kubernetes-shaped workload's table (tests/kubernetes/cmd/k8sbench), if run.
    pub kubernetes: Option<String>,
    /// Wall time of the run.
    pub total: Duration,
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
        })
        .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("nproc {nproc}, CPU {model}, kernel {kernel}, memory {mem}")
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn now_utc() -> String {
    command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1}", k as f64 / 1024.0))
        .unwrap_or_else(|| "N/A".into())
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "N/A".into()
    }
}

/// Target names of the L4 (TCP-forwarding) floors.
const L4_FLOORS: [&str; 2] = ["haproxy", "etcd-gateway"];

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

impl Report {
    /// A report for `targets` with the run's settings in its header.
    pub fn new(s: &Settings, targets: &[Target]) -> Report {
        let commit = command_line(
            "git",
            &[
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "rev-parse",
                "--short",
                "HEAD",
            ],
        );
        let etcd = command_line("etcd", &["--version"]);
        let mut h = String::new();
        let _ = writeln!(h, "- Date: {}", now_utc());
        let _ = writeln!(h, "- Machine: {}", machine());
        let _ = writeln!(h, "- etcd: {etcd} (3-member local cluster on loopback); proxy commit {commit} (release build)");
        let _ = writeln!(
            h,
            "- Mode: {}; {} rounds x {:?} measured (+{:?} warm-up) per target and workload, targets alternating each round",
            if s.full { "full (BENCH_FULL=1)" } else { "quick (default)" },
            s.rounds,
            s.window,
            s.warmup
        );
        let _ = writeln!(
            h,
            "- Unary load: {} HTTP/2 connections x {} calls in flight per target (direct: connections spread over the 3 members), 1000 keys, 256-byte values",
            s.conns, s.inflight
        );
        let _ = writeln!(
            h,
            "- Watch: {} watchers on one key ({} per Watch stream, {} connections), {} puts per round written directly to a member; lease: {} clients, one stream and lease ({} s TTL) each, a keep-alive every {:?}",
            s.watchers,
            crate::watch::PER_STREAM,
            crate::watch::CONNECTIONS,
            s.watch_puts,
            s.leases,
            s.lease_ttl,
            s.keepalive_every
        );
        let l4: Vec<&str> = targets
            .iter()
            .filter(|t| t.is_static_l4())
            .map(|t| t.name)
            .collect();
        if !l4.is_empty() {
            let haproxy = if l4.contains(&"haproxy") {
                let bin = crate::procs::haproxy_bin();
                let v = command_line(&bin.to_string_lossy(), &["-v"]);
                format!(
                    "; haproxy: {} (`mode tcp`, `balance roundrobin` over the 3 members, one process, `nbthread 2`, foreground `-db`)",
                    v.split(" - ").next().unwrap_or(&v)
                )
            } else {
                String::new()
            };
            let gateway = if l4.contains(&"etcd-gateway") {
                "; etcd-gateway: `etcd gateway start` of the same etcd"
            } else {
                ""
            };
            let _ = writeln!(
                h,
                "- L4 floors ({}){haproxy}{gateway}. They forward TCP and parse nothing, so their CPU per call is the floor for any proxy. \
                 An L4 forwarder pins each client connection to one member for its lifetime: with {} connections over 3 members one member \
                 carries two, which the load shape tolerates. Static member lists: left out of the membership pickup and failover phases; \
                 included in watch and lease (TCP forwarding carries those streams unchanged).",
                l4.join(", "),
                s.conns
            );
        }
        let _ = writeln!(h, "- The load generator, the 3 members and all proxies share the same cores (the idle ones stay running): absolute numbers are low, ratios are what to read.");
        Report {
            header: h,
            targets: targets.iter().map(|t| (t.name, t.idle_rss_kib)).collect(),
            cells: Vec::new(),
            watch: Vec::new(),
            pickups: Vec::new(),
            failovers: Vec::new(),
            kubernetes: None,
            total: Duration::ZERO,
        }
    }

    fn cell(&self, workload: &str, target: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.workload == workload && c.target == target)
    }

    fn workloads(&self) -> Vec<&'static str> {
        let mut w: Vec<&'static str> = Vec::new();
        for c in &self.cells {
            if !w.contains(&c.workload) {
                w.push(c.workload);
            }
        }
        w
    }

    /// The unary workloads measured, in report order.
    fn unary_workloads(&self) -> Vec<&'static str> {
        crate::load::Workload::ALL
            .iter()
            .map(|w| w.label())
            .filter(|w| self.cells.iter().any(|c| c.workload == *w))
            .collect()
    }

    fn peak_rss(&self, target: &str) -> Option<u64> {
        self.cells
            .iter()
            .filter(|c| c.target == target)
            .filter_map(|c| c.peak_rss_kib)
            .chain(
                self.watch
                    .iter()
                    .filter(|w| w.target == target)
                    .filter_map(|w| w.peak_rss_kib),
            )
            .max()
    }

    /// The whole report as Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# Side-by-side benchmark: direct etcd vs etcd grpc-proxy vs etcd-grpc-proxy (ours){}\n",
            if self.targets.iter().any(|(n, _)| L4_FLOORS.contains(n)) {
                ", with L4 floors"
            } else {
                ""
            }
        );
        md.push_str(&self.header);
        let _ = writeln!(
            md,
            "- Wall time of the run: {:.0} s\n",
            self.total.as_secs_f64()
        );

        let _ = writeln!(md, "## Headline: throughput ratios\n");
        let _ = writeln!(md, "| Workload | ours ops/s | etcd-proxy ops/s | direct ops/s | ours/etcd-proxy | ours/direct | p99 ours | p99 etcd-proxy | p99 direct |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for w in self.workloads() {
            let (o, e, d) = (
                self.cell(w, "ours"),
                self.cell(w, "etcd-proxy"),
                self.cell(w, "direct"),
            );
            let ops = |c: Option<&Cell>| c.map(|c| c.ops_s()).unwrap_or(0.0);
            let p99 = |c: Option<&Cell>| {
                c.map(|c| format!("{:.2} ms", c.q_ms(0.99)))
                    .unwrap_or_default()
            };
            let _ = writeln!(
                md,
                "| {w} | {:.0} | {:.0} | {:.0} | **{}** | **{}** | {} | {} | {} |",
                ops(o),
                ops(e),
                ops(d),
                ratio(ops(o), ops(e)),
                ratio(ops(o), ops(d)),
                p99(o),
                p99(e),
                p99(d)
            );
        }

        let _ = writeln!(md, "\n## Details per workload and target\n");
        let _ = writeln!(
            md,
            "| Workload | Target | ops/s | p50 ms | p99 ms | p99.9 ms | errors | proxy CPU s / 10k calls | load generator CPU s / 10k calls | proxy peak RSS MiB |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for c in &self.cells {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |",
                c.workload,
                c.target,
                c.ops_s(),
                c.q_ms(0.5),
                c.q_ms(0.99),
                c.q_ms(0.999),
                c.errors,
                c.cpu_per_10k()
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_else(|| "N/A".into()),
                c.client_cpu_per_10k()
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_else(|| "N/A".into()),
                mib(c.peak_rss_kib)
            );
        }
        let errs: Vec<String> = self
            .cells
            .iter()
            .filter_map(|c| {
                c.first_error
                    .as_ref()
                    .map(|e| format!("- {} / {}: first error: `{e}`", c.workload, c.target))
            })
            .collect();
        if !errs.is_empty() {
            let _ = writeln!(md, "\n{}", errs.join("\n"));
        }

        if self
            .targets
            .iter()
            .any(|(n, _)| *n == "ours" || L4_FLOORS.contains(n))
            && !self.unary_workloads().is_empty()
        {
            let _ = writeln!(md, "\n## CPU per call against the floor\n");
            let _ = writeln!(
                md,
                "Proxy CPU seconds (user+system, whole process) per 10k calls; HAProxy and etcd's gateway forward TCP and parse nothing, \
                 so theirs is the floor for any proxy in front of the same members.\n"
            );
            let _ = writeln!(md, "| Workload | ours | etcd-proxy | haproxy | etcd-gateway | ours/etcd-proxy | ours/haproxy |");
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
            for w in self.unary_workloads() {
                let cpu = |t: &str| self.cell(w, t).and_then(|c| c.cpu_per_10k());
                let show =
                    |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "N/A".into());
                let r = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(a), Some(b)) => ratio(a, b),
                    _ => "N/A".into(),
                };
                let (o, e, h, g) = (
                    cpu("ours"),
                    cpu("etcd-proxy"),
                    cpu("haproxy"),
                    cpu("etcd-gateway"),
                );
                let _ = writeln!(
                    md,
                    "| {w} | {} | {} | {} | {} | **{}** | **{}** |",
                    show(o),
                    show(e),
                    show(h),
                    show(g),
                    r(o, e),
                    r(o, h)
                );
            }
        }

        let _ = writeln!(md, "\n## Proxy memory\n");
        let _ = writeln!(
            md,
            "| Target | idle RSS MiB | peak RSS MiB (any workload) |"
        );
        let _ = writeln!(md, "|---|---:|---:|");
        for (name, idle) in self.targets.iter().filter(|(n, _)| *n != "direct") {
            let _ = writeln!(
                md,
                "| {name} | {} | {} |",
                mib(*idle),
                mib(self.peak_rss(name))
            );
        }

        if !self.watch.is_empty() {
            let _ = writeln!(
                md,
                "\n## Watch fan-out (delivery latency from put ack to each watcher's receipt)\n"
            );
            let _ = writeln!(md, "| Target | watchers | deliveries | p50 ms | p99 ms | p99.9 ms | missed | proxy RSS per watcher | proxy CPU s / 10k deliveries | proxy peak RSS MiB |");
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for w in &self.watch {
                let n = w.hist.len();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |",
                    w.target,
                    w.watchers,
                    n,
                    w.q_ms(0.5),
                    w.q_ms(0.99),
                    w.q_ms(0.999),
                    w.missed,
                    w.rss_per_watcher_bytes
                        .map(|b| format!("{:.0} B", b))
                        .unwrap_or_else(|| "N/A".into()),
                    w.cpu
                        .filter(|_| n > 0)
                        .map(|c| format!("{:.3}", c / n as f64 * 10_000.0))
                        .unwrap_or_else(|| "N/A".into()),
                    mib(w.peak_rss_kib)
                );
            }
        }

        if !self.pickups.is_empty() {
            let _ = writeln!(md, "\n## Membership change pickup (4th/5th member added while reads flow through the proxy)\n");
            let _ = writeln!(md, "| Target | first Range on the new member after its process started | after `member add` was issued |");
            let _ = writeln!(md, "|---|---:|---:|");
            for p in &self.pickups {
                let f = |d: Option<Duration>| {
                    d.map(|d| format!("{:.1} s", d.as_secs_f64()))
                        .unwrap_or_else(|| format!("never (waited {:.0} s)", p.limit.as_secs_f64()))
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} |",
                    p.target,
                    f(p.after_start),
                    f(p.after_add)
                );
            }
        }

        if let Some(table) = &self.kubernetes {
            let _ = writeln!(
                md,
                "\n## Kubernetes-shaped traffic: consistent lists through the watch cache\n"
            );
            let _ = writeln!(
                md,
                "Simulated kube-apiservers (k8s.io/apiserver v0.37.2 etcd3 storage and cacher, Kubernetes 1.37's default gates) \
                 over 3 resource prefixes each, with PrevKV, progress-notify and require-leader watches, compaction \
                 through the `compact_rev_key` Txn, writes to one resource and a consistent list (no resourceVersion) \
                 of another from the watch cache, which sends a progress request every 100 ms until its watch has \
                 reached etcd's revision. Its own 3-member etcd 3.6 cluster; etcd's grpc-proxy is 3.6's.\n"
            );
            md.push_str(table);
        }

        if !self.failovers.is_empty() {
            let _ = writeln!(
                md,
                "\n## Failover (kill -9 of the member serving the most reads through the proxy)\n"
            );
            let _ = writeln!(md, "| Target | killed | failed reads after kill | last failure after kill | successful reads | first error |");
            let _ = writeln!(md, "|---|---|---:|---:|---:|---|");
            for f in &self.failovers {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.2} s | {} | {} |",
                    f.target,
                    f.victim,
                    f.failed_reads,
                    f.recovery.as_secs_f64(),
                    f.ok_reads,
                    f.first_error
                        .as_deref()
                        .map(|e| format!("`{e}`"))
                        .unwrap_or_else(|| "-".into())
                );
            }
        }

        let _ = writeln!(md, "\n## Targets\n");
        for line in self.verdicts() {
            let _ = writeln!(md, "- {line}");
        }
        md
    }

    fn verdicts(&self) -> Vec<String> {
        let mut v = Vec::new();
        let pair = |w: &str| {
            Some((
                self.cell(w, "ours")?,
                self.cell(w, "etcd-proxy")?,
                self.cell(w, "direct")?,
            ))
        };
        for w in ["Get (linearizable)", "Put"] {
            if let Some((o, e, d)) = pair(w) {
                let r = o.ops_s() / e.ops_s().max(1e-9);
                v.push(format!(
                    "{}: {w} ops/s >= 1.3x etcd-proxy: {r:.2}x",
                    verdict(r >= 1.3)
                ));
                let r = o.ops_s() / d.ops_s().max(1e-9);
                v.push(format!(
                    "{}: {w} ops/s >= 0.9x direct: {r:.2}x",
                    verdict(r >= 0.9)
                ));
                let (po, pe) = (o.q_ms(0.99), e.q_ms(0.99));
                v.push(format!(
                    "{}: {w} p99 <= etcd-proxy's: {po:.2} ms vs {pe:.2} ms",
                    verdict(po <= pe)
                ));
            }
        }
        if let Some((o, e, _)) = pair("Get (serializable)") {
            let r = o.ops_s() / e.ops_s().max(1e-9);
            v.push(format!(
                "{}: Get (serializable) ops/s >= 2x etcd-proxy: {r:.2}x",
                verdict(r >= 2.0)
            ));
            if let (Some(client), Some(ec), Some(oc)) =
                (o.client_cpu_per_10k(), e.cpu_per_10k(), o.cpu_per_10k())
            {
                // Cache hits never reach a member: the load generator and the
                // proxy share the cores, so CPU per call bounds the ratio.
                v.push(format!(
                    "  (CPU s per 10k serializable Gets: load generator {client:.3}, etcd-proxy {ec:.3}, ours {oc:.3}; \
                     on shared cores a proxy using no CPU at all would reach about {:.2}x etcd-proxy)",
                    (client + ec) / client.max(1e-9)
                ));
            }
        }
        let cpu = |w: &str, t: &str| self.cell(w, t).and_then(|c| c.cpu_per_10k());
        for w in self.unary_workloads() {
            if let (Some(o), Some(e)) = (cpu(w, "ours"), cpu(w, "etcd-proxy")) {
                let r = o / e.max(1e-9);
                v.push(format!(
                    "{}: {w} proxy CPU per call <= 0.5x etcd-proxy's: {o:.3} vs {e:.3} s / 10k calls ({r:.2}x)",
                    verdict(r <= 0.5)
                ));
            }
        }
        for w in ["Get (linearizable)", "Put"] {
            if let (Some(o), Some(h)) = (cpu(w, "ours"), cpu(w, "haproxy")) {
                let r = o / h.max(1e-9);
                v.push(format!(
                    "{}: {w} proxy CPU per call <= 2x HAProxy's (L4 floor): {o:.3} vs {h:.3} s / 10k calls ({r:.2}x)",
                    verdict(r <= 2.0)
                ));
            }
        }
        if let (Some(o), Some(e)) = (self.peak_rss("ours"), self.peak_rss("etcd-proxy")) {
            let r = o as f64 / e as f64;
            v.push(format!(
                "{}: proxy peak RSS <= 0.5x etcd-proxy's: {} MiB vs {} MiB ({r:.2}x)",
                verdict(r <= 0.5),
                mib(Some(o)),
                mib(Some(e))
            ));
        }
        let w = |t: &str| self.watch.iter().find(|w| w.target == t);
        if let (Some(o), Some(d)) = (w("ours"), w("direct")) {
            let (po, pd) = (o.q_ms(0.99), d.q_ms(0.99));
            v.push(format!(
                "{}: watch fan-out ({} watchers; the target is set for 10,000, BENCH_FULL=1) delivery p99 <= direct: {po:.2} ms vs {pd:.2} ms (missed: {})",
                verdict(po <= pd && o.missed == 0),
                o.watchers,
                o.missed
            ));
        }
        if let Some(p) = self.pickups.iter().find(|p| p.target == "ours") {
            let limit = REFRESH_INTERVAL * 2;
            let ok = p.after_start.is_some_and(|d| d < limit);
            let got = p
                .after_start
                .map(|d| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_else(|| "never".into());
            v.push(format!("{}: membership pickup (new member started to its first Range) < 2x refresh interval ({:.0} s): {got}", verdict(ok), limit.as_secs_f64()));
        }
        if let Some(f) = self.failovers.iter().find(|f| f.target == "ours") {
            v.push(format!(
                "{}: failover with 0 failed reads: {} failed",
                verdict(f.failed_reads == 0),
                f.failed_reads
            ));
        }
        v
    }

    /// Writes latest.md, a timestamped copy, and latest.svg into `dir`.
    pub fn write(&self, dir: &Path, md: &str) {
        std::fs::create_dir_all(dir).expect("results dir");
        std::fs::write(dir.join("latest.md"), md).expect("write latest.md");
        let stamp = now_utc().replace(':', "");
        std::fs::write(dir.join(format!("{stamp}.md")), md).expect("write timestamped report");
        if let Err(e) = self.chart(&dir.join("latest.svg")) {
            eprintln!("cannot draw the chart: {e}");
        }
        eprintln!("wrote {}", dir.join("latest.md").display());
    }

    fn chart(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let workloads = self.workloads();
        let palette = [
            ("direct", RGBColor(120, 120, 120)),
            ("etcd-proxy", RGBColor(66, 133, 244)),
            ("ours", RGBColor(219, 68, 55)),
            ("ours-b", RGBColor(244, 160, 0)),
            ("haproxy", RGBColor(15, 157, 88)),
            ("etcd-gateway", RGBColor(171, 71, 188)),
        ];
        let (targets, colors): (Vec<&str>, Vec<RGBColor>) = palette
            .iter()
            .filter(|(t, _)| self.cells.iter().any(|c| c.target == *t))
            .copied()
            .unzip();
        let slot = 0.78 / targets.len().max(1) as f64;
        let max = self
            .cells
            .iter()
            .map(|c| c.ops_s())
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.15;
        let n = workloads.len().max(1);
        // 160 px per workload for three bars, wider when more targets ran.
        let per_workload = (targets.len() as u32 * 50).max(160);
        let root = SVGBackend::new(path, (per_workload * n as u32 + 160, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("ops/s per workload (higher is better)", ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..max)?;
        let names = workloads.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&move |x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                    names[i as usize].to_string()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("ops/s")
            .draw()?;
        for (ti, t) in targets.iter().enumerate() {
            let color = colors[ti];
            let bars: Vec<Rectangle<(f64, f64)>> = workloads
                .iter()
                .enumerate()
                .filter_map(|(wi, w)| {
                    let c = self.cell(w, t)?;
                    let x0 = wi as f64 - 0.39 + ti as f64 * slot;
                    Some(Rectangle::new(
                        [(x0, 0.0), (x0 + slot * 0.92, c.ops_s())],
                        color.filled(),
                    ))
                })
                .collect();
            chart.draw_series(bars)?.label(*t).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
            });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
}
