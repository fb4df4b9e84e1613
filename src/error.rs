//! The one place where the proxy's own failures become gRPC statuses.
//!
//! Upstream statuses (anything an etcd member answered) are never rewritten:
//! clients parse etcd's error strings, so they travel through untouched as
//! [`ProxyError::Upstream`].

use tonic::{Code, Status};

/// Everything that can go wrong while serving one call.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// An etcd member answered with this status; it reaches the client as is.
    #[error("{0}")]
    Upstream(Status),
    /// No member could be reached at all (all refused or timed out before
    /// the request left the proxy).
    #[error("etcd-grpc-proxy: no etcd member reachable (tried {tried}): {last}")]
    NoMemberReachable {
        /// The endpoints tried, comma separated, for the operator reading the message.
        tried: String,
        /// The last connection error seen.
        last: String,
    },
    /// The client sent something this proxy refuses before any member sees it.
    #[error("{0}")]
    InvalidRequest(String),
}

impl From<ProxyError> for Status {
    fn from(err: ProxyError) -> Status {
        match err {
            ProxyError::Upstream(status) => status,
            e @ ProxyError::NoMemberReachable { .. } => Status::new(Code::Unavailable, e.to_string()),
            ProxyError::InvalidRequest(msg) => Status::new(Code::InvalidArgument, msg),
        }
    }
}

/// Errors found while reading the configuration, before anything listens.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The flag exists in etcd's grpc-proxy but this build does not implement it yet.
    #[error("flag --{0} is not implemented yet by etcd-grpc-proxy")]
    NotImplemented(&'static str),
    /// A flag's value cannot be used.
    #[error("invalid value {value:?} for --{flag}: {reason}")]
    InvalidValue {
        /// The flag's name, without dashes.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// Flags that contradict each other (same checks as etcd's start-up).
    #[error("{0}")]
    Conflict(String),
}

/// Result type of gRPC handlers, as tonic expects them.
pub type RpcResult<T> = Result<tonic::Response<T>, Status>;
