//! TLS towards clients as the flags give it (`--cert-file`/`--key-file` or
//! `--auto-tls`, `--trusted-ca-file`, `--client-crl-file`,
//! `--listen-cipher-suites`, `--tls-min-version`/`--tls-max-version`), and
//! etcd's start-up checks of those flags; nothing is read from disk here.

use std::path::{Path, PathBuf};

use rustls::CipherSuite;

/// A TLS protocol version, as etcd spells it (`TLS1.2`, `TLS1.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    /// Parses etcd's spelling; TLS 1.0 and 1.1 are refused as etcd refuses them.
    pub fn parse(s: &str) -> Result<TlsVersion, String> {
        match s {
            "TLS1.2" => Ok(TlsVersion::Tls12),
            "TLS1.3" => Ok(TlsVersion::Tls13),
            other => Err(format!(
                "unexpected TLS version {other:?} (must be one of: TLS1.2, TLS1.3)"
            )),
        }
    }
}

/// Where the certificate served to clients comes from.
#[derive(Debug, Clone)]
pub enum ServerCert {
    /// `--cert-file` and `--key-file`.
    Files {
        /// PEM certificate chain.
        cert: PathBuf,
        /// PEM private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// `--auto-tls`: self-signed, kept in `dir` (`cert.pem`, `key.pem`) and
    /// reused from there on the next start, as etcd does.
    Auto {
        /// `<data-dir>/fixtures/proxy`.
        dir: PathBuf,
        /// Host names and IPs the certificate names.
        hosts: Vec<String>,
        /// Validity in years (`--self-signed-cert-validity`, > 0).
        validity_years: u32,
    },
}

/// TLS towards clients: how the proxy's listener serves TLS.
#[derive(Debug, Clone)]
pub struct ListenTls {
    /// The certificate served.
    pub cert: ServerCert,
    /// `--trusted-ca-file`: when set, clients must present a certificate it signed.
    pub trusted_ca: Option<PathBuf>,
    /// `--client-crl-file`: client certificates revoked by it are refused.
    pub client_crl: Option<PathBuf>,
    /// `--listen-cipher-suites`: TLS 1.2 suites to allow; empty = all rustls has.
    pub cipher_suites: Vec<CipherSuite>,
    /// `--tls-min-version`.
    pub min_version: TlsVersion,
    /// `--tls-max-version`; `None` = the highest (TLS 1.3).
    pub max_version: Option<TlsVersion>,
}

impl ListenTls {
    /// TLS from a certificate and key file, with etcd's defaults otherwise.
    pub fn from_files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> ListenTls {
        ListenTls {
            cert: ServerCert::Files {
                cert: cert.into(),
                key: key.into(),
            },
            trusted_ca: None,
            client_crl: None,
            cipher_suites: Vec::new(),
            min_version: TlsVersion::Tls12,
            max_version: None,
        }
    }

    /// `--auto-tls` with etcd's defaults: certificate for the listen address,
    /// kept under `<data_dir>/fixtures/proxy`, valid `validity_years`.
    pub fn auto(data_dir: &Path, listen: &str, validity_years: u32) -> ListenTls {
        let host = listen.rsplit_once(':').map(|(h, _)| h).unwrap_or(listen);
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let mut hosts = vec![host];
        for extra in ["localhost", "127.0.0.1"] {
            if !hosts.iter().any(|h| h == extra) {
                hosts.push(extra.to_string());
            }
        }
        ListenTls {
            cert: ServerCert::Auto {
                dir: data_dir.join("fixtures").join("proxy"),
                hosts,
                validity_years,
            },
            ..ListenTls::from_files(PathBuf::new(), PathBuf::new())
        }
    }

    /// etcd's start-up checks: min <= max, no cipher suites when only TLS 1.3
    /// is allowed, a validity above zero for `--auto-tls`.
    pub fn check(&self) -> Result<(), String> {
        if let Some(max) = self.max_version {
            if self.min_version > max {
                return Err(format!(
                    "--tls-min-version {} is greater than --tls-max-version {}",
                    version_name(self.min_version),
                    version_name(max)
                ));
            }
        }
        if self.min_version == TlsVersion::Tls13 && !self.cipher_suites.is_empty() {
            return Err("--listen-cipher-suites cannot be configured when only TLS1.3 is enabled (--tls-min-version=TLS1.3)".into());
        }
        if let ServerCert::Auto {
            validity_years: 0, ..
        } = self.cert
        {
            return Err(
                "--self-signed-cert-validity must be greater than 0 with --auto-tls".into(),
            );
        }
        Ok(())
    }
}

/// etcd's spelling of a version, for messages.
fn version_name(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls12 => "TLS1.2",
        TlsVersion::Tls13 => "TLS1.3",
    }
}
