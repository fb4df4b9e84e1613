//! `--namespace`: clients of a namespaced proxy see their prefix as the whole
//! key space and cannot read, write, delete or watch outside it.

use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, GetOptions, LeaseGrantOptions, LockOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};

use crate::support::ctl::{error_line, ok, run};
use crate::support::{proxy, Cluster, TestProxy};

async fn namespaced(endpoints: &str, prefix: &str) -> TestProxy {
    let mut config = proxy::config(endpoints);
    config.namespace = etcd_grpc_proxy::kv::namespace::Namespace::new(prefix);
    TestProxy::with_config(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_only_their_namespace() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    let p1 = namespaced(&direct, "/t1/").await;
    let p2 = namespaced(&direct, "/t1/sub/").await;
    let via = p1.endpoint();

    // Neighbours of the namespace, written directly: none may be reached.
    for key in ["/t1", "/t0", "/t10/x", "/t2/x", "/outside"] {
        ok(&direct, &["put", key, "foreign"]);
    }
    ok(&via, &["put", "a", "1"]);
    ok(&via, &["put", "b", "2"]);
    ok(p2.endpoint().as_str(), &["put", "c", "3"]);

    // Keys land under the prefix and come back relative to it.
    assert_eq!(
        ok(&direct, &["get", "/t1/a", "--print-value-only"]).trim(),
        "1"
    );
    assert_eq!(
        ok(&direct, &["get", "/t1/sub/c", "--print-value-only"]).trim(),
        "3"
    );
    assert_eq!(
        ok(&via, &["get", "", "--prefix", "--keys-only"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["a", "b", "sub/c"]
    );
    assert_eq!(
        ok(&via, &["get", "", "--from-key", "--keys-only"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["a", "b", "sub/c"]
    );
    assert_eq!(
        ok(
            p2.endpoint().as_str(),
            &["get", "", "--prefix", "--keys-only"]
        )
        .trim(),
        "c"
    );
    assert_eq!(
        ok(&via, &["get", "a", "zzzz", "--keys-only"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["a", "b", "sub/c"]
    );

    // An empty key is refused as etcd refuses it, not turned into the prefix.
    let (d_ok, _, d_err) = run(&direct, &["put", "", "x"]);
    let (p_ok, _, p_err) = run(&via, &["put", "", "x"]);
    assert!(!d_ok && !p_ok);
    assert_eq!(error_line(&p_err), error_line(&d_err));

    // Txn compares and prev_kv are namespaced too.
    let mut client = p1.client().await;
    let txn = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "1")])
        .and_then([
            TxnOp::put("t", "from-txn", None),
            TxnOp::get("", Some(GetOptions::new().with_prefix())),
        ]);
    let resp = client.txn(txn).await.expect("txn");
    assert!(resp.succeeded());
    assert_eq!(
        ok(&direct, &["get", "/t1/t", "--print-value-only"]).trim(),
        "from-txn"
    );
    let prev = client
        .put("a", "1b", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("put");
    assert_eq!(prev.prev_key().expect("prev kv").key(), b"a");

    // Watch a whole namespace: events from outside never arrive, keys are relative.
    let mut watch = client
        .watch("", Some(WatchOptions::new().with_prefix().with_prev_key()))
        .await
        .expect("watch");
    let created = watch.message().await.expect("watch").expect("created");
    assert!(created.created());
    ok(&direct, &["put", "/t2/x", "outside"]);
    ok(&direct, &["put", "/t1", "outside"]);
    ok(&via, &["put", "b", "2b"]);
    let resp = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("event in time")
        .expect("watch")
        .expect("event");
    let ev = &resp.events()[0];
    assert_eq!(ev.kv().expect("kv").key(), b"b");
    assert_eq!(ev.prev_kv().expect("prev kv").key(), b"b");

    // Locks and leases: names in, keys out.
    let lease = client
        .lease_grant(30, Some(LeaseGrantOptions::new()))
        .await
        .expect("grant")
        .id();
    let lock = client
        .lock("jobs", Some(LockOptions::new().with_lease(lease)))
        .await
        .expect("lock");
    assert!(
        lock.key().starts_with(b"jobs/"),
        "{:?}",
        String::from_utf8_lossy(lock.key())
    );
    assert_eq!(
        ok(&direct, &["get", "/t1/jobs/", "--prefix", "--keys-only"])
            .split_whitespace()
            .count(),
        1
    );
    let ttl = client
        .lease_time_to_live(
            lease,
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .expect("ttl");
    assert!(
        ttl.keys().iter().all(|k| k.starts_with(b"jobs/")),
        "{:?}",
        ttl.keys()
    );
    client.unlock(lock.key()).await.expect("unlock");

    // Deleting everything deletes only the namespace.
    ok(&via, &["del", "", "--prefix"]);
    assert_eq!(ok(&via, &["get", "", "--prefix", "--keys-only"]).trim(), "");
    let left = ok(&direct, &["get", "", "--prefix", "--keys-only"]);
    let left: Vec<&str> = left.split_whitespace().collect();
    assert_eq!(left, ["/outside", "/t0", "/t1", "/t10/x", "/t2/x"]);
}
