//! etcd-grpc-proxy: a stateless etcd v3 gRPC proxy that balances calls
//! across a cluster's members and follows membership changes.
//!
//! # Layout
//! One folder per area; each depends only on the ones listed after it.
//! - [`server`]: the listener serving gRPC and HTTP on one port, the gRPC
//!   stack around every call, `/metrics` and health endpoints, the drain sequence.
//! - [`config`]: the command line, flag for flag as `etcd grpc-proxy start`,
//!   environment variables, and the runtime configuration it builds.
//! - [`services`]: one thin binding per etcd gRPC service, and `grpc.health.v1`.
//! - [`metrics`]: Prometheus counters and their exposition.
//! - [`limits`]: per-client limits (rates, calls in flight, watchers,
//!   keep-alive streams) by etcd user, certificate name or source IP.
//! - [`registration`]: `--resolver-prefix`, proxies registered in etcd and listed by MemberList.
//! - [`kv`]: KV as a stack of layers (ordering, namespace, leasing, cache) over the upstream.
//! - [`watch`]: watch coalescing, one upstream watch per key range.
//! - [`keepalive`]: lease keep-alive coalescing.
//! - [`upstream`]: the member pool and the one way calls reach members:
//!   membership, health, retry, credentials, long-lived streams.
//! - [`tls`]: TLS towards clients and towards members.
//! - [`tasks`]: the one owner of every task a running proxy spawns.
//! - [`drain`]: the draining state and its hooks.
//! - `sync`: the one lock helper, recovering from poisoned locks.
//! - [`trace`]: OpenTelemetry spans over OTLP and `traceparent` towards members.
//! - [`error`]: the one place errors become gRPC statuses.
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
