//! Sheds new calls past the memory budget (see [`crate::server::memory`]):
//! they are answered as etcd answers overload, `ResourceExhausted` with
//! `etcdserver: too many requests`, and clients back off; calls already in
//! flight finish.

use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use super::*;
use crate::error::ProxyError;
use crate::server::memory::MemoryBudget;

/// The layer that sheds calls past the memory budget.
#[derive(Clone)]
pub struct Overloaded<S> {
    inner: S,
    budget: MemoryBudget,
    metrics: Arc<Metrics>,
}

impl<S> Overloaded<S> {
    /// `inner`, shedding new calls while `budget` is exceeded.
    pub fn new(inner: S, budget: MemoryBudget, metrics: Arc<Metrics>) -> Overloaded<S> {
        Overloaded {
            inner,
            budget,
            metrics,
        }
    }
}

impl<S> tower::Service<Request<Body>> for Overloaded<S>
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

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if self.budget.exceeded() {
            self.metrics
                .limits
                .calls_shed
                .fetch_add(1, Ordering::Relaxed);
            let status = ProxyError::TooManyRequests.status();
            return futures::future::Either::Left(std::future::ready(Ok(status.into_http())));
        }
        futures::future::Either::Right(self.inner.call(req))
    }
}
