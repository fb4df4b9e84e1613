//! Lease keep-alive coalescing.
//!
//! - [`keepalive`]: keep-alives of one lease share one upstream request.

pub mod keepalive;
