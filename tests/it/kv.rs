//! KV semantics through the proxy equal direct etcd, with etcdctl and etcd-client.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};

use crate::support::ctl::{error_line, json_revision, run};
use crate::support::{eventually, Cluster, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_sees_the_same_answers_through_the_proxy_as_direct() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    let proxy = TestProxy::start(&direct).await;
    let via = proxy.endpoint();

    for (k, v) in [("a", "1"), ("b", "2"), ("b/x", "3"), ("c", "4")] {
        let (ok, out, err) = run(&via, &["put", k, v]);
        assert!(ok, "put {k}: {err}");
        assert_eq!(out.trim(), "OK");
    }
    let reads: &[&[&str]] = &[
        &["get", "a"],
        &["get", "b", "--prefix"],
        &["get", "a", "c"],
        &["get", "", "--prefix", "--keys-only"],
        &["get", "", "--from-key", "--limit=2"],
        &["get", "", "--prefix", "--sort-by=VALUE", "--order=DESCEND"],
        &["get", "", "--prefix", "--print-value-only"],
        &["get", "a", "-w", "fields"],
        &["get", "b", "--prefix", "--consistency=s"],
        &["get", "missing"],
    ];
    for args in reads {
        let (d_ok, d_out, _) = run(&direct, args);
        let (p_ok, p_out, p_err) = run(&via, args);
        assert!(d_ok && p_ok, "{args:?}: {p_err}");
        assert_eq!(p_out, d_out, "{args:?} differs");
    }

    let (ok, out, _) = run(&via, &["del", "b", "--prefix"]);
    assert!(ok);
    assert_eq!(out.trim(), "2");

    let (_, rev_json, _) = run(&via, &["get", "a", "-w", "json"]);
    let rev = json_revision(&rev_json);

    let (ok, _, err) = run(&via, &["compact", &rev.to_string()]);
    assert!(ok, "compact: {err}");
    let (d_ok, _, d_err) = run(&direct, &["get", "a", "--rev=1"]);
    let (p_ok, _, p_err) = run(&via, &["get", "a", "--rev=1"]);
    assert!(!d_ok && !p_ok);
    assert_eq!(error_line(&p_err), error_line(&d_err));
    assert!(
        error_line(&p_err).contains("required revision has been compacted"),
        "{p_err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_kv_and_txn_through_the_proxy() {
    let cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.members[0].addr()).await;
    let mut c = proxy.client().await;

    c.put("x", "1", None).await.unwrap();
    let prev = c
        .put("x", "2", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(prev.prev_key().unwrap().value(), b"1");

    let txn = Txn::new()
        .when([Compare::value("x", CompareOp::Equal, "2")])
        .and_then([TxnOp::put("y", "from-txn", None), TxnOp::get("x", None)])
        .or_else([TxnOp::put("y", "wrong", None)]);
    let resp = c.txn(txn).await.unwrap();
    assert!(resp.succeeded());
    assert_eq!(
        c.get("y", None).await.unwrap().kvs()[0].value(),
        b"from-txn"
    );

    let failed = Txn::new()
        .when([Compare::version("x", CompareOp::Equal, 100)])
        .and_then([])
        .or_else([]);
    assert!(!c.txn(failed).await.unwrap().succeeded());

    let range = c
        .get("x", Some(GetOptions::new().with_range("z")))
        .await
        .unwrap();
    assert_eq!(range.count(), 2);

    let del = c.delete("x", None).await.unwrap();
    assert_eq!(del.deleted(), 1);

    // etcd's own errors come through unchanged.
    let err = c.put("", "v", None).await.unwrap_err().to_string();
    assert!(err.contains("etcdserver: key is not provided"), "{err}");
    let err = c.compact(1_000_000, None).await.unwrap_err().to_string();
    assert!(
        err.contains("etcdserver: mvcc: required revision is a future revision"),
        "{err}"
    );
}

/// Writes go to the leader first: a follower would only pass the proposal
/// on to it. (The proxy learns who leads from its health probes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_to_the_leader() {
    let cluster = Cluster::start(3).await;
    let proxy = TestProxy::start(&cluster.endpoints()).await;
    let via = proxy.client().await;
    let puts_served = |cluster: &Cluster| -> Vec<f64> {
        cluster
            .members
            .iter()
            .map(|m| m.metric("grpc_server_started_total", &["grpc_method=\"Put\""]))
            .collect()
    };
    eventually(
        "20 puts through the proxy all served by the leader",
        Duration::from_secs(20),
        || {
            let (mut via, cluster) = (via.clone(), &cluster);
            async move {
                let before = puts_served(cluster);
                for i in 0..20 {
                    via.put(format!("to-leader/{i}"), "v", None)
                        .await
                        .expect("put through the proxy");
                }
                let after = puts_served(cluster);
                let leader = cluster
                    .members
                    .iter()
                    .position(|m| m.metric("etcd_server_is_leader", &[]) == 1.0)?;
                let served: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
                let by_followers: f64 = served
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != leader)
                    .map(|(_, n)| n)
                    .sum();
                (served[leader] == 20.0 && by_followers == 0.0).then_some(())
            }
        },
    )
    .await;
}

/// A burst of concurrent writes, all on the leader's one connection, all
/// succeed: etcd's many small answers the proxy has not read yet must not
/// make h2 close that connection (it did, with adaptive windows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_writes_all_succeed() {
    let cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.endpoints()).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(proxy.client().await);
    }
    let writes: Vec<_> = (0..4000)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            tokio::spawn(async move {
                client
                    .put(format!("burst/{}", i % 500), "v", None)
                    .await
                    .map(drop)
            })
        })
        .collect();
    let mut failed = Vec::new();
    for w in writes {
        if let Err(e) = w.await.expect("write task") {
            failed.push(e.to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 4000 writes failed, first: {}",
        failed.len(),
        failed[0]
    );
}
