//! Unit tests of the parent module.

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
