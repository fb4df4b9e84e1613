//! Lease keep-alive coalescing: the keep-alives of one lease, from any
//! number of client streams, share one upstream request per interval.
//!
//! Named for what it does, apart from the two other "lease" things: the
//! `Lease` service binding (`services/lease.rs`) and KV leasing
//! (`kv/leasing.rs`, `--experimental-leasing-prefix`).
//!
//! - [`hub`]: the [`KeepAliveHub`]: each auth token's renewals, made on
//!   first use and dropped when idle;
//! - `renewals`: one token's table per lease (waiting clients, renewals in
//!   flight, answers fresh enough to reuse);
//! - `shard`: the upstream LeaseKeepAlive stream of one shard of a token's
//!   leases, re-opened on another member when its member fails.

pub mod hub;
mod renewals;
mod shard;

pub use hub::{KeepAliveHub, FRESH};
