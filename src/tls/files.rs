//! The certificate, key and CRL files named by the TLS flags, read and
//! parsed (PEM, or DER for a CRL as Go accepts); every error names the flag
//! and the file, as etcd's do.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use super::TlsError;

/// A [`TlsError::File`] for the file `path` given to `--flag`.
pub(super) fn file_err(flag: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        flag,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The whole file given to `--flag`.
pub(super) fn read_file(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_err(flag, path, format!("cannot read: {e}")))
}

/// Every certificate in a PEM file; none is an error.
pub(super) fn load_certs(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(flag, path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(flag, path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(super) fn load_key(
    flag: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(flag, path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| file_err(flag, path, format!("no usable PEM private key: {e}")))
}

/// A CRL file, PEM or DER as Go's parser accepts.
pub(super) fn load_crls(
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
