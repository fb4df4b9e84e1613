//! `--otlp-traces-endpoint`: an OpenTelemetry span per call, continuing the
//! client's `traceparent`; the call runs inside the span's context so the
//! upstream layer passes it on to the member (see [`crate::trace`]). The
//! span ends when the call's answer is ready (for streams: once opened),
//! with the status of a trailers-only answer, else OK.

use std::task::{Context, Poll};

use futures::future::Either;
use opentelemetry::context::FutureExt as _;
use opentelemetry_sdk::trace::SdkTracer;

use super::*;

/// The trace layer; with no tracer it only passes calls on.
#[derive(Clone)]
pub struct Traced<S> {
    inner: S,
    tracer: Option<SdkTracer>,
}

impl<S> Traced<S> {
    /// Spans around `inner`'s calls when `tracer` is set.
    pub fn new(inner: S, tracer: Option<SdkTracer>) -> Traced<S> {
        Traced { inner, tracer }
    }
}

impl<S> tower::Service<Request<Body>> for Traced<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<S::Future, LayerFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let Some(tracer) = &self.tracer else {
            return Either::Left(self.inner.call(req));
        };
        let parent = crate::trace::parent_from(req.headers());
        let cx = crate::trace::start_call(tracer, req.uri().path(), parent);
        let answer = self.inner.call(req).with_context(cx.clone());
        Either::Right(Box::pin(async move {
            let resp = match answer.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            crate::trace::end_call(&cx, status_code(resp.headers()).unwrap_or(0));
            Ok(resp)
        }))
    }
}
