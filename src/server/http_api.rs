//! The plain HTTP endpoints served beside gRPC on the listen address and
//! on `--metrics-addr`: etcd's `/health`, `/metrics`, `/proxy/health`,
//! `/proxy/metrics`, plus `/livez` and `/readyz` for orchestrators, and
//! `/debug/pprof/` with `--enable-pprof` (see [`crate::server::profile`]). GET only, as in etcd.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tonic::body::Body;

use crate::drain::Drain;
use crate::server::exposition::Sources;
use crate::upstream::health;

/// Prometheus' text exposition content type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The HTTP side of the proxy; shared by every connection.
pub struct HttpApi {
    /// What `/metrics` reads.
    pub sources: Sources,
    /// Whether the proxy is draining (for `/readyz`).
    pub drain: Arc<Drain>,
    /// Where `/health` sends its linearizable Get.
    pub upstream: crate::upstream::Upstream,
    /// `--enable-pprof`: whether `/debug/pprof/` answers.
    pub enable_pprof: bool,
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::new(Full::new(body.into())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

/// etcd's health JSON: `{"health":"true"}` or `{"health":"false","reason":"..."}`.
fn health_json(result: Result<(), String>) -> Response<Body> {
    match result {
        Ok(()) => reply(StatusCode::OK, "application/json", "{\"health\":\"true\"}"),
        Err(reason) => {
            let reason: String = reason
                .chars()
                .flat_map(|c| match c {
                    '"' => vec!['\\', '"'],
                    '\\' => vec!['\\', '\\'],
                    c if c.is_control() => vec![' '],
                    c => vec![c],
                })
                .collect();
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                format!("{{\"health\":\"false\",\"reason\":\"{reason}\"}}"),
            )
        }
    }
}

/// `/debug/pprof/`: what this build offers instead of Go's pprof.
const PPROF_INDEX: &str = "etcd-grpc-proxy CPU profiling (--enable-pprof)\n\
\n\
    GET /debug/pprof/profile?seconds=N   samples the process for N seconds (default 30, at most 300)\n\
                                         and answers a flamegraph SVG (image/svg+xml)\n\
\n\
Go's other pprof endpoints (heap, goroutine, ...) do not exist in a Rust build.\n\
For a perf profile instead: perf record -F 99 -g -p <pid> -- sleep 30\n";

async fn pprof(path: &str, query: Option<&str>) -> Response<Body> {
    use crate::server::profile::{cpu_flamegraph, seconds_from_query, ProfileError};
    match path.trim_end_matches('/') {
        "/debug/pprof" => reply(StatusCode::OK, "text/plain; charset=utf-8", PPROF_INDEX),
        "/debug/pprof/profile" => {
            let result = match seconds_from_query(query) {
                Ok(length) => cpu_flamegraph(length).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(svg) => reply(StatusCode::OK, "image/svg+xml", svg),
                Err(e @ ProfileError::BadSeconds(_)) => reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain; charset=utf-8",
                    format!("{e}\n"),
                ),
                Err(e @ ProfileError::Busy) => reply(
                    StatusCode::CONFLICT,
                    "text/plain; charset=utf-8",
                    format!("{e}\n"),
                ),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("{e}\n"),
                ),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            PPROF_INDEX,
        ),
    }
}

impl HttpApi {
    /// Answers one HTTP request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body> {
        let path = req.uri().path();
        let known = matches!(
            path,
            "/health" | "/proxy/health" | "/livez" | "/readyz" | "/metrics" | "/proxy/metrics"
        ) || (self.enable_pprof && path.starts_with("/debug/pprof"));
        if !known {
            return reply(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "404 page not found\n",
            );
        }
        if req.method() != Method::GET {
            let mut resp = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "Method Not Allowed\n",
            );
            resp.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
            return resp;
        }
        match path {
            "/health" | "/proxy/health" => {
                health_json(health::check(&self.upstream, health::HEALTH_TIMEOUT).await)
            }
            "/livez" => reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
            "/readyz" => match health::readiness(&self.sources.pool, &self.drain) {
                Ok(()) => reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
                Err(why) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    format!("not ready: {why}\n"),
                ),
            },
            "/metrics" | "/proxy/metrics" => {
                reply(StatusCode::OK, METRICS_CONTENT_TYPE, self.sources.render())
            }
            _ => pprof(path, req.uri().query()).await,
        }
    }
}
