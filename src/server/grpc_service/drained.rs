//! Long-lived streams end when the drain cuts them: a stream whose handler
//! has not answered yet (an Observe waiting for a leader) ends with
//! `Unavailable`, an open one gets `Unavailable` trailers, so clients
//! reconnect to another proxy. Unary calls, snapshot downloads and
//! RangeStreams are let finish.

use std::task::{Context, Poll};

use http::HeaderValue;
use http_body::{Frame, SizeHint};
use tokio::sync::watch;

use super::*;
use crate::error::ProxyError;
use crate::metrics::GrpcType;

/// The drain layer.
#[derive(Clone)]
pub struct Drained<S> {
    inner: S,
    drain: Arc<Drain>,
}

impl<S> Drained<S> {
    /// `inner`'s long-lived streams cut by `drain`.
    pub fn new(inner: S, drain: Arc<Drain>) -> Drained<S> {
        Drained { inner, drain }
    }
}

/// Resolves once the drain has cut streams.
async fn cut(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|cut| *cut).await;
}

impl<S> tower::Service<Request<Body>> for Drained<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures::future::Either<S::Future, LayerFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        use futures::future::Either;
        let streams = method_of(&req)
            .is_some_and(|m| m.grpc_type() != GrpcType::Unary && !lets_finish(req.uri().path()));
        if !streams {
            return Either::Left(self.inner.call(req));
        }
        let signal = self.drain.cut_signal();
        let answer = self.inner.call(req);
        Either::Right(Box::pin(async move {
            let resp = tokio::select! {
                r = answer => match r {
                    Ok(r) => r,
                    Err(never) => match never {},
                },
                _ = cut(signal.clone()) => ProxyError::Draining.status().into_http(),
            };
            if status_code(resp.headers()).is_some() {
                return Ok(resp);
            }
            let (parts, body) = resp.into_parts();
            let body = Cut {
                inner: body,
                cut: Some(Box::pin(cut(signal))),
                finished: false,
            };
            Ok(Response::from_parts(parts, Body::new(body)))
        }))
    }
}

/// A response body that ends with `Unavailable` trailers when the drain cuts it.
struct Cut {
    inner: Body,
    cut: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    finished: bool,
}

impl HttpBody for Cut {
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
        if let Some(cut) = this.cut.as_mut() {
            if cut.as_mut().poll(cx).is_ready() {
                this.cut = None;
                this.finished = true;
                let mut trailers = HeaderMap::new();
                trailers.insert(
                    "grpc-status",
                    HeaderValue::from(tonic::Code::Unavailable as i32),
                );
                trailers.insert("grpc-message", HeaderValue::from_static(DRAIN_MESSAGE));
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => this.finished = true,
            Poll::Ready(Some(Err(_)) | None) => this.finished = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.finished || (self.cut.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
