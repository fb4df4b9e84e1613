//! The Watch service: one task per client stream reads its requests and
//! registers watchers with the shared [`WatchHub`], which coalesces them
//! onto upstream watches and fails them over between members.

use crate::error::ProxyError;
use crate::sync::lock;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, Instrument};

use crate::error::RpcResult;
use crate::proto::etcdserverpb::*;
use crate::services::ServiceDeps;
use crate::upstream::Forwarded;
use crate::watch::control::{ControlStream, CreateVerdict};
use crate::watch::hub::{WatchHub, WatchKey, WatcherId, WatcherSpec};
use crate::watch::shared_response::WatchOut;

/// Permission checks of watch creates in flight at once, over all streams.
pub const PERMISSION_CHECKS: usize = 64;

static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PERMISSION_CHECKS);

/// Responses queued per client stream before its watchers count as slow.
pub const CLIENT_QUEUE: usize = 1024;

/// etcd's id for responses not tied to one watcher (progress answers).
const NO_WATCH_ID: i64 = -1;

/// Serves `etcdserverpb.Watch`.
pub struct WatchService {
    /// Pool and limits shared by all services.
    pub deps: ServiceDeps,
    /// Watchers of every client stream.
    pub hub: Arc<WatchHub>,
    /// Watchers one client stream may hold (`--max-watchers-per-stream`).
    pub max_watchers_per_stream: usize,
    /// Where refusals are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The outbound side of one client's Watch call.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchOut, Status>> + Send + 'static>>;

impl WatchService {
    /// Serves one client's watch stream: a task reads its requests, and
    /// what the hub delivers goes back out (namespaced and fragmented per
    /// watcher where needed; shared responses otherwise pass as they are).
    pub async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> RpcResult<WatchStream> {
        // Set by the limits layer when per-client limits are on.
        let client = match &self.deps.limits {
            Some(limits) => request
                .extensions()
                .get::<crate::limits::ClientId>()
                .cloned()
                .map(|c| (limits.clone(), c)),
            None => None,
        };
        let (fwd, inbound) = Forwarded::split(request);
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let fragmenting: Fragmenting = Arc::default();
        let control = ControlStream::new(
            self.deps.upstream.pool().clone(),
            fwd.clone(),
            tx.clone(),
            self.hub.tasks(),
        );
        let stream = ClientStream {
            control,
            hub: self.hub.clone(),
            deps: self.deps.clone(),
            fwd,
            tx,
            ids: HashMap::new(),
            next_id: 0,
            fragmenting: fragmenting.clone(),
            progress: Arc::default(),
            max_watchers: self.max_watchers_per_stream,
            metrics: self.metrics.clone(),
            open: HashMap::new(),
            client,
            permits: HashMap::new(),
        };
        self.hub.tasks().spawn(
            stream
                .run(inbound)
                .instrument(tracing::info_span!("watch_stream")),
        );
        let ns = self.deps.namespace.clone();
        let prefixes = self.metrics.prefixes.clone();
        let answers = ReceiverStream::new(rx).flat_map(move |answer| {
            let pieces = match answer {
                Ok(out) => {
                    let wants_fragments =
                        fragmenting.any.load(std::sync::atomic::Ordering::Acquire)
                            && lock(&fragmenting.ids).contains(&out.watch_id());
                    if let Some(prefixes) = &prefixes {
                        count_events(prefixes, ns.as_deref(), out.response());
                    }
                    if ns.is_none() && !wants_fragments {
                        // The common case: one response, passed on as it is.
                        return futures::future::Either::Left(futures::stream::once(
                            futures::future::ready(Ok(out)),
                        ));
                    }
                    let mut resp = out.into_response();
                    // Events come back with keys relative to the client's namespace.
                    if let Some(ns) = &ns {
                        ns.watch_out(&mut resp);
                    }
                    if wants_fragments {
                        fragments(resp, FRAGMENT_BYTES)
                            .into_iter()
                            .map(|r| Ok(r.into()))
                            .collect()
                    } else {
                        vec![Ok(resp.into())]
                    }
                }
                Err(status) => vec![Err(status)],
            };
            futures::future::Either::Right(futures::stream::iter(pieces))
        });
        Ok(Response::new(Box::pin(answers)))
    }
}

/// `etcdserverpb.Watch` on the wire: tonic's streaming handler, with a
/// codec whose responses may be shared ones, written without being encoded
/// again for each watcher (see [`crate::watch::shared_response`]).
#[derive(Clone)]
pub struct WatchGrpc {
    service: Arc<WatchService>,
    max_decoding: usize,
}

impl WatchGrpc {
    /// Serves `service`, refusing client messages over `max_decoding` bytes.
    pub fn new(service: WatchService, max_decoding: usize) -> WatchGrpc {
        WatchGrpc {
            service: Arc::new(service),
            max_decoding,
        }
    }
}

/// The route etcd clients call.
const WATCH_PATH: &str = "/etcdserverpb.Watch/Watch";

impl<B> tower::Service<http::Request<B>> for WatchGrpc
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let call = WatchCall(self.service.clone());
        let max_decoding = self.max_decoding;
        Box::pin(async move {
            if req.uri().path() != WATCH_PATH {
                return Ok(Status::from(crate::error::WireError::MalformedMethod(
                    req.uri().path().to_string(),
                ))
                .into_http());
            }
            let codec = crate::codec::LeanCodec::<WatchOut, WatchRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec)
                .apply_max_message_size_config(Some(max_decoding), Some(usize::MAX))
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .send_compressed(tonic::codec::CompressionEncoding::Gzip);
            Ok(grpc.streaming(call, req).await)
        })
    }
}

