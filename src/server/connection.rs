//! Each accepted connection, served by hyper (HTTP/1.1 and HTTP/2): gRPC and HTTP told apart by content type; the accept loop.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::body::Body;
use tracing::{debug, warn, Instrument};

use crate::config::Config;

use super::grpc_service::GrpcService;
use super::http_api::HttpApi;
use super::{Acceptor, Io};

/// What every connection serves: gRPC or HTTP, by content type.
#[derive(Clone)]
pub struct App {
    pub(super) grpc: GrpcService,
    pub(super) http: Arc<HttpApi>,
    /// Whether gRPC is served (false on `--metrics-addr`).
    pub(super) grpc_enabled: bool,
    /// The client certificate name of this connection, given to every
    /// request so [`crate::upstream::Caller`] can read it.
    pub(super) client_cert: Option<crate::upstream::ClientCertName>,
    /// The connection's source address, given to every request when
    /// `with_peer` (per-client limits fall back to it).
    pub(super) peer: Option<crate::limits::PeerAddr>,
    /// Whether requests carry `peer`: only with per-client limits on, so
    /// without them a request pays nothing for it.
    pub(super) with_peer: bool,
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl tower::Service<Request<Incoming>> for App {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        if let Some(name) = &self.client_cert {
            req.extensions_mut().insert(name.clone());
        }
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(peer);
        }
        if self.grpc_enabled && is_grpc(&req) {
            self.grpc.call(req)
        } else {
            let http = self.http.clone();
            Box::pin(async move { Ok(http.handle(req).await) })
        }
    }
}

/// HTTP/2 connection window towards clients.
const CLIENT_CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

/// HTTP/2 stream window towards clients.
const CLIENT_STREAM_WINDOW: u32 = 1024 * 1024;

/// hyper's connection settings, as tonic's server would set them.
pub(super) fn connection_builder(config: &Config) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.max_concurrent_streams)
        // Room for many small frames not yet read (watch and keep-alive
        // requests): h2 closes the connection once they exceed half of it.
        .initial_connection_window_size(CLIENT_CONNECTION_WINDOW)
        // A sender gets at most this far ahead of what a call has read;
        // what a call reads is bounded by the request limit (2 MiB), so one
        // stream can make the proxy hold at most the two.
        .initial_stream_window_size(CLIENT_STREAM_WINDOW)
        .keep_alive_interval(Some(config.grpc_keepalive_interval))
        .keep_alive_timeout(config.grpc_keepalive_timeout);
    builder.http1().timer(TokioTimer::new());
    builder
}

/// Serves HTTP/1.1 and HTTP/2 on one accepted connection until it closes,
/// or until the graceful shutdown `watcher` belongs to is signalled.
pub async fn serve_connection<I: Io>(
    io: I,
    app: App,
    builder: Arc<Builder<TokioExecutor>>,
    watcher: Watcher,
) {
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    if let Err(e) = watcher.watch(conn).await {
        debug!(error = %e, "connection ended with an error");
    }
}

/// Accepts connections on `listener` until `stop` turns true, then closes
/// it; returns the connections still being served, to abort at the hard limit.
pub(super) async fn accept_loop(
    listener: TcpListener,
    app: App,
    builder: Arc<Builder<TokioExecutor>>,
    acceptor: Option<Acceptor>,
    graceful: &GracefulShutdown,
    mut stop: watch::Receiver<bool>,
    limit: ConnectionLimit,
) -> JoinSet<()> {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if conns.len() >= limit.max {
            // Closed at once: a client past the limit is told by the
            // connection's end, and costs nothing more.
            limit
                .metrics
                .limits
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            debug!(%peer, max = limit.max, "connection refused: --max-connections open");
            drop(tcp);
            continue;
        }
        if limit.budget.exceeded() {
            limit
                .metrics
                .limits
                .connections_shed
                .fetch_add(1, Ordering::Relaxed);
            debug!(%peer, "connection refused: --memory-budget-bytes reached");
            drop(tcp);
            continue;
        }
        let open = OpenConnection::new(limit.metrics.clone());
        let _ = tcp.set_nodelay(true);
        let (app, builder, watcher, acceptor) = (
            app.clone(),
            builder.clone(),
            graceful.watcher(),
            acceptor.clone(),
        );
        let app = App {
            peer: app.with_peer.then_some(crate::limits::PeerAddr(peer)),
            ..app
        };
        let span = tracing::debug_span!("conn", %peer);
        conns.spawn(
            async move {
                let _open = open;
                match acceptor {
                    None => serve_connection(tcp, app, builder, watcher).await,
                    Some(accept) => match accept(tcp).await {
                        Ok((io, client_cert)) => {
                            let app = App { client_cert, ..app };
                            serve_connection(io, app, builder, watcher).await
                        }
                        Err(e) => debug!(error = %e, "connection setup failed"),
                    },
                }
            }
            .instrument(span),
        );
    }
    conns
}

/// The `--max-connections` bound of one accept loop.
#[derive(Clone)]
pub(super) struct ConnectionLimit {
    /// Connections served at once; one more is closed at once.
    pub(super) max: usize,
    /// Past it, new connections are closed at once too.
    pub(super) budget: crate::server::memory::MemoryBudget,
    /// Where open and refused connections are counted.
    pub(super) metrics: Arc<crate::metrics::Metrics>,
}

/// Counts one open client connection for as long as it lives.
struct OpenConnection(Arc<crate::metrics::Metrics>);

impl OpenConnection {
    fn new(metrics: Arc<crate::metrics::Metrics>) -> OpenConnection {
        metrics
            .limits
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        OpenConnection(metrics)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0
            .limits
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}
