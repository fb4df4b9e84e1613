//! Integration tests: real etcd members, real clients (etcdctl and the
//! `etcd-client` crate), and the proxy in-process.

mod bad_input;
mod drain;
mod health;
mod kv;
mod lease;
mod story;
mod support;
mod watch;
