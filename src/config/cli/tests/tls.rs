//! Unit tests of the flags about reaching members and serving clients:
//! TLS both ways, DNS SRV discovery, and the proxy's own user.

use super::*;

#[test]
fn own_user_comes_from_user_and_password_file() {
    let dir = tempfile_dir();
    let file = dir.join("pw");
    std::fs::write(&file, "s3cret\n").unwrap();
    let c = parse(&[
        "p",
        "start",
        "--user=proxy",
        &format!("--password-file={}", file.display()),
    ])
    .unwrap();
    let u = c.channel.own_user.unwrap();
    assert_eq!(
        (u.name.as_slice(), u.password.as_slice()),
        (&b"proxy"[..], &b"s3cret"[..])
    );
    let c = parse(&["p", "start", "--user=proxy:pw"]).unwrap();
    assert_eq!(c.channel.own_user.unwrap().password, b"pw");
    assert!(parse(&["p", "start", "--user=proxy"])
        .unwrap_err()
        .to_string()
        .contains("--password-file"));
    assert!(parse(&["p", "start", "--password-file=/x"])
        .unwrap_err()
        .to_string()
        .contains("--user"));
    let missing = parse(&[
        "p",
        "start",
        "--user=proxy",
        "--password-file=/nonexistent/pw",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        missing.contains("--password-file") && missing.contains("/nonexistent/pw"),
        "{missing}"
    );
    assert!(parse(&["p", "start"]).unwrap().channel.own_user.is_none());
}

#[test]
fn tls_flags_are_checked_as_etcd_checks_them() {
    let err = parse(&[
        "p",
        "start",
        "--cert-file=c.pem",
        "--key-file=k.pem",
        "--listen-cipher-suites=TLS_BOGUS",
    ])
    .unwrap_err();
    assert!(
        err.contains("--listen-cipher-suites") && err.contains("TLS_BOGUS"),
        "{err}"
    );
    let err = parse(&[
        "p",
        "start",
        "--auto-tls",
        "--tls-min-version=TLS1.3",
        "--tls-max-version=TLS1.2",
    ])
    .unwrap_err();
    assert!(err.contains("--tls-min-version"), "{err}");
    let err = parse(&[
        "p",
        "start",
        "--auto-tls",
        "--tls-min-version=TLS1.3",
        "--listen-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ])
    .unwrap_err();
    assert!(err.contains("--listen-cipher-suites"), "{err}");
    let err = parse(&["p", "start", "--auto-tls", "--tls-min-version=TLS1.0"]).unwrap_err();
    assert!(err.contains("--tls-min-version"), "{err}");
    let err = parse(&["p", "start", "--auto-tls", "--self-signed-cert-validity=0"]).unwrap_err();
    assert!(err.contains("--self-signed-cert-validity"), "{err}");
    let err = parse(&["p", "start", "--key-file=k.pem"]).unwrap_err();
    assert!(err.contains("--cert-file"), "{err}");
    let err = parse(&["p", "start", "--cert-file=c.pem"]).unwrap_err();
    assert!(err.contains("--key-file"), "{err}");
    let err = parse(&["p", "start", "--cert=c.pem"]).unwrap_err();
    assert!(err.contains("--key"), "{err}");
    let err = parse(&["p", "start", "--insecure-skip-tls-verify=maybe"]).unwrap_err();
    assert!(err.contains("--insecure-skip-tls-verify"), "{err}");
    let c = parse(&[
        "p",
        "start",
        "--cert-file=c.pem",
        "--key-file=k.pem",
        "--trusted-ca-file=ca.pem",
    ])
    .unwrap();
    assert!(c.listen_tls.unwrap().trusted_ca.is_some());
}

#[test]
fn backend_tls_flags_make_bare_endpoints_https() {
    let c = parse(&[
        "p",
        "start",
        "--endpoints=127.0.0.1:2379,http://127.0.0.1:2380",
        "--cacert=ca.pem",
    ])
    .unwrap();
    assert_eq!(c.endpoints[0].as_str(), "https://127.0.0.1:2379");
    assert_eq!(c.endpoints[1].as_str(), "http://127.0.0.1:2380");
    let c = parse(&["p", "start", "--insecure-skip-tls-verify"]).unwrap();
    assert_eq!(c.endpoints[0].as_str(), "https://127.0.0.1:2379");
    assert!(c.listen_tls.is_none());
}

#[test]
fn discovery_flags() {
    let c = parse(&[
        "p",
        "start",
        "--discovery-srv=example.test",
        "--discovery-srv-name=prod",
        "--insecure-discovery",
    ])
    .unwrap();
    let d = c.discovery.unwrap();
    assert_eq!(
        (d.domain.as_str(), d.service_name.as_deref(), d.insecure),
        ("example.test", Some("prod"), true)
    );
    assert!(parse(&["p", "start", "--discovery-srv-name=prod"])
        .unwrap_err()
        .contains("--discovery-srv"));
}
