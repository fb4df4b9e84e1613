//! A debug span per call, named by its path.

use std::task::{Context, Poll};

use tracing::Instrument;

use super::*;

/// The span layer.
#[derive(Clone)]
pub struct Spanned<S> {
    inner: S,
}

impl<S> Spanned<S> {
    /// Spans around `inner`'s calls.
    pub fn new(inner: S) -> Spanned<S> {
        Spanned { inner }
    }
}

impl<S> tower::Service<Request<Body>> for Spanned<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let span = tracing::debug_span!("grpc", method = %req.uri().path());
        self.inner.call(req).instrument(span)
    }
}
