//! The proxy's runtime configuration, built from the command line by
//! [`crate::config::cli`] or directly by tests.
//!
//! - [`cli`]: the command line, flag for flag as `etcd grpc-proxy start`.
//! - [`env`]: `ETCD_GRPC_PROXY_*` environment variables as flags.
//! - [`duration`]: Go-style duration parsing for etcd's flags.
//! - [`flag_types`]: flag value types parsed as etcd (Go) parses them.

pub mod cli;
pub mod duration;
pub mod env;
pub mod flag_types;

use std::time::Duration;

use crate::kv::cache::CacheLimits;
use crate::kv::namespace::Namespace;
use crate::registration::Registration;
use crate::tls::{BackendTls, ListenTls};
use crate::upstream::discovery::SrvDiscovery;
use crate::upstream::{ChannelSettings, EndpointUrl};

/// Default MemberList refresh interval. etcd's own proxy defaults to 0
/// (never); ours refreshes by default so new members are used.
pub const DEFAULT_AUTO_SYNC: Duration = Duration::from_secs(5);

/// Everything [`crate::run`] needs to serve.
#[derive(Debug, Clone)]
pub struct Config {
    /// The members known at start (`--endpoints`); membership grows from them.
    pub endpoints: Vec<EndpointUrl>,
    /// MemberList refresh interval; `None` keeps `endpoints` fixed.
    pub auto_sync_interval: Option<Duration>,
    /// How often each member's health is probed.
    pub health_interval: Duration,
    /// How members are dialled.
    pub channel: ChannelSettings,
    /// Largest message the proxy sends to a member (`--max-send-bytes`).
    pub max_send_bytes: usize,
    /// Largest message the proxy accepts, from a client or a member (`--max-recv-bytes`).
    pub max_recv_bytes: usize,
    /// HTTP/2 streams one client connection may open (`--max-concurrent-streams`).
    pub max_concurrent_streams: u32,
    /// Client connections served at once (`--max-connections`); past it a
    /// new connection is closed at once and counted.
    pub max_connections: usize,
    /// Heap bytes past which new calls and connections are shed
    /// (`--memory-budget-bytes`; 0 is off).
    pub memory_budget_bytes: usize,
    /// Watchers one client watch stream may hold (`--max-watchers-per-stream`);
    /// past it a create is canceled with a reason and counted.
    pub max_watchers_per_stream: usize,
    /// Server-side keep-alive ping interval (`--grpc-keepalive-interval`).
    pub grpc_keepalive_interval: Duration,
    /// Server-side keep-alive ping timeout (`--grpc-keepalive-timeout`).
    pub grpc_keepalive_timeout: Duration,
    /// The key prefix clients are confined to (`--namespace`), if any.
    pub namespace: Option<Namespace>,
    /// Where this proxy registers itself (`--resolver-prefix`), if anywhere.
    pub registration: Option<Registration>,
    /// Range cache bounds (`--cache-max-entries`, `--cache-max-bytes`).
    pub cache: CacheLimits,
    /// Serializable reads never go back in revision
    /// (`--experimental-serializable-ordering`).
    pub serializable_ordering: bool,
    /// Prefix of the leasing keys (`--experimental-leasing-prefix`); `None`
    /// = every linearizable read goes to etcd.
    pub leasing_prefix: Option<Vec<u8>>,
    /// TLS served to clients (`--cert-file`, `--auto-tls`, ...); `None` = plain TCP.
    pub listen_tls: Option<ListenTls>,
    /// TLS towards members (`--cert`, `--key`, `--cacert`,
    /// `--insecure-skip-tls-verify`); `https` members without it use the system's roots.
    pub backend_tls: Option<BackendTls>,
    /// DNS SRV discovery of the members at start (`--discovery-srv`); what
    /// it finds replaces `endpoints`.
    pub discovery: Option<SrvDiscovery>,
    /// The DNS server SRV discovery asks instead of the system's resolvers
    /// (`$ETCD_GRPC_PROXY_DNS_SERVER`; tests point it at a loopback responder).
    pub dns_server: Option<std::net::SocketAddr>,
    /// `host:port` serving the HTTP endpoints too (`--metrics-addr`, its URL's authority).
    pub metrics_addr: Option<String>,
    /// Key prefixes with metrics of their own (`--metrics-prefixes`); empty: off.
    pub metrics_prefixes: Vec<String>,
    /// The OTLP/gRPC collector spans go to (`--otlp-traces-endpoint`); `None`: no tracing.
    pub otlp_traces_endpoint: Option<String>,
    /// Whether `/debug/pprof/` answers (`--enable-pprof`).
    pub enable_pprof: bool,
    /// How long the proxy keeps serving, not ready, after a shutdown
    /// signal before it closes its listeners (`--drain-grace-period`).
    pub drain_grace_period: Duration,
    /// How long in-flight calls may take after the listeners close before
    /// connections are dropped (`--drain-timeout`).
    pub drain_timeout: Duration,
    /// Per-client limits (`--limit-*`, `--limits-file`; ours); off by default.
    pub client_limits: crate::limits::ClientLimitsConfig,
}

