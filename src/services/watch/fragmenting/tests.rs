//! Responses split for watchers that asked for `fragment`.

use super::*;
use crate::proto::mvccpb::{Event, KeyValue};

fn big_event(i: usize) -> Event {
    Event {
        kv: Some(KeyValue {
            key: format!("k{i}").into_bytes(),
            value: vec![b'x'; 1000],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn large_responses_split_in_order_with_the_last_part_unmarked() {
    let resp = WatchResponse {
        watch_id: 7,
        events: (0..10).map(big_event).collect(),
        ..Default::default()
    };
    let parts = fragments(resp, 3000);
    assert!(parts.len() > 1);
    assert!(parts[..parts.len() - 1].iter().all(|p| p.fragment));
    assert!(!parts[parts.len() - 1].fragment);
    let keys: Vec<Vec<u8>> = parts
        .iter()
        .flat_map(|p| p.events.iter().map(|e| e.kv.clone().unwrap().key))
        .collect();
    assert_eq!(
        keys,
        (0..10)
            .map(|i| format!("k{i}").into_bytes())
            .collect::<Vec<_>>()
    );
    assert!(parts.iter().all(|p| p.watch_id == 7));
}

#[test]
fn small_or_single_event_responses_stay_whole() {
    let one = WatchResponse {
        events: vec![big_event(0)],
        ..Default::default()
    };
    assert_eq!(fragments(one, 10).len(), 1);
    let small = WatchResponse {
        events: (0..3).map(big_event).collect(),
        ..Default::default()
    };
    assert_eq!(fragments(small, 1 << 20).len(), 1);
}
