//! Which failed upstream calls may be sent again to another member.
//!
//! A read can always be retried. A write is retried only when it provably
//! never reached the member, decided from the error's type (its source
//! chain), never from its text:
//! - no connection could be made (tonic's [`tonic::ConnectError`]), or the
//!   channel had no ready connection and the request was never handed to it
//!   ([`NotSent`], hyper's "canceled" for a request still queued);
//! - the member refused the stream before processing it: h2
//!   `REFUSED_STREAM`, or a GOAWAY whose last stream id is below ours (h2
//!   fails exactly those streams with the peer's GOAWAY; streams at or below
//!   it run on, and fail as a broken pipe if the connection then ends);
//! - etcd answered `etcdserver: no leader`.
//!
//! Anything else after the request was written (a reset, a broken pipe, an
//! h2 keep-alive timeout) may have been applied: the client gets
//! `Unavailable`, as clientv3 retries mutations only when "there is no
//! address/connection available".

use std::error::Error as StdError;
use tonic::{Code, Status};

/// How a call may be retried on another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// Reads: any transport failure or `Unavailable` answer is retried on another member.
    Idempotent,
    /// Writes: retried only when it provably never reached the member.
    UnlessApplied,
}

/// What one failed attempt tells the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request never reached the member (no connection, not sent,
    /// refused stream, GOAWAY below it). The member is unhealthy.
    NotReached,
    /// The member answered that it has no leader: it is unhealthy, nothing applied.
    NoLeader,
    /// The connection failed after the request was written: the member
    /// may have applied it, and no answer will come.
    LostInFlight,
    /// The member answered `Unavailable` (e.g. "request timed out"): a write
    /// may have been applied.
    Unavailable,
    /// Any other answer: the client's result.
    Answer,
}

/// etcd's message when a member is cut off from its leader.
pub const NO_LEADER: &str = "etcdserver: no leader";

/// Marks a failure that happened before the request was handed to the
/// connection (the channel never became ready): nothing was sent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotSent(pub Box<dyn StdError + Send + Sync>);

impl NotSent {
    /// `Status` for a channel that did not become ready, worded as tonic's
    /// generated clients word it, carrying this marker as its source.
    pub fn status(err: impl Into<Box<dyn StdError + Send + Sync>>) -> Status {
        let err = NotSent(err.into());
        let mut status = Status::unknown(format!("Service was not ready: {err}"));
        status.set_source(std::sync::Arc::new(err));
        status
    }
}

/// Marks an attempt the proxy gave up waiting for: the request was sent,
/// so it may have been applied.
#[derive(Debug, thiserror::Error)]
#[error("no answer from the etcd member within {0:?}")]
pub struct AttemptTimedOut(pub std::time::Duration);

impl AttemptTimedOut {
    /// `Unavailable`, with this marker as its source.
    pub fn status(after: std::time::Duration) -> Status {
        let err = AttemptTimedOut(after);
        let mut status = Status::unavailable(format!("etcd-grpc-proxy: {err}"));
        status.set_source(std::sync::Arc::new(err));
        status
    }
}

impl Failure {
    /// Classifies a failed attempt. A status with a source was made by the
    /// transport (a member's answer is decoded from trailers and has none);
    /// its source chain tells whether the request reached the member.
    pub fn of(status: &Status) -> Failure {
        if let Some(source) = status.source() {
            return if never_reached(source) {
                Failure::NotReached
            } else {
                Failure::LostInFlight
            };
        }
        match status.code() {
            Code::Unavailable if status.message() == NO_LEADER => Failure::NoLeader,
            Code::Unavailable => Failure::Unavailable,
            _ => Failure::Answer,
        }
    }

    /// Whether another member may be tried under `policy`.
    pub fn retry_allowed(self, policy: RetryPolicy) -> bool {
        match self {
            Failure::NotReached | Failure::NoLeader => true,
            Failure::LostInFlight | Failure::Unavailable => policy == RetryPolicy::Idempotent,
            Failure::Answer => false,
        }
    }

    /// Whether the member should leave rotation until its next good probe.
    pub fn member_unhealthy(self) -> bool {
        matches!(
            self,
            Failure::NotReached | Failure::NoLeader | Failure::LostInFlight
        )
    }
}

/// Whether an error chain proves the request never reached the member.
fn never_reached(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<NotSent>() || err.is::<tonic::ConnectError>() {
            return true;
        }
        if let Some(e) = err.downcast_ref::<hyper::Error>() {
            // hyper fails a request it never wrote (still queued when the
            // connection closed, or no connection ready) as "canceled".
            if e.is_canceled() {
                return true;
            }
        }
        if let Some(e) = err.downcast_ref::<h2::Error>() {
            return refused_by_peer(e);
        }
        next = err.source();
    }
    false
}

/// An h2 stream error that says the peer never processed the stream.
fn refused_by_peer(e: &h2::Error) -> bool {
    if !e.is_remote() {
        return false;
    }
    if e.is_go_away() {
        // h2 fails a stream with the peer's GOAWAY only when the stream's id
        // is above the GOAWAY's last stream id.
        return true;
    }
    e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM)
}

#[cfg(test)]
mod tests;
