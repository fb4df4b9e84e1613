//! `--namespace`: every key a client names is moved under a prefix on the
//! way in and the prefix is taken off on the way out, so a client sees its
//! namespace as the whole key space and can never reach outside it.
//!
//! Ranges map as etcd's namespace client maps them: `key` becomes
//! `prefix+key`; a range end of `"\0"` (to the end of the key space) becomes
//! the end of the prefix; any other range end becomes `prefix+end`. Every
//! such interval lies inside `[prefix, end of prefix)`.

use crate::error::ProxyError;
use crate::proto::etcdserverpb::*;
use crate::proto::mvccpb::KeyValue;
use crate::proto::v3electionpb::LeaderKey;

/// etcd's answer to a request without a key (`rpctypes.ErrGRPCEmptyKey`).
const EMPTY_KEY: &str = "etcdserver: key is not provided";

/// The key prefix one proxy confines its clients to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    prefix: Vec<u8>,
    /// The first key after every key that starts with `prefix`.
    end: Vec<u8>,
}

/// The smallest key greater than every key starting with `prefix`
/// (`"\0"`, the end of the key space, when there is none).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn require_key(key: &[u8]) -> Result<(), ProxyError> {
    if key.is_empty() {
        return Err(ProxyError::InvalidRequest(EMPTY_KEY.into()));
    }
    Ok(())
}

impl Namespace {
    /// The namespace for `--namespace=<prefix>`; `None` when empty (no namespace).
    pub fn new(prefix: &str) -> Option<Namespace> {
        (!prefix.is_empty()).then(|| Namespace {
            prefix: prefix.as_bytes().to_vec(),
            end: prefix_end(prefix.as_bytes()),
        })
    }

