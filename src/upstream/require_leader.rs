//! clientv3's `WithRequireLeader`: a stream whose client sent metadata
//! `hasleader: true` is ended with etcd's `etcdserver: no leader` once the
//! cluster behind the proxy has no leader; streams of other clients stay
//! open and fail over quietly, as before.
//!
//! etcd ends such a stream when *its* member loses the leader. Through the
//! proxy a stream is not tied to one member: it is ended when no member in
//! rotation has reported a leader for [`NO_LEADER_GRACE`] (members without
//! one leave rotation at their next health probe), as long as etcd waits.

use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::upstream::Pool;

/// How often a require-leader stream checks for a leader.
const CHECK: Duration = Duration::from_millis(250);

/// How long the cluster must be without a leader before such a stream is
/// ended. etcd cancels a member's require-leader streams only after it has
/// had no leader for three election timeouts (3 s with etcd's defaults): an
/// ordinary election, say after the leader died, ends no stream.
pub const NO_LEADER_GRACE: Duration = Duration::from_secs(3);

/// Whether the client asked for require-leader.
pub fn requested(metadata: &MetadataMap) -> bool {
    metadata
        .get("hasleader")
        .is_some_and(|v| v.as_bytes() == b"true")
}

/// etcd's status for a require-leader stream without a leader.
pub fn no_leader() -> Status {
    crate::error::ProxyError::NoLeader.into()
}

/// Whether some member in rotation named a leader at its last health probe.
pub fn has_leader(pool: &Pool) -> bool {
    pool.backends()
        .iter()
        .any(|b| b.is_healthy() && b.knows_leader())
}

/// Resolves once the cluster has had no leader for [`NO_LEADER_GRACE`];
/// never without `required`.
pub async fn lost(pool: &Pool, required: bool) {
    if !required {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(CHECK);
    let mut since: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        if has_leader(pool) {
            since = None;
            continue;
        }
        let start = *since.get_or_insert_with(tokio::time::Instant::now);
        if start.elapsed() >= NO_LEADER_GRACE {
            return;
        }
    }
}
