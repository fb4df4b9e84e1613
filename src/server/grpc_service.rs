//! The gRPC side of the shared listener: tonic's [`Routes`] over every etcd
//! service, wrapped with what each call needs around it: a request span,
//! etcd's size-limit wording, go-grpc-prometheus style metrics, and the
//! drain cut that ends long-lived streams.

use crate::error::ProxyError;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::service::Routes;
use tower::ServiceExt;
use tracing::Instrument;

use crate::drain::Drain;
use crate::error::WireError;
use crate::metrics::{GrpcType, MethodId, Metrics, METHODS};

/// Text of the status long-lived streams end with when the proxy drains.
pub use crate::error::DRAIN_MESSAGE;

/// Serves gRPC requests; cheap to clone (one per connection).
#[derive(Clone)]
pub struct GrpcService {
    routes: Routes,
    metrics: Arc<Metrics>,
    drain: Arc<Drain>,
}

/// The boxed future of one gRPC call.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl GrpcService {
    /// Wraps the assembled services.
    pub fn new(routes: Routes, metrics: Arc<Metrics>, drain: Arc<Drain>) -> GrpcService {
        GrpcService {
            routes: routes.prepare(),
            metrics,
            drain,
        }
    }

    /// Serves one call.
    pub fn call<B>(&self, req: Request<B>) -> CallFuture
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<tonic::codegen::StdError>,
    {
        let method = MethodId::from_path(req.uri().path());
        self.metrics.started(method);
        // What members refuse before any handler runs, in grpc-go's words.
        let Some(method) = method else {
            let refusal = unknown_path(req.uri().path());
            return Box::pin(std::future::ready(Ok(
                tonic::Status::from(refusal).into_http()
            )));
        };
        if let Some(refusal) = crate::server::compression::unsupported(req.headers()) {
            self.metrics
                .handled(method, tonic::Code::Unimplemented as i32);
            return Box::pin(std::future::ready(Ok(
                tonic::Status::from(refusal).into_http()
            )));
        }
        let mut req = req;
        crate::server::compression::answer_in_request_encoding(req.headers_mut());
        let span = tracing::debug_span!("grpc", method = %req.uri().path());
        let metrics = self.metrics.clone();
        let req = req.map(|b| {
            Body::new(Counted {
                inner: b,
                counter: MsgCounter::default(),
                metrics: metrics.clone(),
                method,
            })
        });
        // Long-lived streams end on drain; a snapshot download or a RangeStream is let finish.
        let cut = (method.grpc_type() != GrpcType::Unary && !lets_finish(req.uri().path()))
            .then(|| self.drain.cut_signal());
        let deadline = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let routes = self.routes.clone();
        Box::pin(
            async move {
                // The client's deadline bounds the wait for the answer, as tonic's own server does.
                let answer = async move {
                    match deadline {
                        None => routes.oneshot(req).await,
                        Some(d) => match tokio::time::timeout(d, routes.oneshot(req)).await {
                            Ok(r) => r,
                            Err(_) => Ok(ProxyError::DeadlineExpired.status().into_http()),
                        },
                    }
                };
                // A stream whose handler has not answered yet (an Observe
                // waiting for a leader) is ended by the drain too.
                let resp = match cut.clone() {
                    None => answer.await,
                    Some(mut rx) => tokio::select! {
                        r = answer => r,
                        _ = async { let _ = rx.wait_for(|cut| *cut).await; } => {
                            Ok(ProxyError::Draining.status().into_http())
                        }
                    },
                };
                let resp = match resp {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                // etcd's wording for oversized requests, which tonic words differently.
                let resp = crate::server::size_limit::rewrite(resp);
                let (parts, body) = resp.into_parts();
                let trailers_only = status_code(&parts.headers);
                if let Some(code) = trailers_only {
                    metrics.handled(method, code);
                }
                let cut = match (trailers_only, cut) {
                    (None, Some(mut rx)) => Some(Box::pin(async move {
                        let _ = rx.wait_for(|cut| *cut).await;
                    })
                        as Pin<Box<dyn Future<Output = ()> + Send>>),
                    _ => None,
                };
                let body = Observed {
                    inner: body,
                    counter: MsgCounter::default(),
                    metrics,
                    method,
                    recorded: trailers_only.is_some(),
                    finished: false,
                    cut,
                };
                Ok(Response::from_parts(parts, Body::new(body)))
            }
            .instrument(span),
        )
    }
}

