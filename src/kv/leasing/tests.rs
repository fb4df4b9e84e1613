//! Unit tests of the parent module (what a write touches is tested with
//! `kv::ranges`).

use super::*;

#[test]
fn only_plain_single_key_linearizable_gets_are_served() {
    let plain = RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    };
    assert!(servable(&plain));
    assert!(!servable(&RangeRequest {
        serializable: true,
        ..plain.clone()
    }));
    assert!(!servable(&RangeRequest {
        range_end: b"l".to_vec(),
        ..plain.clone()
    }));
    assert!(!servable(&RangeRequest {
        revision: 3,
        ..plain.clone()
    }));
    assert!(!servable(&RangeRequest {
        count_only: true,
        ..plain.clone()
    }));
    assert!(!servable(&RangeRequest {
        key: Vec::new(),
        ..plain
    }));
}
