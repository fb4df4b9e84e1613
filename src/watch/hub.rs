//! Watch coalescing: watchers on the same (key, range_end) share one
//! upstream watch (a *broadcast*), opened with prev_kv and progress notify.
//!
//! Each watcher remembers `next_rev`, the first revision it has not been
//! given yet. That one number makes the hard cases simple:
//! - a watcher asking for history older than a broadcast's position gets a
//!   dedicated upstream watch from its start revision;
//! - a watcher whose client stream is full is split off onto a dedicated
//!   upstream watch from its `next_rev` (nothing dropped, nobody stalled);
//! - when the member serving a broadcast dies or leaves rotation, the
//!   broadcast re-opens on another member from `position + 1`, so watchers
//!   see no error, no gap and no duplicate.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::Status;
use tracing::{debug, info_span, Instrument};

use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::{
    watch_request, ResponseHeader, WatchCreateRequest, WatchProgressRequest, WatchRequest,
    WatchResponse,
};
use crate::proto::mvccpb::event::EventType;
use crate::upstream::resilient_stream::{self, Choice, Session, Step};
use crate::upstream::Forwarded;
use crate::upstream::Pool;

use super::shared_response::{SharedView, WatchOut};

/// Where a watcher's responses go: its client stream's outbound queue.
pub type ClientTx = mpsc::Sender<Result<WatchOut, Status>>;

/// The key range a broadcast watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchKey {
    /// First key.
    pub key: Vec<u8>,
    /// End of the range (empty: the single key).
    pub range_end: Vec<u8>,
}

/// What one client asked for in its create request.
#[derive(Debug, Clone)]
pub struct WatcherSpec {
    /// The id the client knows this watch by (chosen by the proxy).
    pub watch_id: i64,
    /// First revision wanted; 0 = from now.
    pub start_revision: i64,
    /// Whether events carry the previous key-value.
    pub prev_kv: bool,
    /// Whether the client wants progress notifications.
    pub progress_notify: bool,
    /// Drop PUT events.
    pub no_put: bool,
    /// Drop DELETE events.
    pub no_delete: bool,
}

impl WatcherSpec {
    /// Reads a client's create request (its `watch_id` is set by the caller).
    pub fn from_create(req: &WatchCreateRequest, watch_id: i64) -> WatcherSpec {
        WatcherSpec {
            watch_id,
            start_revision: req.start_revision,
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            no_put: req.filters.contains(&(FilterType::Noput as i32)),
            no_delete: req.filters.contains(&(FilterType::Nodelete as i32)),
        }
    }
}

struct Watcher {
    spec: WatcherSpec,
    tx: ClientTx,
    /// First revision not yet delivered; 0 until the broadcast is created.
    next_rev: i64,
    /// Whether the client has had its `created` response.
    announced: bool,
    /// The client's token, so the upstream watch can be re-opened under a
    /// watcher still present when its opener has gone (or its token expired).
    token: Option<AsciiMetadataValue>,
}

/// Counters operators (and tests) read to see coalescing work.
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Upstream watches open now.
    pub upstream_watches: AtomicU64,
    /// Client watchers that joined an existing broadcast (etcd's `watchers_coalescing_total`).
    pub watchers_coalescing: AtomicU64,
    /// Events delivered to more than one watcher, counted once per extra watcher.
    pub events_coalescing: AtomicU64,
    /// Upstream watches re-opened on another member.
    pub failovers: AtomicU64,
}

/// Shared by every client watch stream of one proxy.
pub struct WatchHub {
    pool: Pool,
    /// Owner of the broadcasts' tasks.
    tasks: crate::tasks::Tasks,
    state: Mutex<HubState>,
    next_id: AtomicU64,
    /// Counters for metrics.
    pub stats: WatchStats,
    /// Per-stream queue size used when judging a watcher "slow".
    queue_hint: usize,
}