impl tonic::server::NamedService for WatchGrpc {
    const NAME: &'static str = "etcdserverpb.Watch";
}

/// One Watch call handed to [`WatchService::watch`].
struct WatchCall(Arc<WatchService>);

impl tonic::server::StreamingService<WatchRequest> for WatchCall {
    type Response = WatchOut;
    type ResponseStream = WatchStream;
    type Future = tonic::codegen::BoxFuture<Response<WatchStream>, Status>;

    fn call(&mut self, request: Request<Streaming<WatchRequest>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.watch(request).await })
    }
}

/// Counts the events of `resp` in the buckets of their keys as the client
/// sees them (without `--namespace`'s prefix).
fn count_events(
    prefixes: &crate::metrics::prefixes::PrefixMetrics,
    ns: Option<&crate::kv::namespace::Namespace>,
    resp: &WatchResponse,
) {
    use prost::Message;
    for ev in &resp.events {
        let Some(kv) = &ev.kv else { continue };
        let key = ns.map_or(kv.key.as_slice(), |ns| ns.relative(&kv.key));
        prefixes.event_delivered(key, ev.encoded_len());
    }
}

/// One client's watch stream.
struct ClientStream {
    /// The client's own upstream stream, for permission checks and
    /// progress requests only a member can answer.
    control: ControlStream,
    hub: Arc<WatchHub>,
    deps: ServiceDeps,
    fwd: Forwarded,
    tx: mpsc::Sender<Result<WatchOut, Status>>,
    /// The client's watch ids and the hub's watchers behind them.
    ids: HashMap<i64, WatcherId>,
    next_id: i64,
    /// Watch ids whose creator asked for `fragment`.
    fragmenting: Fragmenting,
    /// The stream's one progress request in flight.
    progress: Arc<ProgressSlot>,
    /// Watchers this stream may hold.
    max_watchers: usize,
    /// Where refusals are counted.
    metrics: Arc<crate::metrics::Metrics>,
    /// With `--metrics-prefixes`: the stream's watchers counted as open
    /// in their key's prefix, by watch id, until canceled or the stream ends.
    open: HashMap<i64, crate::metrics::prefixes::OpenWatcher>,
    /// The client's limits and name, with per-client limits on.
    client: Option<(Arc<crate::limits::ClientLimits>, crate::limits::ClientId)>,
    /// Each watcher's place in its client's watcher limit, given back on cancel.
    permits: HashMap<i64, crate::limits::Permit>,
}

