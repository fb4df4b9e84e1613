//! The command line, flag for flag as `etcd grpc-proxy start` (etcd 3.4 to
//! 3.7): same names, meanings and defaults, every one implemented. A flag
//! etcd's proxy does not have is refused with an error naming it, and so
//! is a bad value; nothing is silently ignored. Flags of our own (limits,
//! traces, log format, per-prefix metrics) are off by default.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::config::flag_types::{go_bool, GoDuration};
use crate::config::{
    Config, DEFAULT_AUTO_SYNC, DEFAULT_DRAIN_GRACE, DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_GRPC_KEEPALIVE_INTERVAL, DEFAULT_GRPC_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_RECV_BYTES,
    DEFAULT_MAX_SEND_BYTES, DEFAULT_MAX_WATCHERS_PER_STREAM, DEFAULT_MEMORY_BUDGET_BYTES,
    GRPC_KEEPALIVE_MIN_TIME,
};
use crate::error::ConfigError;
use crate::kv::cache::CacheLimits;
use crate::kv::namespace::Namespace;
use crate::registration::Registration;
use crate::tls::{parse_cipher_suites, BackendTls, ListenTls, TlsVersion};
use crate::upstream::discovery::SrvDiscovery;
use crate::upstream::{ChannelSettings, EndpointUrl};

mod into_config;

/// `etcd-grpc-proxy`: a drop-in replacement for `etcd grpc-proxy`.
#[derive(Debug, Parser)]
#[command(
    name = "etcd-grpc-proxy",
    version,
    about = "A stateless etcd v3 gRPC proxy that follows cluster membership"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The sub-commands: `start`, or etcd's spelling `grpc-proxy start`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gRPC proxy.
    // A flag given twice keeps its last value, as cobra/pflag do (list
    // flags add up); tools that build command lines from parts repeat flags.
    #[command(args_override_self = true)]
    Start(Box<StartArgs>),
    /// etcd's spelling: `grpc-proxy start`.
    #[command(name = "grpc-proxy")]
    GrpcProxy {
        /// Only `start` exists.
        #[command(subcommand)]
        command: GrpcProxyCommand,
    },
}

/// Sub-commands of `grpc-proxy`.
#[derive(Debug, Subcommand)]
pub enum GrpcProxyCommand {
    /// Start the gRPC proxy.
    #[command(args_override_self = true)]
    Start(Box<StartArgs>),
}

impl Cli {
    /// The `start` flags, whichever spelling was used.
    pub fn start_args(self) -> StartArgs {
        match self.command {
            Command::Start(a)
            | Command::GrpcProxy {
                command: GrpcProxyCommand::Start(a),
            } => *a,
        }
    }
}

