//! Unit tests of the parent module. The first three were the cache's and
//! leasing's own range tests, kept with their assertions.

use super::*;
use crate::proto::etcdserverpb::{RangeRequest, RequestOp};

fn op(r: request_op::Request) -> RequestOp {
    RequestOp { request: Some(r) }
}

/// Leasing's former `in_range(key, start, end)`, kept for its test.
fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    contains(start, end, key)
}

#[test]
fn ranges_cover_as_etcd_reads_them() {
    let covers = contains;
    let overlaps = overlap;
    assert!(covers(b"a", b"", b"a"));
    assert!(!covers(b"a", b"", b"ab"));
    assert!(covers(b"a", b"b", b"ab"));
    assert!(!covers(b"a", b"b", b"b"));
    assert!(covers(b"a", &[0], b"zzz"));
    assert!(overlaps(b"a", b"c", b"b", b""));
    assert!(overlaps(b"a", &[0], b"x", b"y"));
    assert!(!overlaps(b"a", b"b", b"b", b"c"));
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
    let out = written_by_txn(&txn);
    assert_eq!(
        out,
        vec![
            (b"a".to_vec(), vec![]),
            (b"b".to_vec(), b"b9".to_vec()),
            (b"c".to_vec(), vec![])
        ]
    );
}

#[test]
fn a_prefix_range_holds_its_keys_only() {
    let (p, end) = (b"ab".as_slice(), b"ac".as_slice());
    assert!(contains(p, end, b"ab"));
    assert!(contains(p, end, b"ab\xff\xff"));
    assert!(!contains(p, end, b"ac"));
    assert!(!contains(p, end, b"aa\xff"));
    assert!(!contains(p, end, b"a"));
}

#[test]
fn from_the_key_to_the_end_and_the_whole_key_space() {
    assert!(contains(b"k", &[0], b"k"));
    assert!(!contains(b"j", &[0], b"i\xff"));
    // An empty key or "\0" with range end "\0": every key.
    for start in [b"".as_slice(), &[0]] {
        assert!(contains(start, &[0], &[0]));
        assert!(contains(start, &[0], b"a"));
        assert!(contains(start, &[0], b"\xff\xff"));
        assert!(overlap(start, &[0], b"x", b""));
        assert!(overlap(b"x", b"y", start, &[0]));
    }
    // The empty key alone is just that key.
    assert!(contains(b"", b"", b""));
    assert!(!contains(b"", b"", b"a"));
}

#[test]
fn overlap_is_symmetric() {
    let ranges: [(&[u8], &[u8]); 7] = [
        (b"a", b""),
        (b"b", b""),
        (b"a", b"b"),
        (b"b", b"c"),
        (b"a", &[0]),
        (b"c", &[0]),
        (b"", &[0]),
    ];
    for (a, a_end) in ranges {
        for (b, b_end) in ranges {
            assert_eq!(
                overlap(a, a_end, b, b_end),
                overlap(b, b_end, a, a_end),
                "{a:?}..{a_end:?} vs {b:?}..{b_end:?}"
            );
        }
    }
    assert!(overlap(b"a", b"", b"a", b""));
    assert!(!overlap(b"a", b"", b"b", b""));
    assert!(overlap(b"b", b"", b"a", b"c"));
    assert!(!overlap(b"b", b"c", b"a", b"b"));
    assert!(overlap(b"c", &[0], b"a", b"c\0"));
}

#[test]
fn a_put_and_a_delete_touch_what_they_name() {
    let put = PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    assert_eq!(written_by_put(&put), vec![(b"k".to_vec(), Vec::new())]);
    let delete = DeleteRangeRequest {
        key: b"a".to_vec(),
        range_end: vec![0],
        ..Default::default()
    };
    assert_eq!(written_by_delete(&delete), vec![(b"a".to_vec(), vec![0])]);
    assert!(written_by_txn(&TxnRequest::default()).is_empty());
}