/// At most one progress request in flight per client stream: requests that
/// arrive while one runs are covered by one more run after it (its revision
/// is read after they arrived, so each gets an answer at least as new as
/// etcd would give). A flood costs a flag, not a task and a wait per watcher.
#[derive(Default)]
struct ProgressSlot {
    /// Whether a run is going, whether another is due, and for which watchers.
    state: Mutex<ProgressState>,
    /// Wakes a run waiting on members: a newer request starts it over with
    /// fresh upstream requests (a member drops one while a watcher is behind).
    renewed: tokio::sync::Notify,
}

#[derive(Default)]
struct ProgressState {
    running: bool,
    again: bool,
    ids: Vec<WatcherId>,
}

impl ProgressSlot {
    /// Notes a progress request for `ids`; true when the caller must start
    /// the runner (none is running).
    fn request(&self, ids: Vec<WatcherId>) -> bool {
        let mut st = lock(&self.state);
        st.ids = ids;
        if st.running {
            st.again = true;
            self.renewed.notify_waiters();
            false
        } else {
            st.running = true;
            true
        }
    }

    /// The watchers of the next run, or `None` when no request is waiting
    /// (the runner then stops).
    fn next(&self) -> Option<Vec<WatcherId>> {
        let mut st = lock(&self.state);
        if st.again {
            st.again = false;
            Some(st.ids.clone())
        } else {
            st.running = false;
            None
        }
    }
}

/// Answers the stream's progress requests one at a time until none waits.
async fn run_progress(
    slot: Arc<ProgressSlot>,
    hub: Arc<WatchHub>,
    mut ids: Vec<WatcherId>,
    tx: mpsc::Sender<Result<WatchOut, Status>>,
) {
    loop {
        tokio::select! {
            () = answer_progress(hub.clone(), ids, tx.clone()) => {}
            () = slot.renewed.notified() => {}
        }
        match slot.next() {
            Some(next) => ids = next,
            None => return,
        }
    }
}

/// The watch ids of one client stream that asked for fragmented responses.
type Fragmenting = Arc<FragmentingIds>;

/// The watch ids of one client stream that asked for `fragment`.
#[derive(Default)]
struct FragmentingIds {
    /// Whether any watcher of the stream ever asked (checked per response
    /// before taking the lock).
    any: std::sync::atomic::AtomicBool,
    ids: std::sync::Mutex<std::collections::HashSet<i64>>,
}

/// Size above which a response is split for watchers that asked for
/// `fragment`, where a member with etcd's defaults splits it: its
/// `--max-request-bytes` (1.5 MiB) plus the 512 KiB it allows for gRPC overhead.
pub const FRAGMENT_BYTES: usize = 1536 * 1024 + 512 * 1024;

/// Splits a response over `limit` bytes into several, as etcd does for a
/// watch created with `fragment`: each part holds as many events as fit
/// (at least one), every part but the last is marked `fragment`. A response
/// with fewer than two events, or under the limit, is sent whole.
pub fn fragments(resp: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    use prost::Message;
    if resp.events.len() < 2 || resp.encoded_len() < limit {
        return vec![resp];
    }
    let mut shell = resp.clone();
    shell.events.clear();
    let base = shell.encoded_len();
    let mut parts = Vec::new();
    let mut current = shell.clone();
    let mut size = base;
    for ev in resp.events {
        // Field tag, length prefix and the event itself.
        let ev_len = ev.encoded_len();
        let ev_size = 1 + prost::length_delimiter_len(ev_len) + ev_len;
        if !current.events.is_empty() && size + ev_size > limit {
            let mut full = std::mem::replace(&mut current, shell.clone());
            full.fragment = true;
            parts.push(full);
            size = base;
        }
        size += ev_size;
        current.events.push(ev);
    }
    current.fragment = false;
    parts.push(current);
    parts
}

