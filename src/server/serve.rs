//! Serving a built [`Proxy`]: the accept loops of the main listener and of
//! `--metrics-addr`, then, once shutdown is asked for, the drain sequence
//! (grace period, listeners closed, streams cut, connections given until
//! the drain timeout) and the proxy's tasks stopped. Kept apart from
//! [`super::build`], so the life of the listeners reads in one place.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::Config;

use super::build::Proxy;
use super::connection::{accept_loop, connection_builder, ConnectionLimit};
use super::{Acceptor, App};

/// How long `run` waits, after stopping them, for the proxy's tasks to end.
const TASKS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a proxy is served: the main listener (with its TLS acceptor) and
/// the optional listener for the HTTP endpoints alone.
pub(super) struct Listeners {
    /// The main listener: gRPC and HTTP.
    pub(super) main: TcpListener,
    /// Its address, as bound.
    pub(super) local: SocketAddr,
    /// Wraps each connection of the main listener (TLS); `None`: plain TCP.
    pub(super) acceptor: Option<Acceptor>,
    /// `--metrics-addr`: the HTTP endpoints only.
    pub(super) metrics: Option<TcpListener>,
}

/// Serves `proxy` on `listeners` until `shutdown` resolves, then drains it
/// and stops its tasks.
pub(super) async fn serve(
    config: &Config,
    proxy: Proxy,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) {
    let Proxy {
        app,
        drain,
        tasks,
        traces,
        metrics,
        budget,
        endpoints,
        membership,
        followers,
    } = proxy;
    let Listeners {
        main: listener,
        local,
        acceptor,
        metrics: metrics_listener,
    } = listeners;
    let builder = Arc::new(connection_builder(config));

    let graceful = GracefulShutdown::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics_local = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    info!(
        listen = %local,
        metrics = ?metrics_local,
        tls = acceptor.is_some(),
        endpoints = %endpoints.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(","),
        auto_sync = ?config.auto_sync_interval,
        "started gRPC proxy"
    );

    let limit = ConnectionLimit {
        max: config.max_connections,
        budget,
        metrics,
    };
    let main_loop = accept_loop(
        listener,
        app.clone(),
        builder.clone(),
        acceptor,
        &graceful,
        stop_rx.clone(),
        limit.clone(),
    );
    let metrics_loop = async {
        match metrics_listener {
            Some(l) => {
                let app = App {
                    grpc_enabled: false,
                    ..app.clone()
                };
                accept_loop(
                    l,
                    app,
                    builder.clone(),
                    None,
                    &graceful,
                    stop_rx.clone(),
                    limit.clone(),
                )
                .await
            }
            None => JoinSet::new(),
        }
    };
    let sequence = async {
        shutdown.await;
        drain.start().await;
        info!(grace = ?config.drain_grace_period, "draining: still serving during the grace period");
        tokio::time::sleep(config.drain_grace_period).await;
        info!("draining: listeners closed");
        stop_tx.send_replace(true);
    };
    let (mut main_conns, mut metrics_conns, ()) = tokio::join!(main_loop, metrics_loop, sequence);

    drain.cut_streams();
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            timeout = ?config.drain_timeout,
            open = main_conns.len() + metrics_conns.len(),
            "connections still open after the drain timeout; closing them"
        );
        main_conns.abort_all();
        metrics_conns.abort_all();
    }
    drop(membership);
    if !tasks.stop(TASKS_PATIENCE).await {
        warn!(
            left = tasks.len(),
            "tasks still running after the proxy stopped"
        );
    }
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    drop(followers);
    info!("gRPC proxy stopped");
}
