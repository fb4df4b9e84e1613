//! Per-client limits ([`crate::limits`]) on every call: its client's read
//! or write rate, its unary calls in flight, its keep-alive streams. A
//! refused call is answered as etcd answers overload. The client's name is
//! left in the request's extensions for the watch service, which bounds
//! the client's watchers itself (a refused watcher is a canceled watch,
//! not a failed stream).
//!
//! With no limit configured the layer holds `None`: one branch per call.

use std::task::{Context, Poll};

use http_body::{Frame, SizeHint};

use super::*;
use crate::limits::{CallClass, ClientLimits, Permit};
use crate::metrics::GrpcType;

/// The per-client limits layer.
#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    limits: Option<Arc<ClientLimits>>,
}

impl<S> Limited<S> {
    /// `inner`, its calls counted against `limits` (`None`: no limits).
    pub fn new(inner: S, limits: Option<Arc<ClientLimits>>) -> Limited<S> {
        Limited { inner, limits }
    }
}

impl<S> tower::Service<Request<Body>> for Limited<S>
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

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        use futures::future::Either;
        let (Some(limits), Some(method)) = (&self.limits, method_of(&req)) else {
            return Either::Left(self.inner.call(req));
        };
        let client = crate::limits::client_of(req.headers(), req.extensions(), &limits.users);
        let (_, name) = method.names();
        let admitted = if name == "LeaseKeepAlive" {
            limits.admit_keepalive_stream(&client).map(Some)
        } else if method.grpc_type() == GrpcType::BidiStream {
            // Watch: its watchers are counted one by one by the service.
            Ok(None)
        } else {
            let unary = method.grpc_type() == GrpcType::Unary;
            limits.admit_call(&client, class_of(name), unary)
        };
        let permit = match admitted {
            Ok(permit) => permit,
            Err(refusal) => {
                tracing::debug!(%refusal, "refused by per-client limits");
                let status = crate::error::ProxyError::from(refusal).status();
                return Either::Right(Box::pin(std::future::ready(Ok(status.into_http()))));
            }
        };
        req.extensions_mut().insert(client);
        let Some(permit) = permit else {
            return Either::Left(self.inner.call(req));
        };
        let streaming = method.grpc_type() != GrpcType::Unary;
        let answer = self.inner.call(req);
        Either::Right(Box::pin(async move {
            let resp = match answer.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if !streaming {
                // A unary call is answered: its permit goes back.
                return Ok(resp);
            }
            // A keep-alive stream holds its permit until its body ends.
            Ok(resp.map(|inner| {
                Body::new(Holding {
                    inner,
                    _permit: permit,
                })
            }))
        }))
    }
}

/// How a method counts against its client's rates.
fn class_of(method: &str) -> CallClass {
    match method {
        "Range" | "RangeStream" | "LeaseTimeToLive" | "LeaseLeases" | "Leader" => CallClass::Read,
        "Put" | "DeleteRange" | "Txn" | "Compact" | "LeaseGrant" | "LeaseRevoke" | "Campaign"
        | "Proclaim" | "Resign" | "Lock" | "Unlock" => CallClass::Write,
        _ => CallClass::Other,
    }
}

/// A response body holding a permit for as long as the stream lasts.
struct Holding {
    inner: Body,
    _permit: Permit,
}

impl http_body::Body for Holding {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_has_the_class_its_effect_says() {
        for (_, method, _) in METHODS {
            let class = class_of(method);
            let expected = match *method {
                "Range" | "RangeStream" | "LeaseTimeToLive" | "LeaseLeases" | "Leader" => {
                    CallClass::Read
                }
                m if ["Put", "DeleteRange", "Txn", "Compact"].contains(&m) => CallClass::Write,
                m if m.starts_with("Lease") && m != "LeaseKeepAlive" => CallClass::Write,
                "Campaign" | "Proclaim" | "Resign" | "Lock" | "Unlock" => CallClass::Write,
                _ => CallClass::Other,
            };
            assert_eq!(class, expected, "{method}");
        }
    }
}
