//! etcd-grpc-proxy: a stateless etcd v3 gRPC proxy that balances calls
//! across a cluster's members and follows membership changes.
//!
//! # Layout
//! One folder per area; each imports only the ones listed after it (the
//! README's dependency order, checked by `scripts/check-layout.py`).
//! - [`server`]: the listener serving gRPC and HTTP on one port, the gRPC
//!   stack around every call, `/metrics` and health endpoints, the drain sequence.
//! - [`config`]: the command line, flag for flag as `etcd grpc-proxy start`,
//!   environment variables, and the runtime configuration it builds.
//! - [`services`]: one thin binding per etcd gRPC service, and `grpc.health.v1`.
//! - [`registration`]: `--resolver-prefix`, proxies registered in etcd and listed by MemberList.
//! - [`kv`]: KV as a stack of layers (ordering, namespace, leasing, cache) over the upstream.
//! - [`watch`]: watch coalescing, one upstream watch per key range.
//! - [`keepalive`]: lease keep-alive coalescing.
//! - [`limits`]: per-client limits (rates, calls in flight, watchers,
//!   keep-alive streams) by etcd user, certificate name or source IP.
//! - [`metrics`]: Prometheus counters and their metric families.
//! - [`upstream`]: the member pool and all that reaches members: unary
//!   calls, long-lived streams, membership, health, retry, credentials.
//! - [`tls`]: TLS towards clients and towards members.
//! - [`drain`]: the draining state and its hooks.
//! - [`trace`]: OpenTelemetry spans over OTLP and `traceparent` towards members.
//! - [`tasks`]: the one owner of every task a running proxy spawns.
//! - [`error`]: the one place errors become gRPC statuses.
//! - `logging`: JSON log lines as etcd writes them, or text.
//! - `sync`: the one lock helper, recovering from poisoned locks.
//! - [`codec`]: prost with small starting buffers, for every service and client.
//! - [`proto`]: the generated etcd v3 wire types.

pub mod codec;
pub mod config;
pub mod drain;
pub mod error;
pub mod keepalive;
pub mod kv;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod proto;
pub mod registration;
pub mod server;
pub mod services;
mod sync;
pub mod tasks;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod watch;

pub use config::Config;

/// Counts the heap the process holds, for the memory budget
/// ([`server::memory`]).
#[global_allocator]
static ALLOCATOR: server::memory::CountingAlloc = server::memory::CountingAlloc;
pub use server::{run, run_with, RunError, RunOptions};
