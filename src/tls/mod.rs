//! TLS on both sides of the proxy, as `etcd grpc-proxy start` configures it.
//!
//! - Towards clients ([`ListenTls`]): `--cert-file`/`--key-file`, client
//!   certificates required and verified when `--trusted-ca-file` is set,
//!   `--client-crl-file`, `--auto-tls` (a self-signed certificate kept in
//!   `<data-dir>/fixtures/proxy`), `--listen-cipher-suites` and
//!   `--tls-min-version`/`--tls-max-version`. [`server_acceptor`] turns it
//!   into a [`TlsAcceptor`]; [`accept_stream`] turns a listener into a stream
//!   of handshaken connections for any server loop.
//! - Towards members ([`BackendTls`]): `--cert`/`--key`, `--cacert` and
//!   `--insecure-skip-tls-verify`, applied to the pool's channels through
//!   [`crate::upstream::ChannelSettings`].
//!
//! rustls with the aws-lc-rs provider does it all; no OpenSSL is needed.
//! Not ring: etcd members started with `--auto-tls` sign with ECDSA P-521,
//! which ring cannot verify (the member then aborts every handshake).
//! [`reload`] re-reads the served certificate and the CRL when their files
//! change, as etcd does; [`identity`] loads the certificate/key pairs the
//! proxy presents.

mod identity;
mod reload;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CipherSuite, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::{ClientTlsConfig, Identity};
use tracing::{debug, info, warn};

mod client;
pub use client::{BackendTls, ClientTls};

mod suites;
pub use suites::parse_cipher_suites;

