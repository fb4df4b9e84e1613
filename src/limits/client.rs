//! One client's state: its read and write token buckets, and its counts of
//! calls in flight, watchers and keep-alive streams, each held as a
//! [`Permit`] given back when dropped; idle clients forgotten when a shard
//! is full.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{LimitSet, RefusalKind};
use crate::sync::lock;

/// One client's state.
pub(super) struct Client {
    /// Rates and the limits they were last checked against.
    pub(super) rates: Mutex<Rates>,
    /// Unary calls in flight.
    pub(super) calls: AtomicU32,
    /// Watchers open.
    pub(super) watchers: AtomicU32,
    /// Keep-alive streams open.
    pub(super) keepalives: AtomicU32,
    /// Calls admitted or refused since this state was made, for the top-N
    /// clients on `/metrics`.
    pub(super) requests: AtomicU64,
    /// Calls, watchers and streams refused since this state was made.
    pub(super) refusals: AtomicU64,
}

/// A client's rates, and the limits they were last checked against.
pub(super) struct Rates {
    /// The reload the limits were read at ([`super::ClientLimits`] counts them).
    pub(super) generation: u64,
    /// This client's limits.
    pub(super) limits: LimitSet,
    /// The read-rate bucket.
    pub(super) read: Bucket,
    /// The write-rate bucket.
    pub(super) write: Bucket,
    /// The client's last call, for eviction.
    pub(super) last_used: Instant,
}

/// A token bucket.
#[derive(Clone, Copy)]
pub(super) struct Bucket {
    /// Tokens left (infinite until first used: a new client starts full).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl Bucket {
    /// A bucket no call has drawn from yet.
    pub(super) fn full(now: Instant) -> Bucket {
        Bucket {
            tokens: f64::INFINITY,
            at: now,
        }
    }

    fn capacity(rate: f64, burst: u32) -> f64 {
        if burst > 0 {
            f64::from(burst)
        } else {
            rate.max(1.0)
        }
    }

    /// Takes one token if there is one; `rate` 0 is no limit.
    pub(super) fn take(&mut self, rate: f64, burst: u32, now: Instant) -> bool {
        if rate <= 0.0 {
            return true;
        }
        let cap = Bucket::capacity(rate, burst);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(cap);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether forgetting this bucket loses nothing (it is full again).
    fn is_full(&self, rate: f64, burst: u32, now: Instant) -> bool {
        rate <= 0.0
            || self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate
                >= Bucket::capacity(rate, burst)
    }
}

/// One unit of a client's concurrency, watchers or keep-alive streams,
/// given back when dropped.
pub struct Permit {
    pub(super) client: Arc<Client>,
    pub(super) kind: RefusalKind,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.client
            .counter(self.kind)
            .fetch_sub(1, Ordering::AcqRel);
    }
}

impl Client {
    pub(super) fn counter(&self, kind: RefusalKind) -> &AtomicU32 {
        match kind {
            RefusalKind::Watchers => &self.watchers,
            RefusalKind::KeepAlive => &self.keepalives,
            _ => &self.calls,
        }
    }
}

/// Makes room in a full shard: every idle client whose buckets are full
/// again goes (nothing is lost); if none, the least recently used idle one.
/// A client holding a permit stays.
pub(super) fn evict(map: &mut HashMap<Arc<str>, Arc<Client>>) {
    let now = Instant::now();
    let before = map.len();
    map.retain(|_, c| {
        if Arc::strong_count(c) > 1 {
            return true;
        }
        let r = lock(&c.rates);
        let l = r.limits;
        !(r.read.is_full(l.read_rps, l.read_burst, now)
            && r.write.is_full(l.write_rps, l.write_burst, now))
    });
    if map.len() < before {
        return;
    }
    let oldest = map
        .iter()
        .filter(|(_, c)| Arc::strong_count(c) == 1)
        .min_by_key(|(_, c)| lock(&c.rates).last_used)
        .map(|(k, _)| k.clone());
    if let Some(k) = oldest {
        map.remove(&k);
    }
}
