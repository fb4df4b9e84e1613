//! Key ranges as etcd reads them, and the ranges a write touches: one
//! definition shared by the range cache (which entries a write or an event
//! makes stale) and leasing (which held copies a write drops, which leasing
//! keys guard it), so the two can never disagree on what a write reaches.
//!
//! A range is a request's `(key, range_end)`:
//! - an empty `range_end` is the single key `key`;
//! - `range_end` `"\0"` is every key from `key` on (with an empty or `"\0"`
//!   key, the whole key space);
//! - any other `range_end` is `[key, range_end)`, so a prefix `p` is
//!   `[p, prefix_end(p))`.

use crate::proto::etcdserverpb::{request_op, DeleteRangeRequest, PutRequest, TxnRequest};

/// A key range as etcd's requests carry it, `(key, range_end)`: the unit
/// in which writes are said to touch keys.
pub type KeyRange = (Vec<u8>, Vec<u8>);

/// Whether `range_end` is etcd's "from the key to the end" marker.
fn to_the_end(range_end: &[u8]) -> bool {
    range_end == [0]
}

/// Whether `key` lies in the range `(start, end)` as etcd reads it (see the
/// module's rules): what a single key must satisfy to be read or written
/// by a request over that range.
pub fn contains(start: &[u8], end: &[u8], key: &[u8]) -> bool {
    if end.is_empty() {
        return key == start;
    }
    key >= start && (to_the_end(end) || key < end)
}

/// Whether two ranges share a key: a cache entry reading `(a, a_end)` is
/// stale once a write touches `(b, b_end)`. Conservative for a range whose
/// end is not after its start (etcd reads it as empty).
pub fn overlap(a: &[u8], a_end: &[u8], b: &[u8], b_end: &[u8]) -> bool {
    if a_end.is_empty() {
        return contains(b, b_end, a);
    }
    if b_end.is_empty() {
        return contains(a, a_end, b);
    }
    let a_before_b_end = to_the_end(b_end) || a < b_end;
    let b_before_a_end = to_the_end(a_end) || b < a_end;
    a_before_b_end && b_before_a_end
}

/// The range a Put writes: its one key.
pub fn written_by_put(req: &PutRequest) -> Vec<KeyRange> {
    vec![(req.key.clone(), Vec::new())]
}

/// The range a DeleteRange writes: the range it deletes.
pub fn written_by_delete(req: &DeleteRangeRequest) -> Vec<KeyRange> {
    vec![(req.key.clone(), req.range_end.clone())]
}

/// The ranges any branch of a Txn may write, nested Txns included, in the
/// order its ops appear (success before failure). Ranges read are left out.
pub fn written_by_txn(req: &TxnRequest) -> Vec<KeyRange> {
    let mut out = Vec::new();
    push_txn_writes(req, &mut out);
    out
}

/// [`written_by_txn`] into `out`, for the recursion into nested Txns.
fn push_txn_writes(txn: &TxnRequest, out: &mut Vec<KeyRange>) {
    for op in txn.success.iter().chain(txn.failure.iter()) {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => out.extend(written_by_put(p)),
            Some(request_op::Request::RequestDeleteRange(d)) => out.extend(written_by_delete(d)),
            Some(request_op::Request::RequestTxn(inner)) => push_txn_writes(inner, out),
            Some(request_op::Request::RequestRange(_)) | None => {}
        }
    }
}

#[cfg(test)]
mod tests;
