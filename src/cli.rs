//! The command line, flag for flag as `etcd grpc-proxy start` (etcd 3.4 to
//! 3.6): same names, meanings and defaults. A flag this build does not
//! implement yet is refused with an error naming it when it is given a
//! value other than etcd's default; it is never silently ignored.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::backend::EndpointUrl;
use crate::config::Config;
use crate::duration::parse_go_duration;
use crate::error::ConfigError;

/// `etcd-grpc-proxy`: a drop-in replacement for `etcd grpc-proxy`.
#[derive(Debug, Parser)]
#[command(name = "etcd-grpc-proxy", version, about = "A stateless etcd v3 gRPC proxy that follows cluster membership")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The sub-commands: `start`, or etcd's spelling `grpc-proxy start`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gRPC proxy.
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
    Start(Box<StartArgs>),
}

impl Cli {
    /// The `start` flags, whichever spelling was used.
    pub fn start_args(self) -> StartArgs {
        match self.command {
            Command::Start(a) | Command::GrpcProxy { command: GrpcProxyCommand::Start(a) } => *a,
        }
    }
}

/// Every flag of `etcd grpc-proxy start`.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    // ---- implemented ----
    /// listen address
    #[arg(long, default_value = "127.0.0.1:23790")]
    pub listen_addr: String,
    /// comma separated etcd cluster endpoints
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// how often the member set is refreshed from MemberList (0 = never; etcd's default is 0, ours 5s)
    #[arg(long, default_value = "5s")]
    pub endpoints_auto_sync_interval: String,
    /// keepalive ping interval towards etcd members (0 = off)
    #[arg(long, default_value = "0")]
    pub dial_keepalive_time: String,
    /// keepalive ping timeout towards etcd members
    #[arg(long, default_value = "20s")]
    pub dial_keepalive_timeout: String,
    /// send keepalive pings to members even with no active stream
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub permit_without_stream: bool,
    /// message send limit in bytes, towards etcd members
    #[arg(long, default_value_t = 1536 * 1024)]
    pub max_send_bytes: usize,
    /// message receive limit in bytes, from clients and members
    #[arg(long, default_value_t = i32::MAX as usize)]
    pub max_recv_bytes: usize,
    /// maximum concurrent streams each client connection can open
    #[arg(long, default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// frequency of server-to-client keepalive pings
    #[arg(long, default_value = "2h")]
    pub grpc_keepalive_interval: String,
    /// how long the server waits for a keepalive ping answer
    #[arg(long, default_value = "20s")]
    pub grpc_keepalive_timeout: String,
    /// enable debug-level logging
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub debug: bool,
    /// data directory (used only for --auto-tls certificates, as in etcd)
    #[arg(long, default_value = "default.proxy")]
    pub data_dir: String,
    /// advertise address to register (must be reachable by clients); used with --resolver-prefix
    #[arg(long, default_value = "127.0.0.1:23790")]
    pub advertise_client_url: String,
    /// listen for /metrics, /health, /livez and /readyz on an additional address (a URL, http:// only)
    #[arg(long, default_value = "")]
    pub metrics_addr: String,
    /// serve /debug/pprof/ (GET /debug/pprof/profile?seconds=N answers a CPU flamegraph SVG)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub enable_pprof: bool,
    /// (ours) on SIGTERM/SIGINT, keep serving this long with /readyz at 503 before closing the listener
    #[arg(long, default_value = "5s")]
    pub drain_grace_period: String,
    /// (ours) after the listener closes, how long in-flight calls may take before connections are dropped
    #[arg(long, default_value = "10s")]
    pub drain_timeout: String,

    // ---- not implemented yet: refused unless given etcd's default ----
    /// minimum interval a client should wait before pinging the proxy
    #[arg(long)]
    pub grpc_keepalive_min_time: Option<String>,
    /// domain name to query for SRV records describing cluster endpoints
    #[arg(long)]
    pub discovery_srv: Option<String>,
    /// service name to query when using DNS discovery
    #[arg(long)]
    pub discovery_srv_name: Option<String>,
    /// accept insecure SRV records
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure_discovery: Option<String>,
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
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure_skip_tls_verify: Option<String>,
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
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub auto_tls: Option<String>,
    /// client certificate revocation list
    #[arg(long)]
    pub client_crl_file: Option<String>,
    /// validity in years of --auto-tls certificates
    #[arg(long)]
    pub self_signed_cert_validity: Option<String>,
    /// comma-separated TLS cipher suites between clients and the proxy
    #[arg(long)]
    pub listen_cipher_suites: Option<String>,
    /// minimum TLS version towards clients
    #[arg(long)]
    pub tls_min_version: Option<String>,
    /// maximum TLS version towards clients
    #[arg(long)]
    pub tls_max_version: Option<String>,
    /// ensure serializable reads have monotonically increasing revisions
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub experimental_serializable_ordering: Option<String>,
    /// leasing metadata prefix for disconnected linearized reads
    #[arg(long)]
    pub experimental_leasing_prefix: Option<String>,
    /// enable gRPC logging
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub experimental_enable_grpc_logging: Option<String>,
}

