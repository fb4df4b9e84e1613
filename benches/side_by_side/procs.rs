//! The processes the benchmark runs: real etcd members, etcd's own
//! grpc-proxy and this project's release binary. Every child is killed
//! when its handle drops (also on panic) and, should the benchmark itself
//! be killed, by the kernel (`PR_SET_PDEATHSIG`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient;
use etcd_grpc_proxy::proto::etcdserverpb::RangeRequest;

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Finds a binary by `$ENV` or on PATH.
pub fn find_bin(env: &str, name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/local/bin"])
    {
        let p = PathBuf::from(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` not found: install etcd (`make deps`) or set ${env}");
}

/// A child process killed on drop.
pub struct Proc {
    child: Option<Child>,
    /// Its process id while it runs.
    pub pid: u32,
}

impl Proc {
    /// Spawns `cmd` with stderr to `log`, dying with the benchmark.
    ///
    /// Must be called from the main thread: `PR_SET_PDEATHSIG` fires when
    /// the spawning *thread* exits.
    pub fn spawn(mut cmd: Command, log: &Path) -> Proc {
        let log = std::fs::File::create(log).expect("log file");
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc {
            pid: child.id(),
            child: Some(child),
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `etcdctl` (API v3) against `endpoints`.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> Output {
    Command::new(find_bin("ETCDCTL_BIN", "etcdctl"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl")
}

/// A minimal HTTP/1.0 GET, enough for etcd's /health and /metrics.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_string())
}

/// One etcd member.
pub struct Member {
    /// etcd's --name.
    pub name: String,
    /// `127.0.0.1:<port>` clients use.
    pub addr: String,
    peer_url: String,
    data_dir: PathBuf,
    initial_cluster: String,
    proc: Option<Proc>,
}

impl Member {
    fn new(dir: &Path, n: usize) -> Member {
        Member {
            name: format!("m{n}"),
            addr: format!("127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            data_dir: dir.join(format!("m{n}")),
            initial_cluster: String::new(),
            proc: None,
        }
    }

    fn spawn(&mut self, state: &str) {
        let url = format!("http://{}", self.addr);
        let mut cmd = Command::new(find_bin("ETCD_BIN", "etcd"));
        cmd.args(["--name", &self.name])
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={}", self.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg(format!("--initial-cluster-state={state}"))
            .arg("--initial-cluster-token=etcd-grpc-proxy-bench");
        self.proc = Some(Proc::spawn(cmd, &self.data_dir.with_extension("log")));
    }

    /// Whether its process is running.
    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    /// Kills the member (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts a killed member again on its data dir.
    pub fn restart(&mut self) {
        self.spawn("existing");
    }

    /// Whether /health says it has a leader.
    pub fn healthy(&self) -> bool {
        http_get(&self.addr, "/health").is_some_and(|b| b.contains("\"health\":\"true\""))
    }

    /// Sum of a Prometheus counter over the lines matching every filter.
    pub fn metric(&self, name: &str, filters: &[&str]) -> f64 {
        let body = http_get(&self.addr, "/metrics").unwrap_or_default();
        body.lines()
            .filter(|l| {
                l.starts_with(name)
                    && (l.len() == name.len() || l[name.len()..].starts_with(['{', ' ']))
            })
            .filter(|l| filters.iter().all(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// KV Range calls this member has served.
    pub fn ranges_served(&self) -> f64 {
        self.metric("grpc_server_started_total", &["grpc_method=\"Range\""])
    }
}

/// A local etcd cluster in a temporary directory.
pub struct Cluster {
    /// Members in the order they were started or added.
    pub members: Vec<Member>,
    /// Where data dirs and logs live.
    pub dir: tempfile::TempDir,
    next: usize,
}

impl Cluster {
    /// Starts `n` members and waits until all are healthy.
    pub fn start(n: usize) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("etcd-bench")
            .tempdir()
            .expect("temp dir");
        let mut members: Vec<Member> = (1..=n).map(|i| Member::new(dir.path(), i)).collect();
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial_cluster = initial.clone();
            m.spawn("new");
        }
        let c = Cluster {
            members,
            dir,
            next: n + 1,
        };
        c.wait_healthy(Duration::from_secs(60));
        c
    }

    /// Comma separated client addresses of the running members.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.is_running())
            .map(|m| m.addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every running member is healthy.
    pub fn wait_healthy(&self, limit: Duration) {
        let start = Instant::now();
        for m in self.members.iter().filter(|m| m.is_running()) {
            while !m.healthy() {
                assert!(
                    start.elapsed() < limit,
                    "member {} not healthy after {limit:?}",
                    m.name
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// `member add` (retried while etcd refuses) and starts the new member
    /// with `--initial-cluster-state existing`; returns its index and when
    /// its process was started, once it is healthy.
    pub fn add_member(&mut self) -> (usize, Instant) {
        let mut m = Member::new(self.dir.path(), self.next);
        self.next += 1;
        let endpoints = self.endpoints();
        let start = Instant::now();
        loop {
            let out = etcdctl(
                &endpoints,
                &[
                    "member",
                    "add",
                    &m.name,
                    &format!("--peer-urls={}", m.peer_url),
                ],
            );
            if out.status.success() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "member add refused: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut all: Vec<(String, String)> = self
            .members
            .iter()
            .filter(|m| m.is_running())
            .map(|m| (m.name.clone(), m.peer_url.clone()))
            .collect();
        all.push((m.name.clone(), m.peer_url.clone()));
        m.initial_cluster = all
            .iter()
            .map(|(n, p)| format!("{n}={p}"))
            .collect::<Vec<_>>()
            .join(",");
        m.spawn("existing");
        let spawned = Instant::now();
        self.members.push(m);
        self.wait_healthy(Duration::from_secs(60));
        (self.members.len() - 1, spawned)
    }
}

/// Which proxy a [`ProxyProc`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// `etcd grpc-proxy start`.
    Etcd,
    /// This project's release binary.
    Ours,
}

/// A proxy process listening on a loopback port.
pub struct ProxyProc {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// The process.
    pub proc: Proc,
}

impl ProxyProc {
    /// Starts a proxy of `kind` over `endpoints`.
    pub fn start(kind: ProxyKind, endpoints: &str, dir: &Path, ours_bin: &Path) -> ProxyProc {
        Self::start_logged(kind, endpoints, dir, ours_bin, "ours")
    }

    /// As [`ProxyProc::start`], logging ours to `<log_name>.log` (for an A/B second build).
    pub fn start_logged(
        kind: ProxyKind,
        endpoints: &str,
        dir: &Path,
        ours_bin: &Path,
        log_name: &str,
    ) -> ProxyProc {
        Self::start_with_args(kind, endpoints, dir, ours_bin, log_name, &[])
    }

    /// As [`ProxyProc::start_logged`], with `extra` flags appended to the
    /// proxy's command line (e.g. ours' `--max-connections`).
    pub fn start_with_args(
        kind: ProxyKind,
        endpoints: &str,
        dir: &Path,
        ours_bin: &Path,
        log_name: &str,
        extra: &[String],
    ) -> ProxyProc {
        let addr = format!("127.0.0.1:{}", free_port());
        let (mut cmd, log) = match kind {
            ProxyKind::Etcd => {
                let mut c = Command::new(find_bin("ETCD_BIN", "etcd"));
                c.args(["grpc-proxy", "start"])
                    .arg(format!("--endpoints={endpoints}"))
                    .arg(format!("--listen-addr={addr}"))
                    .arg(format!(
                        "--data-dir={}",
                        dir.join("etcd-proxy-data").display()
                    ));
                (c, dir.join("etcd-proxy.log"))
            }
            ProxyKind::Ours => {
                let mut c = Command::new(ours_bin);
                c.arg("start")
                    .arg(format!("--endpoints={endpoints}"))
                    .arg(format!("--listen-addr={addr}"));
                (c, dir.join(format!("{log_name}.log")))
            }
        };
        cmd.args(extra);
        cmd.env_remove("RUST_LOG");
        if let (ProxyKind::Ours, Ok(level)) = (kind, std::env::var("BENCH_OURS_RUST_LOG")) {
            cmd.env("RUST_LOG", level);
        }
        ProxyProc {
            addr,
            proc: Proc::spawn(cmd, &log),
        }
    }
}

/// utime+stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is field 3, utime 14, stime 15.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resets a process's peak RSS (VmHWM) to its current RSS.
pub fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// An L4 (TCP-forwarding) proxy: parses nothing, so its CPU per call is
/// the floor for any proxy in front of the same members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Kind {
    /// HAProxy `mode tcp`, `balance roundrobin`, one process, 2 threads.
    HaProxy,
    /// `etcd gateway start` (etcd's own TCP proxy).
    Gateway,
}

impl L4Kind {
    /// Target name in tables and `BENCH_TARGETS`.
    pub fn name(self) -> &'static str {
        match self {
            L4Kind::HaProxy => "haproxy",
            L4Kind::Gateway => "etcd-gateway",
        }
    }
}

/// `haproxy` by `$HAPROXY_BIN`, on PATH, or in the sbin directories
/// (Debian installs it in /usr/sbin, often not on a user's PATH).
pub fn haproxy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("HAPROXY_BIN") {
        return PathBuf::from(p);
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|d| PathBuf::from(d).join("haproxy"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`haproxy` not found: install it (`make deps-ha`), set $HAPROXY_BIN, or leave it out of BENCH_TARGETS")
        })
}

/// HAProxy's configuration: TCP round robin over `members` on `addr`.
pub fn haproxy_config(addr: &str, members: &[String]) -> String {
    let mut cfg = String::from(
        // No maxconn: HAProxy derives it from the file descriptor limit
        // (a fixed one it cannot raise the limit for is a fatal error).
        "global\n    nbthread 2\n\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n\n",
    );
    cfg.push_str(&format!(
        "frontend etcd\n    bind {addr}\n    default_backend members\n\n\
         backend members\n    balance roundrobin\n"
    ));
    for (i, m) in members.iter().enumerate() {
        cfg.push_str(&format!("    server m{} {m}\n", i + 1));
    }
    cfg
}

impl ProxyProc {
    /// Starts an L4 proxy over the members at `members` (`127.0.0.1:<port>`
    /// each), in the foreground so the benchmark owns (and measures) its pid;
    /// config and log go into `dir`.
    pub fn start_l4(kind: L4Kind, members: &[String], dir: &Path) -> ProxyProc {
        let addr = format!("127.0.0.1:{}", free_port());
        let cmd = match kind {
            L4Kind::HaProxy => {
                let cfg = dir.join("haproxy.cfg");
                std::fs::write(&cfg, haproxy_config(&addr, members)).expect("write haproxy.cfg");
                let mut c = Command::new(haproxy_bin());
                // -db: foreground, no daemon, no master process: one process, two threads.
                c.arg("-db").arg("-f").arg(&cfg);
                c
            }
            L4Kind::Gateway => {
                let mut c = Command::new(find_bin("ETCD_BIN", "etcd"));
                c.args(["gateway", "start"])
                    .arg(format!("--endpoints={}", members.join(",")))
                    .arg(format!("--listen-addr={addr}"));
                c
            }
        };
        ProxyProc {
            addr,
            proc: Proc::spawn(cmd, &dir.join(format!("{}.log", kind.name()))),
        }
    }
}

/// Waits until a Range through `addr` succeeds: the process behind it
/// (member, proxy or L4 forwarder) serves etcd's API, not only listens.
pub async fn wait_ready(addr: &str, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let ok = async {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .ok()?
                .connect()
                .await
                .ok()?;
            KvClient::new(ch)
                .range(RangeRequest {
                    key: b"ready".to_vec(),
                    ..Default::default()
                })
                .await
                .ok()
        }
        .await;
        if ok.is_some() {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(format!("{addr} not ready after {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
