//! What a per-client limit refuses: the kind (counted in `/metrics`), the
//! text for logs and watch cancel reasons, and the status clients get
//! (etcd's overload answer).

use super::ClientId;

/// What a limit refused, as counted in `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// The client's read rate.
    Read = 0,
    /// The client's write rate.
    Write = 1,
    /// The client's unary calls in flight.
    Concurrency = 2,
    /// The client's open watchers.
    Watchers = 3,
    /// The client's open keep-alive streams.
    KeepAlive = 4,
}

impl RefusalKind {
    /// Every kind, in counter order.
    pub const ALL: [RefusalKind; 5] = [
        RefusalKind::Read,
        RefusalKind::Write,
        RefusalKind::Concurrency,
        RefusalKind::Watchers,
        RefusalKind::KeepAlive,
    ];

    /// The `kind` label of the refusal counter.
    pub fn label(self) -> &'static str {
        match self {
            RefusalKind::Read => "read",
            RefusalKind::Write => "write",
            RefusalKind::Concurrency => "concurrency",
            RefusalKind::Watchers => "watchers",
            RefusalKind::KeepAlive => "keepalive",
        }
    }
}

/// A call, stream or watcher a client's limits refused. Calls and
/// keep-alive streams reach the client as etcd's overload answer (see
/// [`crate::error`]); a watcher as a canceled watch with this text.
#[derive(Clone, Debug, thiserror::Error)]
#[error("etcd-grpc-proxy: {client} is over its {} limit ({limit})", kind_words(*.kind))]
pub struct Refusal {
    /// Which limit.
    pub kind: RefusalKind,
    /// The client refused.
    pub client: ClientId,
    /// The limit's value, for the operator reading a cancel reason.
    pub limit: f64,
}

/// The refusal's own words are for logs and watch cancel reasons; the
/// client is told etcd's overload answer.
impl From<Refusal> for crate::error::ProxyError {
    fn from(_: Refusal) -> Self {
        crate::error::ProxyError::TooManyRequests
    }
}

fn kind_words(kind: RefusalKind) -> &'static str {
    match kind {
        RefusalKind::Read => "read rate",
        RefusalKind::Write => "write rate",
        RefusalKind::Concurrency => "concurrent calls",
        RefusalKind::Watchers => "watchers",
        RefusalKind::KeepAlive => "keep-alive streams",
    }
}
