//! etcd-grpc-proxy: a stateless etcd v3 gRPC proxy that balances calls
//! across a cluster's members and follows membership changes.
//!
//! # Layout
//! - [`cli`]: the command line, flag for flag as `etcd grpc-proxy start`.
//! - [`config`]: the runtime configuration the CLI (or a test) builds.
//! - [`backend`]: the member pool: membership refresh, health, balancing, retry.
//! - [`services`]: one file per etcd gRPC service, forwarding through the pool, and `grpc.health.v1`.
//! - [`kv`]: KV as a stack of layers (ordering, namespace, leasing, cache) over the upstream.
//! - [`cache`]: the range cache, kept coherent by one watch.
//! - [`codec`]: prost with small starting buffers, for every service and client.
//! - [`compression`]: gzip requests and answers, as members handle them.
//! - [`read_barrier`]: linearizable reads batched behind shared upstream reads.
//! - [`coalesce`]: watch broadcast and lease keep-alive coalescing.
//! - [`namespace`]: `--namespace`, keys moved under a prefix and back.
//! - [`registration`]: `--resolver-prefix`, proxies registered in etcd and listed by MemberList.
//! - [`require_leader`]: `hasleader: true` streams end with "no leader" when the cluster has none.
//! - [`tls`]: TLS towards clients and towards members.
//! - [`discovery`]: DNS SRV discovery of the members at start.
//! - [`server`]: serves gRPC and HTTP on one listener; the drain sequence.
//! - [`grpc_service`]: the gRPC stack (unknown paths, spans, size-limit wording, metrics, drain cut).
//! - [`http_api`]: `/health`, `/livez`, `/readyz`, `/metrics`, `/debug/pprof`.
//! - [`health`]: backend health checks behind `/health`; readiness behind `/readyz` and gRPC health.
//! - [`metrics`]: Prometheus counters and their text exposition.
//! - [`drain`]: the draining state and its hooks.
//! - [`profile`]: CPU flamegraphs for `--enable-pprof`.
//! - [`env`]: `ETCD_GRPC_PROXY_*` environment variables as flags.
//! - [`error`]: the one place errors become gRPC statuses.
//! - [`proto`]: the generated etcd v3 wire types.
//! - [`size_limit`]: etcd's wording for messages over the size limits.
//! - [`duration`]: Go-style duration parsing for etcd's flags.

pub mod backend;
pub mod cache;
pub mod cli;
pub mod coalesce;
pub mod codec;
pub mod compression;
pub mod config;
pub mod discovery;
pub mod drain;
pub mod duration;
pub mod env;
pub mod error;
pub mod grpc_service;
pub mod health;
pub mod http_api;
pub mod kv;
pub mod metrics;
pub mod namespace;
pub mod profile;
pub mod proto;
pub mod read_barrier;
pub mod registration;
pub mod require_leader;
pub mod server;
pub mod services;
pub mod size_limit;
pub mod tls;

pub use config::Config;
pub use server::{run, run_with, RunError, RunOptions};
