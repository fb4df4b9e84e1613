//! Serves gRPC and HTTP on one listener, as etcd does, and runs the drain
//! sequence on shutdown.
//!
//! Each accepted connection is served by hyper (HTTP/1.1 and HTTP/2):
//! requests with a `content-type: application/grpc*` header go to the etcd
//! services ([`GrpcService`]), everything else to [`HttpApi`]. The same
//! HTTP endpoints are served on `--metrics-addr` when set.
//!
//! - [`grpc_service`]: the gRPC stack (unknown paths, spans, size-limit wording, metrics, drain cut).
//! - [`http_api`]: `/health`, `/livez`, `/readyz`, `/metrics`, `/debug/pprof`.
//! - [`compression`]: gzip requests and answers, as members handle them.
//! - [`size_limit`]: etcd's wording for messages over the size limits.
//! - [`profile`]: CPU flamegraphs for `--enable-pprof`.

pub mod compression;
pub mod exposition;
pub mod grpc_service;
pub mod http_api;
pub mod memory;
pub mod profile;
pub mod size_limit;
pub mod tls_accept;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::body::Body;
use tonic::service::Routes;
use tracing::{debug, info, warn, Instrument};

use crate::config::Config;
use crate::drain::{Drain, DrainHook};
use crate::keepalive::KeepAliveHub;
use crate::kv::cache::RangeCache;
use crate::metrics::Metrics;
use crate::proto::etcdserverpb::auth_server::AuthServer;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::grpc_health_v1::health_server::HealthServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::server::grpc_service::GrpcService;
use crate::server::http_api::HttpApi;
use crate::services::auth::AuthService;
use crate::services::cluster::ClusterService;
use crate::services::election::ElectionService;
use crate::services::grpc_health::HealthService;
use crate::services::kv::KvService;
use crate::services::lease::LeaseService;
use crate::services::lock::LockService;
use crate::services::maintenance::MaintenanceService;
use crate::services::watch::{WatchService, CLIENT_QUEUE};
use crate::services::ServiceDeps;
use crate::upstream::membership::{self, MembershipSettings};
use crate::upstream::{Pool, Upstream};
use crate::watch::hub::WatchHub;
use exposition::Sources;

mod listener;
pub use listener::{AcceptFuture, Accepted, Acceptor, Io};

mod connection;
use connection::{accept_loop, connection_builder, ConnectionLimit};
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

