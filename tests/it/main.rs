//! Integration tests: real etcd members, real clients (etcdctl and the
//! `etcd-client` crate), and the proxy in-process.

mod answer_lost;
mod auth;
mod auth_own_user;
mod bad_input;
mod cache;
mod caller;
mod client_limits;
mod discovery;
mod drain;
mod election_lock;
mod grpc_health;
mod health;
mod hostile;
mod kv;
mod leak;
mod lease;
mod leasing;
mod limits;
mod maintenance;
mod namespace;
mod prefix_metrics;
mod range_stream;
mod registration;
mod story;
mod strings;
mod support;
mod tls;
mod traces;
mod watch;
mod watch_wire;
mod wire;
