//! The coherence watch: one token-less watch over the whole key space,
//! through the [`WatchHub`] so it fails over like any client's, whose
//! events invalidate entries and move the applied revision on. A probe
//! once a second turns the cache off when etcd enables auth (the watch
//! alone would not say so).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, info_span, Instrument};

use super::RangeCache;
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse};
use crate::upstream::Forwarded;
use crate::upstream::RetryPolicy;
use crate::upstream::{Credentials, Upstream};
use crate::watch::hub::{Opener, WatchHub, WatchKey, WatcherSpec};

impl RangeCache {
    /// Follows every change in the cluster until dropped: keeps one watch
    /// over the whole key space open through `hub` and applies its events.
    pub async fn follow(self: Arc<Self>, hub: Arc<WatchHub>, upstream: Upstream) {
        if self.limits.max_entries == 0 {
            return;
        }
        async move {
            loop {
                self.follow_once(&hub, &upstream).await;
                self.set_active(false);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        .instrument(info_span!("range_cache"))
        .await
    }

    async fn follow_once(&self, hub: &Arc<WatchHub>, upstream: &Upstream) {
        let (tx, mut rx) = mpsc::channel(1024);
        let spec = WatcherSpec {
            watch_id: 0,
            start_revision: 0,
            prev_kv: false,
            progress_notify: true,
            no_put: false,
            no_delete: false,
        };
        let everything = WatchKey {
            key: vec![0],
            range_end: vec![0],
        };
        let (anonymous, ()) = Forwarded::split(tonic::Request::new(()));
        let id = hub.add(everything, spec, tx, &Opener::new(anonymous));
        let _remove = WatcherGuard(hub.clone(), id);
        let mut auth_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(Ok(out)) = msg else { return };
                    let resp = out.response();
                    if resp.canceled || resp.compact_revision != 0 {
                        debug!(reason = %String::from_utf8_lossy(&resp.cancel_reason), "cache watch ended");
                        return;
                    }
                    if resp.created {
                        let rev = resp.header.as_ref().map_or(0, |h| h.revision);
                        self.floor.fetch_max(rev, Ordering::AcqRel);
                        self.set_active(true);
                        self.applied.send_replace(rev);
                        continue;
                    }
                    for ev in resp.events.iter() {
                        if let Some(kv) = &ev.kv {
                            self.invalidate(&kv.key, &[], kv.mod_revision);
                        }
                    }
                    if let Some(h) = &resp.header {
                        self.floor.fetch_max(h.revision, Ordering::AcqRel);
                        // A catching-up watch may carry the current revision
                        // in its header while more events follow: count as
                        // applied only up to the last event it brought.
                        let upto = resp.events.iter().filter_map(|e| e.kv.as_ref()).map(|kv| kv.mod_revision).max().unwrap_or(h.revision);
                        self.applied.send_if_modified(|r| {
                            let newer = upto > *r;
                            *r = (*r).max(upto);
                            newer
                        });
                    }
                }
                _ = auth_check.tick() => {
                    if auth_enabled(upstream).await {
                        debug!("auth is enabled: range cache off");
                        return;
                    }
                }
            }
        }
    }
}

/// Removes the cache's watcher from the hub when the follow loop ends.
struct WatcherGuard(Arc<WatchHub>, crate::watch::hub::WatcherId);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

/// Whether etcd refuses a read without a token (auth enabled). Unreachable
/// members count as "not known to be enabled": the watch decides then.
async fn auth_enabled(upstream: &Upstream) -> bool {
    let probe = RangeRequest {
        key: vec![0],
        count_only: true,
        serializable: true,
        limit: 1,
        ..Default::default()
    };
    let answer = upstream
        .unary::<_, RangeResponse>(
            "/etcdserverpb.KV/Range",
            RetryPolicy::Idempotent,
            Credentials::Anonymous,
            probe,
        )
        .await;
    match answer {
        Ok(_) => false,
        Err(e) => {
            let status = tonic::Status::from(e);
            matches!(
                status.code(),
                tonic::Code::InvalidArgument
                    | tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated
            )
        }
    }
}
