//! Cipher suites by their Go names, as `--cipher-suites` takes them.

use rustls::CipherSuite;
use tracing::warn;

/// The Go (etcd) names of the TLS 1.2 cipher suites rustls implements, and
/// the rustls suite each one is.
pub(super) const SUPPORTED_SUITES: &[(&str, CipherSuite)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// TLS 1.3 suites: etcd accepts their names, Go (and rustls) always enables them.
const TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Suites etcd (Go) knows but rustls deliberately does not implement
/// (CBC, RC4, 3DES, static RSA key exchange).
const LEGACY_SUITES: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// Parses `--listen-cipher-suites` (etcd's Go names, comma separated) into
/// the TLS 1.2 suites to enable. An unknown name is an error naming it.
/// Names Go knows but rustls does not implement are dropped with a warning,
/// unless nothing usable remains; TLS 1.3 names are accepted and change
/// nothing (TLS 1.3 suites are always on, as in Go).
pub fn parse_cipher_suites(list: &str) -> Result<Vec<CipherSuite>, String> {
    let mut suites = Vec::new();
    let mut legacy = Vec::new();
    let mut any = false;
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        any = true;
        if let Some((_, s)) = SUPPORTED_SUITES.iter().find(|(n, _)| *n == name) {
            if !suites.contains(s) {
                suites.push(*s);
            }
        } else if TLS13_SUITES.contains(&name) {
            continue;
        } else if LEGACY_SUITES.contains(&name) {
            legacy.push(name.to_string());
        } else {
            return Err(format!("unknown cipher suite {name:?}"));
        }
    }
    if !legacy.is_empty() {
        if suites.is_empty() {
            return Err(format!(
                "cipher suites {} are not supported (no CBC, RC4, 3DES or static-RSA suites); supported: {}",
                legacy.join(", "),
                SUPPORTED_SUITES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ));
        }
        warn!(ignored = %legacy.join(","), "--listen-cipher-suites: insecure legacy suites not supported, ignored");
    }
    if !any {
        return Ok(Vec::new());
    }
    Ok(suites)
}
