//! The watch hub: every watcher of the proxy, each in one *broadcast*
//! (`broadcast.rs`), and the map of shared broadcasts by key range.
//! Watchers on the same (key, range_end) share one upstream watch.
//!
//! The hub decides which broadcast a watcher is in, and moves it:
//! - a watcher asking for history older than a broadcast's position gets a
//!   dedicated upstream watch from its start revision;
//! - a watcher whose client stream is full is split off onto a dedicated
//!   upstream watch from its `next_rev` (nothing dropped, nobody stalled),
//!   and rejoins the shared broadcast once caught up;
//! - when the member serving a broadcast dies or leaves rotation, the
//!   broadcast re-opens on another member from `position + 1` (its
//!   session), so watchers see no error, no gap and no duplicate.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tonic::metadata::AsciiMetadataValue;
use tonic::Status;
use tracing::{debug, info_span, Instrument};

use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use crate::upstream::resilient_stream::{self, Choice};
use crate::upstream::Forwarded;
use crate::upstream::Pool;

use super::broadcast::{Broadcast, Fanout, Join, Watcher};
use super::session::BroadcastSession;
use super::shared_response::WatchOut;

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

/// Who opens watchers: a client stream's metadata, and its token held once
/// and shared by every watcher of the stream (a watcher keeps the token so
/// its broadcast can re-open under it; a copy per watcher would cost 32
/// bytes each, a million times over).
#[derive(Clone)]
pub struct Opener {
    fwd: Forwarded,
    token: Option<Arc<AsciiMetadataValue>>,
}

impl Opener {
    /// The opener of a stream whose client sent `fwd`.
    pub fn new(fwd: Forwarded) -> Opener {
        let token = fwd.caller().token().cloned().map(Arc::new);
        Opener { fwd, token }
    }

    /// The client's metadata (for `hasleader`, say).
    pub fn metadata(&self) -> &tonic::metadata::MetadataMap {
        self.fwd.metadata()
    }
}

/// What one client asked for in its create request.
#[derive(Debug, Clone, Default)]
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

/// A handle a client stream keeps per watch, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WatcherId(u64);

/// Whether a broadcast's upstream watch goes on after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// It does.
    More,
    /// etcd canceled it: every watcher has been told.
    Done,
}

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
        opener: &Opener,
    ) -> WatcherId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let token = opener.token.clone();
        let mut hub = lock(&self.state);
        let (spec, tx) = match hub.shared.get(&key).cloned() {
            None => (spec, tx),
            Some(b) => match b.join(id, spec, tx, token.clone()) {
                Join::Joined => {
                    hub.owner.insert(id, b);
                    self.stats
                        .watchers_coalescing
                        .fetch_add(1, Ordering::Relaxed);
                    return WatcherId(id);
                }
                Join::Full(w) => {
                    // Client queue full: this watcher waits on its own stream.
                    drop(hub);
                    self.dedicated(id, w, b.key.clone(), b.fwd.clone(), true);
                    return WatcherId(id);
                }
                Join::Refused(spec, tx) => (spec, tx),
            },
        };
        let shared = spec.start_revision == 0 && !hub.shared.contains_key(&key);
        let start = spec.start_revision;
        let b = Broadcast::new(key.clone(), shared, opener.fwd.clone(), start);
        b.insert(id, Watcher::new(spec, tx, token));
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
        b.remove(id.0)
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
            let Some(h) = b.progress_of(id.0) else {
                continue;
            };
            out = match out {
                Some(o) if o.revision <= h.revision => Some(o),
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
            answers.push(b.request_progress());
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
            b.synced_through(id.0, revision)
        })
    }

    /// The owner of the proxy's tasks, for the client streams this hub serves.
    pub fn tasks(&self) -> &crate::tasks::Tasks {
        &self.tasks
    }

    /// The member pool the broadcasts' upstream watches run on.
    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Hands one upstream response of `b` to its watchers, then moves the
    /// ones whose queue was full onto upstream watches of their own, and a
    /// dedicated broadcast's watchers back to the shared one once caught up.
    pub(super) async fn deliver(self: &Arc<Self>, b: &Arc<Broadcast>, resp: WatchResponse) -> Flow {
        let sends = match Fanout::plan(b, resp, &self.stats) {
            Fanout::Going(sends) => sends,
            Fanout::Canceled(cancels) => {
                {
                    let mut hub = lock(&self.state);
                    for id in cancels.watchers() {
                        hub.owner.remove(&id);
                    }
                }
                cancels.send().await;
                return Flow::Done;
            }
        };
        let detached = sends.send(b.shared).await.settle(b);
        for (id, w) in detached {
            debug!(
                watch_id = w.watch_id(),
                queue = self.queue_hint,
                "slow watcher split onto its own upstream watch"
            );
            self.move_to_dedicated(id, w, b);
        }
        if !b.shared {
            self.try_rejoin(b);
        }
        Flow::More
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

    /// Keeps one upstream watch open for `b`, on whichever member is
    /// healthy, until its last watcher leaves or etcd cancels it.
    async fn run_broadcast(self: &Arc<Self>, b: &Arc<Broadcast>) {
        let session = BroadcastSession {
            hub: self.clone(),
            b: b.clone(),
        };
        resilient_stream::run(&self.pool, Choice::Balanced, "watch", session).await;
    }

    /// Takes a finished broadcast out of the shared map; any watcher still
    /// in it (it joined as the broadcast ended) gets a fresh broadcast.
    fn retire(self: &Arc<Self>, b: &Arc<Broadcast>) {
        let mut hub = lock(&self.state);
        if hub.shared.get(&b.key).is_some_and(|x| Arc::ptr_eq(x, b)) {
            hub.shared.remove(&b.key);
        }
        let left = b.close();
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
        let b = Broadcast::new(key, false, fwd, w.resume_from());
        b.insert(id, w);
        let mut hub = lock(&self.state);
        if !new && !hub.owner.contains_key(&id) {
            return; // canceled meanwhile
        }
        hub.owner.insert(id, b.clone());
        drop(hub);
        self.spawn(b);
    }

    /// A watcher on its own upstream watch (it started in the past, or was
    /// too slow) joins the shared broadcast on its range once it has caught
    /// up with it ([`Broadcast::hand_over`]): from then on it costs no
    /// upstream watch of its own. (It is checked as events arrive: etcd 3.4
    /// answers a progress request with its current revision even before
    /// history is replayed, so that answer cannot tell when a stream has
    /// caught up.)
    fn try_rejoin(&self, b: &Arc<Broadcast>) {
        let mut hub = lock(&self.state);
        let Some(shared) = hub.shared.get(&b.key).cloned() else {
            return;
        };
        if Arc::ptr_eq(&shared, b) {
            return;
        }
        let moved = b.hand_over(&shared);
        if moved.is_empty() {
            return;
        }
        for id in moved {
            hub.owner.insert(id, shared.clone());
            self.stats
                .watchers_coalescing
                .fetch_add(1, Ordering::Relaxed);
        }
        drop(hub);
        b.notify_emptied();
    }
}

#[cfg(test)]
mod tests;
