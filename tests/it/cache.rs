//! The range cache: serializable reads are served from the proxy's memory,
//! stay coherent with writes made anywhere (directly on any member, through
//! another proxy), linearizable reads are answered from it only behind a
//! shared read barrier and still see every earlier write, and nothing cached
//! reaches a client that etcd would refuse.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};

use crate::support::ctl::enable_auth_with_alice_and_bob;
use crate::support::{etcdctl, eventually, http, Cluster, TestProxy};

fn ranges_served(cluster: &Cluster) -> f64 {
    cluster
        .members
        .iter()
        .filter(|m| m.is_running())
        .map(|m| m.ranges_served())
        .sum()
}

async fn serializable(client: &mut Client, key: &str) -> Option<String> {
    let resp = client
        .get(key, Some(GetOptions::new().with_serializable()))
        .await
        .expect("serializable get");
    resp.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

async fn linearizable(client: &mut Client, key: &str) -> Option<String> {
    let resp = client.get(key, None).await.expect("get");
    resp.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_reads_are_cached_and_follow_writes_from_anywhere() {
    let cluster = Cluster::start(3).await;
    let p1 = TestProxy::start(&cluster.endpoints()).await;
    let p2 = TestProxy::start(&cluster.endpoints()).await;
    let mut via1 = p1.client().await;
    let mut via2 = p2.client().await;
    let mut direct = Client::connect([cluster.members[1].addr()], None)
        .await
        .expect("direct client");

    direct.put("k", "v1", None).await.expect("put");
    // The cache's watch is open once a read is answered without reaching etcd.
    eventually(
        "serializable reads answered from the cache",
        Duration::from_secs(20),
        || {
            let (mut via1, cluster) = (via1.clone(), &cluster);
            async move {
                // (The first read may come from a follower a moment behind the leader.)
                if serializable(&mut via1, "k").await.as_deref() != Some("v1") {
                    return None;
                }
                let before = ranges_served(cluster);
                for _ in 0..50 {
                    assert_eq!(serializable(&mut via1, "k").await.as_deref(), Some("v1"));
                }
                // A few Ranges may be the proxy's own probes; 50 would mean no cache.
                (ranges_served(cluster) - before < 10.0).then_some(())
            }
        },
    )
    .await;

    // A write made directly on another member: linearizable reads see it at
    // once; serializable ones as soon as the proxy has seen its revision, and
    // never go back to the old value after.
    direct.put("k", "v2", None).await.expect("put");
    assert_eq!(linearizable(&mut via1, "k").await.as_deref(), Some("v2"));
    eventually("cached value replaced after a direct write", Duration::from_secs(10), || {
        let mut via1 = via1.clone();
        async move { (serializable(&mut via1, "k").await.as_deref() == Some("v2")).then_some(()) }
    })
    .await;
    for _ in 0..20 {
        assert_eq!(serializable(&mut via1, "k").await.as_deref(), Some("v2"));
    }

    // A write through another proxy, and a delete: same.
    via2.put("k", "v3", None).await.expect("put via p2");
    // Read-your-writes through the proxy that wrote: no waiting at all.
    assert_eq!(serializable(&mut via2, "k").await.as_deref(), Some("v3"));
    eventually("p1 follows p2's write", Duration::from_secs(10), || {
        let mut via1 = via1.clone();
        async move { (serializable(&mut via1, "k").await.as_deref() == Some("v3")).then_some(()) }
    })
    .await;
    direct.delete("k", None).await.expect("delete");
    eventually(
        "p1 follows a direct delete",
        Duration::from_secs(10),
        || {
            let mut via1 = via1.clone();
            async move { serializable(&mut via1, "k").await.is_none().then_some(()) }
        },
    )
    .await;

    // Prefix reads are invalidated by a write to any key inside them.
    direct.put("dir/a", "1", None).await.expect("put");
    let prefix = || GetOptions::new().with_prefix().with_serializable();
    // (A serializable read may come from a follower a moment behind the leader.)
    eventually(
        "prefix read sees the first key",
        Duration::from_secs(10),
        || {
            let mut via1 = via1.clone();
            async move { (via1.get("dir/", Some(prefix())).await.ok()?.count() == 1).then_some(()) }
        },
    )
    .await;
    direct.put("dir/b", "2", None).await.expect("put");
    eventually(
        "prefix read sees a new key",
        Duration::from_secs(10),
        || {
            let mut via1 = via1.clone();
            async move { (via1.get("dir/", Some(prefix())).await.ok()?.count() == 2).then_some(()) }
        },
    )
    .await;
}

async fn proxy_metric(proxy: &TestProxy, name: &str) -> f64 {
    let body = http::get(&proxy.endpoint(), "/metrics")
        .await
        .expect("proxy /metrics")
        .body;
    http::metric(&body, name, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_share_barriers_and_see_every_earlier_write() {
    let cluster = Cluster::start(3).await;
    let proxy = TestProxy::start(&cluster.endpoints()).await;
    let via = proxy.client().await;
    let mut on_member = Vec::new();
    for m in &cluster.members {
        on_member.push(
            Client::connect([m.addr()], None)
                .await
                .expect("direct client"),
        );
    }
    on_member[0].put("hot", "0", None).await.expect("put");
    eventually("the cache's watch is open", Duration::from_secs(20), || {
        let (mut via, proxy) = (via.clone(), &proxy);
        async move {
            serializable(&mut via, "hot").await;
            (proxy_metric(proxy, "etcd_grpc_proxy_cache_hits_total").await > 0.0).then_some(())
        }
    })
    .await;

    // A write made directly on any member, then at once a linearizable read
    // through the proxy, which holds the previous value in its cache: the
    // read must see the write, every time. Large writes elsewhere keep the
    // cache's watch busy, so its events often arrive after the barrier.
    let mut noisy = on_member[1].clone();
    let noise = tokio::spawn(async move {
        for n in 0u64.. {
            if noisy
                .put(format!("noise/{}", n % 8), vec![b'x'; 256 * 1024], None)
                .await
                .is_err()
            {
                break;
            }
        }
    });
    for i in 1..=200 {
        let writer = &mut on_member[i % 3];
        writer
            .put("hot", i.to_string(), None)
            .await
            .expect("direct put");
        let seen = linearizable(&mut via.clone(), "hot").await;
        assert_eq!(
            seen,
            Some(i.to_string()),
            "a linearizable read missed a write that finished before it began"
        );
    }
    noise.abort();

    // Many concurrent linearizable reads of a cached key: a few barriers
    // reach etcd, not one Range per read.
    linearizable(&mut via.clone(), "hot").await;
    let before = ranges_served(&cluster);
    let barriers_before = proxy_metric(&proxy, "etcd_grpc_proxy_read_barriers_total").await;
    let reads: Vec<_> = (0..400)
        .map(|_| {
            let mut via = via.clone();
            tokio::spawn(async move { linearizable(&mut via, "hot").await })
        })
        .collect();
    for r in reads {
        assert_eq!(r.await.expect("read task").as_deref(), Some("200"));
    }
    let served = ranges_served(&cluster) - before;
    let barriers =
        proxy_metric(&proxy, "etcd_grpc_proxy_read_barriers_total").await - barriers_before;
    assert!(barriers >= 1.0, "no read barrier was sent");
    assert!(
        served < 100.0,
        "400 linearizable reads of a cached key reached etcd {served} times"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_cached_reaches_a_client_etcd_would_refuse() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    let proxy = TestProxy::start(&direct).await;
    let via = proxy.endpoint();
    let mut anonymous = proxy.client().await;

    anonymous.put("/a/secret", "s1", None).await.expect("put");
    // Warm the cache for token-less clients.
    eventually("cached", Duration::from_secs(20), || {
        let (mut anonymous, cluster) = (anonymous.clone(), &cluster);
        async move {
            serializable(&mut anonymous, "/a/secret").await;
            let before = ranges_served(cluster);
            for _ in 0..20 {
                serializable(&mut anonymous, "/a/secret").await;
            }
            (ranges_served(cluster) - before < 10.0).then_some(())
        }
    })
    .await;

    enable_auth_with_alice_and_bob(&via);

    // Right after auth is enabled (through this proxy), the cached answer is
    // not served to a client without a token: etcd refuses it.
    let err = anonymous
        .get("/a/secret", Some(GetOptions::new().with_serializable()))
        .await
        .expect_err("token-less read after auth enable");
    assert!(err.to_string().contains("user name is empty"), "{err}");

    // Per user: alice reads, bob is refused, also for serializable reads.
    let opts =
        |u: &str, p: &str| Some(ConnectOptions::new().with_user(u.to_string(), p.to_string()));
    let mut alice = Client::connect([via.as_str()], opts("alice", "pa"))
        .await
        .expect("alice");
    let mut bob = Client::connect([via.as_str()], opts("bob", "pb"))
        .await
        .expect("bob");
    for _ in 0..5 {
        assert_eq!(
            serializable(&mut alice, "/a/secret").await.as_deref(),
            Some("s1")
        );
        let err = bob
            .get("/a/secret", Some(GetOptions::new().with_serializable()))
            .await
            .expect_err("bob refused");
        assert!(err.to_string().contains("permission denied"), "{err}");
    }

    let out = etcdctl(&via, &["--user=root:rootpw", "auth", "disable"]);
    assert!(out.status.success());
}
