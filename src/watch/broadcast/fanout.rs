//! One upstream response handed to each watcher of a broadcast.
//!
//! What each watcher gets (a `created`, a progress notification, the cancel,
//! the events shared with every watcher that takes them unchanged, or a
//! filtered copy of its own) is decided under the broadcast's lock, which
//! also moves its position and the watchers' next revisions on. A shared
//! broadcast sends events right there with `try_send`: it never waits for
//! one client, and a full queue marks its watcher slow (the hub moves it
//! onto an upstream watch of its own). Everything else is sent after the
//! lock is released, then settled back under it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc::error::TrySendError;

use crate::proto::etcdserverpb::WatchResponse;
use crate::proto::mvccpb::event::EventType;
use crate::sync::lock;
use crate::watch::hub::{ClientTx, WatchStats};
use crate::watch::shared_response::{SharedView, WatchOut};

use super::{Broadcast, BroadcastState, Watcher};

/// etcd's watch id for answers meant for a whole stream (progress answers).
const STREAM_WIDE: i64 = -1;

/// How long a canceled broadcast waits for a client's queue to take the
/// cancel before giving that client up.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What one upstream response means for the watchers of a broadcast.
pub(in crate::watch) enum Fanout {
    /// etcd ended the upstream watch (compaction, permission...): every
    /// watcher is taken out and hears the cancel.
    Canceled(Cancels),
    /// The upstream watch goes on; these responses are left to send.
    Going(Sends),
}

/// One response for one watcher, and what delivering it means for its state.
struct Outgoing {
    id: u64,
    tx: ClientTx,
    /// `None`: nothing to send (all events filtered), only advance `next`.
    resp: Option<WatchOut>,
    next: i64,
    announces: bool,
}

/// The cancel of an upstream watch, for each watcher it served.
pub(in crate::watch) struct Cancels(Vec<Outgoing>);

/// Responses left to send after the broadcast's lock is released, and the
/// watchers already found slow or gone while sending under it.
#[derive(Default)]
pub(in crate::watch) struct Sends {
    out: Vec<Outgoing>,
    slow: Vec<u64>,
    gone: Vec<u64>,
}

/// What sending found, to be settled under the broadcast's lock.
pub(in crate::watch) struct Sent {
    /// Each watcher served: its next revision, and whether it now has its `created`.
    done: Vec<(u64, i64, bool)>,
    /// Watchers whose queue was full.
    slow: Vec<u64>,
    /// Watchers whose client is gone.
    gone: Vec<u64>,
}

impl Fanout {
    /// Decides what each watcher of `b` gets of `resp`, under `b`'s lock.
    pub(in crate::watch) fn plan(b: &Broadcast, resp: WatchResponse, stats: &WatchStats) -> Fanout {
        let mut st = lock(&b.state);
        if resp.header.is_some() {
            st.header = resp.header;
        }
        let header_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        if resp.canceled {
            return Fanout::Canceled(canceled(&mut st, &resp));
        }
        let mut sends = Sends::default();
        if resp.created {
            created(&mut st, b.initial_start, &resp, header_rev, &mut sends);
        } else if resp.events.is_empty() {
            progressed(&mut st, &resp, header_rev, &mut sends);
        } else {
            events(&mut st, b.shared, &resp, stats, &mut sends);
        }
        Fanout::Going(sends)
    }
}

/// Every watcher taken out, each to hear the cancel.
fn canceled(st: &mut BroadcastState, resp: &WatchResponse) -> Cancels {
    let mut out = Vec::with_capacity(st.watchers.len());
    for (id, w) in st.watchers.drain() {
        let mut r = resp.clone();
        r.watch_id = w.spec.watch_id;
        r.created = !w.announced;
        out.push(Outgoing {
            id,
            tx: w.tx,
            resp: Some(r.into()),
            next: 0,
            announces: false,
        });
    }
    st.closed = true;
    Cancels(out)
}

