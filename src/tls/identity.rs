//! Certificate and key pairs the proxy presents: the served `--cert-file`
//! and the member-facing `--cert`.
//!
//! Go loads any X.509 certificate whose public key matches the private key,
//! X.509 v1 ones included (`openssl x509 -req` without extensions makes
//! them). rustls' own pair check parses the certificate with webpki, which
//! refuses v1, so the pair is checked here instead, with x509-parser, and
//! rustls is handed a key that defers to that check ([`UncheckedKeys`]).

use std::sync::Arc;

use rustls::crypto::KeyProvider;
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

use super::files::{file_err, load_certs, load_key};
use super::{crypto_provider, TlsError};

/// A loaded certificate chain and key, checked to belong together.
pub(super) struct Pair {
    /// The chain and key, as rustls serves them.
    pub(super) key: CertifiedKey,
    /// The leaf's last Common Name (Go's `Subject.CommonName`); empty when it has none.
    pub(super) common_name: String,
    /// Whether the leaf is X.509 v3 (webpki refuses v1 and v2).
    pub(super) v3: bool,
}

/// Loads `cert` (flag `cert_flag`) and `key` (flag `key_flag`) and checks the
/// key is the certificate's. Errors name the file and the reason.
pub(super) fn load_pair(
    cert_flag: &'static str,
    cert: &std::path::Path,
    key_flag: &'static str,
    key: &std::path::Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Pair, TlsError> {
    let chain = load_certs(cert_flag, cert)?;
    let (common_name, spki, v3) = {
        let (_, leaf) = X509Certificate::from_der(&chain[0]).map_err(|e| {
            file_err(
                cert_flag,
                cert,
                format!("not a usable X.509 certificate: {e}"),
            )
        })?;
        let cn = leaf
            .subject()
            .iter_common_name()
            .last()
            .map(|cn| match cn.as_str() {
                Ok(s) => s.to_string(),
                Err(_) => String::from_utf8_lossy(cn.as_slice()).into_owned(),
            })
            .unwrap_or_default();
        let v3 = leaf.version() == X509Version::V3;
        (cn, leaf.public_key().raw.to_vec(), v3)
    };
    let signing = provider
        .key_provider
        .load_private_key(load_key(key_flag, key)?)
        .map_err(|e| file_err(key_flag, key, format!("unusable private key: {e}")))?;
    if let Some(public) = signing.public_key() {
        if public.as_ref() != spki.as_slice() {
            return Err(file_err(
                key_flag,
                key,
                format!("does not go with --{cert_flag} {}", cert.display()),
            ));
        }
    }
    Ok(Pair {
        key: CertifiedKey::new(chain, signing),
        common_name,
        v3,
    })
}

/// The provider's key loading, with keys that do not offer their public
/// half: rustls then skips its own certificate/key check (which refuses
/// X.509 v1 certificates). Used only where [`load_pair`] has already
/// checked the very same files: tonic's client configuration, which loads
/// `--cert`/`--key` again itself.
#[derive(Debug)]
pub(super) struct UncheckedKeys;

/// The one instance, so that a provider can be recognised by its key provider.
pub(super) static UNCHECKED_KEYS: UncheckedKeys = UncheckedKeys;

impl KeyProvider for UncheckedKeys {
    fn load_private_key(
        &self,
        key_der: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn SigningKey>, rustls::Error> {
        let key = crypto_provider().key_provider.load_private_key(key_der)?;
        Ok(Arc::new(Unchecked(key)))
    }

    fn fips(&self) -> bool {
        crypto_provider().key_provider.fips()
    }
}

/// A signing key without its public half (see [`UncheckedKeys`]).
#[derive(Debug)]
struct Unchecked(Arc<dyn SigningKey>);

impl SigningKey for Unchecked {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        self.0.choose_scheme(offered)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.0.algorithm()
    }
}
