//! The set of etcd members in use, each with a lazily connected channel,
//! a health flag and an in-flight counter used for balancing.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;
use tracing::{info, warn, Instrument};

use super::endpoint::EndpointUrl;
use super::retry::{Failure, RetryPolicy};
use crate::error::ProxyError;
use crate::proto::etcdserverpb::ResponseHeader;

/// How channels to members are dialled; shared by every backend.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    /// Give up connecting after this long, so a dead member is noticed fast.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive ping interval (`--dial-keepalive-time`, zero = off).
    pub keepalive_time: Option<Duration>,
    /// How long to wait for a ping answer (`--dial-keepalive-timeout`).
    pub keepalive_timeout: Duration,
    /// Ping even with no stream open (`--permit-without-stream`).
    pub permit_without_stream: bool,
    /// TLS towards `https` members (`--cert`, `--key`, `--cacert`,
    /// `--insecure-skip-tls-verify`); `None` uses the system's roots.
    pub tls: Option<crate::tls::ClientTls>,
    /// The etcd user the proxy's own calls run as (`--user`,
    /// `--password-file`): health probes, MemberList, registration and
    /// leasing. Client calls never use it.
    pub own_user: Option<OwnUser>,
}

/// An etcd user name and password, for the proxy's own calls.
#[derive(Clone)]
pub struct OwnUser {
    /// The user's name, as etcd stores it (any bytes).
    pub name: Vec<u8>,
    /// Its password.
    pub password: Vec<u8>,
}

impl std::fmt::Debug for OwnUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OwnUser({:?}, password hidden)",
            String::from_utf8_lossy(&self.name)
        )
    }
}

impl Default for ChannelSettings {
    fn default() -> Self {
        ChannelSettings {
            connect_timeout: Duration::from_secs(2),
            keepalive_time: None,
            keepalive_timeout: Duration::from_secs(20),
            permit_without_stream: false,
            tls: None,
            own_user: None,
        }
    }
}

/// HTTP/2 connection window towards a member (see [`ChannelSettings`]).
const UPSTREAM_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// HTTP/2 stream window towards a member: room for etcd's largest answers.
const UPSTREAM_STREAM_WINDOW: u32 = 4 * 1024 * 1024;

impl ChannelSettings {
    fn channel(&self, url: &EndpointUrl) -> Result<Channel, tonic::transport::Error> {
        let mut ep = Endpoint::from_shared(url.to_string())?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            // Fixed, large windows rather than adaptive ones: h2 closes a
            // connection (GOAWAY ENHANCE_YOUR_CALM "too_many_data_frames")
            // once the small DATA frames not yet read exceed half the
            // connection window, and every etcd answer is a small frame.
            // With an adaptive window starting at 64 KiB, a burst of ~140
            // answers the proxy had not read yet cost every call on that
            // connection; 16 MiB leaves room for ~36,000.
            .initial_connection_window_size(UPSTREAM_CONNECTION_WINDOW)
            .initial_stream_window_size(UPSTREAM_STREAM_WINDOW);
        if let Some(t) = self.keepalive_time {
            ep = ep
                .http2_keep_alive_interval(t)
                .keep_alive_timeout(self.keepalive_timeout)
                .keep_alive_while_idle(self.permit_without_stream);
        }
        if url.is_tls() {
            let tls = self
                .tls
                .clone()
                .unwrap_or_else(crate::tls::ClientTls::system_roots);
            ep = match tls.verifier {
                Some(verifier) => ep.tls_config_with_verifier(tls.config, verifier)?,
                None => ep.tls_config(tls.config)?,
            };
        }
        Ok(ep.connect_lazy())
    }
}

/// One etcd member as the proxy sees it.
#[derive(Debug)]
pub struct Backend {
    /// The member's client URL, as dialled.
    pub url: EndpointUrl,
    /// The lazily connected HTTP/2 channel to it, shared by every call.
    pub channel: Channel,
    /// False while the member is unreachable or has no leader; such members
    /// get no calls while a healthy one exists.
    healthy: AtomicBool,
    /// Calls under way on this member; the balancer prefers the less busy.
    inflight: AtomicUsize,
    /// The member's ID once a Status answer told it (0 = not yet known).
    member_id: AtomicU64,
    /// The leader this member last reported (0 until probed or without leader).
    leader_seen: AtomicU64,
    /// The header of the member's last Status answer, for answers the proxy
    /// makes itself (etcd always sends watch responses with one).
    last_header: std::sync::Mutex<Option<ResponseHeader>>,
}

impl Backend {
    /// Whether the member is in rotation.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The member's ID, 0 until a health probe has learnt it.
    pub fn member_id(&self) -> u64 {
        self.member_id.load(Ordering::Relaxed)
    }

    pub(crate) fn set_member_id(&self, id: u64) {
        self.member_id.store(id, Ordering::Relaxed);
    }

    /// Records the header of the member's last Status answer.
    pub(crate) fn set_last_header(&self, header: ResponseHeader) {
        *self.last_header.lock().unwrap_or_else(|p| p.into_inner()) = Some(header);
    }

