//! The gRPC side of the shared listener: tonic's [`Routes`] over every etcd
//! service, inside a stack of tower layers, each doing one thing around
//! every call (outermost first):
//!
//! 1. [`measured`]: go-grpc-prometheus metrics (started, handled, messages each way).
//! 2. [`overloaded`]: past the memory budget, new calls get etcd's "too many requests".
//! 3. [`wire_checks`]: grpc-go's refusals of unknown paths and encodings; answers in the request's encoding.
//! 4. [`traced`]: with `--otlp-traces-endpoint`, an OpenTelemetry span per call.
//! 5. [`limited`]: per-client limits (rates, calls in flight, keep-alive
//!    streams); off, one branch.
//! 6. [`spanned`]: a debug span per call.
//! 7. [`drained`]: long-lived streams end when the drain cuts them.
//! 8. [`deadline`]: the client's `grpc-timeout` bounds the wait for the answer.
//! 9. [`SizeLimited`]: etcd's wording for messages over the size limits
//!    (it lives with that wording, in [`crate::error::size_limit`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Body as HttpBody;
use tonic::body::Body;
use tonic::service::Routes;
use tower::ServiceBuilder;

use crate::drain::Drain;
use crate::error::size_limit::SizeLimited;
use crate::error::WireError;
use crate::metrics::{MethodId, Metrics, METHODS};

mod deadline;
mod drained;
mod limited;
mod measured;
mod overloaded;
mod spanned;
mod traced;
mod wire_checks;

pub use measured::MsgCounter;

/// Text of the status long-lived streams end with when the proxy drains.
pub use crate::error::DRAIN_MESSAGE;

/// The whole stack, outermost layer first (named, not boxed: cloning it
/// per call only clones `Arc`s).
type Stack = measured::Measured<
    overloaded::Overloaded<
        wire_checks::WireChecks<
            traced::Traced<
                limited::Limited<
                    spanned::Spanned<drained::Drained<deadline::Deadline<SizeLimited<Routes>>>>,
                >,
            >,
        >,
    >,
>;

/// Serves gRPC requests; cheap to clone (one per connection).
#[derive(Clone)]
pub struct GrpcService {
    stack: Stack,
}

/// The boxed future of one gRPC call.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// The future every layer returns.
type LayerFuture = CallFuture;

impl GrpcService {
    /// The layers around the assembled services.
    pub fn new(
        routes: Routes,
        metrics: Arc<Metrics>,
        drain: Arc<Drain>,
        budget: crate::server::memory::MemoryBudget,
        tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
        limits: Option<Arc<crate::limits::ClientLimits>>,
    ) -> GrpcService {
        let stack = ServiceBuilder::new()
            .layer_fn(|inner| measured::Measured::new(inner, metrics.clone()))
            .layer_fn(|inner| overloaded::Overloaded::new(inner, budget, metrics.clone()))
            .layer_fn(wire_checks::WireChecks::new)
            .layer_fn(|inner| traced::Traced::new(inner, tracer.clone()))
            .layer_fn(|inner| limited::Limited::new(inner, limits.clone()))
            .layer_fn(spanned::Spanned::new)
            .layer_fn(|inner| drained::Drained::new(inner, drain.clone()))
            .layer_fn(deadline::Deadline::new)
            .layer_fn(SizeLimited::new)
            .service(routes.prepare());
        GrpcService { stack }
    }

    /// Serves one call.
    pub fn call<B>(&self, req: Request<B>) -> CallFuture
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<tonic::codegen::StdError>,
    {
        // Every layer and tonic's routes are always ready.
        tower::Service::call(&mut self.stack.clone(), req.map(Body::new))
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

/// The etcd API method a request calls: looked up once, by the outermost
/// layer, which leaves it in the request's extensions for the layers below.
fn method_of(req: &Request<Body>) -> Option<MethodId> {
    match req.extensions().get::<Resolved>() {
        Some(Resolved(method)) => *method,
        None => MethodId::from_path(req.uri().path()),
    }
}

/// A request's method as [`method_of`] found it (`None`: outside the API).
#[derive(Clone, Copy)]
struct Resolved(Option<MethodId>);

/// The `grpc-status` of a trailers-only response (one whose status is in its headers).
fn status_code(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
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
