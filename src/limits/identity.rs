//! Whose limits a call counts against ([`ClientId`]), derived from the one
//! caller identity ([`CallerRef`]): the etcd user behind its token, else the
//! common name of its client certificate, else its source IP.
//!
//! The user behind a token is learned from the `Authenticate` calls the
//! proxy forwards ([`TokenUsers`]), or read from the token itself when it is
//! a JWT (etcd's `--auth-token jwt,...`): the `username` claim of its
//! payload, unverified, since etcd checks the signature of every call.
//! A simple token the proxy never saw issued counts as its source IP, so
//! made-up tokens cannot buy a client fresh limits.

use crate::sync::lock;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tonic::Extensions;

use crate::upstream::CallerRef;

/// The source address of a client connection, put in every request's
/// extensions by the listener while per-client limits are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// A client as limits see it: `user:<name>`, `cn:<common name>` or
/// `ip:<address>`, the names the limits file's sections use. The limits
/// layer leaves it in the request's extensions for the services below.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientId(pub Arc<str>);

impl ClientId {
    /// The name, as in the limits file.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Tokens remembered from `Authenticate` answers: enough for every client
/// of a large fleet, bounded so a client authenticating in a loop cannot
/// grow the proxy.
pub const MAX_TOKENS: usize = 100_000;

/// Token to etcd user, learned from the `Authenticate` calls the proxy
/// forwards; the oldest token is forgotten first.
#[derive(Default)]
pub struct TokenUsers {
    inner: Mutex<TokenMap>,
}

#[derive(Default)]
struct TokenMap {
    by_token: HashMap<Box<[u8]>, Arc<str>>,
    order: VecDeque<Box<[u8]>>,
}

impl TokenUsers {
    /// `token` was issued to `user` (an `Authenticate` request's name and
    /// its answer's token).
    pub fn learn(&self, token: &[u8], user: &[u8]) {
        if token.is_empty() {
            return;
        }
        let user: Arc<str> = String::from_utf8_lossy(user).into();
        let mut map = lock(&self.inner);
        let key: Box<[u8]> = token.into();
        if map.by_token.insert(key.clone(), user).is_some() {
            return;
        }
        map.order.push_back(key);
        while map.order.len() > MAX_TOKENS {
            if let Some(old) = map.order.pop_front() {
                map.by_token.remove(&old);
            }
        }
    }

    /// The user `token` was issued to, if the proxy saw it issued.
    pub fn user_of(&self, token: &[u8]) -> Option<Arc<str>> {
        lock(&self.inner).by_token.get(token).cloned()
    }

    /// Tokens remembered now.
    pub fn len(&self) -> usize {
        lock(&self.inner).by_token.len()
    }