#[derive(Default)]
struct HubState {
    /// Shareable broadcasts by key range.
    shared: HashMap<WatchKey, Arc<Broadcast>>,
    /// Which broadcast each watcher (by hub-wide id) is in now.
    owner: HashMap<u64, Arc<Broadcast>>,
}

struct Broadcast {
    key: WatchKey,
    /// Shared broadcasts never wait on one client; dedicated ones may.
    shared: bool,
    /// Metadata (auth token) of the client that opened it; see
    /// [`Broadcast::credentials`] for what a (re)open carries.
    fwd: Forwarded,
    /// Upstream start revision for the first open (0 = now).
    initial_start: i64,
    state: Mutex<BroadcastState>,
    /// Woken when the last watcher leaves.
    emptied: Notify,
}

#[derive(Default)]
struct BroadcastState {
    watchers: HashMap<u64, Watcher>,
    created: bool,
    /// Every event at or below this revision has been handed to the watchers.
    position: i64,
    /// The last upstream header, for answers the proxy makes itself.
    header: Option<ResponseHeader>,
    closed: bool,
    /// Requests towards the open upstream stream (`None` between members).
    upstream: Option<mpsc::Sender<WatchRequest>>,
    /// Client progress requests waiting for the member's progress answer
    /// on this upstream stream (sent once it has caught up).
    progress_waiters: Vec<oneshot::Sender<ResponseHeader>>,
}

impl Broadcast {
    /// What the upstream watch is (re)opened under: the proxy's own user
    /// when it has one; else the token of the newest watcher still present
    /// (the opener may have gone and its token expired, and every watcher
    /// was checked for the range before joining); else the opener's.
    fn credentials(&self, pool: &Pool) -> Forwarded {
        if let Some(own) = pool.own_token() {
            return self.fwd.with_token(Some(&own));
        }
        let st = lock(&self.state);
        let newest = st
            .watchers
            .iter()
            .filter(|(_, w)| w.token.is_some())
            .max_by_key(|(id, _)| **id);
        match newest {
            Some((_, w)) => self.fwd.with_token(w.token.as_ref()),
            None => self.fwd.clone(),
        }
    }
}

/// etcd's watch id for answers meant for a whole stream (progress answers).
const STREAM_WIDE: i64 = -1;

/// A progress request towards a member.
fn progress_request() -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )),
    }
}

/// A handle a client stream keeps per watch, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WatcherId(u64);

impl WatchHub {
    /// A hub over `pool`; `queue_hint` is the client stream queue size.
    pub fn new(pool: Pool, queue_hint: usize, tasks: crate::tasks::Tasks) -> Arc<WatchHub> {
        Arc::new(WatchHub {
            pool,
            tasks,
            state: Mutex::new(HubState::default()),
            next_id: AtomicU64::new(1),
            stats: WatchStats::default(),
            queue_hint,
        })
    }

