//! [`Caller`]: whom a client's call runs as at the members, decided in one
//! place for everything that must not mix callers: the range cache,
//! leasing, keep-alive coalescing, watch sharing and the proxy's own calls.
//!
//! etcd takes the caller from the `token` metadata, else from
//! `authorization` (both carry the token `Authenticate` returned), else
//! from the common name of the client certificate, else the call is
//! anonymous.

use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::Extensions;

/// The common name of the client certificate a connection presented to
/// the proxy's listener, put in every request's extensions by the server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientCertName(pub String);

/// Whom a call runs as.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    /// A user's auth token, from `token` or `authorization` metadata.
    Token(AsciiMetadataValue),
    /// No token, but a client certificate with this common name.
    CommonName(String),
    /// No credentials at all.
    Anonymous,
}

/// [`Caller`] borrowed from a request not yet decoded by tonic: the gRPC
/// stack's layers (per-client limits) see HTTP headers, and must not copy
/// them on every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerRef<'a> {
    /// The token's bytes, from `token` or `authorization`.
    Token(&'a [u8]),
    /// The client certificate's common name.
    CommonName(&'a str),
    /// No credentials at all.
    Anonymous,
}

impl<'a> CallerRef<'a> {
    /// The caller of a request with these headers and extensions, read in
    /// the same order as [`Caller::of`].
    pub fn of_headers(headers: &'a http::HeaderMap, extensions: &'a Extensions) -> CallerRef<'a> {
        for name in TOKEN_HEADERS {
            if let Some(token) = headers.get(name) {
                return CallerRef::Token(token.as_bytes());
            }
        }
        match extensions.get::<ClientCertName>() {
            Some(ClientCertName(cn)) if !cn.is_empty() => CallerRef::CommonName(cn),
            _ => CallerRef::Anonymous,
        }
    }
}

/// The metadata names etcd reads a token from, in the order it reads them.
const TOKEN_HEADERS: [&str; 2] = ["token", "authorization"];

impl Caller {
    /// The caller of a request with this metadata and these extensions.
    pub fn of(metadata: &MetadataMap, extensions: &Extensions) -> Caller {
        for name in TOKEN_HEADERS {
            if let Some(token) = metadata.get(name) {
                return Caller::Token(token.clone());
            }
        }
        match CallerRef::of_headers(metadata.as_ref(), extensions) {
            CallerRef::CommonName(cn) => Caller::CommonName(cn.to_string()),
            _ => Caller::Anonymous,
        }
    }

    /// The caller of `request`.
    pub fn of_request<T>(request: &tonic::Request<T>) -> Caller {
        Caller::of(request.metadata(), request.extensions())
    }

    /// Whether the call carries no credentials: only then may it be served
    /// an answer fetched for someone else (cached, leased, coalesced).
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Caller::Anonymous)
    }

    /// The token the members see for this caller, if any.
    pub fn token(&self) -> Option<&AsciiMetadataValue> {
        match self {
            Caller::Token(t) => Some(t),
            _ => None,
        }
    }

    /// The metadata a call made on this caller's behalf carries: its token
    /// under the name etcd reads first.
    pub fn metadata(token: Option<&AsciiMetadataValue>) -> MetadataMap {
        let mut md = MetadataMap::new();
        if let Some(t) = token {
            md.insert(TOKEN_HEADERS[0], t.clone());
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&'static str, &'static str)]) -> MetadataMap {
        let mut md = MetadataMap::new();
        for (k, v) in pairs {
            md.insert(*k, v.parse().expect("ascii"));
        }
        md
    }

    #[test]
    fn a_token_is_read_from_token_first_then_authorization() {
        let none = Extensions::new();
        let both = md(&[("token", "a"), ("authorization", "b")]);
        assert_eq!(
            Caller::of(&both, &none),
            Caller::Token("a".parse().unwrap())
        );
        let auth = md(&[("authorization", "b")]);
        assert_eq!(
            Caller::of(&auth, &none),
            Caller::Token("b".parse().unwrap())
        );
    }

    #[test]
    fn without_a_token_the_certificate_name_then_anonymous() {
        let mut ext = Extensions::new();
        ext.insert(ClientCertName("alice".into()));
        assert_eq!(
            Caller::of(&MetadataMap::new(), &ext),
            Caller::CommonName("alice".into())
        );
        let with_token = md(&[("token", "t")]);
        assert!(matches!(Caller::of(&with_token, &ext), Caller::Token(_)));
        assert!(Caller::of(&MetadataMap::new(), &Extensions::new()).is_anonymous());
    }
}
