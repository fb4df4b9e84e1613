//! A target under test: where the client connections go (etcd members
//! directly, or one proxy) and which process, if any, to measure.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::procs;

/// One of the things compared.
pub struct Target {
    /// Short name used in tables: `direct`, `etcd-proxy`, `ours`, `ours-b`,
    /// `haproxy`, `etcd-gateway`.
    pub name: &'static str,
    /// Addresses the client dials: all members for direct, else the proxy.
    pub addrs: Vec<String>,
    /// The proxy process to measure (None for direct).
    pub pid: Option<u32>,
    /// RSS (KiB) after start-up, before any load.
    pub idle_rss_kib: Option<u64>,
}

impl Target {
    /// `n` separate HTTP/2 connections, spread over the target's addresses.
    pub async fn connect(&self, n: usize) -> Vec<Channel> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(connect_one(&self.addrs[i % self.addrs.len()]).await);
        }
        out
    }

    /// Waits until a Range through the target succeeds.
    pub async fn wait_ready(&self, limit: Duration) {
        if let Err(e) = procs::wait_ready(&self.addrs[0], limit).await {
            panic!("{}: {e}", self.name);
        }
    }

    /// Whether this is an L4 forwarder with a static member list (HAProxy,
    /// etcd gateway): it pins each connection to one member and never learns
    /// of new members, so membership pickup and failover say nothing about it.
    pub fn is_static_l4(&self) -> bool {
        matches!(self.name, "haproxy" | "etcd-gateway")
    }

    /// CPU seconds the measured process has used so far.
    pub fn cpu(&self) -> Option<f64> {
        self.pid.and_then(procs::cpu_seconds)
    }
}

/// One HTTP/2 connection to `addr`.
pub async fn connect_one(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}
