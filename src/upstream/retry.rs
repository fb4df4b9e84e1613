//! Which failed upstream calls may be sent again to another member.
//!
//! A read can always be retried. A write is retried only when it certainly
//! never took effect: it never reached a member, or the member refused it
//! because it has no leader. Everything else (timeouts, "leader changed")
//! may have been applied, so the client gets etcd's answer instead.

use std::error::Error as _;
use tonic::{Code, Status};

/// How a call may be retried on another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// Reads: any `Unavailable` answer is retried on another member.
    Idempotent,
    /// Writes: retried only when it provably never took effect.
    UnlessApplied,
}

/// What one failed attempt tells the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request never reached the member (connect refused, timed out,
    /// connection gone before the request was sent). The member is unhealthy.
    NotReached,
    /// The member answered that it has no leader: it is unhealthy, nothing applied.
    NoLeader,
    /// The member is unavailable in a way where a write may have been applied.
    Unavailable,
    /// Any other answer: the client's result.
    Answer,
}

/// etcd's message when a member is cut off from its leader.
pub const NO_LEADER: &str = "etcdserver: no leader";

impl Failure {
    /// Classifies a failed attempt.
    pub fn of(status: &Status) -> Failure {
        if status.code() != Code::Unavailable && status.code() != Code::Unknown {
            return Failure::Answer;
        }
        if status.message() == NO_LEADER {
            return Failure::NoLeader;
        }
        if is_connect_error(status) {
            return Failure::NotReached;
        }
        if status.code() == Code::Unavailable {
            Failure::Unavailable
        } else {
            Failure::Answer
        }
    }

    /// Whether another member may be tried under `policy`.
    pub fn retry_allowed(self, policy: RetryPolicy) -> bool {
        match self {
            Failure::NotReached | Failure::NoLeader => true,
            Failure::Unavailable => policy == RetryPolicy::Idempotent,
            Failure::Answer => false,
        }
    }

    /// Whether the member should leave rotation until its next good probe.
    pub fn member_unhealthy(self) -> bool {
        matches!(self, Failure::NotReached | Failure::NoLeader)
    }
}

/// A status the client library made up because no connection could be
/// made: no member ever saw the request. Server answers always carry the
/// `content-type` header; local transport failures carry no metadata and a
/// connect error somewhere in their source chain.
fn is_connect_error(status: &Status) -> bool {
    if status.metadata().get("content-type").is_some() {
        return false;
    }
    let mut text = status.message().to_ascii_lowercase();
    let mut source = status.source();
    while let Some(err) = source {
        text.push_str(&err.to_string().to_ascii_lowercase());
        source = err.source();
    }
    text.contains("connect") || text.contains("dns error") || text.contains("connection refused")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_answers_are_never_retried_as_writes() {
        let timeout = Status::unavailable("etcdserver: request timed out");
        let mut with_ct = timeout.clone();
        with_ct
            .metadata_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        assert_eq!(Failure::of(&with_ct), Failure::Unavailable);
        assert!(!Failure::of(&with_ct).retry_allowed(RetryPolicy::UnlessApplied));
        assert!(Failure::of(&with_ct).retry_allowed(RetryPolicy::Idempotent));
    }

    #[test]
    fn no_leader_is_retried_and_marks_unhealthy() {
        let f = Failure::of(&Status::unavailable(NO_LEADER));
        assert_eq!(f, Failure::NoLeader);
        assert!(f.retry_allowed(RetryPolicy::UnlessApplied));
        assert!(f.member_unhealthy());
    }

    #[test]
    fn permission_errors_are_answers() {
        let f = Failure::of(&Status::permission_denied("etcdserver: permission denied"));
        assert_eq!(f, Failure::Answer);
        assert!(!f.retry_allowed(RetryPolicy::Idempotent));
    }
}
