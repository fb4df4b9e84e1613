//! tonic's [`Routes`] over every etcd service and `grpc.health.v1`, each
//! with the proxy's wire settings: the request size limit and gzip both
//! ways, as members have them.

use std::sync::Arc;

use tonic::service::Routes;

use crate::config::Config;
use crate::keepalive::KeepAliveHub;
use crate::proto::etcdserverpb::auth_server::AuthServer;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::grpc_health_v1::health_server::HealthServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::services::auth::AuthService;
use crate::services::cluster::ClusterService;
use crate::services::election::ElectionService;
use crate::services::grpc_health::HealthService;
use crate::services::kv::KvService;
use crate::services::lease::LeaseService;
use crate::services::lock::LockService;
use crate::services::maintenance::MaintenanceService;
use crate::services::watch::WatchService;
use crate::services::ServiceDeps;

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
pub(super) fn request_limit(config: &Config) -> usize {
    const GRPC_OVERHEAD: usize = 512 * 1024;
    config
        .max_recv_bytes
        .min(config.max_send_bytes.saturating_add(GRPC_OVERHEAD))
}

/// Every etcd service and the gRPC health service, with the same message limits.
pub(super) fn routes(
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
