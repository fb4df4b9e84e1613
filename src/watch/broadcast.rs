//! A broadcast: one upstream watch of a key range (opened with prev_kv and
//! progress notify) and the watchers it serves. A shared broadcast serves
//! every watcher of its range that starts from now; a dedicated one serves
//! a single watcher that asked for history or fell behind.
//!
//! Each watcher remembers `next_rev`, the first revision it has not been
//! given yet, and the broadcast its `position`, the revision up to which
//! every event has been handed out. Those two numbers are what joining,
//! leaving, progress answers and handing watchers over to another
//! broadcast keep right. Handing out one upstream response is
//! [`fanout`]'s job; which broadcast a watcher is in is the hub's.

mod fanout;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, Notify};
use tonic::metadata::AsciiMetadataValue;
use tracing::debug;

use crate::proto::etcdserverpb::{ResponseHeader, WatchRequest, WatchResponse};
use crate::sync::lock;
use crate::upstream::{Forwarded, Pool};

use super::hub::{ClientTx, WatchKey, WatcherSpec};
use super::progress_request;

pub(super) use fanout::Fanout;

/// One client's watch inside a broadcast: what it asked for, where its
/// responses go, and how far it has been served.
pub(super) struct Watcher {
    spec: WatcherSpec,
    tx: ClientTx,
    /// First revision not yet delivered; 0 until the broadcast is created.
    next_rev: i64,
    /// Whether the client has had its `created` response.
    announced: bool,
    /// The client's token, so the upstream watch can be re-opened under a
    /// watcher still present when its opener has gone (or its token expired);
    /// one copy per client stream, shared by its watchers.
    token: Option<Arc<AsciiMetadataValue>>,
}

impl Watcher {
    /// A watcher its client has not heard of yet, with nothing delivered.
    pub(super) fn new(
        spec: WatcherSpec,
        tx: ClientTx,
        token: Option<Arc<AsciiMetadataValue>>,
    ) -> Watcher {
        Watcher {
            spec,
            tx,
            next_rev: 0,
            announced: false,
            token,
        }
    }

    /// Where an upstream watch of its own starts: its next revision, or
    /// the start revision it asked for if nothing was delivered yet.
    pub(super) fn resume_from(&self) -> i64 {
        if self.next_rev > 0 {
            self.next_rev
        } else {
            self.spec.start_revision
        }
    }

    /// The id the client knows this watch by, for logs.
    pub(super) fn watch_id(&self) -> i64 {
        self.spec.watch_id
    }
}

/// One upstream watch of a key range and the watchers it serves.
pub(super) struct Broadcast {
    /// The range watched.
    pub(super) key: WatchKey,
    /// Shared broadcasts never wait on one client; dedicated ones may.
    pub(super) shared: bool,
    /// Metadata (auth token) of the client that opened it; see
    /// [`Broadcast::credentials`] for what a (re)open carries.
    pub(super) fwd: Forwarded,
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

/// What became of a watcher offered to a live broadcast ([`Broadcast::join`]).
pub(super) enum Join {
    /// It is in.
    Joined,
    /// Its client's queue had no room for the `created` answer: it must
    /// wait on an upstream watch of its own.
    Full(Watcher),
    /// The broadcast cannot take it (closed, or already past the start
    /// revision it asked for): its request is handed back.
    Refused(WatcherSpec, ClientTx),
}

impl Broadcast {
    /// A broadcast of `key` without watchers, its upstream watch not yet
    /// open; the first open starts at `start` (0 = now).
    pub(super) fn new(key: WatchKey, shared: bool, fwd: Forwarded, start: i64) -> Arc<Broadcast> {
        Arc::new(Broadcast {
            key,
            shared,
            fwd,
            initial_start: start,
            state: Mutex::new(BroadcastState::default()),
            emptied: Notify::new(),
        })
    }

    /// Puts watcher `id` in: a new broadcast's first watcher, or one moved here.
    pub(super) fn insert(&self, id: u64, w: Watcher) {
        lock(&self.state).watchers.insert(id, w);
    }

    /// Offers a new watcher to this broadcast, which takes it when its start
    /// revision allows. Once the upstream watch exists the watcher's
    /// `created` answer is sent at once, under the broadcast's lock, so it
    /// precedes every event for this watcher on the client's queue.
    pub(super) fn join(
        &self,
        id: u64,
        spec: WatcherSpec,
        tx: ClientTx,
        token: Option<Arc<AsciiMetadataValue>>,
    ) -> Join {
        let mut st = lock(&self.state);
        let joinable = !st.closed
            && if st.created {
                spec.start_revision == 0 || spec.start_revision > st.position
            } else {
                spec.start_revision == 0 && self.initial_start == 0
            };
        if !joinable {
            return Join::Refused(spec, tx);
        }
        let mut w = Watcher::new(spec, tx, token);
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
            w.announced = w.tx.try_send(Ok(created.into())).is_ok();
            if !w.announced {
                return Join::Full(w);
            }
        }
        st.watchers.insert(id, w);
        Join::Joined
    }

    /// Takes watcher `id` out; the last one out wakes the upstream watch,
    /// which then closes. Returns whether it was here.
    pub(super) fn remove(&self, id: u64) -> bool {
        let mut st = lock(&self.state);
        let existed = st.watchers.remove(&id).is_some();
        if st.watchers.is_empty() {
            drop(st);
            self.emptied.notify_one();
        }
        existed
    }

