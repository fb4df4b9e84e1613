//! One member: its channel, health flag, in-flight count, and the settings every channel is built with.

use super::*;
use crate::sync::lock;

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
    pub(super) fn channel(&self, url: &EndpointUrl) -> Result<Channel, tonic::transport::Error> {
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
    pub(super) healthy: AtomicBool,
    /// Calls under way on this member; the balancer prefers the less busy.
    pub(super) inflight: AtomicUsize,
    /// The member's ID once a Status answer told it (0 = not yet known).
    pub(super) member_id: AtomicU64,
    /// The leader this member last reported (0 until probed or without leader).
    pub(super) leader_seen: AtomicU64,
    /// The header of the member's last Status answer, for answers the proxy
    /// makes itself (etcd always sends watch responses with one).
    pub(super) last_header: std::sync::Mutex<Option<ResponseHeader>>,
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
        *lock(&self.last_header) = Some(header);
    }

    /// The header of the member's last Status answer, if it has answered.
    pub fn last_header(&self) -> Option<ResponseHeader> {
        *lock(&self.last_header)
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
