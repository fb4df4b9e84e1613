//! DNS SRV discovery of the cluster's members at start (`--discovery-srv`,
//! `--discovery-srv-name`, `--insecure-discovery`), as etcd does it.
//!
//! Both `_etcd-client-ssl._tcp.<domain>` (members as `https://`) and
//! `_etcd-client._tcp.<domain>` (as `http://`) are asked; with a service
//! name the service gets `-<name>` appended (`_etcd-client-ssl-<name>._tcp.<domain>`).
//! It fails only when both lookups fail. Plain `http` records are used only
//! with `--insecure-discovery`, as etcd keeps only endpoints it can reach
//! securely otherwise.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use tracing::{info, warn};

use crate::upstream::EndpointUrl;

/// What `--discovery-srv` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvDiscovery {
    /// The domain whose SRV records list the members.
    pub domain: String,
    /// `--discovery-srv-name`: suffix of the service name, if any.
    pub service_name: Option<String>,
    /// `--insecure-discovery`: also use plain `http` records.
    pub insecure: bool,
}

/// Why discovery found no member to use.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The resolver could not be set up (e.g. unreadable /etc/resolv.conf).
    #[error("--discovery-srv: cannot set up the DNS resolver: {0}")]
    Resolver(String),
    /// Neither SRV lookup answered.
    #[error("--discovery-srv {domain}: DNS SRV lookups failed: {https} and {http}")]
    Lookup {
        /// The domain asked.
        domain: String,
        /// Why the `https` lookup failed.
        https: String,
        /// Why the `http` lookup failed.
        http: String,
    },
    /// Records were found, but none can be used.
    #[error("--discovery-srv {domain}: {reason}")]
    Unusable {
        /// The domain asked.
        domain: String,
        /// Why nothing is usable.
        reason: String,
    },
}

/// The SRV service name for a scheme, etcd's way: `etcd-client`,
/// `etcd-client-ssl`, then `-<service_name>` when given.
pub fn srv_service(service_name: Option<&str>, https: bool) -> String {
    let mut s = String::from("etcd-client");
    if https {
        s.push_str("-ssl");
    }
    if let Some(name) = service_name.filter(|n| !n.is_empty()) {
        s.push('-');
        s.push_str(name);
    }
    s
}

/// Asks DNS for the members' client URLs: https ones first, then http
/// ones (only with `--insecure-discovery`). `dns_server` replaces the
/// system's resolvers when set.
pub async fn discover(
    d: &SrvDiscovery,
    dns_server: Option<SocketAddr>,
) -> Result<Vec<EndpointUrl>, DiscoveryError> {
    let resolver = match dns_server {
        Some(addr) => {
            let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
            let config = ResolverConfig::from_parts(None, vec![], group);
            let mut b =
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
            b.options_mut().timeout = Duration::from_secs(2);
            b.options_mut().attempts = 2;
            b.build()
        }
        None => TokioResolver::builder_tokio()
            .map_err(|e| DiscoveryError::Resolver(e.to_string()))?
            .build(),
    };
    let domain = d.domain.trim_end_matches('.');
    let mut found: Vec<(bool, String, u16)> = Vec::new();
    let mut errors = Vec::new();
    for https in [true, false] {
        let name = format!(
            "_{}._tcp.{domain}.",
            srv_service(d.service_name.as_deref(), https)
        );
        match resolver.srv_lookup(name.as_str()).await {
            Ok(lookup) => {
                for srv in lookup.iter() {
                    let target = srv.target().to_utf8();
                    found.push((https, target.trim_end_matches('.').to_string(), srv.port()));
                }
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    if errors.len() == 2 {
        return Err(DiscoveryError::Lookup {
            domain: d.domain.clone(),
            https: errors.remove(0),
            http: errors.remove(0),
        });
    }
    let mut endpoints = Vec::new();
    let mut insecure_skipped = Vec::new();
    for (https, host, port) in found {
        let scheme = if https { "https" } else { "http" };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let raw = format!("{scheme}://{host}:{port}");
        if !https && !d.insecure {
            insecure_skipped.push(raw);
            continue;
        }
        match EndpointUrl::parse(&raw, https) {
            Ok(url) if !endpoints.contains(&url) => endpoints.push(url),
            Ok(_) => {}
            Err(e) => warn!(record = %raw, error = %e, "ignoring unusable SRV record"),
        }
    }
    if !insecure_skipped.is_empty() {
        warn!(skipped = %insecure_skipped.join(","), "plain-http SRV records ignored; pass --insecure-discovery to use them");
    }
    if endpoints.is_empty() {
        let reason = if insecure_skipped.is_empty() {
            "no SRV record names a usable member".to_string()
        } else {
            format!(
                "only plain-http members found ({}); pass --insecure-discovery to use them",
                insecure_skipped.join(", ")
            )
        };
        return Err(DiscoveryError::Unusable {
            domain: d.domain.clone(),
            reason,
        });
    }
    info!(
        srv = %d.domain,
        endpoints = %endpoints.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(","),
        "discovered cluster from SRV"
    );
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_as_etcd_builds_them() {
        assert_eq!(srv_service(None, true), "etcd-client-ssl");
        assert_eq!(srv_service(None, false), "etcd-client");
        assert_eq!(srv_service(Some("prod"), true), "etcd-client-ssl-prod");
        assert_eq!(srv_service(Some(""), false), "etcd-client");
    }
}
