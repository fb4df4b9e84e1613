//! TLS towards clients, running: the rustls server configuration built from
//! [`ListenTls`], the acceptor the listener uses, and the bounded handshake
//! of each connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{CipherSuite, RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::auto::auto_cert;
use super::files::{file_err, load_certs};
use super::listen::{ListenTls, ServerCert, TlsVersion};
use super::{crypto_provider, reload, TlsError};

/// [`crypto_provider`], limited to the chosen TLS 1.2 suites.
pub(super) fn provider(suites: &[CipherSuite]) -> CryptoProvider {
    let mut p = crypto_provider();
    if !suites.is_empty() {
        p.cipher_suites
            .retain(|s| s.version() == &rustls::version::TLS13 || suites.contains(&s.suite()));
    }
    p
}

/// The TLS versions from `min` to `max` (TLS 1.3 when `max` is `None`).
pub(super) fn versions(
    min: TlsVersion,
    max: Option<TlsVersion>,
) -> Vec<&'static SupportedProtocolVersion> {
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