/// A background task that ends with the proxy, even when `run` itself is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
                TcpListener::bind(addr)
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
    let mut channel = config.channel.clone();
    if let Some(backend_tls) = &config.backend_tls {
        channel.tls = Some(backend_tls.load()?);
    }
    let endpoints = match &config.discovery {
        Some(d) => crate::upstream::discovery::discover(d, config.dns_server).await?,
        None => config.endpoints.clone(),
    };
    let pool = Pool::new(endpoints.clone(), channel)?;
    // Every task the proxy starts from here on, stopped and awaited before
    // `run` returns.
    let tasks = crate::tasks::Tasks::default();
    let membership = AbortOnDrop(tasks.spawn(membership::run(
        pool.clone(),
        MembershipSettings {
            sync_interval: config.auto_sync_interval,
            health_interval: config.health_interval,
            probe_timeout: std::time::Duration::from_secs(1),
        },
    )));

    let metrics = Arc::new(Metrics::with_prefixes(&config.metrics_prefixes));
    let traces = match &config.otlp_traces_endpoint {
        Some(endpoint) => Some(crate::trace::Tracing::start(endpoint)?),
        None => None,
    };
    // Per-client limits exist only when configured: otherwise nothing on
    // the call path looks at them.
    let limits = match config.client_limits.enabled() {
        true => Some(Arc::new(crate::limits::ClientLimits::new(
            config.client_limits.clone(),
            metrics.clone(),
        )?)),
        false => None,
    };
    let _limits_reload = limits
        .as_ref()
        .filter(|l| l.config.file.is_some())
        .map(|l| AbortOnDrop(tasks.spawn(crate::limits::reload::follow(l.clone()))));
    let drain = Arc::new(Drain::default());
    for hook in options.drain_hooks {
        drain.on_drain(hook);
    }
    let upstream = Upstream::new(pool.clone(), config.max_recv_bytes, config.max_send_bytes);
    let features = crate::kv::Features {
        namespace: config.namespace.clone().map(Arc::new),
        cache: RangeCache::new(config.cache),
        read_barrier: crate::kv::read_barrier::ReadBarrier::new(upstream.clone()),
        serializable_floor: config.serializable_ordering.then(Default::default),
        leasing: config
            .leasing_prefix
            .clone()
            .map(|p| crate::kv::leasing::Leasing::new(p, upstream.clone(), tasks.clone())),
        prefix_metrics: metrics.prefixes.clone(),
    };
    let deps = ServiceDeps {
        upstream: upstream.clone(),
        kv: crate::kv::build(upstream.clone(), &features),
        namespace: features.namespace,
        cache: features.cache,
        read_barrier: features.read_barrier,
        serializable_floor: features.serializable_floor,
        leasing: features.leasing,
        limits: limits.clone(),
    };
    let watch_hub = WatchHub::new(pool.clone(), CLIENT_QUEUE, tasks.clone());
    let keepalive_hub = KeepAliveHub::new(pool.clone(), tasks.clone());
    let _cache_follower = AbortOnDrop(
        tasks.spawn(
            deps.cache
                .clone()
                .follow(watch_hub.clone(), upstream.clone()),
        ),
    );
    if let Some(reg) = config.registration.clone() {
        // Registered until the drain starts: then the entry is removed at
        // once, so clients stop discovering a proxy that is going away.
        let (lease_tx, lease) = watch::channel(0i64);
        let task = AbortOnDrop(tasks.spawn(crate::registration::run(
            upstream.clone(),
            keepalive_hub.clone(),
            reg,
            lease_tx,
        )));
        let upstream = upstream.clone();
        drain.on_drain(Box::new(move || {
            Box::pin(async move {
                drop(task);
                let lease = *lease.borrow();
                crate::registration::unregister(&upstream, lease).await;
            })
        }));
    }
    if let Some(leasing) = deps.leasing.clone() {
        // Leases are given up when the drain starts, so writers elsewhere
        // need not wait for this proxy's session to expire.
        let task = AbortOnDrop(tasks.spawn(leasing.clone().run(keepalive_hub.clone())));
        drain.on_drain(Box::new(move || {
            Box::pin(async move {
                drop(task);
                let lease = leasing.session_lease();
                leasing.reset();
                if let Some(lease) = lease {
                    leasing.revoke_session(lease).await;
                }
            })
        }));
    }
    let health = HealthService {
        pool: pool.clone(),
        drain: drain.clone(),
    };
    let budget = crate::server::memory::MemoryBudget {
        bytes: config.memory_budget_bytes,
    };
    let watch = WatchService {
        deps: deps.clone(),
        hub: watch_hub.clone(),
        max_watchers_per_stream: config.max_watchers_per_stream,
        metrics: metrics.clone(),
    };
    let routes = routes(
        &deps,
        watch,
        &keepalive_hub,
        request_limit(&config),
        config.registration.clone(),
        health,
    );
    let http = Arc::new(HttpApi {
        sources: Sources {
            metrics: metrics.clone(),
            pool: pool.clone(),
            watch_hub,
            keepalive_hub,
            cache: deps.cache.clone(),
            read_barrier: deps.read_barrier.clone(),
            client_limits: limits.clone(),
        },
        drain: drain.clone(),
        upstream: upstream.clone(),
        enable_pprof: config.enable_pprof,
    });
    let app = App {
        grpc: GrpcService::new(
            routes,
            metrics.clone(),
            drain.clone(),
            budget,
            traces.as_ref().map(|t| t.tracer().clone()),
            limits.clone(),
        ),
        http,
        grpc_enabled: true,
        client_cert: None,
        peer: None,
        with_peer: limits.is_some(),
    };
    let builder = Arc::new(connection_builder(&config));

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
        metrics: metrics.clone(),
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
    info!("gRPC proxy stopped");
    Ok(())
}

/// How long `run` waits, after stopping them, for the proxy's tasks to end.
const TASKS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// A generated tonic server with the proxy's wire settings: the message
/// limits, and gzip accepted and sent as members do (see [`crate::server::compression`]).
macro_rules! wire {
    ($server:expr, $recv:expr) => {
        $server
            .max_decoding_message_size($recv)
            .max_encoding_message_size(usize::MAX)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
    };
}

/// The largest request the proxy reads from a client: `--max-recv-bytes`,
/// but never more than a member would take (its request limit, which
/// `--max-send-bytes` mirrors, plus grpc-go's 512 KiB allowance, as etcd
/// sets its own server): a larger request is refused from its gRPC length
/// prefix, in a member's words, before any of it is buffered.
fn request_limit(config: &Config) -> usize {
    const GRPC_OVERHEAD: usize = 512 * 1024;
    config
        .max_recv_bytes
        .min(config.max_send_bytes.saturating_add(GRPC_OVERHEAD))
}

/// Every etcd service and the gRPC health service, with the same message limits.
fn routes(
    deps: &ServiceDeps,
    watch: WatchService,
    keepalive_hub: &Arc<KeepAliveHub>,
    recv: usize,
    registration: Option<crate::registration::Registration>,
    health: HealthService,
) -> Routes {
    Routes::new(wire!(KvServer::new(KvService { deps: deps.clone() }), recv))
        .add_service(wire!(
            ClusterServer::new(ClusterService {
                deps: deps.clone(),
                registration
            }),
            recv
        ))
        .add_service(wire!(
            MaintenanceServer::new(MaintenanceService { deps: deps.clone() }),
            recv
        ))
        .add_service(crate::services::watch::WatchGrpc::new(watch, recv))
        .add_service(wire!(
            LeaseServer::new(LeaseService {
                deps: deps.clone(),
                hub: keepalive_hub.clone()
            }),
            recv
        ))
        .add_service(wire!(
            AuthServer::new(AuthService { deps: deps.clone() }),
            recv
        ))
        .add_service(wire!(
            ElectionServer::new(ElectionService { deps: deps.clone() }),
            recv
        ))
        .add_service(wire!(
            LockServer::new(LockService { deps: deps.clone() }),
            recv
        ))
        .add_service(wire!(HealthServer::new(health), recv))
}