/// Refuses a not-yet-implemented flag unless its value is etcd's default.
fn not_yet(flag: &'static str, value: &Option<String>, etcd_default: &str) -> Result<(), ConfigError> {
    match value {
        Some(v) if v != etcd_default => Err(ConfigError::NotImplemented(flag)),
        _ => Ok(()),
    }
}

fn duration(flag: &'static str, value: &str) -> Result<Duration, ConfigError> {
    parse_go_duration(value).map_err(|reason| ConfigError::InvalidValue { flag, value: value.into(), reason })
}

/// `--metrics-addr`: a URL like `http://127.0.0.1:9379`; its `host:port` is bound.
fn metrics_addr(value: &str) -> Result<Option<String>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let bad = |reason: &str| ConfigError::InvalidValue { flag: "metrics-addr", value: value.into(), reason: reason.into() };
    let rest = if let Some(rest) = value.strip_prefix("http://") {
        rest
    } else if value.starts_with("https://") {
        return Err(bad("https is not supported for --metrics-addr by this proxy; use an http:// URL (or put a TLS terminator in front)"));
    } else {
        return Err(bad("expected a URL like http://127.0.0.1:9379"));
    };
    let authority = rest.trim_end_matches('/');
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !authority.contains('/') && port.parse::<u16>().is_ok() => {
            Ok(Some(authority.to_string()))
        }
        _ => Err(bad("expected host:port after http://, e.g. http://127.0.0.1:9379")),
    }
}