/// Every flag of `etcd grpc-proxy start`.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// listen address
    #[arg(long, default_value = "127.0.0.1:23790")]
    pub listen_addr: String,
    /// comma separated etcd cluster endpoints
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// how often the member set is refreshed from MemberList (0 = never; etcd's default is 0, ours 5s)
    #[arg(long, default_value_t = GoDuration(DEFAULT_AUTO_SYNC))]
    pub endpoints_auto_sync_interval: GoDuration,
    /// keepalive ping interval towards etcd members (0 = off)
    #[arg(long, default_value_t = GoDuration(Duration::ZERO))]
    pub dial_keepalive_time: GoDuration,
    /// keepalive ping timeout towards etcd members
    #[arg(long, default_value_t = GoDuration(ChannelSettings::default().keepalive_timeout))]
    pub dial_keepalive_timeout: GoDuration,
    /// send keepalive pings to members even with no active stream
    #[arg(long, action = ArgAction::Set, value_parser = go_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub permit_without_stream: bool,
    /// message send limit in bytes, towards etcd members
    #[arg(long, default_value_t = DEFAULT_MAX_SEND_BYTES)]
    pub max_send_bytes: usize,
    /// message receive limit in bytes, from clients and members
    #[arg(long, default_value_t = DEFAULT_MAX_RECV_BYTES)]
    pub max_recv_bytes: usize,
    /// maximum concurrent streams each client connection can open
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS)]
    pub max_concurrent_streams: u32,
    /// (ours) client connections served at once; past it new connections are closed and counted
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// (ours) heap bytes past which new calls get "etcdserver: too many requests" and new connections are closed (0 = off)
    #[arg(long, default_value_t = DEFAULT_MEMORY_BUDGET_BYTES)]
    pub memory_budget_bytes: usize,
    /// (ours) watchers one client watch stream may hold; past it a create is canceled and counted
    #[arg(long, default_value_t = DEFAULT_MAX_WATCHERS_PER_STREAM)]
    pub max_watchers_per_stream: usize,
    /// frequency of server-to-client keepalive pings
    #[arg(long, default_value_t = GoDuration(DEFAULT_GRPC_KEEPALIVE_INTERVAL))]
    pub grpc_keepalive_interval: GoDuration,
    /// how long the server waits for a keepalive ping answer
    #[arg(long, default_value_t = GoDuration(DEFAULT_GRPC_KEEPALIVE_TIMEOUT))]
    pub grpc_keepalive_timeout: GoDuration,
    /// enable debug-level logging
    #[arg(long, action = ArgAction::Set, value_parser = go_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub debug: bool,
    /// data directory (used only for --auto-tls certificates, as in etcd)
    #[arg(long, default_value = "default.proxy")]
    pub data_dir: String,
    /// advertise address to register (must be reachable by clients); used with --resolver-prefix
    #[arg(long, default_value = "127.0.0.1:23790")]
    pub advertise_client_url: String,
    /// (ours) most serializable Range answers cached; 0 turns the range cache off
    #[arg(long, default_value_t = CacheLimits::default().max_entries)]
    pub cache_max_entries: usize,
    /// (ours) most bytes of Range answers cached
    #[arg(long, default_value_t = CacheLimits::default().max_bytes)]
    pub cache_max_bytes: usize,
    /// listen for /metrics, /health, /livez and /readyz on an additional address (a URL, http:// only)
    #[arg(long, default_value = "")]
    pub metrics_addr: String,
    /// (ours) comma-separated key prefixes with metrics of their own (requests, bytes, watchers, events; at most 64; given twice, the lists add up)
    #[arg(long, value_delimiter = ',')]
    pub metrics_prefixes: Vec<String>,
    /// (ours) log format on stderr: json (one object per line, as etcd's zap logger writes) or text (for people; coloured only on a terminal)
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    pub log_format: String,
    /// (ours) OTLP/gRPC collector to export a trace span per call to (e.g. http://127.0.0.1:4317); off when empty
    #[arg(long, default_value = "")]
    pub otlp_traces_endpoint: String,
    /// serve /debug/pprof/ (GET /debug/pprof/profile?seconds=N answers a CPU flamegraph SVG)
    #[arg(long, action = ArgAction::Set, value_parser = go_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub enable_pprof: bool,
    /// (ours) on SIGTERM/SIGINT, keep serving this long with /readyz at 503 before closing the listener
    #[arg(long, default_value_t = GoDuration(DEFAULT_DRAIN_GRACE))]
    pub drain_grace_period: GoDuration,
    /// (ours) after the listener closes, how long in-flight calls may take before connections are dropped
    #[arg(long, default_value_t = GoDuration(DEFAULT_DRAIN_TIMEOUT))]
    pub drain_timeout: GoDuration,
    /// (ours) etcd user the proxy's own calls run as (health probes, MemberList, registration, leasing), with auth on; as etcdctl's --user, "name" or "name:password"
    #[arg(long)]
    pub user: Option<String>,
    /// (ours) file holding the password of --user (its first line)
    #[arg(long)]
    pub password_file: Option<String>,
    /// (ours) per-client limit: read calls (Range, lease and election reads) per second; 0 = off
    #[arg(long, default_value_t = 0.0)]
    pub limit_read_rps: f64,
    /// (ours) per-client limit: reads allowed at once after an idle spell (0 = the rate)
    #[arg(long, default_value_t = 0)]
    pub limit_read_burst: u32,
    /// (ours) per-client limit: write calls (Put, DeleteRange, Txn, Compact, lease grant/revoke, lock, election) per second; 0 = off
    #[arg(long, default_value_t = 0.0)]
    pub limit_write_rps: f64,
    /// (ours) per-client limit: writes allowed at once after an idle spell (0 = the rate)
    #[arg(long, default_value_t = 0)]
    pub limit_write_burst: u32,
    /// (ours) per-client limit: unary calls in flight at once; 0 = off
    #[arg(long, default_value_t = 0)]
    pub limit_concurrent_calls: u32,
    /// (ours) per-client limit: watchers open at once, over all its streams; 0 = off
    #[arg(long, default_value_t = 0)]
    pub limit_watchers: u32,
    /// (ours) per-client limit: lease keep-alive streams open at once; 0 = off
    #[arg(long, default_value_t = 0)]
    pub limit_keepalive_streams: u32,
    /// (ours) file of per-client limits (defaults and [user:NAME], [cn:NAME], [ip:ADDR] sections), reloaded when it changes
    #[arg(long)]
    pub limits_file: Option<String>,
    /// minimum interval a client should wait before pinging the proxy
    #[arg(long, default_value_t = GoDuration(GRPC_KEEPALIVE_MIN_TIME))]
    pub grpc_keepalive_min_time: GoDuration,
    /// domain name to query for SRV records describing cluster endpoints (asks the system's DNS, or $ETCD_GRPC_PROXY_DNS_SERVER when set)
    #[arg(long)]
    pub discovery_srv: Option<String>,
    /// service name to query when using DNS discovery
    #[arg(long)]
    pub discovery_srv_name: Option<String>,
    /// accept insecure SRV records
    #[arg(long, action = ArgAction::Set, value_parser = go_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub insecure_discovery: bool,
    /// string to prefix to all keys for namespacing requests
    #[arg(long)]
    pub namespace: Option<String>,
    /// prefix to use for registering the proxy
    #[arg(long)]
    pub resolver_prefix: Option<String>,
    /// TTL in seconds when registering proxy endpoints
    #[arg(long)]
    pub resolver_ttl: Option<String>,
    /// TLS certificate for connections to etcd members
    #[arg(long)]
    pub cert: Option<String>,
    /// TLS key for connections to etcd members
    #[arg(long)]
    pub key: Option<String>,
    /// CA bundle to verify etcd members
    #[arg(long)]
    pub cacert: Option<String>,
    /// skip verification of etcd members' certificates
    #[arg(long, action = ArgAction::Set, value_parser = go_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub insecure_skip_tls_verify: bool,
    /// TLS certificate the proxy serves clients with
    #[arg(long)]
    pub cert_file: Option<String>,
    /// TLS key the proxy serves clients with
    #[arg(long)]
    pub key_file: Option<String>,
    /// CA bundle to verify client certificates
    #[arg(long)]
    pub trusted_ca_file: Option<String>,
    /// serve TLS with generated certificates
    #[arg(long, action = ArgAction::Set, value_parser = go_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub auto_tls: bool,
    /// client certificate revocation list
    #[arg(long)]
    pub client_crl_file: Option<String>,
    /// validity in years of --auto-tls certificates
    #[arg(long)]
    pub self_signed_cert_validity: Option<String>,
    /// comma-separated TLS cipher suites between clients and the proxy
    /// (a list as etcd's: given twice, the lists add up)
    #[arg(long, value_delimiter = ',')]
    pub listen_cipher_suites: Vec<String>,
    /// minimum TLS version towards clients
    #[arg(long)]
    pub tls_min_version: Option<String>,
    /// maximum TLS version towards clients
    #[arg(long)]
    pub tls_max_version: Option<String>,
    /// ensure serializable reads have monotonically increasing revisions
    #[arg(long, action = ArgAction::Set, value_parser = go_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub experimental_serializable_ordering: bool,
    /// leasing metadata prefix for disconnected linearized reads
    #[arg(long)]
    pub experimental_leasing_prefix: Option<String>,
    /// enable gRPC logging
    #[arg(long, action = ArgAction::Set, value_parser = go_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub experimental_enable_grpc_logging: bool,
}

