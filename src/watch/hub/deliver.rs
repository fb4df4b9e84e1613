//! Handing a broadcast's upstream responses to its watchers: filtering,
//! the split of a full watcher onto a dedicated watch, and the rejoin.

use std::sync::Arc;

use super::*;

/// How long a canceled broadcast waits for a client's queue to take the
/// cancel before giving that client up.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl WatchHub {
    /// The events of `resp` watcher `w` receives, in a response of its own
    /// (it starts partway through them, or filters puts or deletes);
    /// `None` when none is left for it.
    pub(super) fn filtered_for(
        &self,
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

    /// Hands one upstream response to every watcher of `b`.
    pub(super) async fn deliver(self: &Arc<Self>, b: &Arc<Broadcast>, resp: WatchResponse) -> Flow {
        let mut out: Vec<Outgoing> = Vec::new();
        let mut flow = Flow::More;
        // Watchers whose queue was full (split off) or whose client is gone.
        let mut slow: Vec<u64> = Vec::new();
        let mut gone: Vec<u64> = Vec::new();
        {
            let mut st = lock(&b.state);
            if resp.header.is_some() {
                st.header = resp.header;
            }
            let header_rev = resp.header.as_ref().map_or(0, |h| h.revision);
            if resp.canceled {
                // etcd ended the watch (compaction, permission...): every watcher hears it.
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
                flow = Flow::Done;
            } else if resp.created {
                if !st.created {
                    st.created = true;
                    st.position = if b.initial_start > 0 {
                        b.initial_start - 1
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
                        let r = WatchResponse {
                            header: resp.header,
                            watch_id: w.spec.watch_id,
                            created: true,
                            ..Default::default()
                        };
                        out.push(Outgoing {
                            id: *id,
                            tx: w.tx.clone(),
                            resp: Some(r.into()),
                            next: w.next_rev,
                            announces: true,
                        });
                    }
                }
            } else if resp.events.is_empty() {
                // Progress notification, or the answer to a progress
                // request: everything up to header_rev is delivered.
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
                            let r = WatchResponse {
                                header: resp.header,
                                watch_id: w.spec.watch_id,
                                ..Default::default()
                            };
                            out.push(Outgoing {
                                id: *id,
                                tx: w.tx.clone(),
                                resp: Some(r.into()),
                                next: w.next_rev,
                                announces: false,
                            });
                        }
                    }
                }
            } else {
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
                // Watchers that get every event unchanged share one encoding
                // (one with prev_kv, one without).
                let (mut with_prev, mut without_prev): (
                    Option<Arc<SharedView>>,
                    Option<Arc<SharedView>>,
                ) = (None, None);
                let shared = b.shared;
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
                        self.filtered_for(w, &resp, &mut receivers)
                    };
                    if !shared {
                        out.push(Outgoing {
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
                        Some(Err(mpsc::error::TrySendError::Full(_))) => slow.push(*id),
                        Some(Err(mpsc::error::TrySendError::Closed(_))) => gone.push(*id),
                    }
                }
                if receivers > 1 {
                    self.stats.events_coalescing.fetch_add(
                        resp.events.len() as u64 * (receivers - 1),
                        Ordering::Relaxed,
                    );
                }
            }
        }

        if flow == Flow::Done {
            {
                let mut hub = lock(&self.state);
                for o in &out {
                    hub.owner.remove(&o.id);
                }
            }
            // Each watcher hears the cancel as soon as its own queue has
            // room, never after another client's: the sends run side by
            // side, and a client that never reads is given up on.
            let sends = out.into_iter().filter_map(|o| {
                let r = o.resp?;
                Some(async move {
                    let _ = o.tx.send_timeout(Ok(r), CANCEL_WAIT).await;
                })
            });
            futures::future::join_all(sends).await;
            return flow;
        }

        let mut done: Vec<(u64, i64, bool)> = Vec::with_capacity(out.len());
        for o in out {
            let Some(r) = o.resp else {
                done.push((o.id, o.next, false));
                continue;
            };
            if b.shared {
                match o.tx.try_send(Ok(r)) {
                    Ok(()) => done.push((o.id, o.next, o.announces)),
                    Err(mpsc::error::TrySendError::Full(_)) => slow.push(o.id),
                    Err(mpsc::error::TrySendError::Closed(_)) => gone.push(o.id),
                }
            } else if o.tx.send(Ok(r)).await.is_ok() {
                done.push((o.id, o.next, o.announces));
            } else {
                gone.push(o.id);
            }
        }
        let mut detached = Vec::new();
        {
            let mut st = lock(&b.state);
            for (id, next, announced) in done {
                if let Some(w) = st.watchers.get_mut(&id) {
                    w.next_rev = w.next_rev.max(next);
                    w.announced |= announced;
                }
            }
            for id in gone {
                st.watchers.remove(&id);
            }
            for id in slow {
                if let Some(w) = st.watchers.remove(&id) {
                    detached.push((id, w));
                }
            }
        }
        for (id, w) in detached {
            debug!(
                watch_id = w.spec.watch_id,
                queue = self.queue_hint,
                "slow watcher split onto its own upstream watch"
            );
            self.move_to_dedicated(id, w, b);
        }
        if !b.shared {
            self.try_rejoin(b);
        }
        flow
    }

    /// A watcher on its own upstream watch (it started in the past, or was
    /// too slow) joins the shared broadcast on its range once it has caught
    /// up with it: from then on it costs no upstream watch of its own.
    /// Joining needs the shared stream to be no further than this one, so
    /// nothing between the two positions is missed; events the shared
    /// stream then sends at or below this position are skipped per watcher.
    /// (It is checked as events arrive: etcd 3.4 answers a progress request
    /// with its current revision even before history is replayed, so that
    /// answer cannot tell when a stream has caught up.)
    pub(super) fn try_rejoin(&self, b: &Arc<Broadcast>) {
        let mut hub = lock(&self.state);
        let Some(shared) = hub.shared.get(&b.key).cloned() else {
            return;
        };
        if Arc::ptr_eq(&shared, b) {
            return;
        }
        let mut mine = lock(&b.state);
        let mut theirs = lock(&shared.state);
        let ready = !theirs.closed
            && theirs.created
            && !mine.closed
            && mine.created
            && theirs.position <= mine.position
            && mine.watchers.values().all(|w| w.announced);
        if !ready || mine.watchers.is_empty() {
            return;
        }
        let position = mine.position;
        let moved: Vec<(u64, Watcher)> = mine.watchers.drain().collect();
        for (id, mut w) in moved {
            w.next_rev = w.next_rev.max(position + 1);
            debug!(
                watch_id = w.spec.watch_id,
                position, "caught-up watcher joins the shared upstream watch"
            );
            theirs.watchers.insert(id, w);
            hub.owner.insert(id, shared.clone());
            self.stats
                .watchers_coalescing
                .fetch_add(1, Ordering::Relaxed);
        }
        drop(theirs);
        drop(mine);
        drop(hub);
        b.emptied.notify_one();
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    More,
    Done,
}
