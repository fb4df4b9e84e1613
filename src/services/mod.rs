//! One file per etcd gRPC service. Each handler takes the client's request,
//! forwards it through the [`Pool`] with the client's metadata (auth token,
//! deadline), and hands etcd's answer back unchanged. `grpc_health` is the
//! exception: the proxy answers health checks itself.

use tonic::metadata::MetadataMap;
use tonic::{Extensions, Request};

use std::sync::Arc;

use crate::backend::Upstream;
use crate::cache::RangeCache;
use crate::namespace::Namespace;

pub mod auth;
pub mod cluster;
pub mod election;
pub mod grpc_health;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod range_stream;
pub mod watch;

/// What every service needs: the pool, the upstream message limits and the KV features.
#[derive(Clone)]
pub struct Context {
    /// Every call to a member goes through it.
    pub upstream: Upstream,
    /// The key prefix clients are confined to (`--namespace`), if any.
    pub namespace: Option<Arc<Namespace>>,
    /// Range answers shared by clients without a token (serializable reads
    /// directly, linearizable ones behind a read barrier).
    pub cache: Arc<RangeCache>,
    /// Shared linearizable read barriers, for linearizable reads the cache holds.
    pub read_barrier: Arc<crate::read_barrier::ReadBarrier>,
    /// With `--experimental-serializable-ordering`, the highest revision a
    /// serializable read has answered with; older answers are read again.
    pub serializable_floor: Option<Arc<std::sync::atomic::AtomicI64>>,
    /// `--experimental-leasing-prefix`: linearizable Gets served from held leases.
    pub leasing: Option<Arc<crate::kv::leasing::Leasing>>,
    /// The KV stack ([`crate::kv`]) built once from the configuration.
    pub kv: crate::kv::SharedKv,
}

/// The client's metadata, cleaned of what belongs to its own connection,
/// ready to be attached to each upstream attempt.
#[derive(Clone, Debug)]
pub struct Forwarded(MetadataMap);

/// Headers that describe the client's connection or encoding, not the call.
const HOP_BY_HOP: &[&str] = &[
    "te",
    "content-type",
    "content-length",
    "user-agent",
    "grpc-encoding",
    "grpc-accept-encoding",
    "grpc-message-type",
    "accept-encoding",
    "connection",
];

impl Forwarded {
    /// Splits a client request into forwardable metadata and its message.
    pub fn split<T>(req: Request<T>) -> (Forwarded, T) {
        let (mut metadata, _ext, msg) = req.into_parts();
        for h in HOP_BY_HOP {
            metadata.remove(*h);
        }
        (Forwarded(metadata), msg)
    }

    /// An upstream request carrying the client's metadata.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        Request::from_parts(self.0.clone(), Extensions::default(), msg)
    }

    /// The client's metadata as received (auth token among it).
    pub fn metadata(&self) -> &MetadataMap {
        &self.0
    }
}
