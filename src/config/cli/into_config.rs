//! From the flags to a [`Config`]: each value checked, each default etcd's.

use super::*;

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

    /// `--limit-*` and `--limits-file`: per-client limits (ours).
    fn client_limits(&self) -> Result<crate::limits::ClientLimitsConfig, ConfigError> {
        for (flag, value) in [
            ("limit-read-rps", self.limit_read_rps),
            ("limit-write-rps", self.limit_write_rps),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::InvalidValue {
                    flag,
                    value: value.to_string(),
                    reason: "a rate is a number of calls per second, 0 or more".into(),
                });
            }
        }
        let defaults = crate::limits::LimitSet {
            read_rps: self.limit_read_rps,
            read_burst: self.limit_read_burst,
            write_rps: self.limit_write_rps,
            write_burst: self.limit_write_burst,
            concurrent_calls: self.limit_concurrent_calls,
            watchers: self.limit_watchers,
            keepalive_streams: self.limit_keepalive_streams,
        };
        let file = non_empty(&self.limits_file).map(std::path::PathBuf::from);
        if let Some(path) = &file {
            // Checked now, so a bad file stops the start with its line named.
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::InvalidValue {
                flag: "limits-file",
                value: path.display().to_string(),
                reason: e.to_string(),
            })?;
            crate::limits::LimitSettings::parse(defaults, &text).map_err(|e| {
                ConfigError::InvalidValue {
                    flag: "limits-file",
                    value: path.display().to_string(),
                    reason: e.to_string(),
                }
            })?;
        }
        Ok(crate::limits::ClientLimitsConfig { defaults, file })
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

    /// Checks every flag and builds the runtime configuration.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        if self.grpc_keepalive_min_time.0 != GRPC_KEEPALIVE_MIN_TIME {
            // Validated, and said out loud: hyper's HTTP/2 server has no
            // ping policing, so no client is ever cut off for pinging
            // more often than this (more lenient than etcd, never stricter).
            tracing::warn!(
                value = %self.grpc_keepalive_min_time,
                "--grpc-keepalive-min-time accepted, but clients pinging more often are not disconnected"
            );
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
        config.auto_sync_interval = self.endpoints_auto_sync_interval.non_zero();
        config.channel.keepalive_time = self.dial_keepalive_time.non_zero();
        config.channel.keepalive_timeout = self.dial_keepalive_timeout.0;
        config.channel.permit_without_stream = self.permit_without_stream;
        config.max_send_bytes = self.max_send_bytes;
        config.max_recv_bytes = self.max_recv_bytes;
        config.max_concurrent_streams = self.max_concurrent_streams;
        config.max_connections = self.max_connections;
        config.max_watchers_per_stream = self.max_watchers_per_stream;
        config.memory_budget_bytes = self.memory_budget_bytes;
        config.grpc_keepalive_interval = self.grpc_keepalive_interval.0;
        config.grpc_keepalive_timeout = self.grpc_keepalive_timeout.0;
        config.namespace = Namespace::new(self.namespace.as_deref().unwrap_or(""));
        config.registration = self.registration()?;
        config.serializable_ordering = self.experimental_serializable_ordering;
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
        config.metrics_prefixes = crate::metrics::prefixes::parse_prefixes(&self.metrics_prefixes)
            .map_err(|e| ConfigError::InvalidValue {
                flag: "metrics-prefixes",
                value: self.metrics_prefixes.join(","),
                reason: e.to_string(),
            })?;
        config.otlp_traces_endpoint = otlp_endpoint(&self.otlp_traces_endpoint)?;
        config.enable_pprof = self.enable_pprof;
        config.drain_grace_period = self.drain_grace_period.0;
        config.drain_timeout = self.drain_timeout.0;
        config.channel.own_user = self.own_user()?;
        config.client_limits = self.client_limits()?;
        Ok(config)
    }

    /// `--cert-file`, `--key-file`, `--trusted-ca-file`, `--auto-tls` and the
    /// flags that shape them; `None` when the listener serves plain TCP.
    fn listen_tls(&self) -> Result<Option<ListenTls>, ConfigError> {
        let cert = non_empty(&self.cert_file);
        let key = non_empty(&self.key_file);
        let ca = non_empty(&self.trusted_ca_file);
        let auto = self.auto_tls;
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
        let cipher_suites =
            (!self.listen_cipher_suites.is_empty()).then(|| self.listen_cipher_suites.join(","));
        let suites = match non_empty(&cipher_suites) {
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
                    ("listen-cipher-suites", &cipher_suites),
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
            insecure_skip_verify: self.insecure_skip_tls_verify,
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
        let insecure = self.insecure_discovery;
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
