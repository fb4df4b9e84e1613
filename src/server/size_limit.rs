//! A server layer that rewrites tonic's "message too large" answers into
//! etcd's (grpc-go's) code and wording; see [`crate::error::size_limit_status`].
//!
//! tonic rejects an oversized request before any handler runs, so the
//! rewrite has to happen on the HTTP response, where unary errors travel as
//! trailers-only headers.

use http::{HeaderValue, Response};
use tonic::Code;

use crate::error::size_limit_status;

/// Rewrites a trailers-only size-limit error in `resp`'s headers.
pub fn rewrite<B>(mut resp: Response<B>) -> Response<B> {
    let headers = resp.headers_mut();
    let code = match headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    {
        Some(c) => Code::from_i32(c),
        None => return resp,
    };
    if code != Code::OutOfRange {
        return resp;
    }
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    if let Some((code, text)) = size_limit_status(code, &message) {
        headers.insert("grpc-status", HeaderValue::from(code as i32));
        if let Ok(v) = HeaderValue::from_str(&text) {
            headers.insert("grpc-message", v);
        }
    }
    resp
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
