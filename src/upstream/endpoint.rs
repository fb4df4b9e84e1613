//! Parsing of etcd client endpoints as operators write them
//! (`127.0.0.1:2379`, `http://host:2379`, `https://host:2379`).

use std::fmt;

/// A validated etcd client endpoint, normalised to `scheme://host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointUrl(String);

/// Why an endpoint string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EndpointError(String);

impl EndpointUrl {
    /// Parses one endpoint; a missing scheme means `http` (or `https` when
    /// `default_tls` is set, as etcd's client does with TLS flags).
    pub fn parse(raw: &str, default_tls: bool) -> Result<Self, EndpointError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(EndpointError("empty endpoint".into()));
        }
        let (scheme, rest) = match raw.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None if default_tls => ("https".to_string(), raw),
            None => ("http".to_string(), raw),
        };
        if scheme != "http" && scheme != "https" {
            return Err(EndpointError(format!(
                "unsupported scheme {scheme:?} in endpoint {raw:?} (use http:// or https://)"
            )));
        }
        let hostport = rest.trim_end_matches('/');
        if hostport.contains('/') {
            return Err(EndpointError(format!(
                "endpoint {raw:?} must not have a path"
            )));
        }
        let (host, port) = hostport.rsplit_once(':').ok_or_else(|| {
            EndpointError(format!("endpoint {raw:?} has no port (expected host:port)"))
        })?;
        let host_ok = !host.is_empty()
            && (host.starts_with('[') && host.ends_with(']')
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
        if !host_ok {
            return Err(EndpointError(format!(
                "endpoint {raw:?} has an invalid host {host:?}"
            )));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => {
                return Err(EndpointError(format!(
                    "endpoint {raw:?} has an invalid port {port:?}"
                )))
            }
        }
        Ok(EndpointUrl(format!("{scheme}://{host}:{port}")))
    }

    /// The normalised URL, e.g. `http://127.0.0.1:2379`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the member is reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("https://")
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_etcdctl_accepts() {
        for (raw, want) in [
            ("127.0.0.1:2379", "http://127.0.0.1:2379"),
            ("http://127.0.0.1:2379", "http://127.0.0.1:2379"),
            ("https://localhost:2379/", "https://localhost:2379"),
            ("[::1]:2379", "http://[::1]:2379"),
        ] {
            assert_eq!(
                EndpointUrl::parse(raw, false).unwrap().as_str(),
                want,
                "{raw}"
            );
        }
    }

    #[test]
    fn refuses_malformed_endpoints() {
        for raw in [
            "",
            "127.0.0.1",
            "ftp://h:1",
            "h:notaport",
            "h:0",
            "h:70000",
            "http://h:1/x",
            "a b:1",
        ] {
            assert!(
                EndpointUrl::parse(raw, false).is_err(),
                "{raw} should be refused"
            );
        }
    }
}
