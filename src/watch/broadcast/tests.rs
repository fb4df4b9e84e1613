//! What each watcher is handed of a broadcast's response, without a member.

use super::fanout::filtered_for;
use super::*;
use crate::proto::etcdserverpb::WatchResponse;
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::{Event, KeyValue};
use crate::watch::hub::WatcherSpec;

fn spec(watch_id: i64) -> WatcherSpec {
    WatcherSpec {
        watch_id,
        ..WatcherSpec::default()
    }
}

fn event(kind: EventType, rev: i64) -> Event {
    Event {
        r#type: kind as i32,
        kv: Some(KeyValue {
            key: b"k".to_vec(),
            mod_revision: rev,
            ..Default::default()
        }),
        prev_kv: Some(KeyValue::default()),
    }
}

fn watcher(spec: WatcherSpec, next_rev: i64) -> Watcher {
    let (tx, _rx) = mpsc::channel(1);
    Watcher {
        spec,
        tx,
        next_rev,
        announced: true,
        token: None,
    }
}

#[test]
fn a_watcher_gets_only_events_from_its_next_revision_and_its_filters() {
    let resp = WatchResponse {
        events: vec![
            event(EventType::Put, 4),
            event(EventType::Delete, 5),
            event(EventType::Put, 6),
        ],
        ..Default::default()
    };
    let mut receivers = 0;
    let late = watcher(spec(1), 5);
    let got = filtered_for(&late, &resp, &mut receivers).unwrap();
    let revs: Vec<i64> = got
        .into_response()
        .events
        .iter()
        .map(|e| e.kv.as_ref().unwrap().mod_revision)
        .collect();
    assert_eq!(revs, vec![5, 6]);

    let no_put = watcher(
        WatcherSpec {
            no_put: true,
            prev_kv: true,
            ..spec(2)
        },
        0,
    );
    let got = filtered_for(&no_put, &resp, &mut receivers)
        .unwrap()
        .into_response();
    assert_eq!(got.events.len(), 1);
    assert!(got.events[0].prev_kv.is_some(), "prev_kv kept when asked");
    assert_eq!(got.watch_id, 2);

    let past_all = watcher(spec(3), 7);
    assert!(filtered_for(&past_all, &resp, &mut receivers).is_none());
    assert_eq!(receivers, 2);
}

#[test]
fn prev_kv_is_dropped_unless_asked() {
    let resp = WatchResponse {
        events: vec![event(EventType::Put, 4)],
        ..Default::default()
    };
    let got = filtered_for(&watcher(spec(1), 0), &resp, &mut 0)
        .unwrap()
        .into_response();
    assert!(got.events[0].prev_kv.is_none());
}
