//! Serves gRPC and HTTP on one listener, as etcd does, and runs the drain
//! sequence on shutdown.
//!
//! Each accepted connection is served by hyper (HTTP/1.1 and HTTP/2):
//! requests with a `content-type: application/grpc*` header go to the etcd
//! services ([`grpc_service::GrpcService`]), everything else to
//! [`http_api::HttpApi`]. The same HTTP endpoints are served on
//! `--metrics-addr` when set.
//!
//! [`run_with`] is two steps: `build` makes every part of the proxy from
//! the configuration (pool, hubs, cache, KV stack, services, `routes`), and
//! `serve` runs the accept loops, then the drain sequence.
//!
//! - [`grpc_service`]: the gRPC stack (unknown paths, spans, size-limit wording, metrics, drain cut).
//! - [`http_api`]: `/health`, `/livez`, `/readyz`, `/metrics`, `/debug/pprof`.
//! - [`compression`]: gzip requests and answers, as members handle them.
//! - [`profile`]: CPU flamegraphs for `--enable-pprof`.

pub mod bind;
pub mod compression;
pub mod exposition;
pub mod grpc_service;
pub mod http_api;
pub mod memory;
pub mod profile;
pub mod tls_accept;

use std::future::Future;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::drain::DrainHook;

mod build;
mod routes;
mod serve;

mod listener;
pub use listener::{AcceptFuture, Accepted, Acceptor, Io};

mod connection;
pub use connection::{serve_connection, App};

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A member channel could not be built from the configuration.
    #[error("cannot set up backend channel: {0}")]
    Backend(#[from] tonic::transport::Error),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// `--metrics-addr` could not be bound.
    #[error("cannot listen on --metrics-addr {addr}: {source}")]
    MetricsAddr {
        /// The address asked for.
        addr: String,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The TLS flags cannot be used.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// `--discovery-srv` found no member.
    #[error("{0}")]
    Discovery(#[from] crate::upstream::discovery::DiscoveryError),
    /// `--otlp-traces-endpoint` could not be used.
    #[error("{0}")]
    Trace(#[from] crate::trace::TraceError),
    /// `--limits-file` could not be read or parsed.
    #[error("--limits-file: {0}")]
    Limits(#[from] crate::limits::LimitsFileError),
}

/// Extras for [`run_with`]; `Default` gives what [`run`] does.
#[derive(Default)]
pub struct RunOptions {
    /// Wraps each connection of the main listener (TLS); `None`: plain TCP.
    pub acceptor: Option<Acceptor>,
    /// A listener for the HTTP endpoints; `None`: bind `config.metrics_addr` if set.
    pub metrics_listener: Option<TcpListener>,
    /// Work to do when the drain starts (see [`Drain::on_drain`]).
    pub drain_hooks: Vec<DrainHook>,
}

/// Serves the etcd v3 API on `listener` until `shutdown` resolves, then drains.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    run_with(config, listener, shutdown, RunOptions::default()).await
}

/// Like [`run`], with a TLS acceptor, a ready metrics listener or drain hooks.
///
/// On `shutdown`: `/readyz` answers 503 and the drain hooks run; after
/// `config.drain_grace_period` the listeners close; long-lived streams are
/// ended with `Unavailable`, unary calls in flight finish; connections
/// still open after `config.drain_timeout` are dropped.
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    options: RunOptions,
) -> Result<(), RunError> {
    let local = listener.local_addr()?;
    let metrics_listener = match (options.metrics_listener, &config.metrics_addr) {
        (Some(l), _) => Some(l),
        (None, Some(addr)) => {
            Some(
                bind::listen(addr)
                    .await
                    .map_err(|source| RunError::MetricsAddr {
                        addr: addr.clone(),
                        source,
                    })?,
            )
        }
        (None, None) => None,
    };
    // TLS towards clients: the handshake runs on each connection's own task.
    let acceptor = match options.acceptor {
        Some(a) => Some(a),
        None => crate::tls::server_acceptor(config.listen_tls.as_ref())?
            .map(tls_accept::connection_acceptor),
    };
    let proxy = build::build(&config, options.drain_hooks).await?;
    let listeners = serve::Listeners {
        main: listener,
        local,
        acceptor,
        metrics: metrics_listener,
    };
    serve::serve(&config, proxy, listeners, shutdown).await;
    Ok(())
}
