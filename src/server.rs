//! Assembles the etcd services on one listener and runs them until shutdown.

use std::future::Future;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tracing::info;

use crate::backend::membership::{self, MembershipSettings};
use crate::backend::Pool;
use crate::cache::RangeCache;
use crate::config::Config;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::coalesce::keepalive::KeepAliveHub;
use crate::coalesce::watch::WatchHub;
use crate::proto::etcdserverpb::auth_server::AuthServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::services::auth::AuthService;
use crate::services::election::ElectionService;
use crate::services::lock::LockService;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::services::lease::LeaseService;
use crate::services::watch::{WatchService, CLIENT_QUEUE};
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::services::cluster::ClusterService;
use crate::services::kv::KvService;
use crate::services::maintenance::MaintenanceService;
use crate::services::Context;

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A member channel could not be built from the configuration.
    #[error("cannot set up backend channel: {0}")]
    Backend(#[from] tonic::transport::Error),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS flags cannot be used.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// `--discovery-srv` found no member.
    #[error("{0}")]
    Discovery(#[from] crate::discovery::DiscoveryError),
}

/// A background task that ends with the proxy, even when `run` itself is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves the etcd v3 API on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let local = listener.local_addr()?;
    let tls_acceptor = crate::tls::server_acceptor(config.listen_tls.as_ref())?;
    let mut channel = config.channel.clone();
    if let Some(backend_tls) = &config.backend_tls {
        channel.tls = Some(backend_tls.load()?);
    }
    let endpoints = match &config.discovery {
        Some(d) => crate::discovery::discover(d, config.dns_server).await?,
        None => config.endpoints.clone(),
    };
    let pool = Pool::new(endpoints.clone(), channel)?;
    let membership = AbortOnDrop(tokio::spawn(membership::run(
        pool.clone(),
        MembershipSettings {
            sync_interval: config.auto_sync_interval,
            health_interval: config.health_interval,
            probe_timeout: std::time::Duration::from_secs(1),
        },
    )));

    let ctx = Context {
        pool: pool.clone(),
        upstream_max_recv: config.max_recv_bytes,
        upstream_max_send: config.max_send_bytes,
        namespace: config.namespace.clone().map(std::sync::Arc::new),
        cache: RangeCache::new(config.cache),
        serializable_floor: config.serializable_ordering.then(Default::default),
    };
    let watch_hub = WatchHub::new(pool.clone(), CLIENT_QUEUE);
    let cache_follower = AbortOnDrop(tokio::spawn(ctx.cache.clone().follow(watch_hub.clone(), pool.clone())));
    let keepalive_hub = KeepAliveHub::new(pool.clone());
    let (lease_tx, registered_lease) = tokio::sync::watch::channel(0i64);
    let registration = config.registration.clone().map(|reg| {
        AbortOnDrop(tokio::spawn(crate::registration::run(pool.clone(), keepalive_hub.clone(), reg, lease_tx)))
    });
    let recv = config.max_recv_bytes;
    let send = usize::MAX;

    info!(
        listen = %local,
        tls = tls_acceptor.is_some(),
        endpoints = %endpoints.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(","),
        auto_sync = ?config.auto_sync_interval,
        "started gRPC proxy"
    );
    let router = Server::builder()
        .max_concurrent_streams(config.max_concurrent_streams)
        .http2_keepalive_interval(Some(config.grpc_keepalive_interval))
        .http2_keepalive_timeout(Some(config.grpc_keepalive_timeout))
        .trace_fn(|req| tracing::info_span!("grpc", method = %req.uri().path()))
        // etcd's wording for oversized requests, which tonic words differently.
        .layer(tower::util::MapResponseLayer::new(crate::size_limit::rewrite))
        .add_service(
            KvServer::new(KvService { ctx: ctx.clone() })
                .max_decoding_message_size(recv)
                .max_encoding_message_size(send),
        )
        .add_service(
            ClusterServer::new(ClusterService { ctx: ctx.clone(), registration: config.registration.clone() })
                .max_decoding_message_size(recv)
                .max_encoding_message_size(send),
        )
        .add_service(
            MaintenanceServer::new(MaintenanceService { ctx: ctx.clone() })
                .max_decoding_message_size(recv)
                .max_encoding_message_size(send),
        )
        .add_service(
            WatchServer::new(WatchService { ctx: ctx.clone(), hub: watch_hub.clone() })
                .max_decoding_message_size(recv)
                .max_encoding_message_size(send),
        )
        .add_service(
            LeaseServer::new(LeaseService { ctx: ctx.clone(), hub: keepalive_hub.clone() })
                .max_decoding_message_size(recv)
                .max_encoding_message_size(send),
        )
        .add_service(
            AuthServer::new(AuthService { ctx: ctx.clone() })
                .max_decoding_message_size(recv)
                .max_encoding_message_size(send),
        )
        .add_service(
            ElectionServer::new(ElectionService { ctx: ctx.clone() })
                .max_decoding_message_size(recv)
                .max_encoding_message_size(send),
        )
        .add_service(
            LockServer::new(LockService { ctx: ctx.clone() })
                .max_decoding_message_size(recv)
                .max_encoding_message_size(send),
        );
    let result = match tls_acceptor {
        Some(acceptor) => {
            router.serve_with_incoming_shutdown(crate::tls::accept_stream(listener, acceptor), shutdown).await
        }
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router.serve_with_incoming_shutdown(incoming, shutdown).await
        }
    };
    if let Some(task) = registration {
        drop(task);
        let lease = *registered_lease.borrow();
        crate::registration::unregister(&pool, lease).await;
    }
    drop(cache_follower);
    drop(membership);
    info!("gRPC proxy stopped");
    result.map_err(RunError::from)
}
