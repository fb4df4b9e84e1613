//! Real etcd members started from the Debian `etcd-server` package (or
//! `$ETCD_BIN`), on free loopback ports in temporary directories.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{eventually, free_port};

const INSTALL_HINT: &str = "install etcd with `apt-get install etcd-server etcd-client` (or run `make test`, which does), \
                            or point $ETCD_BIN / $ETCDCTL_BIN at the binaries";

fn find_bin(env: &str, name: &str) -> PathBuf {
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
    panic!("`{name}` not found: {INSTALL_HINT}");
}

/// The etcd binary tests run (`$ETCD_BIN`, else `etcd` on the PATH); it
/// also has etcd's own `grpc-proxy start`.
pub fn etcd_bin() -> PathBuf {
    find_bin("ETCD_BIN", "etcd")
}

/// Runs `etcdctl` (API v3) against `endpoints`, returning its output.
/// Arguments need not be UTF-8 (see `tests/it/strings.rs`).
pub fn etcdctl<S: AsRef<OsStr>>(endpoints: &str, args: &[S]) -> Output {
    Command::new(find_bin("ETCDCTL_BIN", "etcdctl"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl")
}

/// One etcd member process.
pub struct Member {
    /// etcd's --name.
    pub name: String,
    /// `http://127.0.0.1:<port>` clients use.
    pub client_url: String,
    /// `http://127.0.0.1:<port>` peers use.
    pub peer_url: String,
    data_dir: PathBuf,
    /// Flags beyond the harness's own (e.g. `--auth-token-ttl=2`).
    flags: Vec<String>,
    child: Option<Child>,
}

impl Member {
    /// `127.0.0.1:<port>` without scheme, as etcdctl takes it.
    pub fn addr(&self) -> String {
        self.client_url.trim_start_matches("http://").to_string()
    }

    /// Whether its process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// GETs a path on the member's client URL (it serves /metrics and /health there).
    pub fn http_get(&self, path: &str) -> Option<String> {
        http_get(&self.addr(), path)
    }

    /// Sum of a Prometheus counter over the lines matching every filter.
    pub fn metric(&self, name: &str, filters: &[&str]) -> f64 {
        let body = self.http_get("/metrics").unwrap_or_default();
        super::http::metric(&body, name, filters)
    }

    /// KV Range calls this member has served (`grpc_server_started_total`).
    pub fn ranges_served(&self) -> f64 {
        self.metric("grpc_server_started_total", &["grpc_method=\"Range\""])
    }

    fn spawn(&mut self, initial_cluster: &str, state: &str) {
        let log =
            std::fs::File::create(self.data_dir.with_extension("log")).expect("member log file");
        let child = Command::new(find_bin("ETCD_BIN", "etcd"))
            .args(["--name", &self.name])
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={}", self.client_url))
            .arg(format!("--advertise-client-urls={}", self.client_url))
            .arg(format!("--listen-peer-urls={}", self.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg(format!("--initial-cluster-state={state}"))
            .arg("--initial-cluster-token=etcd-grpc-proxy-test")
            .args(&self.flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}; {INSTALL_HINT}"));
        self.child = Some(child);
    }

    /// Stops (`true`: SIGSTOP) or resumes (`false`: SIGCONT) the process:
    /// a member that accepts connections and never answers.
    pub fn pause(&self, stop: bool) {
        if let Some(c) = &self.child {
            let sig = if stop { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill(2) on a child this harness started and still owns.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// Kills the process (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of real etcd members in one temporary directory.
pub struct Cluster {
    /// The members, in the order they were started or added.
    pub members: Vec<Member>,
    dir: tempfile::TempDir,
    next: usize,
}

fn new_member(dir: &std::path::Path, n: usize) -> Member {
    Member {
        name: format!("m{n}"),
        client_url: format!("http://127.0.0.1:{}", free_port()),
        peer_url: format!("http://127.0.0.1:{}", free_port()),
        data_dir: dir.join(format!("m{n}")),
        flags: Vec::new(),
        child: None,
    }
}

impl Cluster {
    /// Starts `n` members and waits until the cluster has a leader.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, None).await
    }

    /// Starts a one-member cluster whose client URL uses `port`.
    pub async fn start_on_client_port(port: u16) -> Cluster {
        Cluster::start_with(1, Some(port)).await
    }

    /// Starts `n` members, each with `flags` added to its command line.
    pub async fn start_with_flags(n: usize, flags: &[&str]) -> Cluster {
        Cluster::start_with_all(n, None, flags).await
    }

    async fn start_with(n: usize, first_port: Option<u16>) -> Cluster {
        Cluster::start_with_all(n, first_port, &[]).await
    }

    async fn start_with_all(n: usize, first_port: Option<u16>, flags: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut members: Vec<Member> = (1..=n).map(|i| new_member(dir.path(), i)).collect();
        for m in &mut members {
            m.flags = flags.iter().map(|f| f.to_string()).collect();
        }
        if let Some(port) = first_port {
            members[0].client_url = format!("http://127.0.0.1:{port}");
        }
        let initial = initial_cluster(&members);
        for m in &mut members {
            m.spawn(&initial, "new");
        }
        let cluster = Cluster {
            members,
            dir,
            next: n + 1,
        };
        cluster.wait_healthy().await;
        cluster
    }

    /// Each member's `etcd_debugging_mvcc_watcher_total` (0 when stopped):
    /// where an upstream watch is open.
    pub fn watchers_on(&self) -> Vec<f64> {
        self.members
            .iter()
            .map(|m| {
                if m.is_running() {
                    m.metric("etcd_debugging_mvcc_watcher_total", &[])
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Comma separated client addresses of the running members.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.is_running())
            .map(|m| m.addr())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every running member reports itself healthy (has a leader).
    pub async fn wait_healthy(&self) {
        for m in self.members.iter().filter(|m| m.is_running()) {
            wait_member_healthy(
                &m.addr(),
                &format!("etcd member {}", m.name),
                Duration::from_secs(60),
            )
            .await;
        }
    }

    /// `etcdctl member add` for a new member, retried while etcd answers
    /// "unhealthy cluster", then starts it with `--initial-cluster-state existing`.
    /// Returns its index in `members`.
    pub async fn add_member(&mut self) -> usize {
        self.add_member_as(None).await
    }

    /// Like [`Cluster::add_member`], with `--user=<user>` on the member add
    /// (auth on: only root may change membership).
    pub async fn add_member_as(&mut self, user: Option<&str>) -> usize {
        let user = user.map(|u| format!("--user={u}"));
        let mut m = new_member(self.dir.path(), self.next);
        self.next += 1;
        let endpoints = self.endpoints();
        let (name, peer) = (m.name.clone(), m.peer_url.clone());
        eventually("member add accepted", Duration::from_secs(60), || {
            let (endpoints, name, peer, user) =
                (endpoints.clone(), name.clone(), peer.clone(), user.clone());
            async move {
                let out = tokio::task::spawn_blocking(move || {
                    let peer = format!("--peer-urls={peer}");
                    let mut args = vec!["member", "add", name.as_str(), peer.as_str()];
                    args.extend(user.as_deref());
                    etcdctl(&endpoints, &args)
                })
                .await
                .ok()?;
                out.status.success().then_some(())
            }
        })
        .await;
        let mut all: Vec<&Member> = self.members.iter().filter(|m| m.is_running()).collect();
        all.push(&m);
        let initial = all
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        m.spawn(&initial, "existing");
        self.members.push(m);
        let idx = self.members.len() - 1;
        self.wait_healthy().await;
        idx
    }
}

fn initial_cluster(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect::<Vec<_>>()
        .join(",")
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

/// The release of the members tests start (`etcd --version`, e.g. "3.6.16"):
/// tests compare with a direct member, so this only picks which checks apply.
pub fn server_version() -> String {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION
        .get_or_init(|| {
            let out = Command::new(find_bin("ETCD_BIN", "etcd"))
                .arg("--version")
                .output()
                .expect("etcd --version");
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.lines()
                .find_map(|l| {
                    l.strip_prefix("etcd Version:")
                        .map(|v| v.trim().to_string())
                })
                .unwrap_or_else(|| panic!("no version in `etcd --version`: {text}"))
        })
        .clone()
}

/// Waits until the member at `addr` answers `/health` healthy (it has a
/// leader); `what` names it in the timeout's message.
pub async fn wait_member_healthy(addr: &str, what: &str, bound: Duration) {
    eventually(&format!("{what} healthy"), bound, || {
        let addr = addr.to_string();
        async move {
            let body = tokio::task::spawn_blocking(move || http_get(&addr, "/health"))
                .await
                .ok()??;
            body.contains("\"health\":\"true\"").then_some(())
        }
    })
    .await;
}
