//! Unit tests of the parent module.

use std::path::{Path, PathBuf};

use rustls::{CipherSuite, SignatureScheme};

use super::server::provider;
use super::*;

#[test]
fn cipher_suites_by_etcd_name() {
    let s = parse_cipher_suites(
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    )
    .unwrap();
    assert_eq!(s.len(), 2);
    let err = parse_cipher_suites("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_NOPE").unwrap_err();
    assert!(err.contains("TLS_NOPE"), "{err}");
    let err = parse_cipher_suites("TLS_RSA_WITH_AES_128_CBC_SHA").unwrap_err();
    assert!(err.contains("not supported"), "{err}");
    // Legacy names beside a usable one are dropped, not fatal.
    assert_eq!(
        parse_cipher_suites("TLS_RSA_WITH_AES_128_CBC_SHA,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
            .unwrap()
            .len(),
        1
    );
    assert!(parse_cipher_suites("").unwrap().is_empty());
}

#[test]
fn version_checks_match_etcd() {
    assert!(TlsVersion::parse("TLS1.1").is_err());
    let mut t = ListenTls::from_files("c", "k");
    t.min_version = TlsVersion::Tls13;
    t.max_version = Some(TlsVersion::Tls12);
    assert!(t.check().unwrap_err().contains("--tls-min-version"));
    t.max_version = None;
    t.cipher_suites = vec![CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256];
    assert!(t.check().unwrap_err().contains("--listen-cipher-suites"));
    let auto = ListenTls::auto(Path::new("/nonexistent"), "127.0.0.1:0", 0);
    assert!(auto
        .check()
        .unwrap_err()
        .contains("--self-signed-cert-validity"));
}

#[test]
fn missing_files_name_their_flag() {
    let err = server_config(&ListenTls::from_files(
        "/no/such/cert.pem",
        "/no/such/key.pem",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--cert-file") && err.contains("/no/such/cert.pem"),
        "{err}"
    );
    let b = BackendTls {
        cacert: Some("/no/such/ca.pem".into()),
        ..Default::default()
    };
    assert!(b.load().unwrap_err().to_string().contains("--cacert"));
    let b = BackendTls {
        cert: Some("/x".into()),
        ..Default::default()
    };
    assert!(b.load().unwrap_err().to_string().contains("--key"));
}

#[test]
fn auto_tls_generates_then_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let t = ListenTls::auto(dir.path(), "127.0.0.1:23790", 1);
    server_config(&t).unwrap();
    let cert = std::fs::read(dir.path().join("fixtures/proxy/cert.pem")).unwrap();
    server_config(&t).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("fixtures/proxy/cert.pem")).unwrap(),
        cert
    );
}

/// Writes a self-signed certificate (Common Name `cn`, if any) and its key to `dir`.
fn self_signed(dir: &Path, name: &str, cn: Option<&str>) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "etcd");
    if let Some(cn) = cn {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
    }
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn member_facing_cert_with_a_common_name_is_refused_as_etcd_does() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "root", Some("root"));
    let b = BackendTls {
        cert: Some(cert.clone()),
        key: Some(key.clone()),
        insecure_skip_verify: true,
        ..Default::default()
    };
    assert_eq!(
        b.load().unwrap_err().to_string(),
        format!("cert has non empty Common Name (root): {}", cert.display())
    );
    // Without a CN the same setup loads.
    let (cert, key) = self_signed(dir.path(), "anonymous", None);
    let b = BackendTls {
        cert: Some(cert),
        key: Some(key),
        insecure_skip_verify: true,
        ..Default::default()
    };
    b.load().unwrap();
    // The served certificate may have one.
    let (cert, key) = self_signed(dir.path(), "server", Some("server"));
    server_config(&ListenTls::from_files(cert, key)).unwrap();
}

#[test]
fn unusable_pairs_name_the_file_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed(dir.path(), "a", None);
    let (_, other_key) = self_signed(dir.path(), "b", None);
    let b = BackendTls {
        cert: Some(cert.clone()),
        key: Some(other_key.clone()),
        insecure_skip_verify: true,
        ..Default::default()
    };
    let err = b.load().unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "--key {}: does not go with --cert {}",
            other_key.display(),
            cert.display()
        )
    );
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let b = BackendTls {
        cert: Some(garbage.clone()),
        key: Some(other_key),
        insecure_skip_verify: true,
        ..Default::default()
    };
    let err = b.load().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "--cert {}: not a usable X.509 certificate",
            garbage.display()
        )),
        "{err}"
    );
}

#[test]
fn the_provider_has_p521_and_the_tls12_suites() {
    let p = crypto_provider();
    assert!(p
        .signature_verification_algorithms
        .supported_schemes()
        .contains(&SignatureScheme::ECDSA_NISTP521_SHA512));
    let only = [CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256];
    let suites: Vec<_> = provider(&only)
        .cipher_suites
        .iter()
        .map(|s| s.suite())
        .collect();
    assert!(suites.contains(&CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256));
    assert!(!suites.contains(&CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256));
    // Every suite etcd's names map to exists in the provider.
    for (_, s) in suites::SUPPORTED_SUITES {
        assert!(
            crypto_provider()
                .cipher_suites
                .iter()
                .any(|c| c.suite() == *s),
            "{s:?}"
        );
    }
}
