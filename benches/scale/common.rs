//! Shared pieces of the scale benchmark: what is measured (a target), the
//! watchdog that decides when a target has run out (RSS cap, process exit,
//! load generator out of memory), connections and histograms.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};

use crate::procs;

/// What a curve point runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// This project's release binary.
    Ours,
    /// `etcd grpc-proxy start`.
    EtcdProxy,
    /// The etcd member itself (reference only).
    Direct,
}

impl Kind {
    /// Name used in tables and `SCALE_TARGETS`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::EtcdProxy => "etcd-proxy",
            Kind::Direct => "direct",
        }
    }
}

/// A histogram of microseconds, 1 µs to 60 s.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Milliseconds at quantile `q` (None when empty).
pub fn q_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

/// One HTTP/2 connection to `addr` (tonic).
pub async fn connect(addr: &str) -> Result<Channel, String> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .connect()
        .await
        .map_err(|e| format!("connect {addr}: {e}"))
}

/// `n` connections to `addr`.
pub async fn connect_n(addr: &str, n: usize) -> Result<Vec<Channel>, String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(connect(addr).await?);
    }
    Ok(out)
}

/// Whether `pid` still runs (not gone, not a zombie); None when this
/// process cannot tell (e.g. it is out of file descriptors itself).
pub fn alive(pid: u32) -> Option<bool> {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => Some(
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X"),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(false),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Some(false),
        Err(_) => None,
    }
}

/// File descriptors this process may still open: RLIMIT_NOFILE minus
/// those open now.
pub fn fds_left() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    (lim.rlim_cur as usize).saturating_sub(open)
}

/// RSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    procs::status_kib(pid, "VmRSS")
}

struct WatchdogInner {
    stop: AtomicBool,
    reason: Mutex<Option<String>>,
    peak_kib: AtomicU64,
}

/// Samples the measured process (and the load generator) every 100 ms:
/// past the RSS cap it kills the process (SIGKILL, by its id) and records
/// why; a process that exits is recorded too. Stops when dropped.
pub struct Watchdog {
    inner: Arc<WatchdogInner>,
}

impl Watchdog {
    /// Starts watching `pid` (None: only the load generator).
    pub fn start(pid: Option<u32>, cap_kib: u64, gen_cap_kib: u64) -> Watchdog {
        let inner = Arc::new(WatchdogInner {
            stop: AtomicBool::new(false),
            reason: Mutex::new(None),
            peak_kib: AtomicU64::new(0),
        });
        let i = inner.clone();
        let me = std::process::id();
        std::thread::spawn(move || {
            while !i.stop.load(Ordering::Relaxed) {
                let mut why = None;
                if let Some(pid) = pid {
                    match alive(pid).map(|a| rss_kib(pid).filter(|_| a)) {
                        // Cannot tell right now (no fd to read /proc with).
                        None => {}
                        Some(Some(kib)) => {
                            i.peak_kib.fetch_max(kib, Ordering::Relaxed);
                            if kib > cap_kib {
                                unsafe {
                                    libc::kill(pid as i32, libc::SIGKILL);
                                }
                                why = Some(format!(
                                    "OOM: proxy RSS {:.2} GiB over the {:.0} GiB cap (killed)",
                                    kib as f64 / 1048576.0,
                                    cap_kib as f64 / 1048576.0
                                ));
                            }
                        }
                        Some(None) => why = Some("proxy process exited".to_string()),
                    }
                }
                if why.is_none() {
                    if let Some(kib) = rss_kib(me).filter(|&k| k > gen_cap_kib) {
                        why = Some(format!(
                            "load generator RSS {:.2} GiB over its {:.0} GiB cap",
                            kib as f64 / 1048576.0,
                            gen_cap_kib as f64 / 1048576.0
                        ));
                    }
                }
                if let Some(w) = why {
                    i.reason.lock().unwrap().get_or_insert(w);
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Watchdog { inner }
    }

    /// Why the target ran out, once it has.
    pub fn failed(&self) -> Option<String> {
        self.inner.reason.lock().unwrap().clone()
    }

    /// Highest RSS seen (KiB).
    pub fn peak_kib(&self) -> u64 {
        self.inner.peak_kib.load(Ordering::Relaxed)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }
}

/// Keeps the first error message.
#[derive(Clone, Default)]
pub struct FirstError(Arc<Mutex<Option<String>>>);

impl FirstError {
    /// Records `e` unless an earlier error was recorded.
    pub fn set(&self, e: impl Into<String>) {
        self.0.lock().unwrap().get_or_insert_with(|| e.into());
    }

    /// The first error.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap().clone()
    }
}
