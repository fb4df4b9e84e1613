//! Everything between the proxy and the etcd members: every call to a
//! member goes through here.
//!
//! - [`call`]: [`Upstream`], the one way a call reaches a member, with its
//!   credentials, limits and retry policy.
//! - [`caller`]: whom a client's call runs as (token, certificate name, anonymous).
//! - [`credentials`]: the client metadata forwarded with each call.
//! - [`pool`]: the current member set, health flags, picking and retrying.
//! - [`membership`]: the background task that refreshes the set from
//!   MemberList and probes each member's health.
//! - [`resilient_stream`]: long-lived upstream streams kept open across member failures.
//! - [`retry`]: which failed calls may be sent again to another member.
//! - [`endpoint`]: parsing of member URLs.
//! - [`discovery`]: DNS SRV discovery of the members at start.
//! - [`health`]: the `/health` check, and readiness behind `/readyz` and gRPC health.
//! - [`require_leader`]: `hasleader: true` streams end when the cluster has no leader.

pub mod call;
pub mod caller;
pub mod credentials;
pub mod discovery;
pub mod endpoint;
pub mod health;
pub mod membership;
pub mod pool;
pub mod require_leader;
pub mod resilient_stream;
pub mod retry;

pub use call::{Credentials, Upstream};
pub use caller::{Caller, CallerRef, ClientCertName};
pub use credentials::Forwarded;
pub use endpoint::EndpointUrl;
pub use pool::{Backend, ChannelSettings, OwnUser, Pool, PoolStats, Target};
pub use retry::RetryPolicy;
