//! Test support: real etcd members and in-process proxies, cleaned up on drop.

pub mod background;
pub mod ctl;
pub mod etcd;
pub mod grpc;
pub mod http;
pub mod pki;
pub mod proxy;
pub mod relay;
pub mod tls_etcd;

pub use background::Background;
pub use etcd::{etcdctl, Cluster};
pub use proxy::TestProxy;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A loopback port nobody listens on right now, for a process about to
/// listen on it.
///
/// Taken below the kernel's ephemeral range (32768 and up on Linux): a port
/// the kernel hands out for `bind(0)` can meanwhile become the source port of
/// one of the many connections tests open, and the member that was to listen
/// on it then fails to start. Each port is handed out once per test run.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Start where another run started at the same time is unlikely to be.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and {}", LOW + SPAN)
}
