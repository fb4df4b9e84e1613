//! The leasing watch: what other proxies' writes mean for the copies
//! this one holds, followed through a resilient stream.

use super::*;

impl Leasing {
    /// Follows every leasing key for session `lease`, moving to another
    /// member when its member fails and resuming after the last event seen;
    /// returns when etcd cancels the watch (compacted past it, say). While
    /// no watch is open nothing is served, and every copy held when a watch
    /// closes is dropped (it is acquired again on its next read).
    pub(super) async fn watch(&self, lease: i64) {
        let session = LeasingWatch {
            leasing: self,
            lease,
            position: None,
        };
        crate::upstream::resilient_stream::run(
            &self.pool,
            Choice::Balanced,
            "leasing watch",
            session,
        )
        .await;
    }

    /// What one leasing watch event means for the copies of session `lease`.
    fn apply(&self, lease: i64, ev: &crate::proto::mvccpb::Event) {
        let Some(kv) = &ev.kv else { return };
        let Some(key) = kv.key.strip_prefix(self.prefix.as_slice()) else {
            return;
        };
        if ev.r#type == EventType::Put as i32 {
            if !kv.value.is_empty() && kv.lease == lease {
                self.lose(key, Some(kv.create_revision));
                self.release_later(kv.key.clone(), kv.create_revision);
            }
        } else {
            match &ev.prev_kv {
                Some(prev) if prev.lease == lease => self.lose(key, Some(prev.create_revision)),
                Some(_) => {}
                None => self.lose(key, None),
            }
        }
    }

    /// The leasing watch closed: nothing is served until one is open
    /// again, and no copy held now is trusted after.
    fn stop_serving(&self) {
        let mut st = lock(&self.state);
        st.watching = false;
        st.owned.clear();
        st.lost.clear();
        st.generation += 1;
    }

    /// Our `<prefix>key` (of that incarnation) is going or gone: stop serving it.
    pub(super) fn lose(&self, key: &[u8], create_rev: Option<i64>) {
        let mut st = lock(&self.state);
        let ours = st
            .owned
            .get(key)
            .is_some_and(|o| create_rev.is_none_or(|r| r == o.create_rev));
        if ours {
            st.owned.remove(key);
            debug!(key = %String::from_utf8_lossy(key), "leased copy dropped");
        }
        if st.pending.contains_key(key) {
            st.lost
                .entry(key.to_vec())
                .or_default()
                .push(create_rev.unwrap_or(0));
        }
    }

    /// Deletes our leasing key (that incarnation only), in the background.
    fn release_later(&self, leasing_key: Vec<u8>, create_rev: i64) {
        let upstream = self.upstream.clone();
        let txn = self.release_txn(leasing_key, create_rev);
        self.tasks.spawn(async move {
            let r = upstream
                .unary::<_, TxnResponse>(
                    "/etcdserverpb.KV/Txn",
                    RetryPolicy::Idempotent,
                    Credentials::Own,
                    txn,
                )
                .await;
            if let Err(e) = r {
                warn!(error = %e, "could not release a revoked leasing key; it goes with the session lease");
            }
        });
    }

    pub(super) fn release_txn(&self, leasing_key: Vec<u8>, create_rev: i64) -> TxnRequest {
        TxnRequest {
            compare: vec![create_rev_is(leasing_key.clone(), Vec::new(), create_rev)],
            success: vec![op(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: leasing_key,
                    ..Default::default()
                },
            ))],
            failure: vec![],
        }
    }
}

/// The watch on the leasing prefix, as a resilient-stream session.
struct LeasingWatch<'a> {
    leasing: &'a Leasing,
    lease: i64,
    /// The revision through which every event has been applied.
    position: Option<i64>,
}

#[tonic::async_trait]
impl Session for LeasingWatch<'_> {
    type Message = WatchResponse;

    async fn open(
        &mut self,
        backend: &Arc<crate::upstream::Backend>,
        _reopened: bool,
    ) -> Result<tonic::Streaming<WatchResponse>, tonic::Status> {
        let l = self.leasing;
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: l.prefix.clone(),
                    range_end: crate::kv::namespace::prefix_end(&l.prefix),
                    start_revision: self.position.map_or(0, |p| p + 1),
                    prev_kv: true,
                    ..Default::default()
                },
            )),
        };
        let requests = futures::stream::iter(vec![create]).chain(futures::stream::pending());
        let mut client = WatchClient::new(backend.channel.clone())
            .max_decoding_message_size(l.upstream.max_recv());
        Ok(client
            .watch(l.pool.own_request(requests))
            .await?
            .into_inner())
    }

    async fn message(&mut self, resp: WatchResponse) -> Step {
        if resp.canceled {
            warn!(reason = %String::from_utf8_lossy(&resp.cancel_reason), "leasing watch cancelled");
            return Step::Stop;
        }
        if resp.created {
            if self.position.is_none() {
                // From now: every later event is above the creation's revision.
                self.position = resp.header.as_ref().map(|h| h.revision);
            }
            lock(&self.leasing.state).watching = true;
            debug!("leasing watch open");
        }
        for ev in &resp.events {
            self.leasing.apply(self.lease, ev);
            if let Some(kv) = &ev.kv {
                self.position = Some(self.position.unwrap_or(0).max(kv.mod_revision));
            }
        }
        Step::Continue
    }

    fn closed(&mut self) {
        self.leasing.stop_serving();
    }
}
