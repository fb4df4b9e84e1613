//! `--experimental-leasing-prefix`: linearizable Gets served from a held
//! lease, and writes through any leasing proxy that make the owner give
//! its lease up first, so no reader ever sees an old value.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};

use crate::support::{eventually, proxy, Cluster, TestProxy};

const PREFIX: &str = "lp/";

async fn leasing_proxy(cluster: &Cluster) -> TestProxy {
    let mut cfg = proxy::config(&cluster.endpoints());
    cfg.leasing_prefix = Some(PREFIX.as_bytes().to_vec());
    TestProxy::with_config(cfg).await
}

/// Range and Txn calls the member has served (a lease acquisition is a Txn).
fn reads_served(cluster: &Cluster) -> f64 {
    let m = &cluster.members[0];
    m.ranges_served() + m.metric("grpc_server_started_total", &["grpc_method=\"Txn\""])
}

async fn get(client: &mut Client, key: &str) -> Option<String> {
    let resp = client.get(key, None).await.expect("linearizable get");
    resp.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

/// Reads `key` through `client` until the proxy holds `<prefix>key` (the
/// first reads may come before its session is up).
async fn lease_held(client: &Client, direct: &Client, key: &str, want: &str) {
    lease_held_as(client, direct, key, key, want).await
}

/// Like [`lease_held`], for a client key whose upstream key is `upstream`.
async fn lease_held_as(client: &Client, direct: &Client, key: &str, upstream: &str, want: &str) {
    eventually(
        "the proxy holds the leasing key",
        Duration::from_secs(20),
        || {
            let (mut client, mut direct) = (client.clone(), direct.clone());
            async move {
                assert_eq!(get(&mut client, key).await.as_deref(), Some(want));
                let lk = direct
                    .get(format!("{PREFIX}{upstream}"), None)
                    .await
                    .expect("direct get");
                lk.kvs()
                    .first()
                    .map(|kv| assert_ne!(kv.lease(), 0, "leasing key bound to a session lease"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_reads_skip_etcd_and_writes_elsewhere_revoke_first() {
    let cluster = Cluster::start(1).await;
    let a = leasing_proxy(&cluster).await;
    let b = leasing_proxy(&cluster).await;
    let mut via_a = a.client().await;
    let mut via_b = b.client().await;
    let direct = Client::connect([cluster.members[0].addr()], None)
        .await
        .expect("direct client");

    via_b.put("k", "v1", None).await.expect("put v1");
    lease_held(&via_a, &direct, "k", "v1").await;

    // (1) Held: linearizable reads of k are answered without etcd.
    let before = reads_served(&cluster);
    for _ in 0..50 {
        assert_eq!(get(&mut via_a, "k").await.as_deref(), Some("v1"));
    }
    // A few may be the proxies' own probes; 50 would mean no lease.
    assert!(
        reads_served(&cluster) - before < 10.0,
        "leased reads reached etcd"
    );

    // (2) B's write returns only once A gave k up: A's very next read sees it.
    via_b.put("k", "v2", None).await.expect("put v2 through B");
    assert_eq!(get(&mut via_a, "k").await.as_deref(), Some("v2"));
    // A Txn and a DeleteRange through B are covered too.
    lease_held(&via_a, &direct, "k", "v2").await;
    let txn = Txn::new()
        .when([Compare::value("k", CompareOp::Equal, "v2")])
        .and_then([TxnOp::put("k", "v3", None)]);
    assert!(via_b.txn(txn).await.expect("txn through B").succeeded());
    assert_eq!(get(&mut via_a, "k").await.as_deref(), Some("v3"));
    lease_held(&via_a, &direct, "k", "v3").await;
    via_b.delete("k", None).await.expect("delete through B");
    assert_eq!(get(&mut via_a, "k").await, None);

    // (3) The owner writes itself and reads its own write back.
    via_a.put("k", "v4", None).await.expect("put v4 through A");
    lease_held(&via_a, &direct, "k", "v4").await;
    via_a
        .put("k", "v5", None)
        .await
        .expect("put v5 through A, which holds k");
    assert_eq!(get(&mut via_a, "k").await.as_deref(), Some("v5"));
    assert_eq!(get(&mut via_b, "k").await.as_deref(), Some("v5"));
    // Now B holds k: a write through A is seen by B at once.
    lease_held(&via_b, &direct, "k", "v5").await;
    via_a
        .put("k", "v6", None)
        .await
        .expect("put v6 through A while B holds k");
    assert_eq!(get(&mut via_b, "k").await.as_deref(), Some("v6"));
    assert_eq!(get(&mut via_a, "k").await.as_deref(), Some("v6"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leasing_respects_the_namespace_and_range_deletes() {
    let cluster = Cluster::start(1).await;
    let mk = |cluster: &Cluster| {
        let mut cfg = proxy::config(&cluster.endpoints());
        cfg.leasing_prefix = Some(PREFIX.as_bytes().to_vec());
        cfg.namespace = etcd_grpc_proxy::kv::namespace::Namespace::new("ns/");
        cfg
    };
    let a = TestProxy::with_config(mk(&cluster)).await;
    let b = TestProxy::with_config(mk(&cluster)).await;
    let mut via_a = a.client().await;
    let mut via_b = b.client().await;
    let direct = Client::connect([cluster.members[0].addr()], None)
        .await
        .expect("direct client");

    via_b.put("d/1", "x", None).await.expect("put");
    // The leasing key is made from the upstream key, namespace included.
    lease_held_as(&via_a, &direct, "d/1", "ns/d/1", "x").await;
    via_b
        .delete("d/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .expect("delete prefix through B");
    assert_eq!(get(&mut via_a, "d/1").await, None);
}