    /// The revision up to which watcher `id` has been handed every event,
    /// in a header to answer a progress request with; `None` if it is not here.
    pub(super) fn progress_of(&self, id: u64) -> Option<ResponseHeader> {
        let st = lock(&self.state);
        let w = st.watchers.get(&id)?;
        let rev = if w.next_rev > 0 {
            w.next_rev - 1
        } else {
            st.position
        };
        let mut h = st.header.unwrap_or_default();
        h.revision = rev;
        Some(h)
    }

    /// Asks the member behind the upstream watch for a progress answer;
    /// the header arrives once that stream has caught up.
    pub(super) fn request_progress(&self) -> oneshot::Receiver<ResponseHeader> {
        let (tx, rx) = oneshot::channel();
        let mut st = lock(&self.state);
        // Requests given up on (etcd stays silent while a watcher is
        // behind) leave closed waiters: drop them rather than pile up.
        st.progress_waiters.retain(|w| !w.is_closed());
        st.progress_waiters.push(tx);
        if let Some(up) = &st.upstream {
            // A full queue already holds a progress request or a create
            // that precedes one: the answer covers this waiter too.
            let _ = up.try_send(progress_request());
        }
        rx
    }

    /// Whether watcher `id` (if still here) has been handed every event up
    /// to `revision` and waits for no start revision beyond it.
    pub(super) fn synced_through(&self, id: u64, revision: i64) -> bool {
        let st = lock(&self.state);
        let Some(w) = st.watchers.get(&id) else {
            return true;
        };
        w.announced && w.next_rev > revision && w.spec.start_revision <= revision
    }

    /// Marks the broadcast over and takes out the watchers still in it
    /// (they joined as it ended), for the hub to place elsewhere.
    pub(super) fn close(&self) -> Vec<(u64, Watcher)> {
        let mut st = lock(&self.state);
        st.closed = true;
        st.watchers.drain().collect()
    }

    /// Moves every watcher of this (dedicated) broadcast to `to`, the shared
    /// one of the same range, once this one has caught up with it: `to` must
    /// be no further than this one, so nothing between the two positions is
    /// missed; events `to` then sends at or below this position are skipped
    /// per watcher. Returns the ids moved (none when not ready).
    pub(super) fn hand_over(&self, to: &Broadcast) -> Vec<u64> {
        let mut mine = lock(&self.state);
        let mut theirs = lock(&to.state);
        let ready = !theirs.closed
            && theirs.created
            && !mine.closed
            && mine.created
            && theirs.position <= mine.position
            && mine.watchers.values().all(|w| w.announced);
        if !ready || mine.watchers.is_empty() {
            return Vec::new();
        }
        let position = mine.position;
        let moved: Vec<(u64, Watcher)> = mine.watchers.drain().collect();
        let mut ids = Vec::with_capacity(moved.len());
        for (id, mut w) in moved {
            w.next_rev = w.next_rev.max(position + 1);
            debug!(
                watch_id = w.spec.watch_id,
                position, "caught-up watcher joins the shared upstream watch"
            );
            theirs.watchers.insert(id, w);
            ids.push(id);
        }
        ids
    }

    /// Wakes the upstream watch to see whether any watcher is left.
    pub(super) fn notify_emptied(&self) {
        self.emptied.notify_one();
    }

    /// Waits until the last watcher may have left.
    pub(super) async fn emptied(&self) {
        self.emptied.notified().await;
    }

    /// Whether no watcher is left: the upstream watch then closes.
    pub(super) fn is_empty(&self) -> bool {
        lock(&self.state).watchers.is_empty()
    }

    /// The revision a (re)open of the upstream watch starts from: just past
    /// the position once created, so a re-open leaves no gap and no
    /// duplicate; else the first open's start.
    pub(super) fn open_from(&self) -> i64 {
        let st = lock(&self.state);
        if st.created {
            st.position + 1
        } else {
            self.initial_start
        }
    }

    /// Keeps the requests side of a newly opened upstream stream, for
    /// progress requests; one still waiting is sent on it now.
    pub(super) fn attach(&self, requests: mpsc::Sender<WatchRequest>) {
        let mut st = lock(&self.state);
        if !st.progress_waiters.is_empty() {
            let _ = requests.try_send(progress_request());
        }
        st.upstream = Some(requests);
    }

    /// Forgets the upstream stream, which has closed (between members).
    pub(super) fn detach(&self) {
        lock(&self.state).upstream = None;
    }

    /// What the upstream watch is (re)opened under: the proxy's own user
    /// when it has one; else the token of the newest watcher still present
    /// (the opener may have gone and its token expired, and every watcher
    /// was checked for the range before joining); else the opener's.
    pub(super) fn credentials(&self, pool: &Pool) -> Forwarded {
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
            Some((_, w)) => self.fwd.with_token(w.token.as_deref()),
            None => self.fwd.clone(),
        }
    }
}

#[cfg(test)]
impl Broadcast {
    /// How many watchers are in it now.
    pub(super) fn watcher_count(&self) -> usize {
        lock(&self.state).watchers.len()
    }
}

#[cfg(test)]
mod tests;
