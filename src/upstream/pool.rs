//! The set of etcd members in use, each with a lazily connected channel,
//! a health flag and an in-flight counter used for balancing; which member
//! a call goes to.
//!
//! Beside it: a member (`backend.rs`), one call across members with its
//! retries (`attempts.rs`), and the proxy's own user (`own_user.rs`).

use crate::sync::{read, write};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use super::endpoint::EndpointUrl;
use super::retry::RetryPolicy;
use crate::proto::etcdserverpb::ResponseHeader;

mod attempts;
mod backend;
mod own_user;
pub use attempts::{describe, Target, ATTEMPT_TIMEOUT};
pub use backend::{Backend, ChannelSettings, InflightGuard, OwnUser};

/// Pool-wide counters, exported as metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Unary calls sent again to another member after a failure.
    pub retries: AtomicU64,
}

/// The shared, cheaply cloned handle to the member set.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    /// The current set; replaced whole on every membership change.
    backends: RwLock<Arc<Vec<Arc<Backend>>>>,
    /// The `--endpoints` given at start, asked again when nothing else answers.
    seeds: Vec<EndpointUrl>,
    settings: ChannelSettings,
    /// Woken when a call finds a member dead, so refresh runs at once.
    refresh_now: Notify,
    stats: PoolStats,
    /// The token of the proxy's own user, once authenticated.
    own_token: RwLock<Option<tonic::metadata::AsciiMetadataValue>>,
}

impl Pool {
    /// A pool over the start-up endpoints; nothing is dialled until used.
    pub fn new(
        seeds: Vec<EndpointUrl>,
        settings: ChannelSettings,
    ) -> Result<Pool, tonic::transport::Error> {
        let inner = Arc::new(Inner {
            backends: RwLock::new(Arc::new(Vec::new())),
            seeds: seeds.clone(),
            settings,
            refresh_now: Notify::new(),
            stats: PoolStats::default(),
            own_token: RwLock::new(None),
        });
        let pool = Pool { inner };
        pool.set_members(seeds.into_iter().collect())?;
        Ok(pool)
    }

    /// Pool-wide counters.
    pub fn stats(&self) -> &PoolStats {
        &self.inner.stats
    }

    /// The endpoints given at start.
    pub fn seeds(&self) -> &[EndpointUrl] {
        &self.inner.seeds
    }

    /// The members in use now.
    pub fn backends(&self) -> Arc<Vec<Arc<Backend>>> {
        read(&self.inner.backends).clone()
    }

    /// The healthy member that leads the cluster, as last probed.
    pub fn leader(&self) -> Option<Arc<Backend>> {
        self.backends()
            .iter()
            .find(|b| b.is_healthy() && b.is_leader())
            .cloned()
    }

    /// A header for answers the proxy makes itself (etcd sends every watch
    /// response with one): the newest Status header of a healthy member.
    pub fn last_header(&self) -> Option<ResponseHeader> {
        let all = self.backends();
        let healthy = all
            .iter()
            .filter(|b| b.is_healthy())
            .filter_map(|b| b.last_header());
        healthy.max_by_key(|h| h.revision).or_else(|| {
            all.iter()
                .filter_map(|b| b.last_header())
                .max_by_key(|h| h.revision)
        })
    }

    /// Makes `urls` the member set: new members are added (assumed healthy
    /// until a call or probe says otherwise), gone ones dropped, kept ones
    /// keep their connection. Logs the old and new sets when they differ.
    pub fn set_members(
        &self,
        urls: BTreeSet<EndpointUrl>,
    ) -> Result<bool, tonic::transport::Error> {
        let old = self.backends();
        let old_urls: BTreeSet<EndpointUrl> = old.iter().map(|b| b.url.clone()).collect();
        if old_urls == urls {
            return Ok(false);
        }
        let mut next = Vec::with_capacity(urls.len());
        for url in &urls {
            match old.iter().find(|b| &b.url == url) {
                Some(b) => next.push(b.clone()),
                None => next.push(Arc::new(Backend {
                    url: url.clone(),
                    channel: self.inner.settings.channel(url)?,
                    healthy: AtomicBool::new(true),
                    inflight: AtomicUsize::new(0),
                    member_id: AtomicU64::new(0),
                    leader_seen: AtomicU64::new(0),
                    last_header: std::sync::Mutex::new(None),
                })),
            }
        }
        let mut guard = write(&self.inner.backends);
        *guard = Arc::new(next);
        drop(guard);
        if !old_urls.is_empty() {
            info!(old = %join(&old_urls), new = %join(&urls), "membership changed: backend set updated");
        }
        Ok(true)
    }