/// A TLS setup the proxy cannot use; the message names the flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file given to a flag cannot be read or holds nothing usable.
    #[error("--{flag} {path}: {reason}")]
    File {
        /// The flag's name, without dashes.
        flag: &'static str,
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--cert` has a Common Name, refused as etcd refuses it and with its
    /// words: members started with `--client-cert-auth` take the CN as the
    /// etcd user, so every call the proxy forwards without a token would
    /// run as that user. The proxy's own identity is `--user`.
    #[error("cert has non empty Common Name ({common_name}): {path}")]
    CommonName {
        /// The certificate's Common Name.
        common_name: String,
        /// The `--cert` path as given.
        path: String,
    },
    /// Flags that cannot be used together, or a setup rustls refuses.
    #[error("{0}")]
    Setup(String),
}

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

fn version_name(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls12 => "TLS1.2",
        TlsVersion::Tls13 => "TLS1.3",
    }
}

fn file_err(flag: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        flag,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read_file(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_err(flag, path, format!("cannot read: {e}")))
}

/// Every certificate in a PEM file; none is an error.
fn load_certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(flag, path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(flag, path, "no PEM certificate found"));
    }
    Ok(certs)
}

fn load_key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(flag, path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| file_err(flag, path, format!("no usable PEM private key: {e}")))
}

/// A CRL file, PEM or DER as Go's parser accepts.
fn load_crls(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let data = read_file(flag, path)?;
    if data.windows(10).any(|w| w == b"-----BEGIN") {
        let crls = CertificateRevocationListDer::pem_slice_iter(&data)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_err(flag, path, format!("not a PEM CRL file: {e}")))?;
        if crls.is_empty() {
            return Err(file_err(flag, path, "no PEM X509 CRL found"));
        }
        Ok(crls)
    } else {
        Ok(vec![CertificateRevocationListDer::from(data)])
    }
}

/// The crypto the proxy uses on both sides: aws-lc-rs, which has the ECDSA
/// P-521 signatures of etcd's `--auto-tls` certificates.
fn crypto_provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// [`crypto_provider`], limited to the chosen TLS 1.2 suites.
fn provider(suites: &[CipherSuite]) -> CryptoProvider {
    let mut p = crypto_provider();
    if !suites.is_empty() {
        p.cipher_suites
            .retain(|s| s.version() == &rustls::version::TLS13 || suites.contains(&s.suite()));
    }
    p
}

fn versions(min: TlsVersion, max: Option<TlsVersion>) -> Vec<&'static SupportedProtocolVersion> {
    let max = max.unwrap_or(TlsVersion::Tls13);
    let mut v = Vec::new();
    if min <= TlsVersion::Tls13 && max >= TlsVersion::Tls13 {
        v.push(&rustls::version::TLS13);
    }
    if min <= TlsVersion::Tls12 && max >= TlsVersion::Tls12 {
        v.push(&rustls::version::TLS12);
    }
    v
}

/// Loads `<dir>/cert.pem` and `<dir>/key.pem` when both exist and load;
/// otherwise generates a self-signed certificate and writes it there.
fn auto_cert(
    dir: &Path,
    hosts: &[String],
    validity_years: u32,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.is_file() && key_path.is_file() {
        match (
            load_certs("auto-tls", &cert_path),
            load_key("auto-tls", &key_path),
        ) {
            (Ok(c), Ok(k)) => {
                info!(dir = %dir.display(), "--auto-tls: reusing the self-signed certificate found in the data dir");
                return Ok((c, k));
            }
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "--auto-tls: existing certificate unusable, generating a new one")
            }
        }
    }
    let setup = |e: rcgen::Error| {
        TlsError::Setup(format!("--auto-tls: cannot generate a certificate: {e}"))
    };
    let key = rcgen::KeyPair::generate().map_err(setup)?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(setup)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "etcd");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365 * i64::from(validity_years));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key).map_err(setup)?;

    let dir_err = |e: std::io::Error| TlsError::File {
        flag: "data-dir",
        path: dir.display().to_string(),
        reason: format!("cannot store the --auto-tls certificate: {e}"),
    };
    std::fs::create_dir_all(dir).map_err(dir_err)?;
    std::fs::write(&cert_path, cert.pem()).map_err(dir_err)?;
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(dir_err)?;
    info!(dir = %dir.display(), hosts = %hosts.join(","), validity_years, "--auto-tls: generated a self-signed certificate");
    let key_der = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| TlsError::Setup(format!("--auto-tls: generated key unusable: {e}")))?;
    Ok((vec![cert.der().clone()], key_der))
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(data)
}

/// Builds the rustls server configuration (ALPN `h2` and `http/1.1`).
pub fn server_config(tls: &ListenTls) -> Result<ServerConfig, TlsError> {
    tls.check().map_err(TlsError::Setup)?;
    let provider = Arc::new(provider(&tls.cipher_suites));
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(tls.min_version, tls.max_version))
        .map_err(|e| TlsError::Setup(format!("TLS versions / cipher suites: {e}")))?;
    let builder = match &tls.trusted_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs("trusted-ca-file", ca)? {
                roots.add(cert).map_err(|e| {
                    file_err(
                        "trusted-ca-file",
                        ca,
                        format!("unusable CA certificate: {e}"),
                    )
                })?;
            }
            let roots = Arc::new(roots);
            let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> =
                match &tls.client_crl {
                    Some(crl) => Arc::new(reload::ReloadingClientVerifier::new(
                        roots,
                        crl,
                        provider.clone(),
                    )?),
                    None => WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                        .build()
                        .map_err(|e| file_err("trusted-ca-file", ca, e))?,
                };
            builder.with_client_cert_verifier(verifier)
        }
        None => {
            if let Some(crl) = &tls.client_crl {
                warn!(crl = %crl.display(), "--client-crl-file has no effect without --trusted-ca-file (client certificates are not requested)");
            }
            builder.with_no_client_auth()
        }
    };
    let mut config = match &tls.cert {
        ServerCert::Files { cert, key } => builder.with_cert_resolver(Arc::new(
            reload::ReloadingCert::new(cert, key, provider.clone())?,
        )),
        ServerCert::Auto {
            dir,
            hosts,
            validity_years,
        } => {
            let (certs, key) = auto_cert(dir, hosts, *validity_years)?;
            builder.with_single_cert(certs, key).map_err(|e| {
                TlsError::Setup(format!("--auto-tls: generated certificate unusable: {e}"))
            })?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The acceptor for the configured listen TLS; `None` serves plain TCP.
pub fn server_acceptor(tls: Option<&ListenTls>) -> Result<Option<TlsAcceptor>, TlsError> {
    match tls {
        None => Ok(None),
        Some(t) => {
            let config = server_config(t)?;
            info!(
                client_cert_auth = t.trusted_ca.is_some(),
                crl = t.client_crl.is_some(),
                auto_tls = matches!(t.cert, ServerCert::Auto { .. }),
                "serving clients over TLS"
            );
            Ok(Some(TlsAcceptor::from(Arc::new(config))))
        }
    }
}

/// How long a client may take over its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS handshake of one accepted connection, bounded by
/// [`HANDSHAKE_TIMEOUT`]; `None` when it failed (logged).
pub async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            debug!(%peer, "TLS handshake done");
            Some(tls)
        }
        Ok(Err(e)) => {
            warn!(%peer, error = %e, "rejected connection: TLS handshake failed");
            None
        }
        Err(_) => {
            warn!(%peer, "rejected connection: TLS handshake timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests;
