//! Unit tests of the parent module.

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

#[test]
fn ranges_follow_etcd_conventions() {
    assert!(in_range(b"k", b"k", b""));
    assert!(!in_range(b"k1", b"k", b""));
    assert!(in_range(b"zz", b"k", &[0]));
    assert!(in_range(b"k1", b"k", b"l") && !in_range(b"l", b"k", b"l"));
}

#[test]
fn txn_writes_cover_every_branch_and_nested_txns() {
    let put = |k: &str| {
        op(request_op::Request::RequestPut(PutRequest {
            key: k.into(),
            ..Default::default()
        }))
    };
    let inner = TxnRequest {
        success: vec![put("c")],
        ..Default::default()
    };
    let txn = TxnRequest {
        success: vec![
            put("a"),
            op(request_op::Request::RequestRange(RangeRequest {
                key: b"r".to_vec(),
                ..Default::default()
            })),
        ],
        failure: vec![
            op(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: b"b".to_vec(),
                    range_end: b"b9".to_vec(),
                    ..Default::default()
                },
            )),
            op(request_op::Request::RequestTxn(inner)),
        ],
        ..Default::default()
    };
    let mut out = Vec::new();
    txn_writes(&txn, &mut out);
    assert_eq!(
        out,
        vec![
            (b"a".to_vec(), vec![]),
            (b"b".to_vec(), b"b9".to_vec()),
            (b"c".to_vec(), vec![])
        ]
    );
}
