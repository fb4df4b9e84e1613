//! Messages over the size limits, answered in etcd's (grpc-go's) code and
//! words wherever tonic refuses them in its own: the one place that knows
//! both wordings.
//!
//! tonic reports a message over the size limit as `OutOfRange` ("Error,
//! decoded message length too large: found N bytes, the limit is: M
//! bytes"); etcd answers `ResourceExhausted` with "grpc: received message
//! larger than max (N vs. M)" or "grpc: trying to send message larger than
//! max (N vs. M)", and clients match on those. Two places meet tonic's words:
//! - a member's answer relayed by the proxy's client, mapped by
//!   [`size_limit_status`] where [`super::ProxyError`] becomes a status;
//! - a client's request refused by the proxy's own server before any
//!   handler runs: the answer is a trailers-only HTTP response, reworded
//!   by [`rewrite`], which the [`SizeLimited`] layer of the gRPC stack
//!   applies to every answer.

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures::FutureExt;
use http::{HeaderMap, HeaderValue, Request, Response};
use tonic::body::Body;
use tonic::{Code, Status};

/// The header a trailers-only answer carries its code in.
const GRPC_STATUS: &str = "grpc-status";

/// The header a trailers-only answer carries its (percent-encoded) message in.
const GRPC_MESSAGE: &str = "grpc-message";

/// tonic's size-limit status (`code`, `message`) in etcd's code and words;
/// `None` for any other status, which stays as it is.
pub fn size_limit_status(code: Code, message: &str) -> Option<(Code, String)> {
    if code != Code::OutOfRange {
        return None;
    }
    let verb = if message.starts_with("Error, decoded message length too large") {
        "received"
    } else if message.starts_with("Error, encoded message length too large") {
        "trying to send"
    } else {
        return None;
    };
    let numbers: Vec<&str> = message
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    let (found, limit) = match numbers.as_slice() {
        [found, limit, ..] => (*found, *limit),
        _ => return None,
    };
    Some((
        Code::ResourceExhausted,
        format!("grpc: {verb} message larger than max ({found} vs. {limit})"),
    ))
}

/// Rewrites a trailers-only size-limit answer in `resp`'s headers into
/// etcd's code and words; any other response is returned as it is.
pub fn rewrite<B>(mut resp: Response<B>) -> Response<B> {
    let headers = resp.headers_mut();
    let code = match headers
        .get(GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    {
        Some(c) => Code::from_i32(c),
        None => return resp,
    };
    if code != Code::OutOfRange {
        return resp;
    }
    let message = message_of(headers);
    if let Some((code, text)) = size_limit_status(code, &message) {
        headers.insert(GRPC_STATUS, HeaderValue::from(code as i32));
        if let Ok(v) = HeaderValue::from_str(&text) {
            headers.insert(GRPC_MESSAGE, v);
        }
    }
    resp
}

/// The `grpc-message` of a trailers-only answer, percent-decoded by tonic.
/// Only the status and message headers are handed to tonic, so nothing
/// else in the answer is read (or copied) on the way.
fn message_of(headers: &HeaderMap) -> String {
    let mut status = HeaderMap::with_capacity(2);
    for name in [GRPC_STATUS, GRPC_MESSAGE] {
        if let Some(v) = headers.get(name) {
            status.insert(name, v.clone());
        }
    }
    Status::from_header_map(&status)
        .map(|s| s.message().to_string())
        .unwrap_or_default()
}

/// The gRPC stack's layer that answers size-limit refusals in etcd's words
/// (see [`rewrite`]): tonic refuses an oversized request before any
/// handler runs, so the answer is reworded on its way out.
#[derive(Clone)]
pub struct SizeLimited<S> {
    inner: S,
}

impl<S> SizeLimited<S> {
    /// Size-limit answers of `inner` reworded.
    pub fn new(inner: S) -> SizeLimited<S> {
        SizeLimited { inner }
    }
}

impl<S> tower::Service<Request<Body>> for SizeLimited<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures::future::Map<
        S::Future,
        fn(Result<Response<Body>, Infallible>) -> Result<Response<Body>, Infallible>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        self.inner.call(req).map(|r| r.map(rewrite))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_errors_read_as_grpc_go_writes_them() {
        let (code, msg) = size_limit_status(
            Code::OutOfRange,
            "Error, decoded message length too large: found 4104 bytes, the limit is: 1024 bytes",
        )
        .unwrap();
        assert_eq!(code, Code::ResourceExhausted);
        assert_eq!(
            msg,
            "grpc: received message larger than max (4104 vs. 1024)"
        );
        let (code, msg) = size_limit_status(
            Code::OutOfRange,
            "Error, encoded message length too large: found 3000000 bytes, the limit is: 2097152 bytes",
        )
        .unwrap();
        assert_eq!(code, Code::ResourceExhausted);
        assert_eq!(
            msg,
            "grpc: trying to send message larger than max (3000000 vs. 2097152)"
        );
        assert!(size_limit_status(Code::OutOfRange, "etcdserver: something").is_none());
        assert!(
            size_limit_status(Code::Unavailable, "Error, decoded message length too large")
                .is_none()
        );
    }

    #[test]
    fn trailers_only_answers_are_reworded_from_their_encoded_message() {
        let mut resp = Response::new(());
        Status::out_of_range(
            "Error, decoded message length too large: found 4104 bytes, the limit is: 1024 bytes",
        )
        .add_header(resp.headers_mut())
        .unwrap();
        let resp = rewrite(resp);
        let status = Status::from_header_map(resp.headers()).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "grpc: received message larger than max (4104 vs. 1024)"
        );

        let mut other = Response::new(());
        Status::out_of_range("etcdserver: mvcc: required revision is a future revision")
            .add_header(other.headers_mut())
            .unwrap();
        let other = rewrite(other);
        assert_eq!(
            Status::from_header_map(other.headers()).unwrap().code(),
            Code::OutOfRange
        );
    }
}