    /// Whether no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The client a request with these headers and extensions counts as.
pub fn client_of(
    headers: &http::HeaderMap,
    extensions: &Extensions,
    users: &TokenUsers,
) -> ClientId {
    let name = match CallerRef::of_headers(headers, extensions) {
        CallerRef::Token(token) => match users.user_of(token) {
            Some(user) => format!("user:{user}"),
            None => match jwt_username(token) {
                Some(user) => format!("user:{user}"),
                None => ip_name(extensions),
            },
        },
        CallerRef::CommonName(cn) => format!("cn:{cn}"),
        CallerRef::Anonymous => ip_name(extensions),
    };
    ClientId(name.into())
}

fn ip_name(extensions: &Extensions) -> String {
    match extensions.get::<PeerAddr>() {
        Some(PeerAddr(addr)) => format!("ip:{}", canonical_ip(addr.ip())),
        None => "ip:unknown".into(),
    }
}

/// An IPv4 client on a dual-stack listener shows as `::ffff:a.b.c.d`; the
/// limits file names it `a.b.c.d`.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `username` claim of a JWT (`header.payload.signature`), unverified.
pub fn jwt_username(token: &[u8]) -> Option<String> {
    let mut parts = token.split(|b| *b == b'.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let json = base64url_decode(payload)?;
    let user = json::string_field(&json, "username")?;
    (!user.is_empty()).then_some(user)
}

/// Base64url without padding (RFC 7515's encoding of JWT parts); `None` on
/// any other byte.
fn base64url_decode(text: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    }
    let text = text
        .strip_suffix(b"==")
        .or(text.strip_suffix(b"="))
        .unwrap_or(text);
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Just enough JSON to read one top-level string field of a claims object.
mod json {
    /// The string value of `field` in the top-level object `text`.
    pub fn string_field(text: &[u8], field: &str) -> Option<String> {
        let mut p = Parser { text, at: 0 };
        p.expect(b'{')?;
        if p.peek()? == b'}' {
            return None;
        }
        loop {
            let key = p.string()?;
            p.expect(b':')?;
            if key == field {
                return p.string();
            }
            p.skip_value(0)?;
            match p.next()? {
                b',' => continue,
                _ => return None,
            }
        }
    }

    struct Parser<'a> {
        text: &'a [u8],
        at: usize,
    }

    impl Parser<'_> {
        fn peek(&mut self) -> Option<u8> {
            while self.text.get(self.at)?.is_ascii_whitespace() {
                self.at += 1;
            }
            self.text.get(self.at).copied()
        }

        fn next(&mut self) -> Option<u8> {
            let c = self.peek()?;
            self.at += 1;
            Some(c)
        }

        fn expect(&mut self, c: u8) -> Option<()> {
            (self.next()? == c).then_some(())
        }

        fn string(&mut self) -> Option<String> {
            self.expect(b'"')?;
            let mut out = Vec::new();
            loop {
                let c = *self.text.get(self.at)?;
                self.at += 1;
                match c {
                    b'"' => return String::from_utf8(out).ok(),
                    b'\\' => {
                        let e = *self.text.get(self.at)?;
                        self.at += 1;
                        match e {
                            b'"' | b'\\' | b'/' => out.push(e),
                            b'b' => out.push(8),
                            b'f' => out.push(12),
                            b'n' => out.push(b'\n'),
                            b'r' => out.push(b'\r'),
                            b't' => out.push(b'\t'),
                            b'u' => {
                                let hex = self.text.get(self.at..self.at + 4)?;
                                self.at += 4;
                                let code =
                                    u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                                let c = char::from_u32(code)?;
                                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                            }
                            _ => return None,
                        }
                    }
                    c => out.push(c),
                }
            }
        }

        /// Skips one value (nested at most 32 deep).
        fn skip_value(&mut self, depth: usize) -> Option<()> {
            if depth > 32 {
                return None;
            }
            match self.peek()? {
                b'"' => self.string().map(|_| ()),
                open @ (b'{' | b'[') => {
                    let close = if open == b'{' { b'}' } else { b']' };
                    self.at += 1;
                    if self.peek()? == close {
                        self.at += 1;
                        return Some(());
                    }
                    loop {
                        if open == b'{' {
                            self.string()?;
                            self.expect(b':')?;
                        }
                        self.skip_value(depth + 1)?;
                        match self.next()? {
                            b',' => continue,
                            c if c == close => return Some(()),
                            _ => return None,
                        }
                    }
                }
                _ => {
                    let start = self.at;
                    while let Some(c) = self.text.get(self.at) {
                        if matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace() {
                            break;
                        }
                        self.at += 1;
                    }
                    (self.at > start).then_some(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let mut acc = 0u32;
            for (i, b) in chunk.iter().enumerate() {
                acc |= u32::from(*b) << (16 - 8 * i);
            }
            for i in 0..=chunk.len() {
                out.push(A[((acc >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn the_username_claim_of_a_jwt_is_read() {
        for claims in [
            r#"{"exp":1700000000,"revision":3,"username":"alice"}"#,
            r#"{ "nested": {"a": [1, "x", {"b": null}]}, "username" : "al\"ice\u00e9" }"#,
            r#"{"username":"bob"}"#,
        ] {
            let token = format!(
                "{}.{}.sig",
                b64(br#"{"alg":"RS256"}"#),
                b64(claims.as_bytes())
            );
            let user = jwt_username(token.as_bytes()).expect(claims);
            assert!(
                ["alice", "al\"iceé", "bob"].contains(&user.as_str()),
                "{user}"
            );
        }
    }

    #[test]
    fn simple_tokens_and_garbage_have_no_username() {
        for token in [
            "WiwyQzhLsCPoVYDh.22",
            "a.b.c.d",
            "..",
            "x.%%%.y",
            &format!("h.{}.s", b64(b"not json")),
            &format!("h.{}.s", b64(br#"{"username":5}"#)),
            &format!("h.{}.s", b64(br#"{"user":"x"}"#)),
            &format!("h.{}.s", b64(br#"{"username":""}"#)),
        ] {
            assert_eq!(jwt_username(token.as_bytes()), None, "{token}");
        }
    }

    #[test]
    fn identity_is_the_user_then_the_certificate_then_the_ip() {
        let users = TokenUsers::default();
        users.learn(b"tok.1", b"alice");
        let mut ext = Extensions::new();
        ext.insert(PeerAddr("[::ffff:10.0.0.7]:5000".parse().unwrap()));
        let mut h = http::HeaderMap::new();
        assert_eq!(client_of(&h, &ext, &users).as_str(), "ip:10.0.0.7");
        ext.insert(crate::upstream::ClientCertName("web".into()));
        assert_eq!(client_of(&h, &ext, &users).as_str(), "cn:web");
        h.insert("token", "tok.1".parse().unwrap());
        assert_eq!(client_of(&h, &ext, &users).as_str(), "user:alice");
        // A token never seen issued is no way out of the source's limits.
        h.insert("token", "made.up".parse().unwrap());
        assert_eq!(client_of(&h, &ext, &users).as_str(), "ip:10.0.0.7");
    }

    #[test]
    fn the_token_map_is_bounded_oldest_first() {
        let users = TokenUsers::default();
        for i in 0..MAX_TOKENS + 10 {
            users.learn(format!("t{i}").as_bytes(), b"u");
        }
        assert_eq!(users.len(), MAX_TOKENS);
        assert!(users.user_of(b"t0").is_none());
        assert!(users
            .user_of(format!("t{}", MAX_TOKENS + 9).as_bytes())
            .is_some());
    }
}
