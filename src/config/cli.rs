//! The command line, flag for flag as `etcd grpc-proxy start` (etcd 3.4 to
//! 3.6): same names, meanings and defaults. A flag this build does not
//! implement yet is refused with an error naming it when it is given a
//! value other than etcd's default; it is never silently ignored.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::duration::parse_go_duration;
use crate::config::Config;
use crate::error::ConfigError;
use crate::kv::cache::CacheLimits;
use crate::kv::namespace::Namespace;
use crate::registration::Registration;
use crate::tls::{parse_cipher_suites, BackendTls, ListenTls, TlsVersion};
use crate::upstream::discovery::SrvDiscovery;
use crate::upstream::EndpointUrl;

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
    /// (ours) most serializable Range answers cached; 0 turns the range cache off
    #[arg(long, default_value_t = 2048)]
    pub cache_max_entries: usize,
    /// (ours) most bytes of Range answers cached
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub cache_max_bytes: usize,
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
    /// (ours) etcd user the proxy's own calls run as (health probes, MemberList, registration, leasing), with auth on; as etcdctl's --user, "name" or "name:password"
    #[arg(long)]
    pub user: Option<String>,
    /// (ours) file holding the password of --user (its first line)
    #[arg(long)]
    pub password_file: Option<String>,

    // ---- not implemented yet: refused unless given etcd's default ----
    /// minimum interval a client should wait before pinging the proxy
    #[arg(long)]
    pub grpc_keepalive_min_time: Option<String>,
    /// domain name to query for SRV records describing cluster endpoints (asks the system's DNS, or $ETCD_GRPC_PROXY_DNS_SERVER when set)
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