    /// The header of the member's last Status answer, if it has answered.
    pub fn last_header(&self) -> Option<ResponseHeader> {
        *self.last_header.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the leader the member reported in its last Status.
    pub(crate) fn set_leader_seen(&self, id: u64) {
        self.leader_seen.store(id, Ordering::Relaxed);
    }

    /// Whether the member named a leader at its last probe.
    pub fn knows_leader(&self) -> bool {
        self.leader_seen.load(Ordering::Relaxed) != 0
    }

    /// Whether the member said, at its last probe, that it leads the cluster.
    pub fn is_leader(&self) -> bool {
        let me = self.member_id();
        me != 0 && self.leader_seen.load(Ordering::Relaxed) == me
    }

    /// Calls under way on this member now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Counts a call as in flight until the guard drops.
    pub fn start_call(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
    }
}

/// Decrements a backend's in-flight count when a call ends.
pub struct InflightGuard(Arc<Backend>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

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

    /// The metadata of the proxy's own calls: its user's token, if it has
    /// one (see [`Pool::authenticate_own_user`]); empty otherwise.
    pub fn own_metadata(&self) -> tonic::metadata::MetadataMap {
        let mut md = tonic::metadata::MetadataMap::new();
        if let Some(token) = self
            .inner
            .own_token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            md.insert("token", token);
        }
        md
    }

    /// The proxy's own token, if it has logged in.
    pub fn own_token(&self) -> Option<tonic::metadata::AsciiMetadataValue> {
        self.inner
            .own_token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `msg` as one of the proxy's own calls (see [`Pool::own_metadata`]).
    pub fn own_request<T>(&self, msg: T) -> tonic::Request<T> {
        tonic::Request::from_parts(self.own_metadata(), tonic::Extensions::default(), msg)
    }

    /// Logs the proxy's own user in (once, or again after `stale` said its
    /// token was refused). Without `--user` it does nothing.
    pub async fn authenticate_own_user(&self, stale: bool) {
        let Some(user) = self.inner.settings.own_user.clone() else {
            return;
        };
        if !stale
            && self
                .inner
                .own_token
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
        {
            return;
        }
        let req = crate::proto::etcdserverpb::AuthenticateRequest {
            name: user.name.clone(),
            password: user.password.clone(),
        };
        let answer = self
            .call(RetryPolicy::Idempotent, |ch| {
                let req = req.clone();
                async move {
                    crate::proto::etcdserverpb::auth_client::AuthClient::new(ch)
                        .authenticate(req)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await;
        let token = match answer {
            Ok(resp) => std::str::from_utf8(&resp.token)
                .ok()
                .and_then(|t| t.parse::<tonic::metadata::AsciiMetadataValue>().ok()),
            Err(e) => {
                warn!(user = %String::from_utf8_lossy(&user.name), error = %e, "the proxy's own user cannot log in");
                None
            }
        };
        if token.is_some() {
            info!(user = %String::from_utf8_lossy(&user.name), "the proxy's own calls are authenticated");
        }
        *self
            .inner
            .own_token
            .write()
            .unwrap_or_else(|p| p.into_inner()) = token;
    }

    /// The endpoints given at start.
    pub fn seeds(&self) -> &[EndpointUrl] {
        &self.inner.seeds
    }

    /// The members in use now.
    pub fn backends(&self) -> Arc<Vec<Arc<Backend>>> {
        match self.inner.backends.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
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
        let mut guard = match self.inner.backends.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
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

    /// Runs one unary call on a member, retrying on other members as
    /// `policy` allows. Upstream answers reach the caller unchanged.
    pub async fn call<T, F, Fut>(
        &self,
        policy: RetryPolicy,
        mut attempt: F,
    ) -> Result<T, ProxyError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut tried: Vec<EndpointUrl> = Vec::new();
        let mut last_unreached: Option<Status> = None;
        let mut last_answer: Option<Status> = None;
        while let Some(backend) = self.pick_for(policy, &tried) {
            tried.push(backend.url.clone());
            let _inflight = backend.start_call();
            let span = tracing::debug_span!("upstream", backend = %backend.url);
            let status = match attempt(backend.channel.clone()).instrument(span).await {
                Ok(v) => {
                    if !backend.is_healthy() {
                        self.mark_healthy(&backend);
                    }
                    return Ok(v);
                }
                Err(status) => status,
            };
            let failure = Failure::of(&status);
            if failure.member_unhealthy() {
                self.mark_unhealthy(&backend, status.message());
            }
            if !failure.retry_allowed(policy) {
                return Err(ProxyError::Upstream(status));
            }
            tracing::debug!(backend = %backend.url, error = %status.message(), "retrying on another member");
            self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
            if failure == Failure::NotReached {
                last_unreached = Some(status);
            } else {
                last_answer = Some(status);
            }
        }
        if let Some(answer) = last_answer {
            return Err(ProxyError::Upstream(answer));
        }
        Err(ProxyError::NoMemberReachable {
            tried: tried
                .iter()
                .map(|u| u.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            last: last_unreached
                .map(|s| describe(&s))
                .unwrap_or_else(|| "no endpoints configured".into()),
        })
    }
}

/// A transport status with its source chain, for messages operators read.
pub fn describe(status: &Status) -> String {
    use std::error::Error as _;
    let mut text = status.message().to_string();
    let mut source = status.source();
    while let Some(err) = source {
        let s = err.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = err.source();
    }
    text
}

fn join(urls: &BTreeSet<EndpointUrl>) -> String {
    let v: Vec<&str> = urls.iter().map(|u| u.as_str()).collect();
    format!("[{}]", v.join(", "))
}
