//! `--auto-tls`: a self-signed certificate kept in the data dir and reused
//! on the next start, as etcd keeps its own.

use std::path::Path;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

use super::files::{load_certs, load_key};
use super::TlsError;

/// Loads `<dir>/cert.pem` and `<dir>/key.pem` when both exist and load;
/// otherwise generates a self-signed certificate and writes it there.
pub(super) fn auto_cert(
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
