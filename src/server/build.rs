//! Building a proxy from its configuration: the member pool and
//! [`Upstream`], the membership task, the watch and keep-alive hubs, the
//! range cache, the KV stack, the services and the [`App`] every connection
//! serves. Nothing listens yet: [`super::serve`] runs what is built here,
//! so what a proxy is made of reads apart from how it serves and drains.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::drain::{Drain, DrainHook};
use crate::keepalive::KeepAliveHub;
use crate::kv::cache::RangeCache;
use crate::metrics::Metrics;
use crate::services::grpc_health::HealthService;
use crate::services::watch::{WatchService, CLIENT_QUEUE};
use crate::services::ServiceDeps;
use crate::tasks::Tasks;
use crate::trace::Tracing;
use crate::upstream::endpoint::EndpointUrl;
use crate::upstream::membership::{self, MembershipSettings};
use crate::upstream::{Pool, Upstream};
use crate::watch::hub::WatchHub;

use super::exposition::Sources;
use super::grpc_service::GrpcService;
use super::http_api::HttpApi;
use super::memory::MemoryBudget;
use super::routes::{request_limit, routes};
use super::{App, RunError};

/// A background task that ends with the proxy, even when `run` itself is dropped.
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A proxy ready to serve: what [`build`] made, handed to [`super::serve`].
pub(super) struct Proxy {
    /// What every connection serves (gRPC and HTTP).
    pub(super) app: App,
    /// The draining state, with the hooks registration and leasing added.
    pub(super) drain: Arc<Drain>,
    /// Every task the proxy started, stopped and awaited when it ends.
    pub(super) tasks: Tasks,
    /// The OTLP exporter (`--otlp-traces-endpoint`), flushed at the end.
    pub(super) traces: Option<Tracing>,
    /// The shared counters (connections open, refused, shed).
    pub(super) metrics: Arc<Metrics>,
    /// `--memory-budget-bytes`, which also bounds new connections.
    pub(super) budget: MemoryBudget,
    /// The members the pool started from, for the start-up log line.
    pub(super) endpoints: Vec<EndpointUrl>,
    /// The membership task: stopped once the connections are closed.
    pub(super) membership: AbortOnDrop,
    /// The limits file follower and the cache follower: they end with the proxy.
    pub(super) followers: Vec<AbortOnDrop>,
}

/// Builds every part of the proxy from `config`; `drain_hooks` run first
/// when the drain starts.
pub(super) async fn build(config: &Config, drain_hooks: Vec<DrainHook>) -> Result<Proxy, RunError> {
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
    let tasks = Tasks::default();
    let membership = AbortOnDrop(tasks.spawn(membership::run(
        pool.clone(),
        MembershipSettings {
            sync_interval: config.auto_sync_interval,
            health_interval: config.health_interval,
            probe_timeout: std::time::Duration::from_secs(1),
        },
    )));
    let mut followers = Vec::new();

    let metrics = Arc::new(Metrics::with_prefixes(&config.metrics_prefixes));
    let traces = match &config.otlp_traces_endpoint {
        Some(endpoint) => Some(Tracing::start(endpoint)?),
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
    if let Some(l) = limits.as_ref().filter(|l| l.config.file.is_some()) {
        followers.push(AbortOnDrop(
            tasks.spawn(crate::limits::reload::follow(l.clone())),
        ));
    }
    let drain = Arc::new(Drain::default());
    for hook in drain_hooks {
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
    followers.push(AbortOnDrop(
        tasks.spawn(
            deps.cache
                .clone()
                .follow(watch_hub.clone(), upstream.clone()),
        ),
    ));
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
    let budget = MemoryBudget {
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
        request_limit(config),
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
    Ok(Proxy {
        app,
        drain,
        tasks,
        traces,
        metrics,
        budget,
        endpoints,
        membership,
        followers,
    })
}
