//! The one place where the proxy's own failures become gRPC statuses.
//!
//! Upstream statuses (anything an etcd member answered) are never rewritten:
//! clients parse etcd's error strings, so they travel through untouched as
//! [`ProxyError::Upstream`], except for one thing: a size-limit refusal in
//! tonic's words is answered in etcd's ([`size_limit`]).

use tonic::{Code, Status};

pub mod size_limit;
pub use size_limit::size_limit_status;

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
    /// The connection to a member failed after the request was written:
    /// the member may have applied it, and its answer is lost. A write is
    /// never sent again then; the client decides, as with etcd directly.
    #[error("etcd-grpc-proxy: connection to etcd member {member} lost after the request was sent; it may have been applied: {detail}")]
    AnswerLost {
        /// The member the request was sent to.
        member: String,
        /// The transport's description of the failure.
        detail: String,
    },
    /// The client sent something this proxy refuses before any member sees it.
    #[error("{0}")]
    InvalidRequest(String),
    /// The client's deadline passed before the answer came (tonic's wording).
    #[error("Timeout expired")]
    DeadlineExpired,
    /// The proxy is draining: the call or stream is cut so the client
    /// reconnects to another proxy.
    #[error("{DRAIN_MESSAGE}")]
    Draining,
    /// A require-leader stream while the cluster has no leader (etcd's text).
    #[error("etcdserver: no leader")]
    NoLeader,
    /// An upstream stream or the proxy's own task serving it went away.
    #[error("etcd-grpc-proxy: {0}")]
    Lost(&'static str),
    /// A state the proxy's own code should never reach.
    #[error("etcd-grpc-proxy: {0}")]
    Internal(&'static str),
    /// Over the memory budget or a client's limits: answered as etcd
    /// answers overload, so clients back off as they would from a member.
    #[error("{TOO_MANY_REQUESTS}")]
    TooManyRequests,
}

/// etcd's text for overload (`ResourceExhausted`); clients back off on it.
/// The memory budget and per-client limits answer with it.
pub const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";

/// What a draining proxy tells the calls and streams it cuts.
pub const DRAIN_MESSAGE: &str = "etcd-grpc-proxy is shutting down; reconnect to another proxy";

impl ProxyError {
    /// The status this error reaches the client as.
    pub fn status(self) -> Status {
        self.into()
    }
}

impl From<ProxyError> for Status {
    fn from(err: ProxyError) -> Status {
        match err {
            ProxyError::Upstream(status) => {
                match size_limit_status(status.code(), status.message()) {
                    Some((code, message)) => Status::new(code, message),
                    None => status,
                }
            }
            e @ (ProxyError::NoMemberReachable { .. } | ProxyError::AnswerLost { .. }) => {
                Status::new(Code::Unavailable, e.to_string())
            }
            ProxyError::InvalidRequest(msg) => Status::new(Code::InvalidArgument, msg),
            e @ ProxyError::DeadlineExpired => Status::new(Code::DeadlineExceeded, e.to_string()),
            e @ (ProxyError::Draining | ProxyError::NoLeader | ProxyError::Lost(_)) => {
                Status::new(Code::Unavailable, e.to_string())
            }
            e @ ProxyError::Internal(_) => Status::new(Code::Internal, e.to_string()),
            ProxyError::TooManyRequests => Status::new(Code::ResourceExhausted, TOO_MANY_REQUESTS),
        }
    }
}

/// Calls refused before any service sees them, worded as grpc-go (and so
/// every etcd member) words them; all answer `Unimplemented`.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The path is not `/service/method`.
    #[error("malformed method name: {}", go_quote(.0))]
    MalformedMethod(String),
    /// No such service.
    #[error("unknown service {0}")]
    UnknownService(String),
    /// A known service without this method.
    #[error("unknown method {method} for service {service}")]
    UnknownMethod {
        /// The service, as in the path (`etcdserverpb.KV`).
        service: String,
        /// The method asked for.
        method: String,
    },
    /// A request compressed with an encoding the proxy cannot decompress.
    #[error("grpc: Decompressor is not installed for grpc-encoding {}", go_quote(.0))]
    UnknownEncoding(String),
}

impl From<WireError> for Status {
    fn from(err: WireError) -> Status {
        Status::new(Code::Unimplemented, err.to_string())
    }
}

/// Refusals of `grpc.health.v1.Health`, as grpc-go's health server words them.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// A health check of a service name the proxy does not report on.
    #[error("unknown service")]
    UnknownService,
}

impl From<HealthError> for Status {
    fn from(err: HealthError) -> Status {
        match err {
            HealthError::UnknownService => Status::new(Code::NotFound, err.to_string()),
        }
    }
}

/// A string quoted as Go's `%q` quotes it (`strconv.Quote`), for the texts
/// above that grpc-go writes with `%q`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Errors found while reading the configuration, before anything listens.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
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

/// The cancel reason for a watch whose permission check failed with
/// `status`: etcd writes grpc-go's text of the refusal
/// (`rpc error: code = PermissionDenied desc = etcdserver: permission denied`),
/// which clients compare. Bytes, as the proto field is.
pub fn watch_refusal_reason(status: &Status) -> Vec<u8> {
    format!(
        "rpc error: code = {} desc = {}",
        go_code_name(status.code()),
        status.message()
    )
    .into_bytes()
}

/// grpc-go's names of the status codes, indexed by code number, as they
/// print in error strings and in the `grpc_code` metric label.
pub const GO_CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// grpc-go's name of a status code, as it prints in error strings.
pub fn go_code_name(code: Code) -> &'static str {
    GO_CODE_NAMES
        .get(code as usize)
        .copied()
        .unwrap_or("Unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("snappy"), "\"snappy\"");
        assert_eq!(go_quote("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\x01\"");
        assert_eq!(
            WireError::MalformedMethod("/x".into()).to_string(),
            "malformed method name: \"/x\""
        );
    }
}
