//! OpenTelemetry traces (`--otlp-traces-endpoint`): a span per call, sent
//! over OTLP/gRPC to a collector, and the W3C `traceparent` carried to the
//! members so an etcd started with distributed tracing continues the trace.
//!
//! - [`Tracing::start`] builds the exporter and the SDK's batch processor
//!   (a bounded queue of [`QUEUE`] spans on its own thread; spans past it
//!   are dropped, and the SDK logs how many at shutdown).
//! - The `traced` layer of the gRPC stack opens the span, continuing the
//!   client's `traceparent` when it sent one, and runs the call inside its
//!   context.
//! - Inside that context, [`inject`] writes the span's `traceparent` on
//!   every upstream request, and [`event`] adds span events (the member an
//!   attempt went to, retries, cache hits).
//!
//! Off (the default), nothing is built: every helper returns after one
//! relaxed load of [`ACTIVE`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};

/// Proxies in this process with tracing on (tests run several): while it
/// is 0 no helper looks at the current context.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Spans queued for export at most; more are dropped.
pub const QUEUE: usize = 2048;

/// How often queued spans are exported.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// The service name spans carry.
const SERVICE_NAME: &str = "etcd-grpc-proxy";

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("--otlp-traces-endpoint={endpoint}: {reason}")]
pub struct TraceError {
    endpoint: String,
    reason: String,
}

/// A running exporter; [`Tracing::shutdown`] exports what is still queued.
pub struct Tracing {
    /// Taken by [`Tracing::shutdown`].
    provider: Option<SdkTracerProvider>,
    tracer: SdkTracer,
}

impl Tracing {
    /// Exports spans to the OTLP/gRPC collector at `endpoint` (a URL).
    /// Must run inside the tokio runtime (the exporter's channel lives there).
    pub fn start(endpoint: &str) -> Result<Tracing, TraceError> {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| TraceError {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE)
            .with_scheduled_delay(EXPORT_EVERY)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(SERVICE_NAME)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer(SERVICE_NAME);
        ACTIVE.fetch_add(1, Ordering::Relaxed);
        Ok(Tracing {
            provider: Some(provider),
            tracer,
        })
    }

    /// The tracer the `traced` layer opens spans with.
    pub fn tracer(&self) -> &SdkTracer {
        &self.tracer
    }
}

impl Tracing {
    /// Exports the spans still queued (within the SDK's shutdown timeout),
    /// on a blocking thread: the SDK waits for its exporter thread.
    pub async fn shutdown(mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = done {
            tracing::debug!(error = %e, "trace exporter shutdown");
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether any proxy of this process traces.
fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed) > 0
}

/// The context a call's span starts in: the client's `traceparent` (and
/// `tracestate`) if it sent a valid one, else a new trace.
pub fn parent_from(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderCarrier(headers))
}

/// Starts the server span of one call of `path` (`/pkg.Service/Method`)
/// under `parent`; the returned context holds it.
pub fn start_call(tracer: &SdkTracer, path: &str, parent: Context) -> Context {
    let name = path.strip_prefix('/').unwrap_or(path).to_string();
    let (service, method) = name.rsplit_once('/').unwrap_or(("", &name));
    let attributes = vec![
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", service.to_string()),
        KeyValue::new("rpc.method", method.to_string()),
    ];
    let span = tracer
        .span_builder(name.clone())
        .with_kind(SpanKind::Server)
        .with_attributes(attributes)
        .start_with_context(tracer, &parent);
    parent.with_span(span)
}

/// Ends the span of `cx` with the call's gRPC status code.
pub fn end_call(cx: &Context, code: i32) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
    if code != 0 {
        span.set_status(opentelemetry::trace::Status::error(
            crate::error::GO_CODE_NAMES
                .get(usize::try_from(code).unwrap_or(2))
                .copied()
                .unwrap_or("Unknown"),
        ));
    }
    span.end();
}

/// Adds the event `name` to the current call's span, if there is one; the
/// attributes are only built then.
pub fn event(name: &'static str, attributes: impl FnOnce() -> Vec<KeyValue>) {
    if !active() {
        return;
    }
    Context::map_current(|cx| {
        if cx.has_active_span() {
            cx.span().add_event(name, attributes());
        }
    });
}

/// Sets an attribute on the current call's span, if there is one.
pub fn attribute(attribute: impl FnOnce() -> KeyValue) {
    if !active() {
        return;
    }
    Context::map_current(|cx| {
        if cx.has_active_span() {
            cx.span().set_attribute(attribute());
        }
    });
}

/// Writes the current span's `traceparent` on an upstream request (in
/// place of one the client sent), so the member's span is its child.
pub fn inject<T>(request: &mut tonic::Request<T>) {
    if !active() {
        return;
    }
    Context::map_current(|cx| {
        if cx.span().span_context().is_valid() {
            TraceContextPropagator::new()
                .inject_context(cx, &mut MetadataCarrier(request.metadata_mut()));
        }
    });
}

/// Reads W3C headers from a client's request.
struct HeaderCarrier<'a>(&'a http::HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes W3C headers on an upstream request.
struct MetadataCarrier<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(key) = tonic::metadata::MetadataKey::from_bytes(key.as_bytes()) else {
            return;
        };
        if let Ok(value) = value.parse() {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_traceparent_is_continued_and_garbage_ignored() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let cx = parent_from(&h);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(
            format!("{:032x}", sc.trace_id()),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        h.insert("traceparent", http::HeaderValue::from_static("nonsense"));
        assert!(!parent_from(&h).span().span_context().is_valid());
    }
}
