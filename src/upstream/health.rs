//! Backend health as the `/health` endpoint reports it: like etcd's proxy,
//! a Get of key "a" through the member pool with a 1 s timeout, where a
//! permission error still proves a member answered. And the proxy's own
//! readiness, behind `/readyz` and the gRPC health service.

use std::time::Duration;

use tonic::Code;

use crate::drain::Drain;
use crate::error::ProxyError;
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse};
use crate::upstream::{Credentials, Upstream};
use crate::upstream::{Pool, RetryPolicy};

/// How long the health Get may take (etcd uses 1 s).
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// Ok when some member answered a linearizable Get of "a" (so the cluster
/// has a leader and quorum), else why not.
pub async fn check(upstream: &Upstream, timeout: Duration) -> Result<(), String> {
    let probe = RangeRequest {
        key: b"a".to_vec(),
        count_only: true,
        ..Default::default()
    };
    let call = async {
        upstream
            .unary::<_, RangeResponse>(
                "/etcdserverpb.KV/Range",
                RetryPolicy::Idempotent,
                Credentials::Anonymous,
                probe,
            )
            .await
            .map(|_| ())
    };
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(format!("no etcd member answered within {timeout:?}")),
        Ok(Ok(())) => Ok(()),
        Ok(Err(ProxyError::Upstream(s))) if s.code() == Code::PermissionDenied => Ok(()),
        Ok(Err(e)) => Err(tonic::Status::from(e).message().to_string()),
    }
}

/// Whether any member is in rotation now (cheap; used by `/readyz`).
pub fn any_backend_in_rotation(pool: &Pool) -> bool {
    pool.backends().iter().any(|b| b.is_healthy())
}

/// Why the proxy should get no new calls now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The drain has started: clients should move to another proxy.
    #[error("draining")]
    Draining,
    /// No member would take a call.
    #[error("no etcd member in rotation")]
    NoMember,
}

/// Whether the proxy is ready for calls: not draining, and some member in
/// rotation. `/readyz` and `grpc.health.v1.Health` both answer from it.
pub fn readiness(pool: &Pool, drain: &Drain) -> Result<(), NotReady> {
    if drain.is_draining() {
        Err(NotReady::Draining)
    } else if !any_backend_in_rotation(pool) {
        Err(NotReady::NoMember)
    } else {
        Ok(())
    }
}
