//! [`run`]: one long-lived upstream stream kept open across member
//! failures. The watch broadcasts, the keep-alive shards and the leasing
//! watch each describe their stream as a [`Session`]; this loop owns what
//! they share:
//! - the choice of member (balanced, or the leader first);
//! - the backoff between attempts, reset by every answer;
//! - marking a member unhealthy when its failure says so;
//! - the move away from a member that left rotation while another is healthy.
//!
//! Resumption is the session's: its `open` is told whether the stream was
//! open before, and opens from where the last one stopped.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Status, Streaming};
use tracing::{debug, warn};

use crate::upstream::retry::Failure;
use crate::upstream::{Backend, Pool};

/// First pause between attempts, and the pause after an answer.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest pause between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often an open stream checks that its member is still in rotation.
const HEALTH_TICK: Duration = Duration::from_millis(500);

/// What the session wants after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep the stream as it is.
    Continue,
    /// Close the stream and open a new one (on whichever member is picked).
    Reopen,
    /// Close the stream for good: [`run`] returns.
    Stop,
}

/// Which member a stream is opened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Any healthy member, balanced.
    Balanced,
    /// The leader when one is known (its answers need no forwarding).
    LeaderFirst,
}

/// One kind of long-lived upstream stream.
#[tonic::async_trait]
pub trait Session: Send {
    /// The messages the member streams back.
    type Message: Send + 'static;

    /// Called before every attempt to open; `Stop` ends [`run`]. It may wait
    /// (until there is something to send, say).
    async fn ready(&mut self) -> Step {
        Step::Continue
    }

    /// Opens the stream on `backend`. `reopened` says a stream of this
    /// session was open before, so the new one resumes where it stopped.
    async fn open(
        &mut self,
        backend: &Arc<Backend>,
        reopened: bool,
    ) -> Result<Streaming<Self::Message>, Status>;

    /// One message from the member.
    async fn message(&mut self, message: Self::Message) -> Step;

    /// Anything else the session waits for while its stream is open. It
    /// must be cancel-safe: it is dropped whenever a message comes first.
    async fn event(&mut self) -> Step {
        std::future::pending().await
    }

    /// The stream failed on `backend`, opening or later, with `status`.
    fn failed(&mut self, _backend: &Backend, _status: &Status) {}

    /// The stream is closed; a new one may follow.
    fn closed(&mut self) {}
}

/// What woke an open stream's loop.
enum Wake<M> {
    Message(Result<Option<M>, Status>),
    Event(Step),
    Tick,
}

/// Keeps `session`'s stream open on the members of `pool` until the
/// session says [`Step::Stop`]. `name` labels the logs.
pub async fn run<S: Session>(pool: &Pool, choice: Choice, name: &'static str, mut session: S) {
    let mut backoff = BACKOFF_MIN;
    let mut opened_before = false;
    loop {
        if session.ready().await == Step::Stop {
            return;
        }
        let picked = match choice {
            Choice::Balanced => pool.pick(&[]),
            Choice::LeaderFirst => pool.leader().or_else(|| pool.pick(&[])),
        };
        let Some(backend) = picked else {
            tokio::time::sleep(backoff).await;
            continue;
        };
        let mut stream = match session.open(&backend, opened_before).await {
            Ok(stream) => stream,
            Err(status) => {
                fail(pool, &mut session, &backend, &status);
                debug!(stream = name, backend = %backend.url, error = %status.message(), "upstream stream failed to open");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        opened_before = true;
        let mut health = tokio::time::interval(HEALTH_TICK);
        let step = loop {
            let wake = tokio::select! {
                m = stream.message() => Wake::Message(m),
                step = session.event() => Wake::Event(step),
                _ = health.tick() => Wake::Tick,
            };
            let step = match wake {
                Wake::Message(Ok(Some(message))) => {
                    backoff = BACKOFF_MIN;
                    session.message(message).await
                }
                Wake::Message(Ok(None)) => Step::Reopen,
                Wake::Message(Err(status)) => {
                    fail(pool, &mut session, &backend, &status);
                    warn!(stream = name, backend = %backend.url, error = %status.message(), "upstream stream lost; re-opening on another member");
                    Step::Reopen
                }
                Wake::Event(step) => step,
                Wake::Tick if left_rotation(pool, &backend) => {
                    warn!(stream = name, backend = %backend.url, "member left rotation; moving the upstream stream");
                    Step::Reopen
                }
                Wake::Tick => Step::Continue,
            };
            if step != Step::Continue {
                break step;
            }
        };
        drop(stream);
        session.closed();
        if step == Step::Stop {
            return;
        }
        tokio::time::sleep(backoff).await;
    }
}

/// A failure of `backend`: marked unhealthy if the failure says so, then
/// handed to the session.
fn fail<S: Session>(pool: &Pool, session: &mut S, backend: &Arc<Backend>, status: &Status) {
    if Failure::of(status).member_unhealthy() {
        pool.mark_unhealthy(backend, status.message());
    }
    session.failed(backend, status);
}

/// Whether `backend` is out of rotation (unhealthy, or no longer a member)
/// while another member is healthy to move to.
fn left_rotation(pool: &Pool, backend: &Backend) -> bool {
    let backends = pool.backends();
    let gone = !backend.is_healthy() || !backends.iter().any(|b| b.url == backend.url);
    gone && backends
        .iter()
        .any(|b| b.is_healthy() && b.url != backend.url)
}
