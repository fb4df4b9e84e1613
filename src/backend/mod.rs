//! The backend pool: the etcd members calls are balanced across.
//!
//! - [`endpoint`]: parsing of member URLs.
//! - [`pool`]: the current member set, health flags, picking and retrying.
//! - [`membership`]: the background task that refreshes the set from
//!   MemberList and probes each member's health.
//! - [`resilient_stream`]: long-lived upstream streams kept open across member failures.
//! - [`retry`]: which failed calls may be sent again to another member.
//! - [`upstream`]: the one way a call reaches a member, with its credentials and limits.

pub mod endpoint;
pub mod membership;
pub mod pool;
pub mod resilient_stream;
pub mod retry;
pub mod upstream;

pub use endpoint::EndpointUrl;
pub use pool::{Backend, ChannelSettings, OwnUser, Pool, PoolStats};
pub use retry::RetryPolicy;
pub use upstream::{Credentials, Upstream};