impl StartArgs {
    /// Checks every flag and builds the runtime configuration.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        for (flag, value, default) in [
            ("grpc-keepalive-min-time", &self.grpc_keepalive_min_time, "5s"),
            ("discovery-srv", &self.discovery_srv, ""),
            ("discovery-srv-name", &self.discovery_srv_name, ""),
            ("insecure-discovery", &self.insecure_discovery, "false"),
            ("namespace", &self.namespace, ""),
            ("resolver-prefix", &self.resolver_prefix, ""),
            ("resolver-ttl", &self.resolver_ttl, "0"),
            ("cert", &self.cert, ""),
            ("key", &self.key, ""),
            ("cacert", &self.cacert, ""),
            ("insecure-skip-tls-verify", &self.insecure_skip_tls_verify, "false"),
            ("cert-file", &self.cert_file, ""),
            ("key-file", &self.key_file, ""),
            ("trusted-ca-file", &self.trusted_ca_file, ""),
            ("auto-tls", &self.auto_tls, "false"),
            ("client-crl-file", &self.client_crl_file, ""),
            ("self-signed-cert-validity", &self.self_signed_cert_validity, "1"),
            ("listen-cipher-suites", &self.listen_cipher_suites, ""),
            ("tls-min-version", &self.tls_min_version, "TLS1.2"),
            ("tls-max-version", &self.tls_max_version, ""),
            ("experimental-serializable-ordering", &self.experimental_serializable_ordering, "false"),
            ("experimental-leasing-prefix", &self.experimental_leasing_prefix, ""),
            ("experimental-enable-grpc-logging", &self.experimental_enable_grpc_logging, "false"),
        ] {
            not_yet(flag, value, default)?;
        }

        let mut endpoints = Vec::new();
        for raw in self.endpoints.iter().filter(|e| !e.trim().is_empty()) {
            let url = EndpointUrl::parse(raw, false).map_err(|e| ConfigError::InvalidValue {
                flag: "endpoints",
                value: raw.clone(),
                reason: e.to_string(),
            })?;
            if !endpoints.contains(&url) {
                endpoints.push(url);
            }
        }
        if endpoints.is_empty() {
            return Err(ConfigError::InvalidValue {
                flag: "endpoints",
                value: self.endpoints.join(","),
                reason: "at least one endpoint is required".into(),
            });
        }
        if self.max_send_bytes == 0 || self.max_recv_bytes == 0 {
            return Err(ConfigError::Conflict("--max-send-bytes and --max-recv-bytes must be positive".into()));
        }

        let mut config = Config::new(endpoints);
        let sync = duration("endpoints-auto-sync-interval", &self.endpoints_auto_sync_interval)?;
        config.auto_sync_interval = (!sync.is_zero()).then_some(sync);
        let keepalive = duration("dial-keepalive-time", &self.dial_keepalive_time)?;
        config.channel.keepalive_time = (!keepalive.is_zero()).then_some(keepalive);
        config.channel.keepalive_timeout = duration("dial-keepalive-timeout", &self.dial_keepalive_timeout)?;
        config.channel.permit_without_stream = self.permit_without_stream;
        config.max_send_bytes = self.max_send_bytes;
        config.max_recv_bytes = self.max_recv_bytes;
        config.max_concurrent_streams = self.max_concurrent_streams;
        config.grpc_keepalive_interval = duration("grpc-keepalive-interval", &self.grpc_keepalive_interval)?;
        config.grpc_keepalive_timeout = duration("grpc-keepalive-timeout", &self.grpc_keepalive_timeout)?;
        config.metrics_addr = metrics_addr(&self.metrics_addr)?;
        config.enable_pprof = self.enable_pprof;
        config.drain_grace_period = duration("drain-grace-period", &self.drain_grace_period)?;
        config.drain_timeout = duration("drain-timeout", &self.drain_timeout)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        cli.start_args().into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_etcd() {
        let c = parse(&["p", "start"]).unwrap();
        assert_eq!(c.endpoints[0].as_str(), "http://127.0.0.1:2379");
        assert_eq!(c.max_send_bytes, 1_572_864);
        assert_eq!(c.max_recv_bytes, 2_147_483_647);
        assert_eq!(c.max_concurrent_streams, u32::MAX);
    }

    #[test]
    fn both_spellings_and_both_value_forms() {
        let c = parse(&["p", "grpc-proxy", "start", "--endpoints", "a:1,b:2", "--endpoints=c:3"]).unwrap();
        assert_eq!(c.endpoints.len(), 3);
        let c = parse(&["p", "start", "--endpoints-auto-sync-interval=0"]).unwrap();
        assert!(c.auto_sync_interval.is_none());
    }

    #[test]
    fn unimplemented_flags_are_named() {
        let err = parse(&["p", "start", "--discovery-srv=example.com"]).unwrap_err();
        assert!(err.contains("--discovery-srv"), "{err}");
        // etcd's default spelled out is harmless.
        parse(&["p", "start", "--auto-tls=false"]).unwrap();
    }

    #[test]
    fn metrics_addr_is_an_http_url() {
        let c = parse(&["p", "start", "--metrics-addr=http://127.0.0.1:9379"]).unwrap();
        assert_eq!(c.metrics_addr.as_deref(), Some("127.0.0.1:9379"));
        assert!(parse(&["p", "start"]).unwrap().metrics_addr.is_none());
        let err = parse(&["p", "start", "--metrics-addr=https://127.0.0.1:9379"]).unwrap_err();
        assert!(err.contains("https is not supported"), "{err}");
        assert!(parse(&["p", "start", "--metrics-addr=127.0.0.1:9379"]).is_err());
        assert!(parse(&["p", "start", "--metrics-addr=http://127.0.0.1"]).is_err());
    }

    #[test]
    fn drain_flags_and_pprof() {
        let c = parse(&["p", "start", "--drain-grace-period=1s", "--drain-timeout=3s", "--enable-pprof"]).unwrap();
        assert_eq!(c.drain_grace_period, Duration::from_secs(1));
        assert_eq!(c.drain_timeout, Duration::from_secs(3));
        assert!(c.enable_pprof);
        assert!(parse(&["p", "start", "--drain-grace-period=later"]).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["p", "start", "--endpoints=http://x"]).unwrap_err().contains("--endpoints"));
        assert!(parse(&["p", "start", "--endpoints-auto-sync-interval=soon"]).is_err());
        assert!(parse(&["p", "start", "--no-such-flag"]).is_err());
    }
}