/// The upstream watch exists (its first open starting at `initial_start`,
/// 0 = now): each watcher not yet announced gets its `created`.
fn created(
    st: &mut BroadcastState,
    initial_start: i64,
    resp: &WatchResponse,
    header_rev: i64,
    sends: &mut Sends,
) {
    if !st.created {
        st.created = true;
        st.position = if initial_start > 0 {
            initial_start - 1
        } else {
            header_rev
        };
    }
    let position = st.position;
    for (id, w) in st.watchers.iter_mut() {
        if w.next_rev == 0 {
            w.next_rev = w.spec.start_revision.max(position + 1);
        }
        if !w.announced {
            sends.out.push(header_only(*id, w, resp, true));
        }
    }
}

/// A response with `resp`'s header and no events for watcher `w`: its
/// `created` answer (`announces`), or a progress notification.
fn header_only(id: u64, w: &Watcher, resp: &WatchResponse, announces: bool) -> Outgoing {
    let r = WatchResponse {
        header: resp.header,
        watch_id: w.spec.watch_id,
        created: announces,
        ..Default::default()
    };
    Outgoing {
        id,
        tx: w.tx.clone(),
        resp: Some(r.into()),
        next: w.next_rev,
        announces,
    }
}

/// A progress notification, or the answer to a progress request: every
/// event up to `header_rev` is delivered.
fn progressed(st: &mut BroadcastState, resp: &WatchResponse, header_rev: i64, sends: &mut Sends) {
    st.position = st.position.max(header_rev);
    let answer = resp.watch_id == STREAM_WIDE;
    if let Some(h) = resp.header {
        for waiter in st.progress_waiters.drain(..) {
            let _ = waiter.send(h);
        }
    }
    for (id, w) in st.watchers.iter_mut() {
        if w.announced && w.next_rev <= header_rev + 1 {
            w.next_rev = header_rev + 1;
            // An answer to a request is the requester's alone.
            if w.spec.progress_notify && !answer {
                sends.out.push(header_only(*id, w, resp, false));
            }
        }
    }
}

/// Events: watchers that get every one unchanged share one encoding (one
/// with prev_kv, one without); the others get a filtered copy of their own.
fn events(
    st: &mut BroadcastState,
    shared: bool,
    resp: &WatchResponse,
    stats: &WatchStats,
    sends: &mut Sends,
) {
    let last = resp
        .events
        .last()
        .and_then(|e| e.kv.as_ref())
        .map_or(0, |kv| kv.mod_revision);
    let first = resp
        .events
        .first()
        .and_then(|e| e.kv.as_ref())
        .map_or(0, |kv| kv.mod_revision);
    let carries_prev_kv = resp.events.iter().any(|e| e.prev_kv.is_some());
    st.position = st.position.max(last);
    let mut receivers = 0u64;
    let (mut with_prev, mut without_prev): (Option<Arc<SharedView>>, Option<Arc<SharedView>>) =
        (None, None);
    for (id, w) in st.watchers.iter_mut() {
        let next = w.next_rev.max(last + 1);
        let r = if w.next_rev <= first && !w.spec.no_put && !w.spec.no_delete {
            let view = if w.spec.prev_kv || !carries_prev_kv {
                with_prev.get_or_insert_with(|| {
                    SharedView::new(WatchResponse {
                        header: resp.header,
                        events: resp.events.clone(),
                        ..Default::default()
                    })
                })
            } else {
                without_prev.get_or_insert_with(|| {
                    let mut events = resp.events.clone();
                    for e in &mut events {
                        e.prev_kv = None;
                    }
                    SharedView::new(WatchResponse {
                        header: resp.header,
                        events,
                        ..Default::default()
                    })
                })
            };
            receivers += 1;
            Some(WatchOut::Shared {
                watch_id: w.spec.watch_id,
                view: view.clone(),
            })
        } else {
            filtered_for(w, resp, &mut receivers)
        };
        if !shared {
            sends.out.push(Outgoing {
                id: *id,
                tx: w.tx.clone(),
                resp: r,
                next,
                announces: false,
            });
            continue;
        }
        // A shared broadcast never waits for one client: sent
        // here, under the lock, without queuing a copy first.
        match r.map(|r| w.tx.try_send(Ok(r))) {
            None | Some(Ok(())) => w.next_rev = w.next_rev.max(next),
            Some(Err(TrySendError::Full(_))) => sends.slow.push(*id),
            Some(Err(TrySendError::Closed(_))) => sends.gone.push(*id),
        }
    }
    if receivers > 1 {
        stats.events_coalescing.fetch_add(
            resp.events.len() as u64 * (receivers - 1),
            Ordering::Relaxed,
        );
    }
}

