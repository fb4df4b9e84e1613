//! The proxy's Prometheus metrics, written by hand in the text exposition
//! format (no registry crate): etcd grpc-proxy's names, go-grpc-prometheus'
//! server metrics, and per-backend gauges of our own.
//!
//! Counters are plain atomics so the hot path never takes a lock: gRPC
//! methods are looked up in a fixed table of the etcd v3 API, so label
//! cardinality is bounded whatever paths clients send.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::lease::keepalive::KeepAliveHub;
use crate::upstream::Pool;
use crate::watch::hub::WatchHub;

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
    fn label(self) -> &'static str {
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
}

#[derive(Default)]
struct MethodCounters {
    started: AtomicU64,
    handled: [AtomicU64; 17],
    msg_received: AtomicU64,
    msg_sent: AtomicU64,
}

/// Counters shared by the whole proxy; reachable from
/// [`crate::services::Context`] so any service can count.
pub struct Metrics {
    methods: Vec<MethodCounters>,
    /// Calls to paths outside the etcd API (answered Unimplemented).
    unknown_methods: AtomicU64,
    /// When the proxy started, in seconds since the Unix epoch.
    start_time: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            methods: METHODS.iter().map(|_| MethodCounters::default()).collect(),
            unknown_methods: AtomicU64::new(0),
            start_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        }
    }
}

