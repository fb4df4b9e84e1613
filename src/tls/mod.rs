//! TLS on both sides of the proxy, as `etcd grpc-proxy start` configures it.
//!
//! - Towards clients ([`ListenTls`]): `--cert-file`/`--key-file`, client
//!   certificates required and verified when `--trusted-ca-file` is set,
//!   `--client-crl-file`, `--auto-tls` (a self-signed certificate kept in
//!   `<data-dir>/fixtures/proxy`), `--listen-cipher-suites` and
//!   `--tls-min-version`/`--tls-max-version`. [`server_acceptor`] turns it
//!   into a `TlsAcceptor`; [`handshake`] runs one connection's handshake.
//! - Towards members ([`BackendTls`]): `--cert`/`--key`, `--cacert` and
//!   `--insecure-skip-tls-verify`, applied to the pool's channels through
//!   [`crate::upstream::ChannelSettings`].
//!
//! rustls with the aws-lc-rs provider does it all; no OpenSSL is needed.
//! Not ring: etcd members started with `--auto-tls` sign with ECDSA P-521,
//! which ring cannot verify (the member then aborts every handshake).
//! [`reload`] re-reads the served certificate and the CRL when their files
//! change, as etcd does; [`identity`] loads the certificate/key pairs the
//! proxy presents.

mod auto;
mod client;
mod files;
mod identity;
mod listen;
mod reload;
mod server;
mod suites;

use rustls::crypto::CryptoProvider;

pub use client::{BackendTls, ClientTls};
pub use listen::{ListenTls, ServerCert, TlsVersion};
pub use server::{handshake, server_acceptor, server_config, HANDSHAKE_TIMEOUT};
pub use suites::parse_cipher_suites;

/// A TLS setup the proxy cannot use; the message names the flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file given to a flag cannot be read or holds nothing usable.
    #[error("--{flag} {path}: {reason}")]
    File {
        /// The flag's name, without dashes.
        flag: &'static str,
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--cert` has a Common Name, refused as etcd refuses it and with its
    /// words: members started with `--client-cert-auth` take the CN as the
    /// etcd user, so every call the proxy forwards without a token would
    /// run as that user. The proxy's own identity is `--user`.
    #[error("cert has non empty Common Name ({common_name}): {path}")]
    CommonName {
        /// The certificate's Common Name.
        common_name: String,
        /// The `--cert` path as given.
        path: String,
    },
    /// Flags that cannot be used together, or a setup rustls refuses.
    #[error("{0}")]
    Setup(String),
}

/// The crypto the proxy uses on both sides: aws-lc-rs, which has the ECDSA
/// P-521 signatures of etcd's `--auto-tls` certificates.
pub(super) fn crypto_provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

#[cfg(test)]
mod tests;
