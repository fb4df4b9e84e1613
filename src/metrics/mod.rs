//! The proxy's Prometheus metrics: etcd grpc-proxy's names,
//! go-grpc-prometheus' server metrics, and per-backend gauges of our own.
//!
//! Counters are plain atomics so the hot path never takes a lock: gRPC
//! methods are looked up in a fixed table of the etcd v3 API, so label
//! cardinality is bounded whatever paths clients send. At scrape time the
//! server's `/metrics` page (`server/exposition.rs`) reads them, and the
//! other parts' own counters, into the `prometheus` crate's metric families.

pub mod families;
pub mod prefixes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A method's gRPC call type, as go-grpc-prometheus labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcType {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStream,
    /// Streams both ways.
    BidiStream,
}

impl GrpcType {
    /// The `grpc_type` label value.
    pub fn label(self) -> &'static str {
        match self {
            GrpcType::Unary => "unary",
            GrpcType::ServerStream => "server_stream",
            GrpcType::BidiStream => "bidi_stream",
        }
    }
}

use GrpcType::{BidiStream, ServerStream, Unary};

/// Every method the proxy serves: (service, method, type).
pub const METHODS: &[(&str, &str, GrpcType)] = &[
    ("etcdserverpb.KV", "Range", Unary),
    ("etcdserverpb.KV", "RangeStream", ServerStream),
    ("etcdserverpb.KV", "Put", Unary),
    ("etcdserverpb.KV", "DeleteRange", Unary),
    ("etcdserverpb.KV", "Txn", Unary),
    ("etcdserverpb.KV", "Compact", Unary),
    ("etcdserverpb.Watch", "Watch", BidiStream),
    ("etcdserverpb.Lease", "LeaseGrant", Unary),
    ("etcdserverpb.Lease", "LeaseRevoke", Unary),
    ("etcdserverpb.Lease", "LeaseKeepAlive", BidiStream),
    ("etcdserverpb.Lease", "LeaseTimeToLive", Unary),
    ("etcdserverpb.Lease", "LeaseLeases", Unary),
    ("etcdserverpb.Cluster", "MemberAdd", Unary),
    ("etcdserverpb.Cluster", "MemberRemove", Unary),
    ("etcdserverpb.Cluster", "MemberUpdate", Unary),
    ("etcdserverpb.Cluster", "MemberList", Unary),
    ("etcdserverpb.Cluster", "MemberPromote", Unary),
    ("etcdserverpb.Maintenance", "Alarm", Unary),
    ("etcdserverpb.Maintenance", "Status", Unary),
    ("etcdserverpb.Maintenance", "Defragment", Unary),
    ("etcdserverpb.Maintenance", "Hash", Unary),
    ("etcdserverpb.Maintenance", "HashKV", Unary),
    ("etcdserverpb.Maintenance", "Snapshot", ServerStream),
    ("etcdserverpb.Maintenance", "MoveLeader", Unary),
    ("etcdserverpb.Maintenance", "Downgrade", Unary),
    ("etcdserverpb.Auth", "AuthEnable", Unary),
    ("etcdserverpb.Auth", "AuthDisable", Unary),
    ("etcdserverpb.Auth", "AuthStatus", Unary),
    ("etcdserverpb.Auth", "Authenticate", Unary),
    ("etcdserverpb.Auth", "UserAdd", Unary),
    ("etcdserverpb.Auth", "UserGet", Unary),
    ("etcdserverpb.Auth", "UserList", Unary),
    ("etcdserverpb.Auth", "UserDelete", Unary),
    ("etcdserverpb.Auth", "UserChangePassword", Unary),
    ("etcdserverpb.Auth", "UserGrantRole", Unary),
    ("etcdserverpb.Auth", "UserRevokeRole", Unary),
    ("etcdserverpb.Auth", "RoleAdd", Unary),
    ("etcdserverpb.Auth", "RoleGet", Unary),
    ("etcdserverpb.Auth", "RoleList", Unary),
    ("etcdserverpb.Auth", "RoleDelete", Unary),
    ("etcdserverpb.Auth", "RoleGrantPermission", Unary),
    ("etcdserverpb.Auth", "RoleRevokePermission", Unary),
    ("v3electionpb.Election", "Campaign", Unary),
    ("v3electionpb.Election", "Proclaim", Unary),
    ("v3electionpb.Election", "Leader", Unary),
    ("v3electionpb.Election", "Observe", ServerStream),
    ("v3electionpb.Election", "Resign", Unary),
    ("v3lockpb.Lock", "Lock", Unary),
    ("v3lockpb.Lock", "Unlock", Unary),
    ("grpc.health.v1.Health", "Check", Unary),
    ("grpc.health.v1.Health", "List", Unary),
    ("grpc.health.v1.Health", "Watch", ServerStream),
];

