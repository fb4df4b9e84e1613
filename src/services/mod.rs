//! One file per etcd gRPC service. Each handler takes the client's request,
//! forwards it through the [`Upstream`] with the client's metadata (auth token,
//! deadline), and hands etcd's answer back unchanged. `grpc_health` is the
//! exception: the proxy answers health checks itself. A handler that only
//! forwards is one line of the `forward!` macro (`forward.rs`).

use std::sync::Arc;

use crate::kv::cache::RangeCache;
use crate::kv::namespace::Namespace;
use crate::upstream::Upstream;

pub mod auth;
pub mod cluster;
pub mod election;
pub(crate) mod forward;
pub mod grpc_health;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod range_stream;
pub mod watch;

/// What every service binding shares (named apart from `std::task::Context`): the upstream, the upstream message limits and the KV features.
#[derive(Clone)]
pub struct ServiceDeps {
    /// Every call to a member goes through it.
    pub upstream: Upstream,
    /// The key prefix clients are confined to (`--namespace`), if any.
    pub namespace: Option<Arc<Namespace>>,
    /// Range answers shared by clients without a token (serializable reads
    /// directly, linearizable ones behind a read barrier).
    pub cache: Arc<RangeCache>,
    /// Shared linearizable read barriers, for linearizable reads the cache holds.
    pub read_barrier: Arc<crate::kv::read_barrier::ReadBarrier>,
    /// With `--experimental-serializable-ordering`, the highest revision a
    /// serializable read has answered with; older answers are read again.
    pub serializable_floor: Option<Arc<std::sync::atomic::AtomicI64>>,
    /// `--experimental-leasing-prefix`: linearizable Gets served from held leases.
    pub leasing: Option<Arc<crate::kv::leasing::Leasing>>,
    /// The KV stack ([`crate::kv`]) built once from the configuration.
    pub kv: crate::kv::SharedKv,
    /// Per-client limits, when configured: Authenticate teaches them who
    /// holds a token, the watch service bounds each client's watchers.
    pub limits: Option<Arc<crate::limits::ClientLimits>>,
}
