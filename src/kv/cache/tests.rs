//! Unit tests of the parent module (range membership is tested with
//! `kv::ranges`).

use super::*;
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use prost::Message;

fn answer(rev: i64) -> RangeResponse {
    RangeResponse {
        header: Some(ResponseHeader {
            revision: rev,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn active_cache(limits: CacheLimits) -> Arc<RangeCache> {
    let c = RangeCache::new(limits);
    c.active.store(true, Ordering::Release);
    c
}

#[test]
fn an_event_forgets_every_entry_reading_its_key() {
    let c = active_cache(CacheLimits::default());
    let point = RangeRequest {
        key: b"k".to_vec(),
        serializable: true,
        ..Default::default()
    };
    let prefix = RangeRequest {
        key: b"a".to_vec(),
        range_end: b"z".to_vec(),
        serializable: true,
        ..Default::default()
    };
    let other = RangeRequest {
        key: b"zz".to_vec(),
        serializable: true,
        ..Default::default()
    };
    for r in [&point, &prefix, &other] {
        c.put(r.encode_to_vec(), r, &answer(5));
    }
    c.invalidate(b"k", b"", 6);
    assert!(c.get(&point.encode_to_vec()).is_none());
    assert!(c.get(&prefix.encode_to_vec()).is_none());
    assert!(c.get(&other.encode_to_vec()).is_some());
}

#[test]
fn an_answer_older_than_what_was_seen_is_not_stored() {
    let c = active_cache(CacheLimits::default());
    let r = RangeRequest {
        key: b"k".to_vec(),
        serializable: true,
        ..Default::default()
    };
    c.invalidate(b"k", b"", 10);
    c.put(r.encode_to_vec(), &r, &answer(9));
    assert!(c.get(&r.encode_to_vec()).is_none());
    c.put(r.encode_to_vec(), &r, &answer(10));
    assert!(c.get(&r.encode_to_vec()).is_some());
}

#[test]
fn nothing_is_stored_once_the_watch_is_lost() {
    let c = active_cache(CacheLimits::default());
    let r = RangeRequest {
        key: b"k".to_vec(),
        serializable: true,
        ..Default::default()
    };
    c.set_active(false);
    // An answer that was in flight when the watch was lost.
    c.put(r.encode_to_vec(), &r, &answer(5));
    assert!(c.is_empty());
}

#[test]
fn stays_within_its_entry_limit() {
    let c = active_cache(CacheLimits {
        max_entries: 16,
        max_bytes: 1 << 20,
    });
    for i in 0..100 {
        let r = RangeRequest {
            key: format!("k{i}").into_bytes(),
            serializable: true,
            ..Default::default()
        };
        c.put(r.encode_to_vec(), &r, &answer(1));
        // k0 is read after every store: the most recently used, it is
        // never the one evicted.
        let k0 = RangeRequest {
            key: b"k0".to_vec(),
            serializable: true,
            ..Default::default()
        };
        assert!(c.get(&k0.encode_to_vec()).is_some(), "k0 evicted at k{i}");
    }
    assert!(c.len() <= 16);
    // Eviction drops an eighth at a time, never everything.
    assert!(c.len() >= 16 - 16 / 8, "only {} entries left", c.len());
    let held = |i: usize| {
        let r = RangeRequest {
            key: format!("k{i}").into_bytes(),
            serializable: true,
            ..Default::default()
        };
        c.holds(&r.encode_to_vec())
    };
    assert!(held(99), "the newest entry is held");
    assert!(!held(1), "an old entry not read since is gone");
}

#[test]
fn a_hit_waits_for_the_watch_to_reach_every_revision_already_answered() {
    let c = active_cache(CacheLimits::default());
    let read = RangeRequest {
        key: b"k".to_vec(),
        serializable: true,
        ..Default::default()
    };
    let key = read.encode_to_vec();
    c.put(key.clone(), &read, &answer(5));
    c.applied.send_replace(5);
    assert_eq!(revision_of(c.current(&key)), Some(5));
    // A write to another key, through this proxy or answered by it: k may
    // have changed too (through another proxy) until the watch says not.
    c.written(&[(b"other".to_vec(), Vec::new())], 7);
    assert!(c.current(&key).is_none());
    c.answered(9);
    c.applied.send_replace(8);
    assert!(c.current(&key).is_none());
    c.applied.send_replace(9);
    assert_eq!(revision_of(c.current(&key)), Some(9));
}

fn revision_of(hit: Option<RangeResponse>) -> Option<i64> {
    hit.and_then(|h| h.header).map(|h| h.revision)
}