    /// Takes a member out of rotation and asks for a refresh now.
    pub fn mark_unhealthy(&self, backend: &Backend, why: &str) {
        if backend.healthy.swap(false, Ordering::Relaxed) {
            warn!(backend = %backend.url, reason = why, "backend out of rotation");
        }
        self.inner.refresh_now.notify_one();
    }

    /// Like [`Pool::mark_unhealthy`], for the health prober: it asks no refresh.
    pub(crate) fn mark_unhealthy_quiet(&self, backend: &Backend, why: &str) {
        if backend.healthy.swap(false, Ordering::Relaxed) {
            warn!(backend = %backend.url, reason = why, "backend out of rotation");
        }
    }

    /// A channel to `url` with the pool's settings, for one-off calls.
    pub(crate) fn dial(&self, url: &EndpointUrl) -> Result<Channel, tonic::transport::Error> {
        self.inner.settings.channel(url)
    }

    /// Puts a member back in rotation after a good probe.
    pub fn mark_healthy(&self, backend: &Backend) {
        if !backend.healthy.swap(true, Ordering::Relaxed) {
            info!(backend = %backend.url, "backend back in rotation");
        }
    }

    /// Resolves when some call has asked for a membership refresh.
    pub async fn refresh_requested(&self) {
        self.inner.refresh_now.notified().await
    }

    /// Asks the membership task to refresh now (e.g. after a MemberAdd).
    pub fn request_refresh(&self) {
        self.inner.refresh_now.notify_one();
    }

    /// Picks a member not in `exclude`: the less busy of two random healthy
    /// ones; when none is healthy, any member (its answer tells the client why).
    pub fn pick(&self, exclude: &[EndpointUrl]) -> Option<Arc<Backend>> {
        let all = self.backends();
        let usable: Vec<&Arc<Backend>> = all.iter().filter(|b| !exclude.contains(&b.url)).collect();
        let healthy: Vec<&Arc<Backend>> =
            usable.iter().copied().filter(|b| b.is_healthy()).collect();
        let candidates = if healthy.is_empty() { usable } else { healthy };
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0].clone()),
            n => {
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                let (x, y) = (candidates[a], candidates[b]);
                let pick =
                    if y.inflight.load(Ordering::Relaxed) < x.inflight.load(Ordering::Relaxed) {
                        y
                    } else {
                        x
                    };
                Some(pick.clone())
            }
        }
    }

    /// Writes go first to the leader when it is known and healthy: a
    /// follower would only pass the proposal on to it, spending the
    /// cluster's CPU on a hop. Reads, and writes after a failed attempt,
    /// are balanced with [`Pool::pick`].
    fn pick_for(&self, policy: RetryPolicy, exclude: &[EndpointUrl]) -> Option<Arc<Backend>> {
        if policy == RetryPolicy::UnlessApplied && exclude.is_empty() {
            if let Some(leader) = self.leader() {
                return Some(leader);
            }
        }
        self.pick(exclude)
    }

    /// The member that answers member-scoped calls (Status, MoveLeader,
    /// Defragment, Hash, HashKV, Snapshot, Alarm), as a clientv3 client pins
    /// one endpoint: the first configured endpoint while it is a healthy
    /// member, else the next in rotation (the other configured endpoints in
    /// order, then the other members by URL). A proxy in front of one member
    /// answers as that member, and still fails over when it dies.
    pub fn pinned(&self, exclude: &[EndpointUrl]) -> Option<Arc<Backend>> {
        let all = self.backends();
        let seed_rank = |b: &Backend| {
            self.inner
                .seeds
                .iter()
                .position(|s| *s == b.url)
                .unwrap_or(usize::MAX)
        };
        let mut order: Vec<&Arc<Backend>> =
            all.iter().filter(|b| !exclude.contains(&b.url)).collect();
        order.sort_by(|a, b| (seed_rank(a), &a.url).cmp(&(seed_rank(b), &b.url)));
        order
            .iter()
            .find(|b| b.is_healthy())
            .or_else(|| order.first())
            .map(|b| (*b).clone())
    }
}

fn join(urls: &BTreeSet<EndpointUrl>) -> String {
    let v: Vec<&str> = urls.iter().map(|u| u.as_str()).collect();
    format!("[{}]", v.join(", "))
}
