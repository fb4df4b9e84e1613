//! One call run on the members: the member picked for each attempt (by
//! [`Target`]), each attempt bounded by [`ATTEMPT_TIMEOUT`], a failure
//! classified to decide whether the member leaves rotation and whether the
//! call may go to another member, and the error the client gets when none
//! answered.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::Status;
use tracing::Instrument;

use super::Pool;
use crate::error::ProxyError;
use crate::upstream::endpoint::EndpointUrl;
use crate::upstream::retry::{AttemptTimedOut, Failure, RetryPolicy};

/// How long one attempt of a unary call (or the opening of a stream) may
/// wait for a member. A healthy etcd answers within its own request timeout
/// (about 7 s by default: "request timed out"); past this the member is
/// taken for black-holed: it leaves rotation, a read goes to another
/// member, and a write is answered `Unavailable` (it may have been applied).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// Which member a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Balanced over healthy members (writes to the leader first).
    Balanced,
    /// The pinned member ([`Pool::pinned`]), for member-scoped calls.
    Pinned,
}

impl Pool {
    /// Runs one unary call on a member, retrying on other members as
    /// `policy` allows. Upstream answers reach the caller unchanged.
    pub async fn call<T, F, Fut>(&self, policy: RetryPolicy, attempt: F) -> Result<T, ProxyError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_on(Target::Balanced, policy, attempt).await
    }

    /// Like [`Pool::call`], on the members `target` chooses.
    pub async fn call_on<T, F, Fut>(
        &self,
        target: Target,
        policy: RetryPolicy,
        mut attempt: F,
    ) -> Result<T, ProxyError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut tried: Vec<EndpointUrl> = Vec::new();
        let mut last_unreached: Option<Status> = None;
        let mut last_failed: Option<ProxyError> = None;
        loop {
            let picked = match target {
                Target::Balanced => self.pick_for(policy, &tried),
                Target::Pinned => self.pinned(&tried),
            };
            let Some(backend) = picked else { break };
            tried.push(backend.url.clone());
            crate::trace::event("attempt", || {
                vec![
                    opentelemetry::KeyValue::new("etcd.member", backend.url.to_string()),
                    opentelemetry::KeyValue::new("attempt", tried.len() as i64),
                ]
            });
            let _inflight = backend.start_call();
            let span = tracing::debug_span!("upstream", backend = %backend.url);
            let answer = tokio::time::timeout(
                ATTEMPT_TIMEOUT,
                attempt(backend.channel.clone()).instrument(span),
            )
            .await
            .unwrap_or_else(|_| Err(AttemptTimedOut::status(ATTEMPT_TIMEOUT)));
            let status = match answer {
                Ok(v) => {
                    if !backend.is_healthy() {
                        self.mark_healthy(&backend);
                    }
                    crate::trace::attribute(|| {
                        opentelemetry::KeyValue::new("etcd.member", backend.url.to_string())
                    });
                    return Ok(v);
                }
                Err(status) => status,
            };
            let failure = Failure::of(&status);
            if failure.member_unhealthy() {
                self.mark_unhealthy(&backend, status.message());
            }
            let retry = failure.retry_allowed(policy);
            if retry {
                tracing::debug!(backend = %backend.url, ?failure, error = %status.message(), "retrying on another member");
                self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
                crate::trace::event("retry", || {
                    vec![
                        opentelemetry::KeyValue::new("etcd.member", backend.url.to_string()),
                        opentelemetry::KeyValue::new("error", status.message().to_string()),
                    ]
                });
            }
            let error = match failure {
                Failure::NotReached if retry => {
                    last_unreached = Some(status);
                    continue;
                }
                Failure::LostInFlight => ProxyError::AnswerLost {
                    member: backend.url.to_string(),
                    detail: describe(&status),
                },
                _ => ProxyError::Upstream(status),
            };
            if !retry {
                return Err(error);
            }
            last_failed = Some(error);
        }
        if let Some(error) = last_failed {
            return Err(error);
        }
        Err(ProxyError::NoMemberReachable {
            tried: tried
                .iter()
                .map(|u| u.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            last: last_unreached
                .map(|s| describe(&s))
                .unwrap_or_else(|| "no endpoints configured".into()),
        })
    }
}

/// A transport status with its source chain, for messages operators read.
pub fn describe(status: &Status) -> String {
    use std::error::Error as _;
    let mut text = status.message().to_string();
    let mut source = status.source();
    while let Some(err) = source {
        let s = err.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = err.source();
    }
    text
}
