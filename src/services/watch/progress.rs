//! A client's progress requests on a stream with watchers, answered as etcd
//! answers them: with the store's revision once every watcher of the stream
//! has been handed every event up to it. The members behind the watchers'
//! broadcasts are asked through the hub; one run at a time per stream.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tonic::Status;
use tracing::debug;

use crate::proto::etcdserverpb::WatchResponse;
use crate::sync::lock;
use crate::watch::hub::{WatchHub, WatcherId};
use crate::watch::shared_response::WatchOut;

use super::NO_WATCH_ID;

/// At most one progress request in flight per client stream: requests that
/// arrive while one runs are covered by one more run after it (its revision
/// is read after they arrived, so each gets an answer at least as new as
/// etcd would give). A flood costs a flag, not a task and a wait per watcher.
#[derive(Default)]
pub(super) struct ProgressSlot {
    /// Whether a run is going, whether another is due, and for which watchers.
    state: Mutex<ProgressState>,
    /// Wakes a run waiting on members: a newer request starts it over with
    /// fresh upstream requests (a member drops one while a watcher is behind).
    renewed: tokio::sync::Notify,
}

/// What [`ProgressSlot`] guards.
#[derive(Default)]
struct ProgressState {
    running: bool,
    again: bool,
    ids: Vec<WatcherId>,
}

impl ProgressSlot {
    /// Notes a progress request for `ids`; true when the caller must start
    /// the runner (none is running).
    pub(super) fn request(&self, ids: Vec<WatcherId>) -> bool {
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
pub(super) async fn run_progress(
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
