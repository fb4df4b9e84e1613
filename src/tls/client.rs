//! TLS towards members: the `--cert`/`--key`/`--cacert` family and `--insecure-skip-tls-verify`.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tonic::transport::{ClientTlsConfig, Identity};
use tracing::warn;
use x509_parser::prelude::FromDer;

use super::files::{file_err, load_certs, read_file};
use super::{crypto_provider, identity, TlsError};

/// TLS towards etcd members (`--cert`, `--key`, `--cacert`,
/// `--insecure-skip-tls-verify`). Any of them set makes endpoints given
/// without a scheme use `https`, as etcd's client does.
#[derive(Debug, Clone, Default)]
pub struct BackendTls {
    /// Client certificate presented to members.
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
    /// CA bundle members' certificates are verified against; without it,
    /// the system's roots.
    pub cacert: Option<PathBuf>,
    /// Accept any member certificate (testing only, as etcd warns).
    pub insecure_skip_verify: bool,
}

/// The loaded form of [`BackendTls`], as channels use it.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// Identity (and the system's roots, without `--cacert`) for tonic's connector.
    pub config: ClientTlsConfig,
    /// The member verifier: `--cacert` as Go applies it, or none at all
    /// (`--insecure-skip-tls-verify`).
    pub verifier: Option<Arc<dyn ServerCertVerifier>>,
}

impl ClientTls {
    /// TLS for `https` members when no backend TLS flag is given: the
    /// system's roots, as etcd's client does.
    pub fn system_roots() -> ClientTls {
        install_client_provider();
        ClientTls {
            config: ClientTlsConfig::new()
                .with_native_roots()
                .assume_http2(true),
            verifier: None,
        }
    }
}

/// Makes the proxy's crypto the process default, which tonic's client
/// configuration takes, with [`identity::UncheckedKeys`] so that tonic
/// accepts the `--cert` [`identity::load_pair`] has checked. Whether the
/// default is that one (another may have been installed first).
fn install_client_provider() -> bool {
    let mut provider = crypto_provider();
    provider.key_provider = &identity::UNCHECKED_KEYS;
    let _ = CryptoProvider::install_default(provider);
    CryptoProvider::get_default().is_some_and(|p| {
        std::ptr::addr_eq(
            p.key_provider as *const dyn rustls::crypto::KeyProvider,
            &identity::UNCHECKED_KEYS as *const identity::UncheckedKeys,
        )
    })
}

impl BackendTls {
    /// Reads and checks the files; errors name the flag, the file and the
    /// reason. A `--cert` with a Common Name is refused, as etcd refuses it.
    pub fn load(&self) -> Result<ClientTls, TlsError> {
        let ours = install_client_provider();
        let mut config = ClientTlsConfig::new().assume_http2(true);
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let pair = identity::load_pair("cert", cert, "key", key, &crypto_provider())?;
                if !pair.common_name.is_empty() {
                    return Err(TlsError::CommonName {
                        common_name: pair.common_name,
                        path: cert.display().to_string(),
                    });
                }
                if !pair.v3 && !ours {
                    return Err(file_err(
                        "cert",
                        cert,
                        "an X.509 v1 certificate cannot be used: another TLS provider was installed in this process",
                    ));
                }
                config = config.identity(Identity::from_pem(
                    read_file("cert", cert)?,
                    read_file("key", key)?,
                ));
            }
            (None, None) => {}
            (Some(_), None) => return Err(TlsError::Setup("--cert needs --key".into())),
            (None, Some(_)) => return Err(TlsError::Setup("--key needs --cert".into())),
        }
        if self.insecure_skip_verify {
            warn!("--insecure-skip-tls-verify was given: etcd members' TLS certificates are not verified; use only for testing");
            return Ok(ClientTls {
                config,
                verifier: Some(Arc::new(SkipServerVerification(
                    Arc::new(crypto_provider()),
                ))),
            });
        }
        match &self.cacert {
            Some(ca) => {
                // Every certificate must be usable, as etcd's NewCertPool
                // wants; tonic would skip the bad ones silently.
                let trusted = load_certs("cacert", ca)?;
                let mut roots = RootCertStore::empty();
                for cert in &trusted {
                    roots.add(cert.clone()).map_err(|e| {
                        file_err("cacert", ca, format!("unusable CA certificate: {e}"))
                    })?;
                }
                let provider = Arc::new(crypto_provider());
                let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| file_err("cacert", ca, e))?;
                Ok(ClientTls {
                    config,
                    verifier: Some(Arc::new(CaFileVerifier { chain, trusted })),
                })
            }
            None => Ok(ClientTls {
                config: config.with_native_roots(),
                verifier: None,
            }),
        }
    }
}

/// Member verification against `--cacert` as Go does it: a chain to one of
/// its certificates, or the member's certificate being one of them (then
/// only its name and dates are checked). etcd 3.6+ `--auto-tls` members
/// serve a self-signed certificate marked as a CA: Go trusts it when it is
/// in the pool, webpki alone refuses a CA as a leaf.
#[derive(Debug)]
struct CaFileVerifier {
    /// webpki's verification against the `--cacert` roots.
    chain: Arc<WebPkiServerVerifier>,
    /// The `--cacert` certificates themselves.
    trusted: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let err = match self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !self
            .trusted
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Err(err);
        }
        rustls::client::verify_server_name(
            &rustls::server::ParsedCertificate::try_from(end_entity)?,
            server_name,
        )?;
        let (_, leaf) = x509_parser::certificate::X509Certificate::from_der(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let now = now.as_secs() as i64;
        let validity = leaf.validity();
        if now < validity.not_before.timestamp() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if now > validity.not_after.timestamp() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// Accepts any server certificate but still checks the handshake
/// signatures, for `--insecure-skip-tls-verify`.
#[derive(Debug)]
struct SkipServerVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