/// `--metrics-addr`: a URL like `http://127.0.0.1:9379`; its `host:port` is bound.
fn metrics_addr(value: &str) -> Result<Option<String>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let bad = |reason: &str| ConfigError::InvalidValue {
        flag: "metrics-addr",
        value: value.into(),
        reason: reason.into(),
    };
    let rest = if let Some(rest) = value.strip_prefix("http://") {
        rest
    } else if value.starts_with("https://") {
        return Err(bad("https is not supported for --metrics-addr by this proxy; use an http:// URL (or put a TLS terminator in front)"));
    } else {
        return Err(bad("expected a URL like http://127.0.0.1:9379"));
    };
    let authority = rest.trim_end_matches('/');
    match authority.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && !authority.contains('/') && port.parse::<u16>().is_ok() =>
        {
            Ok(Some(authority.to_string()))
        }
        _ => Err(bad(
            "expected host:port after http://, e.g. http://127.0.0.1:9379",
        )),
    }
}

/// `--otlp-traces-endpoint`: an `http://` URL of an OTLP/gRPC collector
/// (the exporter is built without TLS: a local collector or agent).
fn otlp_endpoint(value: &str) -> Result<Option<String>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let bad = |reason: &str| ConfigError::InvalidValue {
        flag: "otlp-traces-endpoint",
        value: value.into(),
        reason: reason.into(),
    };
    if value.starts_with("https://") {
        return Err(bad("https is not supported for --otlp-traces-endpoint by this proxy; use an http:// URL (a collector or agent next to the proxy)"));
    }
    let rest = value
        .strip_prefix("http://")
        .ok_or_else(|| bad("expected a URL like http://127.0.0.1:4317"))?;
    if rest.trim_end_matches('/').is_empty() || value.parse::<http::Uri>().is_err() {
        return Err(bad("expected a URL like http://127.0.0.1:4317"));
    }
    Ok(Some(value.to_string()))
}

/// The environment variable naming the DNS server `--discovery-srv` asks
/// (`ip:port`), instead of the system's resolvers.
pub const DNS_SERVER_ENV: &str = "ETCD_GRPC_PROXY_DNS_SERVER";

fn dns_server_from_env() -> Result<Option<SocketAddr>, ConfigError> {
    match std::env::var(DNS_SERVER_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse::<SocketAddr>().map(Some).map_err(|e| {
            ConfigError::Conflict(format!(
                "${DNS_SERVER_ENV}={v:?} is not an ip:port address: {e}"
            ))
        }),
        _ => Ok(None),
    }
}

/// The flag's value, treating an empty string as not given (etcd's default).
fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests;