/// Why a path outside [`METHODS`] is refused, as grpc-go words it: the
/// path is split at its last `/` into service and method.
pub fn unknown_path(path: &str) -> WireError {
    let split = path.strip_prefix('/').and_then(|p| p.rsplit_once('/'));
    let Some((service, method)) = split else {
        return WireError::MalformedMethod(path.to_string());
    };
    if METHODS.iter().any(|(s, _, _)| *s == service) {
        WireError::UnknownMethod {
            service: service.to_string(),
            method: method.to_string(),
        }
    } else {
        WireError::UnknownService(service.to_string())
    }
}

/// Reads a `grpc-timeout` header value (`<up to 8 digits><H|M|S|m|u|n>`).
pub fn parse_grpc_timeout(value: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Streams that end on their own, so the drain lets them finish.
fn lets_finish(path: &str) -> bool {
    matches!(
        path,
        "/etcdserverpb.Maintenance/Snapshot" | "/etcdserverpb.KV/RangeStream"
    )
}

fn status_code(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// Counts gRPC messages in a byte stream by reading the 5-byte
/// length-prefixed framing, across HTTP/2 frame boundaries.
#[derive(Debug, Default)]
pub struct MsgCounter {
    header: [u8; 5],
    have: usize,
    body_left: u64,
}

impl MsgCounter {
    /// Feeds bytes; returns how many messages began in them.
    pub fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut started = 0;
        while !data.is_empty() {
            if self.body_left > 0 {
                let take = (self.body_left.min(data.len() as u64)) as usize;
                data = &data[take..];
                self.body_left -= take as u64;
                continue;
            }
            let take = (5 - self.have).min(data.len());
            self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            data = &data[take..];
            if self.have == 5 {
                started += 1;
                self.have = 0;
                self.body_left = u64::from(u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]));
            }
        }
        started
    }
}

/// A request body counting the messages the client sends.
struct Counted<B> {
    inner: B,
    counter: MsgCounter,
    metrics: Arc<Metrics>,
    method: MethodId,
}

impl<B> HttpBody for Counted<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    for _ in 0..this.counter.feed(data) {
                        this.metrics.msg_received(this.method);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(tonic::Status::from_error(e.into()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts messages, records the final status, and
/// ends the stream with `Unavailable` when the drain cuts it.
struct Observed {
    inner: Body,
    counter: MsgCounter,
    metrics: Arc<Metrics>,
    method: MethodId,
    /// Whether `grpc_server_handled_total` has counted this call.
    recorded: bool,
    finished: bool,
    cut: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Observed {
    fn record(&mut self, code: i32) {
        if !self.recorded {
            self.recorded = true;
            self.metrics.handled(self.method, code);
        }
    }
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(cut) = this.cut.as_mut() {
            if cut.as_mut().poll(cx).is_ready() {
                this.cut = None;
                this.finished = true;
                this.record(tonic::Code::Unavailable as i32);
                let mut trailers = HeaderMap::new();
                trailers.insert(
                    "grpc-status",
                    HeaderValue::from(tonic::Code::Unavailable as i32),
                );
                trailers.insert("grpc-message", HeaderValue::from_static(DRAIN_MESSAGE));
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    for _ in 0..this.counter.feed(data) {
                        this.metrics.msg_sent(this.method);
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    this.record(status_code(trailers).unwrap_or(tonic::Code::Unknown as i32));
                    this.finished = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.record(e.code() as i32);
                this.finished = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.record(tonic::Code::Ok as i32);
                this.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished || (self.cut.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // The client went away before the call ended.
        self.record(tonic::Code::Cancelled as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_grpc_timeout, unknown_path, MsgCounter};
    use std::time::Duration;

    #[test]
    fn grpc_timeouts_parse_and_garbage_is_ignored() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "S", "5", "5x", "123456789S", "-1S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_paths_are_worded_as_grpc_go_words_them() {
        let text = |p: &str| unknown_path(p).to_string();
        assert_eq!(
            text("/etcdserverpb.KV/Nope"),
            "unknown method Nope for service etcdserverpb.KV"
        );
        assert_eq!(text("/no.Such/Range"), "unknown service no.Such");
        assert_eq!(text("/a/b/c"), "unknown service a/b");
        assert_eq!(text("/nope"), "malformed method name: \"/nope\"");
    }

    #[test]
    fn counts_messages_across_frame_boundaries() {
        let mut c = MsgCounter::default();
        // Two messages of 3 and 0 bytes, then half a header.
        let bytes = [0u8, 0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(c.feed(&bytes), 2);
        // Rest of the header (length 2) and its body, split.
        assert_eq!(c.feed(&[0, 0, 2]), 1);
        assert_eq!(c.feed(&[9]), 0);
        assert_eq!(c.feed(&[9, 0, 0, 0, 0, 1, 7]), 1);
    }
}
