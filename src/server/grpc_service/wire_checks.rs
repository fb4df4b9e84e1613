//! What members refuse before any handler runs, in grpc-go's words: an
//! unknown service or method, an encoding they cannot decompress. Accepted
//! calls are answered in the request's own encoding.

use std::task::{Context, Poll};

use super::*;

/// The wire-checks layer.
#[derive(Clone)]
pub struct WireChecks<S> {
    inner: S,
}

impl<S> WireChecks<S> {
    /// Calls to `inner` checked first.
    pub fn new(inner: S) -> WireChecks<S> {
        WireChecks { inner }
    }
}

impl<S> tower::Service<Request<Body>> for WireChecks<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future =
        futures::future::Either<std::future::Ready<Result<Response<Body>, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        use futures::future::Either;
        let refusal = match method_of(&req) {
            None => Some(unknown_path(req.uri().path())),
            Some(_) => crate::server::compression::unsupported(req.headers()),
        };
        if let Some(refusal) = refusal {
            return Either::Left(std::future::ready(Ok(
                tonic::Status::from(refusal).into_http()
            )));
        }
        crate::server::compression::answer_in_request_encoding(req.headers_mut());
        Either::Right(self.inner.call(req))
    }
}
