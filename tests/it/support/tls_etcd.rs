//! A one-member etcd serving its clients over TLS (https client URL): with
//! the test PKI's certificate and required client certificates
//! (`--cert-file --key-file --trusted-ca-file --client-cert-auth`), or with
//! `--auto-tls` (a self-signed ECDSA P-521 certificate). Health is polled on
//! a plain `--listen-metrics-urls` port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::etcd::http_get;
use super::free_port;
use super::pki::Pki;

/// The TLS member; killed on drop.
pub struct TlsMember {
    /// `https://127.0.0.1:<port>`.
    pub client_url: String,
    /// `127.0.0.1:<port>` of the plain metrics/health listener.
    pub metrics_addr: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// The etcd under test (`$ETCD_BIN`, else Debian's).
pub fn etcd_bin() -> PathBuf {
    std::env::var("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/usr/bin/etcd"))
}

impl TlsMember {
    /// Starts the member with the PKI's server certificate and waits until it is healthy.
    pub async fn start(pki: &Pki) -> TlsMember {
        TlsMember::start_with(&[
            format!("--cert-file={}", pki.server.cert.display()),
            format!("--key-file={}", pki.server.key.display()),
            format!("--trusted-ca-file={}", pki.ca.display()),
            "--client-cert-auth".to_string(),
        ])
        .await
    }

    /// Starts a member with `--auto-tls` (no client certificates asked for)
    /// and waits until it is healthy.
    pub async fn start_auto_tls() -> TlsMember {
        TlsMember::start_with(&["--auto-tls".to_string()]).await
    }

    async fn start_with(tls_flags: &[String]) -> TlsMember {
        let dir = tempfile::tempdir().expect("member dir");
        let client_url = format!("https://127.0.0.1:{}", free_port());
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log file");
        let child = Command::new(etcd_bin())
            .args(["--name", "t1"])
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=t1={peer_url}"))
            .arg(format!("--listen-metrics-urls=http://{metrics_addr}"))
            .args(tls_flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let log_path = dir.path().join("etcd.log");
        let mut member = TlsMember {
            client_url,
            metrics_addr,
            child: Some(child),
            dir,
        };
        let addr = member.metrics_addr.clone();
        let start = std::time::Instant::now();
        loop {
            let a = addr.clone();
            let body = tokio::task::spawn_blocking(move || http_get(&a, "/health"))
                .await
                .ok()
                .flatten();
            if body.is_some_and(|b| b.contains("\"health\":\"true\"")) {
                return member;
            }
            let exited = member
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || start.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                panic!(
                    "TLS etcd member not healthy (exit: {exited:?}); its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `127.0.0.1:<port>` without scheme.
    pub fn addr(&self) -> String {
        self.client_url.trim_start_matches("https://").to_string()
    }

    /// The self-signed certificate a `--auto-tls` member serves.
    pub fn auto_tls_cert(&self) -> PathBuf {
        self.dir.path().join("data/fixtures/client/cert.pem")
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.addr().rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for TlsMember {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
