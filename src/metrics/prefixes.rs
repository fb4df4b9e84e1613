//! Per-prefix metrics (`--metrics-prefixes`): requests by method and code,
//! bytes each way, open watchers and watch events delivered, for each
//! configured key prefix and one `other` bucket.
//!
//! A key belongs to the longest configured prefix it starts with, else to
//! `other`, so label cardinality is bounded by (prefixes + 1) × methods ×
//! codes. Counters are atomics in flat arrays indexed by bucket: counting
//! takes no lock. With no prefix configured there is no [`PrefixMetrics`]
//! at all and the layers that count are left out.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::GO_CODE_NAMES as CODES;

/// Most prefixes `--metrics-prefixes` accepts.
pub const MAX_PREFIXES: usize = 64;

/// The label value of keys under no configured prefix.
pub const OTHER: &str = "other";

/// The calls counted per prefix: the ones that carry a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedMethod {
    /// `KV.Range`.
    Range,
    /// `KV.Put`.
    Put,
    /// `KV.DeleteRange`.
    DeleteRange,
    /// `KV.Txn` (its key: the first compare's, else the first operation's).
    Txn,
    /// `Watch.Watch` (one request per watcher created; events delivered).
    Watch,
}

impl KeyedMethod {
    const ALL: [KeyedMethod; 5] = [
        KeyedMethod::Range,
        KeyedMethod::Put,
        KeyedMethod::DeleteRange,
        KeyedMethod::Txn,
        KeyedMethod::Watch,
    ];

    /// The `grpc_method` label value.
    pub fn label(self) -> &'static str {
        match self {
            KeyedMethod::Range => "Range",
            KeyedMethod::Put => "Put",
            KeyedMethod::DeleteRange => "DeleteRange",
            KeyedMethod::Txn => "Txn",
            KeyedMethod::Watch => "Watch",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const N_METHODS: usize = KeyedMethod::ALL.len();
const N_CODES: usize = 17;

/// The bucket a key was attributed to: a configured prefix, or `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket(usize);

/// Why `--metrics-prefixes` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixesError {
    /// More than [`MAX_PREFIXES`].
    #[error("{0} prefixes given, at most {max} are accepted (each adds a label value to every per-prefix metric)", max = MAX_PREFIXES)]
    TooMany(usize),
    /// A prefix that would read as the `other` bucket.
    #[error("{other:?} is the label of keys under no prefix and cannot be a prefix", other = OTHER)]
    Reserved,
}

/// Checks and normalises the configured prefixes: empty entries are
/// dropped, duplicates kept once, at most [`MAX_PREFIXES`].
pub fn parse_prefixes<S: AsRef<str>>(values: &[S]) -> Result<Vec<String>, PrefixesError> {
    let mut out: Vec<String> = Vec::new();
    for v in values.iter().map(|v| v.as_ref().trim()) {
        if v.is_empty() || out.iter().any(|p| p == v) {
            continue;
        }
        if v == OTHER {
            return Err(PrefixesError::Reserved);
        }
        out.push(v.to_string());
    }
    if out.len() > MAX_PREFIXES {
        return Err(PrefixesError::TooMany(out.len()));
    }
    Ok(out)
}

/// The per-prefix counters.
pub struct PrefixMetrics {
    /// The configured prefixes; bucket `i` is `prefixes[i]`, bucket
    /// `prefixes.len()` is `other`.
    prefixes: Vec<String>,
    /// Bucket indexes, longest prefix first: the first that matches wins.
    longest_first: Vec<usize>,
    /// Requests, indexed `(bucket × methods + method) × codes + code`.
    requests: Vec<AtomicU64>,
    /// Request bytes received, indexed `bucket × methods + method`.
    received_bytes: Vec<AtomicU64>,
    /// Response bytes sent (watch event bytes for Watch), same index.
    sent_bytes: Vec<AtomicU64>,
    /// Watchers open now, per bucket.
    watchers: Vec<AtomicI64>,
    /// Watch events delivered to clients, per bucket.
    events: Vec<AtomicU64>,
}

fn zeros<T: Default>(n: usize) -> Vec<T> {
    (0..n).map(|_| T::default()).collect()
}

impl PrefixMetrics {
    /// Counters for `prefixes` (as [`parse_prefixes`] returns them);
    /// `None` when there are none, so nothing counts.
    pub fn new(prefixes: &[String]) -> Option<Arc<PrefixMetrics>> {
        if prefixes.is_empty() {
            return None;
        }
        let buckets = prefixes.len() + 1;
        let mut longest_first: Vec<usize> = (0..prefixes.len()).collect();
        longest_first.sort_by_key(|i| std::cmp::Reverse(prefixes[*i].len()));
        Some(Arc::new(PrefixMetrics {
            prefixes: prefixes.to_vec(),
            longest_first,
            requests: zeros(buckets * N_METHODS * N_CODES),
            received_bytes: zeros(buckets * N_METHODS),
            sent_bytes: zeros(buckets * N_METHODS),
            watchers: zeros(buckets),
            events: zeros(buckets),
        }))
    }

    /// The bucket of `key`: the longest configured prefix it starts with, else `other`.
    pub fn bucket(&self, key: &[u8]) -> Bucket {
        let found = self
            .longest_first
            .iter()
            .find(|i| key.starts_with(self.prefixes[**i].as_bytes()));
        Bucket(found.copied().unwrap_or(self.prefixes.len()))
    }

