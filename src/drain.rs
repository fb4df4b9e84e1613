//! Graceful drain: the state shared by the readiness endpoint, the gRPC
//! layer that ends long-lived streams, and the shutdown sequence in
//! [`crate::server`].
//!
//! The sequence, driven by [`crate::server::run_with`]:
//! 1. [`Drain::start`]: `/readyz` answers 503 at once and the drain hooks
//!    run (the place where a `--resolver-prefix` registration is removed);
//! 2. after the grace period the listeners stop accepting;
//! 3. [`Drain::cut_streams`]: Watch, LeaseKeepAlive and Observe streams end
//!    with `Unavailable` so clients reconnect elsewhere, while unary calls
//!    in flight finish;
//! 4. connections close once idle, or are dropped at the hard limit.

use crate::sync::lock;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

/// Work to do when the drain starts, before the grace period runs.
pub type DrainHook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// How long one drain hook may take before the drain goes on without it.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared drain state of one proxy.
pub struct Drain {
    draining: AtomicBool,
    cut: watch::Sender<bool>,
    hooks: Mutex<Vec<DrainHook>>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            draining: AtomicBool::new(false),
            cut: watch::channel(false).0,
            hooks: Mutex::new(Vec::new()),
        }
    }
}

impl Drain {
    /// Whether the drain has started (the proxy is no longer ready).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Registers work to do when the drain starts.
    ///
    /// DRAIN HOOK: the `--resolver-prefix` registration is to be removed
    /// here, so resolvers stop handing out this proxy before it goes away.
    pub fn on_drain(&self, hook: DrainHook) {
        lock(&self.hooks).push(hook);
    }

    /// Marks the proxy as draining and runs the hooks (each bounded by
    /// [`HOOK_TIMEOUT`]). Runs the hooks once, however often it is called.
    pub async fn start(&self) {
        if self.draining.swap(true, Ordering::Relaxed) {
            return;
        }
        info!("drain started: /readyz now answers 503");
        let hooks: Vec<DrainHook> = std::mem::take(&mut *lock(&self.hooks));
        for hook in hooks {
            if tokio::time::timeout(HOOK_TIMEOUT, hook()).await.is_err() {
                warn!(timeout = ?HOOK_TIMEOUT, "drain hook did not finish in time; draining on");
            }
        }
    }

    /// Ends every long-lived client stream (see [`Drain::cut_signal`]).
    pub fn cut_streams(&self) {
        self.cut.send_replace(true);
    }

    /// A receiver that turns `true` when long-lived streams must end.
    pub fn cut_signal(&self) -> watch::Receiver<bool> {
        self.cut.subscribe()
    }
}
