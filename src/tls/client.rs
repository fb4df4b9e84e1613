//! TLS towards members: the `--cert`/`--key`/`--cacert` family and `--insecure-skip-tls-verify`.

use super::*;

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
    /// CA and identity for tonic's connector.
    pub config: ClientTlsConfig,
    /// A replacement verifier (`--insecure-skip-tls-verify`).
    pub verifier: Option<Arc<dyn ServerCertVerifier>>,
}

impl ClientTls {
    /// TLS for `https` members when no backend TLS flag is given: the
    /// system's roots, as etcd's client does.
    pub fn system_roots() -> ClientTls {
        ClientTls {
            config: ClientTlsConfig::new()
                .with_native_roots()
                .assume_http2(true),
            verifier: None,
        }
    }
}

impl BackendTls {
    /// Reads the files; errors name the flag.
    pub fn load(&self) -> Result<ClientTls, TlsError> {
        let mut config = ClientTlsConfig::new().assume_http2(true);
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let cert_pem = read_file("cert", cert)?;
                load_certs("cert", cert)?;
                let key_pem = read_file("key", key)?;
                load_key("key", key)?;
                config = config.identity(Identity::from_pem(cert_pem, key_pem));
            }
            (None, None) => {}
            (Some(_), None) => return Err(TlsError::Setup("--cert needs --key".into())),
            (None, Some(_)) => return Err(TlsError::Setup("--key needs --cert".into())),
        }
        if self.insecure_skip_verify {
            warn!("--insecure-skip-tls-verify was given: etcd members' TLS certificates are not verified; use only for testing");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            return Ok(ClientTls {
                config,
                verifier: Some(Arc::new(SkipServerVerification(provider))),
            });
        }
        match &self.cacert {
            Some(ca) => {
                load_certs("cacert", ca)?;
                config = config.ca_certificate(Certificate::from_pem(read_file("cacert", ca)?));
            }
            None => config = config.with_native_roots(),
        }
        Ok(ClientTls {
            config,
            verifier: None,
        })
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