    /// One call of `method` in `bucket` ended with `code`, having received
    /// `received` request bytes and sent `sent` response bytes.
    pub fn request(
        &self,
        bucket: Bucket,
        method: KeyedMethod,
        code: tonic::Code,
        received: usize,
        sent: usize,
    ) {
        let m = bucket.0 * N_METHODS + method.index();
        let code = (code as usize).min(N_CODES - 1);
        self.requests[m * N_CODES + code].fetch_add(1, Ordering::Relaxed);
        self.received_bytes[m].fetch_add(received as u64, Ordering::Relaxed);
        self.sent_bytes[m].fetch_add(sent as u64, Ordering::Relaxed);
    }

    /// A watcher opened in `bucket`; it counts as open until the guard drops.
    pub fn watcher_opened(self: &Arc<Self>, bucket: Bucket) -> OpenWatcher {
        self.watchers[bucket.0].fetch_add(1, Ordering::Relaxed);
        OpenWatcher {
            metrics: self.clone(),
            bucket,
        }
    }

    /// One watch event of `bytes` (encoded) delivered to a client, for `key`.
    pub fn event_delivered(&self, key: &[u8], bytes: usize) {
        let b = self.bucket(key).0;
        self.events[b].fetch_add(1, Ordering::Relaxed);
        self.sent_bytes[b * N_METHODS + KeyedMethod::Watch.index()]
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The label value of bucket `b`.
    fn label(&self, b: usize) -> &str {
        self.prefixes.get(b).map_or(OTHER, String::as_str)
    }

    fn buckets(&self) -> usize {
        self.prefixes.len() + 1
    }

    /// Every non-zero request count: (prefix, method, code name, count).
    pub fn request_samples(&self) -> Vec<(&str, &'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for b in 0..self.buckets() {
            for method in KeyedMethod::ALL {
                let m = b * N_METHODS + method.index();
                for (code, name) in CODES.iter().enumerate().take(N_CODES) {
                    let n = self.requests[m * N_CODES + code].load(Ordering::Relaxed);
                    if n > 0 {
                        out.push((self.label(b), method.label(), *name, n));
                    }
                }
            }
        }
        out
    }

    /// Byte counts (received, sent) of every bucket and method with traffic.
    pub fn byte_samples(&self) -> Vec<(&str, &'static str, u64, u64)> {
        let mut out = Vec::new();
        for b in 0..self.buckets() {
            for method in KeyedMethod::ALL {
                let m = b * N_METHODS + method.index();
                let received = self.received_bytes[m].load(Ordering::Relaxed);
                let sent = self.sent_bytes[m].load(Ordering::Relaxed);
                if received > 0 || sent > 0 {
                    out.push((self.label(b), method.label(), received, sent));
                }
            }
        }
        out
    }

    /// Per bucket: (prefix, watchers open now, events delivered).
    pub fn watch_samples(&self) -> Vec<(&str, i64, u64)> {
        (0..self.buckets())
            .map(|b| {
                (
                    self.label(b),
                    self.watchers[b].load(Ordering::Relaxed),
                    self.events[b].load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

/// A watcher counted as open in its bucket until dropped.
pub struct OpenWatcher {
    metrics: Arc<PrefixMetrics>,
    bucket: Bucket,
}

impl Drop for OpenWatcher {
    fn drop(&mut self) {
        self.metrics.watchers[self.bucket.0].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_to_the_longest_prefix_else_other() {
        let p = parse_prefixes(&["/registry/", "/registry/pods/", "", "/registry/"]).unwrap();
        assert_eq!(p, ["/registry/", "/registry/pods/"]);
        let m = PrefixMetrics::new(&p).unwrap();
        assert_eq!(m.label(m.bucket(b"/registry/pods/a").0), "/registry/pods/");
        assert_eq!(m.label(m.bucket(b"/registry/events/a").0), "/registry/");
        assert_eq!(m.label(m.bucket(b"/elsewhere").0), OTHER);
        assert_eq!(m.label(m.bucket(b"").0), OTHER);
    }

    #[test]
    fn too_many_prefixes_or_other_are_refused_and_none_means_off() {
        let many: Vec<String> = (0..=MAX_PREFIXES).map(|i| format!("/p{i}/")).collect();
        assert_eq!(
            parse_prefixes(&many),
            Err(PrefixesError::TooMany(MAX_PREFIXES + 1))
        );
        assert!(parse_prefixes(&many[..MAX_PREFIXES]).is_ok());
        assert_eq!(parse_prefixes(&["other"]), Err(PrefixesError::Reserved));
        assert!(PrefixMetrics::new(&[]).is_none());
    }

    #[test]
    fn counts_requests_bytes_watchers_and_events() {
        let m = PrefixMetrics::new(&["/a/".to_string()]).unwrap();
        let a = m.bucket(b"/a/x");
        m.request(a, KeyedMethod::Put, tonic::Code::Ok, 10, 4);
        m.request(a, KeyedMethod::Put, tonic::Code::Ok, 10, 4);
        m.request(
            m.bucket(b"/b"),
            KeyedMethod::Range,
            tonic::Code::NotFound,
            3,
            0,
        );
        assert_eq!(
            m.request_samples(),
            [("/a/", "Put", "OK", 2), (OTHER, "Range", "NotFound", 1)]
        );
        assert_eq!(
            m.byte_samples(),
            [("/a/", "Put", 20, 8), (OTHER, "Range", 3, 0)]
        );
        let w = m.watcher_opened(a);
        m.event_delivered(b"/a/y", 7);
        assert_eq!(m.watch_samples(), [("/a/", 1, 1), (OTHER, 0, 0)]);
        drop(w);
        assert_eq!(m.watch_samples()[0].1, 0);
    }
}
