//! One client's watch stream: a task reads its requests in order and acts
//! on each. A create is bounded (per stream, per client), checked with a
//! member, then registered with the hub; a cancel takes the watcher out; a
//! progress request goes to the hub, or to the member when the stream has
//! no watchers. Answers the proxy makes itself (refusals, cancels) carry a
//! header as etcd's do.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use tracing::debug;

use crate::limits::{ClientId, ClientLimits, Permit};
use crate::metrics::prefixes::OpenWatcher;
use crate::metrics::Metrics;
use crate::proto::etcdserverpb::*;
use crate::services::ServiceDeps;
use crate::upstream::Forwarded;
use crate::watch::control::{ControlStream, CreateVerdict};
use crate::watch::hub::{Opener, WatchHub, WatchKey, WatcherId, WatcherSpec};
use crate::watch::shared_response::WatchOut;

use super::fragmenting::Fragmenting;
use super::progress::{run_progress, ProgressSlot};
use super::{permission, WatchService, NO_WATCH_ID};

/// One client's watch stream, as its request-reading task holds it.
pub(super) struct ClientStream {
    /// The client's own upstream stream, for permission checks and
    /// progress requests only a member can answer.
    control: ControlStream,
    hub: Arc<WatchHub>,
    deps: ServiceDeps,
    /// The client's metadata, with its token held once for all its watchers.
    opener: Opener,
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
    metrics: Arc<Metrics>,
    /// With `--metrics-prefixes`: the stream's watchers counted as open
    /// in their key's prefix, by watch id, until canceled or the stream ends.
    open: HashMap<i64, OpenWatcher>,
    /// The client's limits and name, with per-client limits on.
    client: Option<(Arc<ClientLimits>, ClientId)>,
    /// Each watcher's place in its client's watcher limit, given back on cancel.
    permits: HashMap<i64, Permit>,
}

impl ClientStream {
    /// The stream of one client of `service`: `fwd` is its metadata, `tx`
    /// its answer queue, `fragmenting` shared with its answer stream, and
    /// `client` its limits and name when per-client limits are on. Opens
    /// the client's control stream.
    pub(super) fn new(
        service: &WatchService,
        fwd: Forwarded,
        tx: mpsc::Sender<Result<WatchOut, Status>>,
        fragmenting: Fragmenting,
        client: Option<(Arc<ClientLimits>, ClientId)>,
    ) -> ClientStream {
        let control = ControlStream::new(
            service.deps.upstream.pool().clone(),
            fwd.clone(),
            tx.clone(),
            service.hub.tasks(),
        );
        ClientStream {
            control,
            hub: service.hub.clone(),
            deps: service.deps.clone(),
            opener: Opener::new(fwd),
            tx,
            ids: HashMap::new(),
            next_id: 0,
            fragmenting,
            progress: Arc::default(),
            max_watchers: service.max_watchers_per_stream,
            metrics: service.metrics.clone(),
            open: HashMap::new(),
            client,
            permits: HashMap::new(),
        }
    }

    /// Reads the client's requests until it leaves, the stream fails, or
    /// (with `hasleader` required) the cluster has no leader; then takes
    /// the stream's watchers out of the hub.
    pub(super) async fn run(mut self, mut inbound: Streaming<WatchRequest>) {
        let pool = self.deps.upstream.pool().clone();
        let required = crate::upstream::require_leader::requested(self.opener.metadata());
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
                    self.fragmenting.remove(cancel.watch_id);
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
        match permission::check(&self.control, &create, watch_id).await {
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
            self.fragmenting.insert(watch_id);
        }
        let key = WatchKey {
            key: create.key.clone(),
            range_end: create.range_end.clone(),
        };
        let spec = WatcherSpec::from_create(&create, watch_id);
        let id = self.hub.add(key, spec, self.tx.clone(), &self.opener);
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
}
