//! Lease keep-alive coalescing: the keep-alives of one lease, from any
//! number of client streams, share one upstream request per interval.
//!
//! Named for what it does, apart from the two other "lease" things: the
//! `Lease` service binding (`services/lease.rs`) and KV leasing
//! (`kv/leasing.rs`, `--experimental-leasing-prefix`).
//!
//! - [`hub`]: the [`KeepAliveHub`] and its shards of upstream streams.

pub mod hub;

pub use hub::{KeepAliveHub, FRESH};
