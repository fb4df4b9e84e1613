//! The served certificate and the client CRL, re-read when their files
//! change. etcd re-reads them for every new connection, so operators rotate
//! certificates and publish revocations without a restart; this does the
//! same, but reads a file only when its size or modification time moved.

use crate::sync::lock;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use tracing::{info, warn};

use super::files::load_crls;
use super::TlsError;

/// What a file looked like when last read: modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// `--cert-file`/`--key-file`, reloaded when either file changes. A reload
/// that fails (e.g. the key not written yet) keeps the previous pair.
#[derive(Debug)]
pub(super) struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<([Stamp; 2], Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    /// Loads the pair now; errors name the flag.
    pub(super) fn new(
        cert: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<ReloadingCert, TlsError> {
        let stamps = [stamp(cert), stamp(key)];
        let loaded = load_pair(cert, key, &provider)?;
        Ok(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            state: Mutex::new((stamps, loaded)),
        })
    }
}

fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    super::identity::load_pair("cert-file", cert, "key-file", key, provider)
        .map(|p| Arc::new(p.key))
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let now = [stamp(&self.cert), stamp(&self.key)];
        let mut state = lock(&self.state);
        if now != state.0 {
            state.0 = now;
            match load_pair(&self.cert, &self.key, &self.provider) {
                Ok(pair) => {
                    info!(cert = %self.cert.display(), "--cert-file changed: serving the new certificate");
                    state.1 = pair;
                }
                Err(e) => {
                    warn!(error = %e, "--cert-file/--key-file changed but cannot be loaded; serving the previous certificate")
                }
            }
        }
        Some(state.1.clone())
    }
}

/// Client certificate verification against `--trusted-ca-file` with the
/// `--client-crl-file` revocations, rebuilt when the CRL file changes. A CRL
/// that fails to load keeps the previous one.
#[derive(Debug)]
pub(super) struct ReloadingClientVerifier {
    roots: Arc<RootCertStore>,
    crl: PathBuf,
    provider: Arc<CryptoProvider>,
    subjects: Vec<DistinguishedName>,
    state: Mutex<(Stamp, Arc<dyn ClientCertVerifier>)>,
}

fn build_verifier(
    roots: &Arc<RootCertStore>,
    crl: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(load_crls("client-crl-file", crl)?)
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| TlsError::File {
            flag: "client-crl-file",
            path: crl.display().to_string(),
            reason: e.to_string(),
        })
}

impl ReloadingClientVerifier {
    /// Loads the CRL now; errors name the flag.
    pub(super) fn new(
        roots: Arc<RootCertStore>,
        crl: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<ReloadingClientVerifier, TlsError> {
        let s = stamp(crl);
        let verifier = build_verifier(&roots, crl, &provider)?;
        Ok(ReloadingClientVerifier {
            subjects: roots.subjects(),
            roots,
            crl: crl.to_path_buf(),
            provider,
            state: Mutex::new((s, verifier)),
        })
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        let now = stamp(&self.crl);
        let mut state = lock(&self.state);
        if now != state.0 {
            state.0 = now;
            match build_verifier(&self.roots, &self.crl, &self.provider) {
                Ok(v) => {
                    info!(crl = %self.crl.display(), "--client-crl-file changed: using the new revocation list");
                    state.1 = v;
                }
                Err(e) => {
                    warn!(error = %e, "--client-crl-file changed but cannot be loaded; keeping the previous list")
                }
            }
        }
        state.1.clone()
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