    fn key(&self, key: &mut Vec<u8>) {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key);
        *key = full;
    }

    /// Moves the interval `[key, range_end)` into the namespace.
    fn interval(&self, key: &mut Vec<u8>, range_end: &mut Vec<u8>) {
        self.key(key);
        if range_end.as_slice() == [0] {
            *range_end = self.end.clone();
        } else if !range_end.is_empty() {
            self.key(range_end);
        }
    }

    fn strip(&self, key: &mut Vec<u8>) {
        if key.starts_with(&self.prefix) {
            key.drain(..self.prefix.len());
        }
    }

    /// `key` as the client sees it, without copying it.
    pub fn relative<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        key.strip_prefix(self.prefix.as_slice()).unwrap_or(key)
    }

    /// A key-value pair shown to the client.
    pub fn kv_out(&self, kv: &mut KeyValue) {
        self.strip(&mut kv.key);
    }

    /// A Range request, checked as etcd checks it and moved in.
    pub fn range_in(&self, r: &mut RangeRequest) -> Result<(), ProxyError> {
        require_key(&r.key)?;
        self.interval(&mut r.key, &mut r.range_end);
        Ok(())
    }

    /// A Range answer, keys shown relative to the namespace.
    pub fn range_out(&self, r: &mut RangeResponse) {
        r.kvs.iter_mut().for_each(|kv| self.kv_out(kv));
    }

    /// A Put request, checked and moved in.
    pub fn put_in(&self, r: &mut PutRequest) -> Result<(), ProxyError> {
        require_key(&r.key)?;
        self.key(&mut r.key);
        Ok(())
    }

    /// A Put answer (its prev_kv).
    pub fn put_out(&self, r: &mut PutResponse) {
        if let Some(kv) = r.prev_kv.as_mut() {
            self.kv_out(kv);
        }
    }

    /// A DeleteRange request, checked and moved in.
    pub fn delete_in(&self, r: &mut DeleteRangeRequest) -> Result<(), ProxyError> {
        require_key(&r.key)?;
        self.interval(&mut r.key, &mut r.range_end);
        Ok(())
    }

    /// A DeleteRange answer (its prev_kvs).
    pub fn delete_out(&self, r: &mut DeleteRangeResponse) {
        r.prev_kvs.iter_mut().for_each(|kv| self.kv_out(kv));
    }

    /// A Txn: compares and every operation, nested transactions included.
    pub fn txn_in(&self, t: &mut TxnRequest) -> Result<(), ProxyError> {
        for c in &mut t.compare {
            self.interval(&mut c.key, &mut c.range_end);
        }
        for op in t.success.iter_mut().chain(t.failure.iter_mut()) {
            match op.request.as_mut() {
                Some(request_op::Request::RequestRange(r)) => self.range_in(r)?,
                Some(request_op::Request::RequestPut(r)) => self.put_in(r)?,
                Some(request_op::Request::RequestDeleteRange(r)) => self.delete_in(r)?,
                Some(request_op::Request::RequestTxn(r)) => self.txn_in(r)?,
                None => {}
            }
        }
        Ok(())
    }

    /// A Txn answer, nested answers included.
    pub fn txn_out(&self, t: &mut TxnResponse) {
        for op in &mut t.responses {
            match op.response.as_mut() {
                Some(response_op::Response::ResponseRange(r)) => self.range_out(r),
                Some(response_op::Response::ResponsePut(r)) => self.put_out(r),
                Some(response_op::Response::ResponseDeleteRange(r)) => self.delete_out(r),
                Some(response_op::Response::ResponseTxn(r)) => self.txn_out(r),
                None => {}
            }
        }
    }

    /// A watch's range, moved in.
    pub fn watch_in(&self, c: &mut WatchCreateRequest) {
        self.interval(&mut c.key, &mut c.range_end);
    }

    /// A watch answer: its events' keys and previous keys.
    pub fn watch_out(&self, w: &mut WatchResponse) {
        for ev in &mut w.events {
            if let Some(kv) = ev.kv.as_mut() {
                self.kv_out(kv);
            }
            if let Some(kv) = ev.prev_kv.as_mut() {
                self.kv_out(kv);
            }
        }
    }

    /// A lease's attached keys: only those inside the namespace, relative to it.
    pub fn lease_keys_out(&self, r: &mut LeaseTimeToLiveResponse) {
        r.keys.retain(|k| k.starts_with(&self.prefix));
        r.keys.iter_mut().for_each(|k| self.strip(k));
    }

    /// An election or lock name, moved in.
    pub fn name_in(&self, name: &mut Vec<u8>) {
        self.key(name);
    }

    /// A key the client got from an earlier answer (lock key, leader key), moved in.
    pub fn key_in(&self, key: &mut Vec<u8>) {
        self.key(key);
    }

    /// A key shown to the client, relative to the namespace.
    pub fn key_out(&self, key: &mut Vec<u8>) {
        self.strip(key);
    }

    /// An election leader key, moved in.
    pub fn leader_key_in(&self, k: &mut LeaderKey) {
        self.key(&mut k.name);
        self.key(&mut k.key);
    }

    /// An election leader key, relative to the namespace.
    pub fn leader_key_out(&self, k: &mut LeaderKey) {
        self.strip(&mut k.name);
        self.strip(&mut k.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Namespace {
        Namespace::new("/tenant/").unwrap()
    }

    fn range(key: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut r = RangeRequest {
            key: key.to_vec(),
            range_end: end.to_vec(),
            ..Default::default()
        };
        ns().range_in(&mut r).unwrap();
        (r.key, r.range_end)
    }

    #[test]
    fn intervals_stay_inside_the_prefix() {
        assert_eq!(range(b"a", b""), (b"/tenant/a".to_vec(), vec![]));
        assert_eq!(
            range(b"a", b"c"),
            (b"/tenant/a".to_vec(), b"/tenant/c".to_vec())
        );
        // "\0" means to the end of the key space: here, the end of the namespace.
        assert_eq!(
            range(b"a", b"\0"),
            (b"/tenant/a".to_vec(), b"/tenant0".to_vec())
        );
        // etcdctl's `get "" --prefix` sends key "\0", range end "\0".
        assert_eq!(
            range(b"\0", b"\0"),
            (b"/tenant/\0".to_vec(), b"/tenant0".to_vec())
        );
    }

    #[test]
    fn prefix_end_carries_over_ff() {
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn empty_keys_are_refused_as_etcd_refuses_them() {
        let mut r = RangeRequest::default();
        assert!(ns().range_in(&mut r).is_err());
        let mut t = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest::default())),
            }],
            ..Default::default()
        };
        assert!(ns().txn_in(&mut t).is_err());
    }

    #[test]
    fn keys_come_back_relative() {
        let mut r = RangeResponse {
            kvs: vec![KeyValue {
                key: b"/tenant/a".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        };
        ns().range_out(&mut r);
        assert_eq!(r.kvs[0].key, b"a".to_vec());
        let mut l = LeaseTimeToLiveResponse {
            keys: vec![b"/tenant/x".to_vec(), b"/other/y".to_vec()],
            ..Default::default()
        };
        ns().lease_keys_out(&mut l);
        assert_eq!(l.keys, vec![b"x".to_vec()]);
    }
}
