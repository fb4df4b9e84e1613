//! etcd's wording for messages over the size limits (see
//! [`crate::server::size_limit`]): tonic refuses them in its own words.

use std::task::{Context, Poll};

use futures::FutureExt;

use super::*;

/// The size-limit wording layer.
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
        self.inner
            .call(req)
            .map(|r| r.map(crate::server::size_limit::rewrite))
    }
}