impl ClientStream {
    async fn run(mut self, mut inbound: Streaming<WatchRequest>) {
        let pool = self.deps.upstream.pool().clone();
        let required = crate::upstream::require_leader::requested(self.fwd.metadata());
        let lost = crate::upstream::require_leader::lost(&pool, required);
        tokio::pin!(lost);
        loop {
            tokio::select! {
                () = &mut lost => {
                    debug!("require-leader watch stream ended: no leader");
                    let _ = self.tx.send(Err(crate::upstream::require_leader::no_leader())).await;
                    break;
                }
                msg = inbound.message() => match msg {
                    Ok(Some(req)) => {
                        if self.handle(req).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        debug!(error = %status.message(), "client watch stream ended");
                        break;
                    }
                },
                _ = self.tx.closed() => break,
            }
        }
        for id in self.ids.values() {
            self.hub.remove(*id);
        }
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), ()> {
        self.tx.send(Ok(resp.into())).await.map_err(|_| ())
    }

    async fn handle(&mut self, req: WatchRequest) -> Result<(), ()> {
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(watch_request::RequestUnion::CancelRequest(cancel)) => {
                if let Some(id) = self.ids.remove(&cancel.watch_id) {
                    self.open.remove(&cancel.watch_id);
                    self.permits.remove(&cancel.watch_id);
                    lock(&self.fragmenting.ids).remove(&cancel.watch_id);
                    let header = self.hub.progress(&[id]);
                    self.hub.remove(id);
                    self.send(WatchResponse {
                        header,
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..Default::default()
                    })
                    .await?;
                }
                Ok(())
            }
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                let ids: Vec<WatcherId> = self.ids.values().copied().collect();
                if ids.is_empty() {
                    // Whether etcd answers a stream without watchers depends
                    // on its release: the member decides.
                    self.control.progress().await;
                } else if self.progress.request(ids.clone()) {
                    self.hub.tasks().spawn(run_progress(
                        self.progress.clone(),
                        self.hub.clone(),
                        ids,
                        self.tx.clone(),
                    ));
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, mut create: WatchCreateRequest) -> Result<(), ()> {
        // The bucket of the client's own key, before the namespace's prefix.
        let counted = self.metrics.prefixes.as_ref().map(|p| {
            use prost::Message;
            (p.clone(), p.bucket(&create.key), create.encoded_len())
        });
        if let Some(ns) = &self.deps.namespace {
            ns.watch_in(&mut create);
        }
        let watch_id = if create.watch_id != 0 {
            if self.ids.contains_key(&create.watch_id) {
                return self
                    .send(WatchResponse {
                        header: Some(self.header_for_own_answer()),
                        watch_id: NO_WATCH_ID,
                        created: true,
                        canceled: true,
                        cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream"
                            .into(),
                        ..Default::default()
                    })
                    .await;
            }
            create.watch_id
        } else {
            // As etcd: ids the proxy assigns only ever grow within a stream,
            // so an event for a canceled watcher can never pass for a new one.
            while self.ids.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        };
        if self.ids.len() >= self.max_watchers {
            self.metrics
                .limits
                .watchers_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let reason = format!(
                "etcd-grpc-proxy: too many watchers on this stream (--max-watchers-per-stream={})",
                self.max_watchers
            );
            return self.refuse(watch_id, reason.into_bytes()).await;
        }
        let permit = match &self.client {
            None => None,
            Some((limits, client)) => match limits.admit_watcher(client) {
                Ok(permit) => Some(permit),
                Err(refusal) => {
                    return self
                        .refuse(watch_id, refusal.to_string().into_bytes())
                        .await
                }
            },
        };
        match self.check_permission(&create, watch_id).await {
            Ok(CreateVerdict::Permitted) => {}
            Ok(CreateVerdict::Refused(mut refusal)) => {
                // The member's own answer; only an id it echoed is the proxy's.
                if refusal.watch_id != NO_WATCH_ID {
                    refusal.watch_id = watch_id;
                }
                return self.send(refusal).await;
            }
            Err(status) => {
                let reason = crate::error::watch_refusal_reason(&status);
                return self.refuse(watch_id, reason).await;
            }
        }
        if create.fragment {
            self.fragmenting
                .any
                .store(true, std::sync::atomic::Ordering::Release);
            lock(&self.fragmenting.ids).insert(watch_id);
        }
        let key = WatchKey {
            key: create.key.clone(),
            range_end: create.range_end.clone(),
        };
        let spec = WatcherSpec::from_create(&create, watch_id);
        let id = self.hub.add(key, spec, self.tx.clone(), self.fwd.clone());
        self.ids.insert(watch_id, id);
        if let Some((prefixes, bucket, received)) = counted {
            use crate::metrics::prefixes::KeyedMethod;
            prefixes.request(bucket, KeyedMethod::Watch, tonic::Code::Ok, received, 0);
            self.open.insert(watch_id, prefixes.watcher_opened(bucket));
        }
        if let Some(permit) = permit {
            self.permits.insert(watch_id, permit);
        }
        Ok(())
    }

    /// Answers a create the proxy refuses itself: created and canceled at
    /// once, with `reason`, as etcd refuses one.
    async fn refuse(&self, watch_id: i64, reason: Vec<u8>) -> Result<(), ()> {
        self.send(WatchResponse {
            header: Some(self.header_for_own_answer()),
            watch_id,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        })
        .await
    }

    /// The header of an answer the proxy makes itself: a member's last
    /// Status header, else the newest header of this stream's watchers
    /// (never none: clientv3 3.5 and 3.6 dereference it).
    fn header_for_own_answer(&self) -> ResponseHeader {
        let ids: Vec<WatcherId> = self.ids.values().copied().collect();
        self.deps
            .upstream
            .pool()
            .last_header()
            .or_else(|| self.hub.progress(&ids))
            .unwrap_or_default()
    }

    /// A client may only join a shared upstream watch (opened under another
    /// client's token) on a range it may read itself: its create is put to
    /// a member first, on the client's own control stream, under its own
    /// token; a refusal is the member's answer, word for word.
    ///
    /// Never skipped on a view of "auth is off": auth may have been enabled
    /// a moment ago, through another proxy or a member, and a watcher let in
    /// then would see events it may not read. At most [`PERMISSION_CHECKS`]
    /// run at once, so a burst of thousands of creates does not flood the members.
    async fn check_permission(
        &self,
        create: &WatchCreateRequest,
        watch_id: i64,
    ) -> Result<CreateVerdict, Status> {
        let _permit = CHECKS
            .acquire()
            .await
            .map_err(|_| ProxyError::Lost("shutting down").status())?;
        let probe = WatchCreateRequest {
            watch_id,
            ..create.clone()
        };
        let check = self.control.check(&probe);
        tokio::time::timeout(PERMISSION_WAIT, check)
            .await
            .unwrap_or_else(|_| Err(ProxyError::Lost("permission check unanswered").status()))
    }
}

/// How long a watch create waits for a member to answer its permission
/// check; past it the create is refused (`Unavailable`), and the permit it
/// held goes to the next create: one member that never answers cannot
/// stall every watch create on the proxy.
const PERMISSION_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// How long a progress request waits for the members' answers. etcd itself
/// never answers one while a watcher of the stream is still catching up;
/// past this wait the proxy gives up the same way.
const PROGRESS_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Answers a client's progress request as etcd does: with the store's
/// revision, once every watcher of the stream has been handed every event
/// up to it, with watch id -1. The revision comes from the members behind
/// the watchers' upstream streams (the lowest, if they differ), each
/// answering only once its stream has caught up; no answer if they don't.
async fn answer_progress(
    hub: Arc<WatchHub>,
    ids: Vec<WatcherId>,
    tx: mpsc::Sender<Result<WatchOut, Status>>,
) {
    let answers = hub.request_progress(&ids);
    let Ok(headers) = tokio::time::timeout(PROGRESS_WAIT, futures::future::join_all(answers)).await
    else {
        debug!("progress request unanswered: a watcher has not caught up");
        return;
    };
    let Some(header) = headers
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .and_then(|h| h.into_iter().min_by_key(|h| h.revision))
    else {
        return; // an upstream watch ended meanwhile: its watchers are not synced
    };
    if hub.synced_through(&ids, header.revision) {
        let _ = tx
            .send(Ok(WatchResponse {
                header: Some(header),
                watch_id: NO_WATCH_ID,
                ..Default::default()
            }
            .into()))
            .await;
    }
}

#[cfg(test)]
mod tests;
