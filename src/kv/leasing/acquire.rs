//! Reads under leasing: a Get answered from the copy of a key this proxy
//! holds, or read in the Txn that tries to take the key's leasing key.

use super::*;

impl Leasing {
    /// A linearizable single-key Get through leasing: the held copy, or a
    /// read that also tries to acquire the key. `None`: not for leasing
    /// (the caller forwards it as usual).
    pub async fn get(
        &self,
        below: &dyn Kv,
        fwd: &Forwarded,
        req: &RangeRequest,
    ) -> Option<Result<RangeResponse, ProxyError>> {
        if !servable(req) || !fwd.caller().is_anonymous() {
            return None;
        }
        let (lease, generation) = {
            let mut st = lock(&self.state);
            let lease = st.usable_lease()?;
            if let Some(owned) = st.owned.get(&req.key) {
                return Some(Ok(owned.answer.clone()));
            }
            if st.owned.len() >= MAX_OWNED {
                // Holding more copies would grow memory with every new key
                // read: past the bound, reads go to etcd as without leasing.
                return None;
            }
            *st.pending.entry(req.key.clone()).or_default() += 1;
            (lease, st.generation)
        };
        let lk = self.leasing_key(&req.key);
        let read = op(request_op::Request::RequestRange(req.clone()));
        let read_lk = op(request_op::Request::RequestRange(RangeRequest {
            key: lk.clone(),
            ..Default::default()
        }));
        let txn = TxnRequest {
            compare: vec![create_rev_is(lk.clone(), Vec::new(), 0)],
            success: vec![
                op(request_op::Request::RequestPut(PutRequest {
                    key: lk,
                    lease,
                    ..Default::default()
                })),
                read.clone(),
                read_lk.clone(),
            ],
            failure: vec![read, read_lk],
        };
        let result = self.client_txn(below, fwd, txn).await;
        let mut st = lock(&self.state);
        let lost = match st.pending.get_mut(&req.key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                st.lost.get(&req.key).cloned().unwrap_or_default()
            }
            _ => {
                st.pending.remove(&req.key);
                st.lost.remove(&req.key).unwrap_or_default()
            }
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                debug!(error = %e, "leasing acquire failed; reading without a lease");
                return None;
            }
        };
        let mut ranges = resp.responses.into_iter().filter_map(|r| match r.response {
            Some(response_op::Response::ResponseRange(r)) => Some(r),
            _ => None,
        });
        let (Some(mut answer), Some(lk_now)) = (ranges.next(), ranges.next()) else {
            return None;
        };
        answer.header = resp.header;
        if let Some(kv) = lk_now.kvs.first() {
            let current = st.generation == generation && st.usable_lease() == Some(lease);
            if current
                && kv.lease == lease
                && kv.value.is_empty()
                && !lost.contains(&kv.create_revision)
                && !lost.contains(&0)
            {
                st.owned.insert(
                    req.key.clone(),
                    Owned {
                        create_rev: kv.create_revision,
                        answer: answer.clone(),
                    },
                );
                debug!(key = %String::from_utf8_lossy(&req.key), "key leased");
            }
        }
        Some(Ok(answer))
    }
}
