//! clientv3's `WithRequireLeader`: a stream whose client sent metadata
//! `hasleader: true` is ended with etcd's `etcdserver: no leader` once the
//! cluster behind the proxy has no leader; streams of other clients stay
//! open and fail over quietly, as before.
//!
//! etcd ends such a stream when *its* member loses the leader. Through the
//! proxy a stream is not tied to one member: it is ended when no member in
//! rotation reports a leader (members without one leave rotation at their
//! next health probe).

use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::backend::Pool;

/// How often a require-leader stream checks for a leader.
const CHECK: Duration = Duration::from_millis(250);

/// Whether the client asked for require-leader.
pub fn requested(metadata: &MetadataMap) -> bool {
    metadata
        .get("hasleader")
        .is_some_and(|v| v.as_bytes() == b"true")
}

/// etcd's status for a require-leader stream without a leader.
pub fn no_leader() -> Status {
    Status::unavailable("etcdserver: no leader")
}

/// Whether some member in rotation knows a leader.
pub fn has_leader(pool: &Pool) -> bool {
    pool.backends().iter().any(|b| b.is_healthy())
}

/// Resolves once the cluster has no leader; never without `required`.
pub async fn lost(pool: &Pool, required: bool) {
    if !required {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(CHECK);
    loop {
        tick.tick().await;
        if !has_leader(pool) {
            return;
        }
    }
}