    /// Adds a watcher: joins a live broadcast on the same range when its
    /// start revision allows, else opens a new one. Its `created` response
    /// is sent on `tx` once the upstream watch exists.
    pub fn add(
        self: &Arc<Self>,
        key: WatchKey,
        spec: WatcherSpec,
        tx: ClientTx,
        fwd: Forwarded,
    ) -> WatcherId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut hub = lock(&self.state);
        if let Some(b) = hub.shared.get(&key).cloned() {
            let mut st = lock(&b.state);
            let joinable = !st.closed
                && if st.created {
                    spec.start_revision == 0 || spec.start_revision > st.position
                } else {
                    spec.start_revision == 0 && b.initial_start == 0
                };
            if joinable {
                let mut w = Watcher {
                    spec,
                    tx,
                    next_rev: 0,
                    announced: false,
                    token: fwd.caller().token().cloned(),
                };
                if st.created {
                    w.next_rev = w.spec.start_revision.max(st.position + 1);
                    let created = WatchResponse {
                        header: st.header.map(|mut h| {
                            h.revision = st.position;
                            h
                        }),
                        watch_id: w.spec.watch_id,
                        created: true,
                        ..Default::default()
                    };
                    // Sent under the broadcast's lock, so it precedes every
                    // event for this watcher on the client's queue.
                    w.announced = w.tx.try_send(Ok(created.into())).is_ok();
                }
                if st.created && !w.announced {
                    // Client queue full: this watcher waits on its own stream.
                    drop(st);
                    drop(hub);
                    self.dedicated(id, w, b.key.clone(), b.fwd.clone(), true);
                    return WatcherId(id);
                }
                st.watchers.insert(id, w);
                drop(st);
                hub.owner.insert(id, b);
                self.stats
                    .watchers_coalescing
                    .fetch_add(1, Ordering::Relaxed);
                return WatcherId(id);
            }
        }
        let shared = spec.start_revision == 0 && !hub.shared.contains_key(&key);
        let start = spec.start_revision;
        let token = fwd.caller().token().cloned();
        let b = self.new_broadcast(key.clone(), shared, fwd, start);
        lock(&b.state).watchers.insert(
            id,
            Watcher {
                spec,
                tx,
                next_rev: 0,
                announced: false,
                token,
            },
        );
        if shared {
            hub.shared.insert(key, b.clone());
        }
        hub.owner.insert(id, b.clone());
        drop(hub);
        self.spawn(b);
        WatcherId(id)
    }

    /// Removes a watcher; the upstream watch closes with its last watcher.
    /// Returns whether it existed.
    pub fn remove(&self, id: WatcherId) -> bool {
        let b = lock(&self.state).owner.remove(&id.0);
        let Some(b) = b else { return false };
        let mut st = lock(&b.state);
        let existed = st.watchers.remove(&id.0).is_some();
        if st.watchers.is_empty() {
            drop(st);
            b.emptied.notify_one();
        }
        existed
    }

    /// The highest revision up to which every event of these watchers has
    /// been delivered, with a header to answer a progress request with.
    pub fn progress(&self, ids: &[WatcherId]) -> Option<ResponseHeader> {
        let hub = lock(&self.state);
        let mut out: Option<ResponseHeader> = None;
        for id in ids {
            let Some(b) = hub.owner.get(&id.0) else {
                continue;
            };
            let st = lock(&b.state);
            let Some(w) = st.watchers.get(&id.0) else {
                continue;
            };
            let rev = if w.next_rev > 0 {
                w.next_rev - 1
            } else {
                st.position
            };
            let mut h = st.header.unwrap_or_default();
            h.revision = rev;
            out = match out {
                Some(o) if o.revision <= rev => Some(o),
                _ => Some(h),
            };
        }
        out
    }

    /// Asks the member behind each broadcast serving these watchers for a
    /// progress answer. Each answer comes once that upstream stream has
    /// caught up (etcd 3.5+), with the member's header; every event up to
    /// its revision has then been handed to the watchers.
    pub fn request_progress(&self, ids: &[WatcherId]) -> Vec<oneshot::Receiver<ResponseHeader>> {
        let hub = lock(&self.state);
        let mut seen: Vec<*const Broadcast> = Vec::new();
        let mut answers = Vec::new();
        for id in ids {
            let Some(b) = hub.owner.get(&id.0) else {
                continue;
            };
            if seen.contains(&Arc::as_ptr(b)) {
                continue;
            }
            seen.push(Arc::as_ptr(b));
            let (tx, rx) = oneshot::channel();
            let mut st = lock(&b.state);
            // Requests given up on (etcd stays silent while a watcher is
            // behind) leave closed waiters: drop them rather than pile up.
            st.progress_waiters.retain(|w| !w.is_closed());
            st.progress_waiters.push(tx);
            if let Some(up) = &st.upstream {
                // A full queue already holds a progress request or a create
                // that precedes one: the answer covers this waiter too.
                let _ = up.try_send(progress_request());
            }
            answers.push(rx);
        }
        answers
    }

    /// Whether every one of these watchers has been handed every event up
    /// to `revision`, and none waits for a start revision beyond it: etcd's
    /// rule for answering a progress request.
    pub fn synced_through(&self, ids: &[WatcherId], revision: i64) -> bool {
        let hub = lock(&self.state);
        ids.iter().all(|id| {
            let Some(b) = hub.owner.get(&id.0) else {
                return true;
            };
            let st = lock(&b.state);
            let Some(w) = st.watchers.get(&id.0) else {
                return true;
            };
            w.announced && w.next_rev > revision && w.spec.start_revision <= revision
        })
    }

    fn new_broadcast(
        &self,
        key: WatchKey,
        shared: bool,
        fwd: Forwarded,
        start: i64,
    ) -> Arc<Broadcast> {
        Arc::new(Broadcast {
            key,
            shared,
            fwd,
            initial_start: start,
            state: Mutex::new(BroadcastState::default()),
            emptied: Notify::new(),
        })
    }

    fn spawn(self: &Arc<Self>, b: Arc<Broadcast>) {
        let hub = self.clone();
        let span = info_span!("upstream_watch", key = %String::from_utf8_lossy(&b.key.key), shared = b.shared);
        self.tasks.spawn(
            async move {
                hub.stats.upstream_watches.fetch_add(1, Ordering::Relaxed);
                hub.run_broadcast(&b).await;
                hub.stats.upstream_watches.fetch_sub(1, Ordering::Relaxed);
                hub.retire(&b);
            }
            .instrument(span),
        );
    }

    /// The owner of the proxy's tasks, for the client streams this hub serves.
    pub fn tasks(&self) -> &crate::tasks::Tasks {
        &self.tasks
    }

    /// Takes a finished broadcast out of the shared map; any watcher still
    /// in it (it joined as the broadcast ended) gets a fresh broadcast.
    fn retire(self: &Arc<Self>, b: &Arc<Broadcast>) {
        let mut hub = lock(&self.state);
        if hub.shared.get(&b.key).is_some_and(|x| Arc::ptr_eq(x, b)) {
            hub.shared.remove(&b.key);
        }
        let mut st = lock(&b.state);
        st.closed = true;
        let left: Vec<(u64, Watcher)> = st.watchers.drain().collect();
        drop(st);
        drop(hub);
        for (id, w) in left {
            self.move_to_dedicated(id, w, b);
        }
    }

    /// Gives watcher `id` its own upstream watch from its next revision.
    fn move_to_dedicated(self: &Arc<Self>, id: u64, w: Watcher, from: &Arc<Broadcast>) {
        self.dedicated(id, w, from.key.clone(), from.fwd.clone(), false);
    }

    /// Starts a dedicated broadcast for one watcher. `new` says the watcher
    /// is not registered yet (else it is only moved, unless canceled meanwhile).
    fn dedicated(self: &Arc<Self>, id: u64, w: Watcher, key: WatchKey, fwd: Forwarded, new: bool) {
        let start = if w.next_rev > 0 {
            w.next_rev
        } else {
            w.spec.start_revision
        };
        let b = self.new_broadcast(key, false, fwd, start);
        lock(&b.state).watchers.insert(id, w);
        let mut hub = lock(&self.state);
        if !new && !hub.owner.contains_key(&id) {
            return; // canceled meanwhile
        }
        hub.owner.insert(id, b.clone());
        drop(hub);
        self.spawn(b);
    }

    /// Keeps one upstream watch open for `b`, on whichever member is
    /// healthy, until its last watcher leaves or etcd cancels it.
    async fn run_broadcast(self: &Arc<Self>, b: &Arc<Broadcast>) {
        let session = BroadcastSession {
            hub: self.clone(),
            b: b.clone(),
        };
        resilient_stream::run(&self.pool, Choice::Balanced, "watch", session).await;
    }
}

mod deliver;
mod session;

use deliver::Flow;
use session::BroadcastSession;

#[cfg(test)]
mod tests;
