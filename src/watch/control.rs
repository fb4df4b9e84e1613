//! A client stream's own upstream watch stream, opened under the client's
//! token on first use, for the answers the proxy must not make up or share:
//!
//! - **Permission checks of creates.** Before a watcher joins a broadcast
//!   opened under another client's token, its create is sent here first.
//!   The member answers as it would answer the client directly: a refusal
//!   comes back with the member's own watch id, flags, header and reason
//!   (which differ between etcd releases), and is passed on unchanged.
//! - **Progress requests of a stream without watchers.** etcd 3.4 answers
//!   them; 3.5 and later stay silent. Sent here, the client gets whatever
//!   the member says.
//!
//! The stream never carries a watcher for longer than one check: each
//! permitted probe watch is canceled at once.

use crate::error::ProxyError;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use tracing::debug;

use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::{
    watch_request, WatchCancelRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use crate::upstream::retry::{AttemptTimedOut, Failure};

/// How long one permission check or progress relay on the control stream
/// waits for the member; past it the stream is dropped and the next
/// attempt goes to another member.
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
use crate::upstream::Forwarded;
use crate::upstream::{Backend, Pool};

use super::hub::ClientTx;
use super::progress_request;

/// Members tried before a check gives up.
const ATTEMPTS: usize = 3;

/// What a member said about a watch create.
#[derive(Debug)]
pub enum CreateVerdict {
    /// The client may watch the range.
    Permitted,
    /// The member refused it with this response (passed on as it is).
    Refused(WatchResponse),
}

enum Command {
    Check(
        WatchCreateRequest,
        oneshot::Sender<Result<CreateVerdict, Status>>,
    ),
    Progress(oneshot::Sender<()>),
}

/// The handle a client stream keeps; its task ends when the handle drops.
pub struct ControlStream {
    commands: mpsc::Sender<Command>,
}

impl ControlStream {
    /// A control stream for one client: `fwd` is its metadata, `client`
    /// where member answers of its own (progress) go.
    pub fn new(
        pool: Pool,
        fwd: Forwarded,
        client: ClientTx,
        tasks: &crate::tasks::Tasks,
    ) -> ControlStream {
        let (commands, rx) = mpsc::channel(16);
        tasks.spawn(
            Worker {
                pool,
                fwd,
                client,
                open: None,
            }
            .run(rx),
        );
        ControlStream { commands }
    }

    /// Asks a member whether the client may create `create`.
    pub async fn check(&self, create: &WatchCreateRequest) -> Result<CreateVerdict, Status> {
        let probe = WatchCreateRequest {
            key: create.key.clone(),
            range_end: create.range_end.clone(),
            // A negative start is refused before the permission check; keep
            // it so the member says so. Otherwise no history is replayed.
            start_revision: create.start_revision.min(0),
            watch_id: create.watch_id,
            ..Default::default()
        };
        let (tx, rx) = oneshot::channel();
        let gone = || ProxyError::Lost("watch control stream closed").status();
        self.commands
            .send(Command::Check(probe, tx))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Relays a progress request of a stream that has no watchers, and
    /// returns once the member's answer, if it gives one, is on its way to
    /// the client: what the client asks next is answered after it.
    pub async fn progress(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Progress(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Open {
    requests: mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
    backend: Arc<Backend>,
}

struct Worker {
    pool: Pool,
    fwd: Forwarded,
    client: ClientTx,
    open: Option<Open>,
}

impl Worker {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::Check(create, reply)) => {
                        let verdict = self.check(create).await;
                        let _ = reply.send(verdict);
                    }
                    Some(Command::Progress(done)) => {
                        self.progress().await;
                        let _ = done.send(());
                    }
                },
                // Answers nobody waits for (progress answers) go to the client.
                resp = next(&mut self.open) => match resp {
                    Some(resp) => {
                        if self.client.send(Ok(resp.into())).await.is_err() {
                            return;
                        }
                    }
                    None => self.open = None,
                },
            }
        }
    }

    /// Sends the progress request, then a marker create: etcd answers
    /// both on its control queue, in order, so whatever precedes the
    /// marker's answer is the progress answer (or there was none).
    async fn progress(&mut self) {
        let req = progress_request();
        let marker = WatchCreateRequest {
            key: vec![0],
            ..Default::default()
        };
        for _ in 0..ATTEMPTS {
            let attempt = self.check_once_after(Some(req.clone()), &marker);
            if let Ok(Ok(_)) = tokio::time::timeout(CHECK_WAIT, attempt).await {
                return;
            }
            self.open = None;
        }
    }

    async fn check(&mut self, create: WatchCreateRequest) -> Result<CreateVerdict, Status> {
        let mut last =
            ProxyError::Lost("no etcd member reachable for the watch permission check").status();
        for _ in 0..ATTEMPTS {
            // A member that accepts the stream and never answers must not
            // hold this client's checks (and the permit its caller holds).
            let attempt = tokio::time::timeout(CHECK_WAIT, self.check_once(&create)).await;
            match attempt.unwrap_or_else(|_| Err(AttemptTimedOut::status(CHECK_WAIT))) {
                Ok(v) => return Ok(v),
                Err(status) => {
                    if let Some(open) = self.open.take() {
                        if Failure::of(&status).member_unhealthy() {
                            self.pool.mark_unhealthy(&open.backend, status.message());
                        }
                    }
                    debug!(error = %status.message(), "watch permission check failed; trying another member");
                    last = status;
                }
            }
        }
        Err(last)
    }

    async fn check_once(&mut self, create: &WatchCreateRequest) -> Result<CreateVerdict, Status> {
        self.check_once_after(None, create).await
    }

    /// Sends `before` (if any) and `create` together, then reads the answer to `create`.
    async fn check_once_after(
        &mut self,
        before: Option<WatchRequest>,
        create: &WatchCreateRequest,
    ) -> Result<CreateVerdict, Status> {
        let req = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create.clone())),
        };
        self.send(before.into_iter().chain([req]).collect()).await?;
        let Some(open) = self.open.as_mut() else {
            return Err(ProxyError::Internal("watch control stream").status());
        };
        let lost = || ProxyError::Lost("upstream watch stream ended").status();
        let id = loop {
            let resp = open.responses.message().await?.ok_or_else(lost)?;
            if resp.created {
                if resp.canceled {
                    return Ok(CreateVerdict::Refused(resp));
                }
                break resp.watch_id;
            }
            if resp.events.is_empty() && !resp.canceled {
                // A progress answer: the client's.
                let _ = self.client.send(Ok(resp.into())).await;
            }
        };
        let cancel = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CancelRequest(
                WatchCancelRequest { watch_id: id },
            )),
        };
        open.requests.send(cancel).await.map_err(|_| lost())?;
        loop {
            let resp = open.responses.message().await?.ok_or_else(lost)?;
            if resp.canceled && resp.watch_id == id {
                return Ok(CreateVerdict::Permitted);
            }
        }
    }

    /// Sends `reqs` on the open stream, opening one on a member first if
    /// needed (with `reqs` already queued: members answer the call itself
    /// only along with a first response, and a progress request may get none).
    async fn send(&mut self, reqs: Vec<WatchRequest>) -> Result<(), Status> {
        if let Some(open) = &self.open {
            for req in reqs {
                open.requests
                    .send(req)
                    .await
                    .map_err(|_| ProxyError::Lost("upstream watch stream ended").status())?;
            }
            return Ok(());
        }
        {
            let backend = self
                .pool
                .pick(&[])
                .ok_or_else(|| ProxyError::Lost("no etcd member").status())?;
            let (requests, rx) = mpsc::channel(4);
            for req in reqs {
                let _ = requests.try_send(req);
            }
            let mut client =
                WatchClient::new(backend.channel.clone()).max_decoding_message_size(usize::MAX);
            let responses = match client
                .watch(self.fwd.request(ReceiverStream::new(rx)))
                .await
            {
                Ok(r) => r.into_inner(),
                Err(status) => {
                    if Failure::of(&status).member_unhealthy() {
                        self.pool.mark_unhealthy(&backend, status.message());
                    }
                    return Err(status);
                }
            };
            self.open = Some(Open {
                requests,
                responses,
                backend,
            });
        }
        Ok(())
    }
}

/// The next unsolicited answer on the open stream; pending while none is open.
async fn next(open: &mut Option<Open>) -> Option<WatchResponse> {
    match open {
        Some(o) => o.responses.message().await.ok().flatten(),
        None => std::future::pending().await,
    }
}