fn duration(flag: &'static str, value: &str) -> Result<Duration, ConfigError> {
    parse_go_duration(value).map_err(|reason| ConfigError::InvalidValue {
        flag,
        value: value.into(),
        reason,
    })
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

impl StartArgs {
    /// `--user` and `--password-file`: the etcd user of the proxy's own calls.
    fn own_user(&self) -> Result<Option<crate::upstream::OwnUser>, ConfigError> {
        let Some(user) = self.user.as_deref().filter(|u| !u.is_empty()) else {
            if self.password_file.is_some() {
                return Err(ConfigError::Conflict("--password-file needs --user".into()));
            }
            return Ok(None);
        };
        let (name, inline) = match user.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (user, None),
        };
        let password = match (&self.password_file, inline) {
            (Some(_), Some(_)) => return Err(ConfigError::Conflict(
                "give the password either in --user=name:password or in --password-file, not both"
                    .into(),
            )),
            (Some(path), None) => {
                let text = std::fs::read(path).map_err(|e| ConfigError::InvalidValue {
                    flag: "password-file",
                    value: path.clone(),
                    reason: e.to_string(),
                })?;
                let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
                line.strip_suffix(b"\r").unwrap_or(line).to_vec()
            }
            (None, Some(p)) => p.as_bytes().to_vec(),
            (None, None) => {
                return Err(ConfigError::Conflict(
                    "--user needs a password: --password-file, or --user=name:password".into(),
                ))
            }
        };
        if name.is_empty() {
            return Err(ConfigError::InvalidValue {
                flag: "user",
                value: user.into(),
                reason: "the user name is empty".into(),
            });
        }
        Ok(Some(crate::upstream::OwnUser {
            name: name.as_bytes().to_vec(),
            password,
        }))
    }

    /// `--resolver-prefix`, `--resolver-ttl` and `--advertise-client-url`,
    /// checked together as etcd checks them.
    fn registration(&self) -> Result<Option<Registration>, ConfigError> {
        let prefix = self.resolver_prefix.clone().unwrap_or_default();
        let raw_ttl = self.resolver_ttl.clone().unwrap_or_else(|| "0".into());
        let ttl: i64 = raw_ttl
            .trim()
            .parse()
            .map_err(|_| ConfigError::InvalidValue {
                flag: "resolver-ttl",
                value: raw_ttl.clone(),
                reason: "expected a whole number of seconds".into(),
            })?;
        match (prefix.is_empty(), ttl) {
            (true, t) if t > 0 => Err(ConfigError::Conflict(format!(
                "invalid resolver-prefix \"\": --resolver-ttl={t} needs --resolver-prefix"
            ))),
            (true, _) => Ok(None),
            (false, t) if t < 1 => Err(ConfigError::Conflict(format!(
                "invalid resolver-ttl {t}: --resolver-prefix needs --resolver-ttl of at least 1 second"
            ))),
            (false, t) if self.advertise_client_url.trim().is_empty() => Err(ConfigError::Conflict(format!(
                "invalid advertise-client-url \"\": --resolver-prefix with --resolver-ttl={t} needs the address to register"
            ))),
            (false, t) => Ok(Some(Registration {
                prefix: prefix.trim_end_matches('/').to_string(),
                ttl_secs: t,
                advertise: self.advertise_client_url.trim().to_string(),
                hostname: crate::registration::hostname(),
            })),
        }
    }

    /// `--experimental-enable-grpc-logging`: the gRPC/HTTP2 stack's own logs
    /// (tonic, hyper, h2) at debug level.
    pub fn grpc_logging(&self) -> Result<bool, ConfigError> {
        flag_bool(
            "experimental-enable-grpc-logging",
            &self.experimental_enable_grpc_logging,
        )
    }

    /// Checks every flag and builds the runtime configuration.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        self.grpc_logging()?;
        if let Some(raw) = &self.grpc_keepalive_min_time {
            let min = duration("grpc-keepalive-min-time", raw)?;
            if min != Duration::from_secs(5) {
                // Validated, and said out loud: hyper's HTTP/2 server has no
                // ping policing, so no client is ever cut off for pinging
                // more often than this (more lenient than etcd, never stricter).
                tracing::warn!(
                    value = %raw,
                    "--grpc-keepalive-min-time accepted, but clients pinging more often are not disconnected"
                );
            }
        }

        let backend_tls = self.backend_tls()?;
        let mut endpoints = Vec::new();
        for raw in self.endpoints.iter().filter(|e| !e.trim().is_empty()) {
            let url = EndpointUrl::parse(raw, backend_tls.is_some()).map_err(|e| {
                ConfigError::InvalidValue {
                    flag: "endpoints",
                    value: raw.clone(),
                    reason: e.to_string(),
                }
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
            return Err(ConfigError::Conflict(
                "--max-send-bytes and --max-recv-bytes must be positive".into(),
            ));
        }

        let mut config = Config::new(endpoints);
        let sync = duration(
            "endpoints-auto-sync-interval",
            &self.endpoints_auto_sync_interval,
        )?;
        config.auto_sync_interval = (!sync.is_zero()).then_some(sync);
        let keepalive = duration("dial-keepalive-time", &self.dial_keepalive_time)?;
        config.channel.keepalive_time = (!keepalive.is_zero()).then_some(keepalive);
        config.channel.keepalive_timeout =
            duration("dial-keepalive-timeout", &self.dial_keepalive_timeout)?;
        config.channel.permit_without_stream = self.permit_without_stream;
        config.max_send_bytes = self.max_send_bytes;
        config.max_recv_bytes = self.max_recv_bytes;
        config.max_concurrent_streams = self.max_concurrent_streams;
        config.grpc_keepalive_interval =
            duration("grpc-keepalive-interval", &self.grpc_keepalive_interval)?;
        config.grpc_keepalive_timeout =
            duration("grpc-keepalive-timeout", &self.grpc_keepalive_timeout)?;
        config.namespace = Namespace::new(self.namespace.as_deref().unwrap_or(""));
        config.registration = self.registration()?;
        config.serializable_ordering = flag_bool(
            "experimental-serializable-ordering",
            &self.experimental_serializable_ordering,
        )?;
        config.leasing_prefix = self
            .experimental_leasing_prefix
            .clone()
            .filter(|p| !p.is_empty())
            .map(String::into_bytes);
        config.cache = CacheLimits {
            max_entries: self.cache_max_entries,
            max_bytes: self.cache_max_bytes,
        };
        config.listen_tls = self.listen_tls()?;
        config.backend_tls = backend_tls;
        config.discovery = self.discovery()?;
        config.dns_server = dns_server_from_env()?;
        config.metrics_addr = metrics_addr(&self.metrics_addr)?;
        config.enable_pprof = self.enable_pprof;
        config.drain_grace_period = duration("drain-grace-period", &self.drain_grace_period)?;
        config.drain_timeout = duration("drain-timeout", &self.drain_timeout)?;
        config.channel.own_user = self.own_user()?;
        Ok(config)
    }

    /// `--cert-file`, `--key-file`, `--trusted-ca-file`, `--auto-tls` and the
    /// flags that shape them; `None` when the listener serves plain TCP.
    fn listen_tls(&self) -> Result<Option<ListenTls>, ConfigError> {
        let cert = non_empty(&self.cert_file);
        let key = non_empty(&self.key_file);
        let ca = non_empty(&self.trusted_ca_file);
        let auto = flag_bool("auto-tls", &self.auto_tls)?;
        let validity = match non_empty(&self.self_signed_cert_validity) {
            None => 1,
            Some(v) => v.parse::<u32>().map_err(|e| ConfigError::InvalidValue {
                flag: "self-signed-cert-validity",
                value: v.into(),
                reason: e.to_string(),
            })?,
        };
        let min = match non_empty(&self.tls_min_version) {
            None => TlsVersion::Tls12,
            Some(v) => TlsVersion::parse(v).map_err(|reason| ConfigError::InvalidValue {
                flag: "tls-min-version",
                value: v.into(),
                reason,
            })?,
        };
        let max = match non_empty(&self.tls_max_version) {
            None => None,
            Some(v) => Some(
                TlsVersion::parse(v).map_err(|reason| ConfigError::InvalidValue {
                    flag: "tls-max-version",
                    value: v.into(),
                    reason,
                })?,
            ),
        };
        let suites = match non_empty(&self.listen_cipher_suites) {
            None => Vec::new(),
            Some(v) => parse_cipher_suites(v).map_err(|reason| ConfigError::InvalidValue {
                flag: "listen-cipher-suites",
                value: v.into(),
                reason,
            })?,
        };
        if auto && validity == 0 {
            return Err(ConfigError::Conflict(
                "--self-signed-cert-validity is invalid: it must be greater than 0 with --auto-tls"
                    .into(),
            ));
        }
        let mut tls = match (cert, key, ca) {
            (Some(cert), Some(key), _) => ListenTls::from_files(cert, key),
            (None, None, None) if auto => ListenTls::auto(Path::new(&self.data_dir), &self.listen_addr, validity),
            (None, None, None) => {
                for (flag, value) in [
                    ("client-crl-file", &self.client_crl_file),
                    ("listen-cipher-suites", &self.listen_cipher_suites),
                    ("tls-max-version", &self.tls_max_version),
                ] {
                    if non_empty(value).is_some() {
                        tracing::warn!(flag, "flag has no effect: the proxy serves plain TCP (no --cert-file or --auto-tls)");
                    }
                }
                return Ok(None);
            }
            (None, _, _) => {
                return Err(ConfigError::Conflict(
                    "--cert-file is required with --key-file or --trusted-ca-file (or use --auto-tls without them)".into(),
                ))
            }
            (Some(_), None, _) => return Err(ConfigError::Conflict("--key-file is required with --cert-file".into())),
        };
        if let Some(ca) = ca {
            tls.trusted_ca = Some(ca.into());
        }
        tls.client_crl = non_empty(&self.client_crl_file).map(Into::into);
        tls.cipher_suites = suites;
        tls.min_version = min;
        tls.max_version = max;
        tls.check().map_err(ConfigError::Conflict)?;
        Ok(Some(tls))
    }

    /// `--cert`, `--key`, `--cacert`, `--insecure-skip-tls-verify`; `None` when none is set.
    fn backend_tls(&self) -> Result<Option<BackendTls>, ConfigError> {
        let tls = BackendTls {
            cert: non_empty(&self.cert).map(Into::into),
            key: non_empty(&self.key).map(Into::into),
            cacert: non_empty(&self.cacert).map(Into::into),
            insecure_skip_verify: flag_bool(
                "insecure-skip-tls-verify",
                &self.insecure_skip_tls_verify,
            )?,
        };
        match (&tls.cert, &tls.key) {
            (Some(_), None) => return Err(ConfigError::Conflict("--cert needs --key".into())),
            (None, Some(_)) => return Err(ConfigError::Conflict("--key needs --cert".into())),
            _ => {}
        }
        let any = tls.cert.is_some() || tls.cacert.is_some() || tls.insecure_skip_verify;
        Ok(any.then_some(tls))
    }

    /// `--discovery-srv`, `--discovery-srv-name`, `--insecure-discovery`.
    fn discovery(&self) -> Result<Option<SrvDiscovery>, ConfigError> {
        let insecure = flag_bool("insecure-discovery", &self.insecure_discovery)?;
        let Some(domain) = non_empty(&self.discovery_srv) else {
            if non_empty(&self.discovery_srv_name).is_some() {
                return Err(ConfigError::Conflict(
                    "--discovery-srv-name needs --discovery-srv".into(),
                ));
            }
            return Ok(None);
        };
        Ok(Some(SrvDiscovery {
            domain: domain.to_string(),
            service_name: non_empty(&self.discovery_srv_name).map(str::to_string),
            insecure,
        }))
    }
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

/// A boolean flag as Go's `strconv.ParseBool` reads it.
fn flag_bool(flag: &'static str, value: &Option<String>) -> Result<bool, ConfigError> {
    match value.as_deref() {
        None => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False" | "") => Ok(false),
        Some(other) => Err(ConfigError::InvalidValue {
            flag,
            value: other.into(),
            reason: "expected true or false".into(),
        }),
    }
}

#[cfg(test)]
mod tests;