use crate::error::GO_CODE_NAMES as CODES;

/// The index of a method in [`METHODS`], by request path (`/pkg.Svc/Method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodId(usize);

impl MethodId {
    /// Looks up a request path; `None` for paths outside the etcd API.
    pub fn from_path(path: &str) -> Option<MethodId> {
        static INDEX: OnceLock<HashMap<String, usize>> = OnceLock::new();
        let index = INDEX.get_or_init(|| {
            METHODS
                .iter()
                .enumerate()
                .map(|(i, (svc, m, _))| (format!("/{svc}/{m}"), i))
                .collect()
        });
        index.get(path).copied().map(MethodId)
    }

    /// The method's call type.
    pub fn grpc_type(self) -> GrpcType {
        METHODS[self.0].2
    }

    /// The service and method names, as in [`METHODS`].
    pub fn names(self) -> (&'static str, &'static str) {
        (METHODS[self.0].0, METHODS[self.0].1)
    }
}

#[derive(Default)]
struct MethodCounters {
    started: AtomicU64,
    handled: [AtomicU64; 17],
    msg_received: AtomicU64,
    msg_sent: AtomicU64,
}

/// Counters shared by the whole proxy: one `Arc` given at start to the
/// gRPC layers that count calls (`measured`, `overloaded`) and to the
/// per-client limits, and read by the `/metrics` page.
pub struct Metrics {
    methods: Vec<MethodCounters>,
    /// Calls to paths outside the etcd API (answered Unimplemented).
    unknown_methods: AtomicU64,
    /// What the limits refused, and the connections open now.
    pub limits: LimitCounters,
    /// Per-prefix counters (`--metrics-prefixes`); `None`: none configured.
    pub prefixes: Option<std::sync::Arc<prefixes::PrefixMetrics>>,
}

/// Counts of what a limit refused, for operators to see a bound at work.
#[derive(Debug, Default)]
pub struct LimitCounters {
    /// Client connections open now.
    pub connections_open: AtomicU64,
    /// Connections closed at once because `--max-connections` were open.
    pub connections_refused: AtomicU64,
    /// Watch creates canceled because the stream held `--max-watchers-per-stream`.
    pub watchers_refused: AtomicU64,
    /// Calls answered "too many requests" past `--memory-budget-bytes`.
    pub calls_shed: AtomicU64,
    /// Connections closed at once past `--memory-budget-bytes`.
    pub connections_shed: AtomicU64,
    /// What per-client limits refused, by [`crate::limits::RefusalKind`].
    pub client_refused: [AtomicU64; 5],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            methods: METHODS.iter().map(|_| MethodCounters::default()).collect(),
            unknown_methods: AtomicU64::new(0),
            limits: LimitCounters::default(),
            prefixes: None,
        }
    }
}

impl Metrics {
    /// Counters with per-prefix metrics for `prefixes` (none: off).
    pub fn with_prefixes(prefixes: &[String]) -> Metrics {
        Metrics {
            prefixes: prefixes::PrefixMetrics::new(prefixes),
            ..Metrics::default()
        }
    }

    /// A call of `method` started (`None`: a path outside the API).
    pub fn started(&self, method: Option<MethodId>) {
        match method {
            Some(m) => self.methods[m.0].started.fetch_add(1, Ordering::Relaxed),
            None => self.unknown_methods.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// A call of `method` ended with gRPC status `code`.
    pub fn handled(&self, method: MethodId, code: i32) {
        let code = usize::try_from(code)
            .ok()
            .filter(|c| *c < CODES.len())
            .unwrap_or(2);
        self.methods[method.0].handled[code].fetch_add(1, Ordering::Relaxed);
    }

    /// A request message of `method` arrived.
    pub fn msg_received(&self, method: MethodId) {
        self.methods[method.0]
            .msg_received
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A response message of `method` left.
    pub fn msg_sent(&self, method: MethodId) {
        self.methods[method.0]
            .msg_sent
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Calls of `method` started and not yet handled (open streams, for streaming methods).
    pub fn in_flight(&self, method: MethodId) -> u64 {
        let c = &self.methods[method.0];
        let handled: u64 = c.handled.iter().map(|h| h.load(Ordering::Relaxed)).sum();
        c.started.load(Ordering::Relaxed).saturating_sub(handled)
    }
}

#[cfg(test)]
mod tests;