/// The events of `resp` watcher `w` receives, in a response of its own
/// (it starts partway through them, or filters puts or deletes);
/// `None` when none is left for it.
pub(super) fn filtered_for(
    w: &Watcher,
    resp: &WatchResponse,
    receivers: &mut u64,
) -> Option<WatchOut> {
    let events: Vec<_> = resp
        .events
        .iter()
        .filter(|e| {
            e.kv.as_ref()
                .is_some_and(|kv| kv.mod_revision >= w.next_rev)
        })
        .filter(|e| {
            let put = e.r#type == EventType::Put as i32;
            !(put && w.spec.no_put || !put && w.spec.no_delete)
        })
        .map(|e| {
            let mut e = e.clone();
            if !w.spec.prev_kv {
                e.prev_kv = None;
            }
            e
        })
        .collect();
    if events.is_empty() {
        return None;
    }
    *receivers += 1;
    Some(
        WatchResponse {
            header: resp.header,
            watch_id: w.spec.watch_id,
            events,
            ..Default::default()
        }
        .into(),
    )
}

impl Cancels {
    /// The watchers that hear the cancel (all that were in the broadcast).
    pub(in crate::watch) fn watchers(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|o| o.id)
    }

    /// Sends each watcher the cancel as soon as its own queue has room,
    /// never after another client's: the sends run side by side, and a
    /// client that never reads is given up on.
    pub(in crate::watch) async fn send(self) {
        let sends = self.0.into_iter().filter_map(|o| {
            let r = o.resp?;
            Some(async move {
                let _ = o.tx.send_timeout(Ok(r), CANCEL_WAIT).await;
            })
        });
        futures::future::join_all(sends).await;
    }
}

impl Sends {
    /// Sends what is left: `try_send` for a shared broadcast (a full queue
    /// marks its watcher slow), waiting for room for a dedicated one.
    pub(in crate::watch) async fn send(self, shared: bool) -> Sent {
        let Sends {
            out,
            mut slow,
            mut gone,
        } = self;
        let mut done: Vec<(u64, i64, bool)> = Vec::with_capacity(out.len());
        for o in out {
            let Some(r) = o.resp else {
                done.push((o.id, o.next, false));
                continue;
            };
            if shared {
                match o.tx.try_send(Ok(r)) {
                    Ok(()) => done.push((o.id, o.next, o.announces)),
                    Err(TrySendError::Full(_)) => slow.push(o.id),
                    Err(TrySendError::Closed(_)) => gone.push(o.id),
                }
            } else if o.tx.send(Ok(r)).await.is_ok() {
                done.push((o.id, o.next, o.announces));
            } else {
                gone.push(o.id);
            }
        }
        Sent { done, slow, gone }
    }
}

impl Sent {
    /// Records what was sent in `b`: watchers served move on, those whose
    /// client is gone are dropped, and the slow ones are taken out and
    /// returned, for the hub to give an upstream watch of their own.
    pub(in crate::watch) fn settle(self, b: &Broadcast) -> Vec<(u64, Watcher)> {
        let mut detached = Vec::new();
        let mut st = lock(&b.state);
        for (id, next, announced) in self.done {
            if let Some(w) = st.watchers.get_mut(&id) {
                w.next_rev = w.next_rev.max(next);
                w.announced |= announced;
            }
        }
        for id in self.gone {
            st.watchers.remove(&id);
        }
        for id in self.slow {
            if let Some(w) = st.watchers.remove(&id) {
                detached.push((id, w));
            }
        }
        detached
    }
}