/// Default `--drain-grace-period`: none, so SIGTERM exits as promptly as
/// etcd's proxy does (listener closed, GOAWAY, calls in flight finish within
/// `--drain-timeout`). Deployments behind a load balancer polling `/readyz`
/// set it (the files in `deploy/` use 5s).
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::ZERO;

/// Default `--drain-timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Default `--max-send-bytes` (etcd's 1.5 MiB request limit).
pub const DEFAULT_MAX_SEND_BYTES: usize = 1536 * 1024;

/// Default `--max-recv-bytes`.
pub const DEFAULT_MAX_RECV_BYTES: usize = i32::MAX as usize;

/// Default `--max-connections` (ours): far above what a fleet of
/// well-behaved clients opens to one proxy (each keeps one or a few).
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

/// Default `--memory-budget-bytes` (ours): 4 GiB of heap. A million
/// watchers take about 2 GiB; past the budget new calls get etcd's
/// "too many requests" and new connections are closed, calls in flight finish.
pub const DEFAULT_MEMORY_BUDGET_BYTES: usize = 4 << 30;

/// Default `--max-watchers-per-stream` (ours): clientv3 puts every watch of
/// a client with the same context on one stream; a kube-apiserver without
/// its watch cache opens thousands, not a hundred thousand.
pub const DEFAULT_MAX_WATCHERS_PER_STREAM: usize = 100_000;

/// Default `--max-concurrent-streams`.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = u32::MAX;

/// Default `--grpc-keepalive-interval`.
pub const DEFAULT_GRPC_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2 * 3600);

/// Default `--grpc-keepalive-timeout`.
pub const DEFAULT_GRPC_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// `--grpc-keepalive-min-time` as etcd sets it by default; other values
/// are accepted, but hyper's HTTP/2 server does not police pings.
pub const GRPC_KEEPALIVE_MIN_TIME: Duration = Duration::from_secs(5);

impl Config {
    /// etcd's defaults, for the given endpoints.
    pub fn new(endpoints: Vec<EndpointUrl>) -> Config {
        Config {
            endpoints,
            auto_sync_interval: Some(DEFAULT_AUTO_SYNC),
            health_interval: Duration::from_secs(1),
            channel: ChannelSettings::default(),
            max_send_bytes: DEFAULT_MAX_SEND_BYTES,
            max_recv_bytes: DEFAULT_MAX_RECV_BYTES,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_watchers_per_stream: DEFAULT_MAX_WATCHERS_PER_STREAM,
            memory_budget_bytes: DEFAULT_MEMORY_BUDGET_BYTES,
            grpc_keepalive_interval: DEFAULT_GRPC_KEEPALIVE_INTERVAL,
            grpc_keepalive_timeout: DEFAULT_GRPC_KEEPALIVE_TIMEOUT,
            namespace: None,
            registration: None,
            cache: CacheLimits::default(),
            serializable_ordering: false,
            leasing_prefix: None,
            listen_tls: None,
            backend_tls: None,
            discovery: None,
            dns_server: None,
            metrics_addr: None,
            metrics_prefixes: Vec::new(),
            otlp_traces_endpoint: None,
            enable_pprof: false,
            drain_grace_period: DEFAULT_DRAIN_GRACE,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            client_limits: crate::limits::ClientLimitsConfig::default(),
        }
    }
}
