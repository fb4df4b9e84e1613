//! The story the proxy exists for: members are added and lost, and clients
//! pointed only at the proxy never notice.

use std::time::Duration;

use crate::support::{etcdctl, eventually, Cluster, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_started_with_one_endpoint_follows_member_add_and_survives_its_death() {
    let mut cluster = Cluster::start(3).await;
    let first = cluster.members[0].addr();
    let proxy = TestProxy::start(&first).await;
    let mut client = proxy.client().await;
    client
        .put("story", "v1", None)
        .await
        .expect("put through proxy");

    // The operator adds m4; the proxy must start using it without any change.
    let m4 = cluster.add_member().await;
    let before = cluster.members[m4].ranges_served();
    eventually(
        "the new member serves calls sent to the proxy",
        Duration::from_secs(30),
        || {
            let mut client = client.clone();
            let member = &cluster.members[m4];
            async move {
                for _ in 0..20 {
                    client.get("story", None).await.ok()?;
                }
                (member.ranges_served() > before).then_some(())
            }
        },
    )
    .await;

    // The one member the proxy was started with dies. If it led the cluster,
    // etcd itself answers no write until the others elect a new leader, for
    // direct clients as for the proxy: wait for that, then no call may fail.
    cluster.members[0].kill();
    cluster.wait_healthy().await;
    let endpoint = proxy.endpoint();
    for i in 0..100 {
        if i % 4 == 0 {
            let out = tokio::task::spawn_blocking({
                let endpoint = endpoint.clone();
                move || etcdctl(&endpoint, &["put", &format!("k{i}"), "v"])
            })
            .await
            .unwrap();
            assert!(
                out.status.success(),
                "call {i} (etcdctl put) failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            let resp = client
                .get("story", None)
                .await
                .unwrap_or_else(|e| panic!("call {i} (get) failed: {e}"));
            assert_eq!(resp.kvs()[0].value(), b"v1");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_balanced_over_all_members() {
    let cluster = Cluster::start(3).await;
    let proxy = TestProxy::start(&cluster.members[0].addr()).await;
    let mut client = proxy.client().await;
    client.put("k", "v", None).await.unwrap();
    let before: Vec<f64> = cluster.members.iter().map(|m| m.ranges_served()).collect();
    eventually(
        "every member serves some Ranges",
        Duration::from_secs(30),
        || {
            let mut client = client.clone();
            let cluster = &cluster;
            let before = &before;
            async move {
                for _ in 0..30 {
                    client.get("k", None).await.ok()?;
                }
                cluster
                    .members
                    .iter()
                    .zip(before)
                    .all(|(m, b)| m.ranges_served() > *b)
                    .then_some(())
            }
        },
    )
    .await;
}
