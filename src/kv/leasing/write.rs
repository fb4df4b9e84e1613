//! Writes under leasing: holders of what a write touches give their keys
//! up first.

use super::*;
use crate::kv::ranges::{self, KeyRange};

impl Leasing {
    /// Lists the leasing keys covering `ranges`, at one revision.
    async fn holders(&self, ranges: &[KeyRange]) -> Result<(Vec<KeyValue>, i64), ProxyError> {
        let reads = ranges
            .iter()
            .map(|(k, e)| {
                op(request_op::Request::RequestRange(RangeRequest {
                    key: k.clone(),
                    range_end: e.clone(),
                    ..Default::default()
                }))
            })
            .collect();
        let resp = self
            .own_txn(
                TxnRequest {
                    compare: vec![],
                    success: reads,
                    failure: vec![],
                },
                RetryPolicy::Idempotent,
            )
            .await?;
        let mut seen = HashSet::new();
        let mut kvs = Vec::new();
        for r in resp.responses {
            if let Some(response_op::Response::ResponseRange(r)) = r.response {
                for kv in r.kvs {
                    if seen.insert(kv.key.clone()) {
                        kvs.push(kv);
                    }
                }
            }
        }
        Ok((kvs, resp.header.map_or(0, |h| h.revision)))
    }

    /// Runs a write (the ops of `write`) once no other proxy holds a lease
    /// on what it writes: holders are asked to give their keys up, our own
    /// are dropped and released. Returns the outer Txn's answer; its first
    /// response is the write's. After waiting a session TTL for holders,
    /// the write goes ahead unguarded.
    pub async fn write(
        &self,
        below: &dyn Kv,
        fwd: &Forwarded,
        write: Vec<RequestOp>,
        touched: &[KeyRange],
    ) -> Result<TxnResponse, ProxyError> {
        let leasing_ranges: Vec<KeyRange> = touched
            .iter()
            .map(|(k, e)| self.leasing_range(k, e))
            .collect();
        let guards: Vec<Compare> = leasing_ranges
            .iter()
            .map(|(k, e)| create_rev_is(k.clone(), e.clone(), 0))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(SESSION_TTL_SECS as u64);
        let mut guarded = true;
        loop {
            {
                let mut st = lock(&self.state);
                st.owned
                    .retain(|k, _| !touched.iter().any(|(s, e)| ranges::contains(s, e, k)));
            }
            let compare = if guarded { guards.clone() } else { Vec::new() };
            let txn = TxnRequest {
                compare,
                success: write.clone(),
                failure: vec![],
            };
            let resp = self.client_txn(below, fwd, txn).await?;
            if resp.succeeded {
                return Ok(resp);
            }
            let (holders, rev) = self.holders(&leasing_ranges).await?;
            let lease = lock(&self.state).session.map(|(l, _)| l);
            let mut wait = Vec::new();
            for kv in holders {
                let Some(key) = kv.key.strip_prefix(self.prefix.as_slice()) else {
                    continue;
                };
                if Some(kv.lease) == lease {
                    self.lose(key, Some(kv.create_revision));
                    let _ = self
                        .own_txn(
                            self.release_txn(kv.key.clone(), kv.create_revision),
                            RetryPolicy::Idempotent,
                        )
                        .await;
                    continue;
                }
                if kv.value.is_empty() {
                    let mark = TxnRequest {
                        compare: vec![create_rev_is(
                            kv.key.clone(),
                            Vec::new(),
                            kv.create_revision,
                        )],
                        success: vec![op(request_op::Request::RequestPut(PutRequest {
                            key: kv.key.clone(),
                            value: REVOKE.to_vec(),
                            ignore_lease: true,
                            ..Default::default()
                        }))],
                        failure: vec![],
                    };
                    self.own_txn(mark, RetryPolicy::UnlessApplied).await?;
                }
                wait.push(kv.key);
            }
            if !wait.is_empty() && !self.wait_deleted(wait, rev + 1, deadline).await {
                if Instant::now() >= deadline {
                    warn!("a leasing key holder did not give its key up in time; writing anyway");
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            if Instant::now() >= deadline {
                guarded = false;
            }
        }
    }

    /// Waits until every key in `keys` is deleted at or after `from`;
    /// false when `deadline` came first.
    async fn wait_deleted(&self, keys: Vec<Vec<u8>>, from: i64, deadline: Instant) -> bool {
        let Some(backend) = self.pool.pick(&[]) else {
            return false;
        };
        let mut left: HashSet<Vec<u8>> = keys.iter().cloned().collect();
        let creates: Vec<WatchRequest> = keys
            .into_iter()
            .map(|key| WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(
                    WatchCreateRequest {
                        key,
                        start_revision: from,
                        filters: vec![watch_create_request::FilterType::Noput as i32],
                        ..Default::default()
                    },
                )),
            })
            .collect();
        let requests = futures::stream::iter(creates).chain(futures::stream::pending());
        let mut client = WatchClient::new(backend.channel.clone())
            .max_decoding_message_size(self.upstream.max_recv());
        let waiting = async {
            let mut stream = client
                .watch(self.pool.own_request(requests))
                .await
                .ok()?
                .into_inner();
            while let Ok(Some(resp)) = stream.message().await {
                if resp.canceled {
                    return None;
                }
                for ev in resp.events {
                    if let Some(kv) = ev.kv {
                        left.remove(&kv.key);
                    }
                }
                if left.is_empty() {
                    return Some(());
                }
            }
            None
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        matches!(tokio::time::timeout(remaining, waiting).await, Ok(Some(())))
    }
}