impl Metrics {
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

/// Everything the exposition reads from.
#[derive(Clone)]
pub struct Sources {
    /// The shared counters.
    pub metrics: Arc<Metrics>,
    /// The member set, for per-backend gauges.
    pub pool: Pool,
    /// Watch coalescing counters.
    pub watch_hub: Arc<WatchHub>,
    /// Keep-alive coalescing counters.
    pub keepalive_hub: Arc<KeepAliveHub>,
    /// The range cache's counters and size.
    pub cache: Arc<crate::kv::cache::RangeCache>,
    /// How many linearizable read barriers were sent.
    pub read_barrier: Arc<crate::kv::read_barrier::ReadBarrier>,
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Escapes a label value for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Sources {
    /// The text exposition (Prometheus format 0.0.4).
    pub fn render(&self) -> String {
        let m = &self.metrics;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::with_capacity(16 * 1024);

        let w = &self.watch_hub.stats;
        let c = &self.cache.stats;
        single(
            &mut out,
            "etcd_grpc_proxy_cache_hits_total",
            "counter",
            "Total number of cache hits.",
            load(&c.hits),
        );
        single(
            &mut out,
            "etcd_grpc_proxy_cache_misses_total",
            "counter",
            "Total number of cache misses.",
            load(&c.misses),
        );
        // A gauge despite its name, as in etcd.
        single(
            &mut out,
            "etcd_grpc_proxy_cache_keys_total",
            "gauge",
            "Total number of keys/ranges cached.",
            self.cache.len() as u64,
        );
        single(
            &mut out,
            "etcd_grpc_proxy_cache_invalidations_total",
            "counter",
            "Cached ranges dropped because a write or watch event touched them.",
            load(&c.invalidations),
        );
        single(
            &mut out,
            "etcd_grpc_proxy_read_barriers_total",
            "counter",
            "Linearizable reads sent to etcd as barriers shared by the linearizable reads answered from the cache.",
            load(&self.read_barrier.sent),
        );
        single(
            &mut out,
            "etcd_grpc_proxy_watchers_coalescing_total",
            "counter",
            "Total number of client watchers that joined an existing upstream watch.",
            load(&w.watchers_coalescing),
        );
        single(
            &mut out,
            "etcd_grpc_proxy_events_coalescing_total",
            "counter",
            "Total number of events delivered to more than one watcher (counted once per extra watcher).",
            load(&w.events_coalescing),
        );
        single(
            &mut out,
            "etcd_grpc_proxy_upstream_watches",
            "gauge",
            "Upstream watches open now.",
            load(&w.upstream_watches),
        );
        single(
            &mut out,
            "etcd_grpc_proxy_watch_failovers_total",
            "counter",
            "Upstream watches re-opened on another member.",
            load(&w.failovers),
        );

        let k = &self.keepalive_hub.stats;
        single(
            &mut out,
            "etcd_grpc_proxy_keepalive_upstream_requests_total",
            "counter",
            "Lease keep-alives sent to members.",
            load(&k.upstream_requests),
        );
        single(
            &mut out,
            "etcd_grpc_proxy_keepalive_coalesced_total",
            "counter",
            "Client lease keep-alives answered by sharing another one's.",
            load(&k.coalesced),
        );
        single(
            &mut out,
            "etcd_grpc_proxy_keepalive_upstream_streams_opened_total",
            "counter",
            "Upstream keep-alive streams opened (more than one means failovers).",
            load(&k.streams_opened),
        );
        self.render_streams(&mut out);
        self.render_backends(&mut out);
        self.render_grpc(&mut out);
        render_process(&mut out, m.start_time);
        out
    }

    fn render_streams(&self, out: &mut String) {
        header(
            out,
            "etcd_grpc_proxy_client_streams",
            "gauge",
            "Client streams open now, by method.",
        );
        for (i, (svc, method, ty)) in METHODS.iter().enumerate() {
            if *ty != Unary {
                let _ = writeln!(
                    out,
                    "etcd_grpc_proxy_client_streams{{grpc_service=\"{svc}\",grpc_method=\"{method}\"}} {}",
                    self.metrics.in_flight(MethodId(i))
                );
            }
        }
    }

    fn render_backends(&self, out: &mut String) {
        let backends = self.pool.backends();
        let healthy = backends.iter().filter(|b| b.is_healthy()).count();
        single(
            out,
            "etcd_grpc_proxy_backend_members",
            "gauge",
            "Members in the proxy's member set.",
            backends.len() as u64,
        );
        single(
            out,
            "etcd_grpc_proxy_backend_members_in_rotation",
            "gauge",
            "Members in rotation (healthy).",
            healthy as u64,
        );
        header(
            out,
            "etcd_grpc_proxy_backend_healthy",
            "gauge",
            "1 when the member is in rotation, 0 when out.",
        );
        for b in backends.iter() {
            let _ = writeln!(
                out,
                "etcd_grpc_proxy_backend_healthy{{endpoint=\"{}\"}} {}",
                escape(b.url.as_str()),
                u8::from(b.is_healthy())
            );
        }
        header(
            out,
            "etcd_grpc_proxy_backend_inflight",
            "gauge",
            "Calls under way on the member.",
        );
        for b in backends.iter() {
            let _ = writeln!(
                out,
                "etcd_grpc_proxy_backend_inflight{{endpoint=\"{}\"}} {}",
                escape(b.url.as_str()),
                b.inflight()
            );
        }
        let s = self.pool.stats();
        single(
            out,
            "etcd_grpc_proxy_backend_retries_total",
            "counter",
            "Unary calls sent again to another member after a failure.",
            s.retries.load(Ordering::Relaxed),
        );
    }

    fn render_grpc(&self, out: &mut String) {
        let m = &self.metrics;
        let label = |i: usize| {
            let (svc, method, ty) = METHODS[i];
            format!(
                "grpc_method=\"{method}\",grpc_service=\"{svc}\",grpc_type=\"{}\"",
                ty.label()
            )
        };
        header(
            out,
            "grpc_server_started_total",
            "counter",
            "Total number of RPCs started on the server.",
        );
        for (i, c) in m.methods.iter().enumerate() {
            let _ = writeln!(
                out,
                "grpc_server_started_total{{{}}} {}",
                label(i),
                c.started.load(Ordering::Relaxed)
            );
        }
        header(
            out,
            "grpc_server_handled_total",
            "counter",
            "Total number of RPCs completed on the server, regardless of success or failure.",
        );
        for (i, c) in m.methods.iter().enumerate() {
            for (code, n) in c.handled.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "grpc_server_handled_total{{grpc_code=\"{}\",{}}} {n}",
                        CODES[code],
                        label(i)
                    );
                }
            }
        }
        header(
            out,
            "grpc_server_msg_received_total",
            "counter",
            "Total number of RPC stream messages received on the server.",
        );
        for (i, c) in m.methods.iter().enumerate() {
            let _ = writeln!(
                out,
                "grpc_server_msg_received_total{{{}}} {}",
                label(i),
                c.msg_received.load(Ordering::Relaxed)
            );
        }
        header(
            out,
            "grpc_server_msg_sent_total",
            "counter",
            "Total number of gRPC stream messages sent by the server.",
        );
        for (i, c) in m.methods.iter().enumerate() {
            let _ = writeln!(
                out,
                "grpc_server_msg_sent_total{{{}}} {}",
                label(i),
                c.msg_sent.load(Ordering::Relaxed)
            );
        }
        single(
            out,
            "etcd_grpc_proxy_unknown_method_calls_total",
            "counter",
            "Calls to paths outside the etcd v3 API (answered Unimplemented).",
            m.unknown_methods.load(Ordering::Relaxed),
        );
    }
}

/// The standard `process_*` metrics, read from `/proc/self` (Linux; each
/// is left out when it cannot be read).
fn render_process(out: &mut String, start_time: f64) {
    header(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    );
    let _ = writeln!(out, "process_start_time_seconds {start_time}");
    if let Some(cpu) = process_cpu_seconds() {
        header(
            out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {cpu}");
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    if let Some(rss) = kb("VmRSS:") {
        header(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {}", rss * 1024);
    }
    if let Some(vsz) = kb("VmSize:") {
        header(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
        );
        let _ = writeln!(out, "process_virtual_memory_bytes {}", vsz * 1024);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        header(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
}

/// utime + stime from `/proc/self/stat`, in seconds (Linux's USER_HZ is 100).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests;
