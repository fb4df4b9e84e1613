//! go-grpc-prometheus metrics for every call of the etcd API: started,
//! handled (with the final code), and messages received and sent, counted
//! from the gRPC framing of the bodies.

use std::task::{Context, Poll};

use http_body::{Frame, SizeHint};

use super::*;

/// The metrics layer.
#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Measured<S> {
    /// `inner`'s calls counted in `metrics`.
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Measured<S> {
        Measured { inner, metrics }
    }
}

impl<S> tower::Service<Request<Body>> for Measured<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = LayerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let method = method_of(&req);
        req.extensions_mut().insert(Resolved(method));
        self.metrics.started(method);
        // A path outside the etcd API is refused below and not counted.
        let Some(method) = method else {
            return Box::pin(self.inner.call(req));
        };
        let metrics = self.metrics.clone();
        let req = req.map(|inner| {
            Body::new(Counted {
                inner,
                counter: MsgCounter::default(),
                metrics: metrics.clone(),
                method,
            })
        });
        let answer = self.inner.call(req);
        Box::pin(async move {
            let resp = match answer.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let (parts, body) = resp.into_parts();
            let trailers_only = status_code(&parts.headers);
            if let Some(code) = trailers_only {
                metrics.handled(method, code);
            }
            let body = Measuring {
                inner: body,
                counter: MsgCounter::default(),
                metrics,
                method,
                recorded: trailers_only.is_some(),
                finished: false,
            };
            Ok(Response::from_parts(parts, Body::new(body)))
        })
    }
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
struct Counted {
    inner: Body,
    counter: MsgCounter,
    metrics: Arc<Metrics>,
    method: MethodId,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                for _ in 0..this.counter.feed(data) {
                    this.metrics.msg_received(this.method);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts messages and records the final status.
struct Measuring {
    inner: Body,
    counter: MsgCounter,
    metrics: Arc<Metrics>,
    method: MethodId,
    /// Whether `grpc_server_handled_total` has counted this call.
    recorded: bool,
    finished: bool,
}

impl Measuring {
    fn record(&mut self, code: i32) {
        if !self.recorded {
            self.recorded = true;
            self.metrics.handled(self.method, code);
        }
    }
}

impl HttpBody for Measuring {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
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
        self.finished || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Measuring {
    fn drop(&mut self) {
        // The client went away before the call ended.
        self.record(tonic::Code::Cancelled as i32);
    }
}
