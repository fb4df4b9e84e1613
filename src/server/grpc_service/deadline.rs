//! The client's `grpc-timeout` bounds the wait for the answer, as tonic's
//! own server does; past it the call ends with `DeadlineExceeded`.

use std::task::{Context, Poll};

use super::*;
use crate::error::ProxyError;

/// The deadline layer.
#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<S> Deadline<S> {
    /// `inner`'s calls bounded by their deadlines.
    pub fn new(inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

impl<S> tower::Service<Request<Body>> for Deadline<S>
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
        let deadline = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let answer = self.inner.call(req);
        let Some(d) = deadline else {
            return futures::future::Either::Left(answer);
        };
        futures::future::Either::Right(Box::pin(async move {
            match tokio::time::timeout(d, answer).await {
                Ok(r) => r,
                Err(_) => Ok(ProxyError::DeadlineExpired.status().into_http()),
            }
        }))
    }
}
