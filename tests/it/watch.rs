//! Watch through the proxy: same events as direct etcd, coalesced upstream,
//! and exact across the death of the member serving the upstream watch.

use std::time::Duration;

use etcd_client::{Client, EventType, WatchFilterType, WatchOptions, WatchStream};

use crate::support::{etcdctl, eventually, Cluster, TestProxy};

/// One event as a comparable record: (PUT/DELETE, key, value, mod revision).
type Ev = (bool, String, String, i64);

async fn collect(stream: &mut WatchStream, want: usize) -> Vec<Ev> {
    let mut out = Vec::new();
    while out.len() < want {
        let resp = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .unwrap_or_else(|_| panic!("watch stalled after {} of {want} events", out.len()))
            .expect("watch stream error")
            .expect("watch stream ended");
        assert!(!resp.canceled(), "watch canceled: {}", resp.cancel_reason());
        for e in resp.events() {
            let kv = e.kv().expect("event kv");
            out.push((
                e.event_type() == EventType::Put,
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
                kv.mod_revision(),
            ));
        }
    }
    out
}

/// Opens a watch and waits for etcd's `created` answer, so later writes are seen.
async fn watch(
    client: &mut Client,
    key: &str,
    options: Option<WatchOptions>,
) -> (i64, WatchStream) {
    let mut stream = client.watch(key, options).await.expect("open watch");
    let created = tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("created in time")
        .expect("watch error")
        .expect("watch stream ended");
    assert!(created.created(), "first answer is `created`");
    (created.watch_id(), stream)
}

async fn revision(client: &mut Client) -> i64 {
    client
        .get("any", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

/// The members' watcher count once the proxy's range cache has opened its
/// one watch over the whole key space: what tests count upstream watches from.
async fn watchers_beyond_the_cache(cluster: &Cluster) -> f64 {
    eventually(
        "the range cache's own watch is open",
        Duration::from_secs(10),
        || {
            let n = cluster.watchers_on().iter().sum::<f64>();
            async move { (n >= 1.0).then_some(n) }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_through_the_proxy_prints_what_direct_prints() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    let proxy = TestProxy::start(&direct).await;
    let via = proxy.endpoint();
    etcdctl(&via, &["put", "w/a", "1"]);
    let start = etcdctl(&via, &["get", "w/a", "-w", "json"]);
    let json = String::from_utf8_lossy(&start.stdout).to_string();
    let rev = crate::support::ctl::json_revision(&json);
    etcdctl(&via, &["put", "w/b", "2"]);
    etcdctl(&via, &["del", "w/a"]);
    // A watch from a past revision replays history; `timeout` ends etcdctl.
    let run = move |ep: String| {
        std::process::Command::new("timeout")
            .args([
                "3",
                "etcdctl",
                &format!("--endpoints={ep}"),
                "watch",
                "w/",
                "--prefix",
                &format!("--rev={rev}"),
            ])
            .env("ETCDCTL_API", "3")
            .output()
            .unwrap()
    };
    let (d, p) = tokio::join!(
        tokio::task::spawn_blocking({
            let ep = direct.clone();
            move || run(ep)
        }),
        tokio::task::spawn_blocking({
            let ep = via.clone();
            move || run(ep)
        })
    );
    let (d, p) = (
        String::from_utf8_lossy(&d.unwrap().stdout).to_string(),
        String::from_utf8_lossy(&p.unwrap().stdout).to_string(),
    );
    assert!(d.contains("DELETE"), "direct watch printed {d}");
    assert_eq!(p, d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_watchers_on_one_key_share_one_upstream_watch() {
    let cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.members[0].addr()).await;
    let mut client = proxy.client().await;
    let before = watchers_beyond_the_cache(&cluster).await;

    let mut streams = Vec::new();
    for _ in 0..1000 {
        streams.push(watch(&mut client, "hot", None).await);
    }
    let upstream = eventually(
        "member watcher gauge settles",
        Duration::from_secs(10),
        || {
            let n = cluster.watchers_on().iter().sum::<f64>() - before;
            async move { (n >= 1.0).then_some(n) }
        },
    )
    .await;
    assert_eq!(
        upstream, 1.0,
        "1000 watchers on one key opened {upstream} upstream watches"
    );

    client.put("hot", "v", None).await.unwrap();
    for (i, (_w, s)) in streams.iter_mut().enumerate() {
        let got = collect(s, 1).await;
        assert_eq!(got[0].2, "v", "watcher {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_filters_prev_kv_cancel_and_history_per_watcher() {
    let cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.members[0].addr()).await;
    let mut client = proxy.client().await;
    client.put("f", "0", None).await.unwrap();
    let rev0 = revision(&mut client).await;

    let (plain_id, mut plain) = watch(&mut client, "f", None).await;
    let (_, mut noput) = watch(
        &mut client,
        "f",
        Some(WatchOptions::new().with_filters([WatchFilterType::NoPut])),
    )
    .await;
    let (_, mut prev) = watch(&mut client, "f", Some(WatchOptions::new().with_prev_key())).await;
    let (_, mut no_prev) = watch(&mut client, "f", None).await;
    let (_, mut history) = watch(
        &mut client,
        "f",
        Some(WatchOptions::new().with_start_revision(rev0)),
    )
    .await;
    client.put("f", "1", None).await.unwrap();
    client.delete("f", None).await.unwrap();

    let p = collect(&mut plain, 2).await;
    assert_eq!(p.iter().map(|e| e.0).collect::<Vec<_>>(), [true, false]);
    let h = collect(&mut history, 3).await;
    assert_eq!(h[0].2, "0", "history starts at the requested revision");
    assert_eq!(&h[1..], &p[..]);
    let n = collect(&mut noput, 1).await;
    assert!(!n[0].0, "NOPUT watcher saw only the delete");
    let resp = prev.message().await.unwrap().unwrap();
    assert_eq!(resp.events()[0].prev_kv().unwrap().value(), b"0");
    // Sharing one upstream watch (and one encoding per view) with the
    // prev_kv watcher does not leak prev_kv to a watcher that did not ask.
    let resp = no_prev.message().await.unwrap().unwrap();
    assert!(
        resp.events()[0].prev_kv().is_none(),
        "prev_kv sent to a watcher that did not ask for it"
    );

    // Cancel: etcd's canceled response, then no more events.
    plain.cancel(plain_id).await.unwrap();
    let resp = plain.message().await.unwrap().unwrap();
    assert!(resp.canceled());
    // A write after the cancel reaches a watcher of the same key still
    // open (same broadcast), and not the canceled one.
    client.put("f", "2", None).await.unwrap();
    // (It has the delete still to read, then this put.)
    let after = collect(&mut no_prev, 2).await;
    assert_eq!((after[0].0, after[1].2.as_str()), (false, "2"));
    let late = tokio::time::timeout(Duration::from_millis(500), plain.message()).await;
    match late {
        Err(_) | Ok(Ok(None)) => {}
        Ok(other) => panic!("the canceled watcher got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_start_revision_is_reported_as_etcd_does() {
    let cluster = Cluster::start(1).await;
    let direct = Client::connect([cluster.members[0].addr()], None)
        .await
        .unwrap();
    let proxy = TestProxy::start(&cluster.members[0].addr()).await;
    let mut client = proxy.client().await;
    for i in 0..5 {
        client.put("c", i.to_string(), None).await.unwrap();
    }
    let rev = revision(&mut client).await;
    client.compact(rev, None).await.unwrap();
    for mut c in [direct, client] {
        let mut s = c
            .watch("c", Some(WatchOptions::new().with_start_revision(2)))
            .await
            .unwrap();
        let mut resp = s.message().await.unwrap().unwrap();
        if resp.created() && !resp.canceled() {
            resp = s.message().await.unwrap().unwrap();
        }
        assert!(resp.canceled());
        assert_eq!(resp.compact_revision(), rev);
    }
}

/// Writers on all three members; proxy watchers and a direct watcher record
/// the same sequence, while the member serving the proxy's upstream watch
/// is killed mid-stream and the cluster is compacted behind the watchers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_watchers_see_exactly_what_direct_sees_across_member_death() {
    let mut cluster = Cluster::start(3).await;
    let proxy = TestProxy::start(&cluster.endpoints()).await;
    let mut client = proxy.client().await;
    let rev0 = revision(&mut client).await + 1;

    let before = cluster.watchers_on();
    let mut proxied = Vec::new();
    for _ in 0..5 {
        proxied.push(watch(&mut client, "ex/", Some(WatchOptions::new().with_prefix())).await);
    }
    proxied.push(
        watch(
            &mut client,
            "ex/",
            Some(WatchOptions::new().with_prefix().with_start_revision(rev0)),
        )
        .await,
    );
    let serving = eventually(
        "the proxy's upstream watch shows on a member",
        Duration::from_secs(10),
        || {
            let now = cluster.watchers_on();
            let idx = now.iter().zip(&before).position(|(n, b)| n > b);
            async move { idx }
        },
    )
    .await;
    let other = (serving + 1) % 3;
    let mut direct = Client::connect([cluster.members[other].addr()], None)
        .await
        .unwrap();
    let (_, mut direct_stream) = watch(
        &mut direct,
        "ex/",
        Some(WatchOptions::new().with_prefix().with_start_revision(rev0)),
    )
    .await;

    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.addr()).collect();
    let write = |n: std::ops::Range<usize>, endpoints: Vec<String>| async move {
        let mut clients = Vec::new();
        for e in &endpoints {
            clients.push(Client::connect([e.clone()], None).await.ok());
        }
        for i in n {
            // Each write goes to a member in turn; a dead member's turn goes to the next.
            for attempt in 0..endpoints.len() {
                let idx = (i + attempt) % endpoints.len();
                if let Some(c) = clients[idx].as_mut() {
                    if c.put(format!("ex/{i}"), i.to_string(), None).await.is_ok() {
                        break;
                    }
                }
            }
        }
    };
    write(0..150, endpoints.clone()).await;
    let compact_to = revision(&mut direct).await;
    direct.compact(compact_to - 50, None).await.unwrap();
    cluster.members[serving].kill();
    let live: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| m.is_running())
        .map(|m| m.addr())
        .collect();
    cluster.wait_healthy().await;
    write(150..300, live).await;

    let want = collect(&mut direct_stream, 300).await;
    let mut keys: Vec<&String> = want.iter().map(|e| &e.1).collect();
    keys.dedup();
    assert!(keys.len() >= 300, "direct watcher saw every write");
    for (i, (_w, s)) in proxied.iter_mut().enumerate() {
        let got = collect(s, want.len()).await;
        assert_eq!(got, want, "proxy watcher {i} differs from direct");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_from_the_past_catches_up_alone_then_joins_the_shared_watch() {
    let cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.members[0].addr()).await;
    let mut client = proxy.client().await;
    let baseline = watchers_beyond_the_cache(&cluster).await;

    let (_, mut live) = watch(&mut client, "j", None).await;
    let first = revision(&mut client).await + 1;
    for v in ["1", "2", "3"] {
        client.put("j", v, None).await.unwrap();
    }
    assert_eq!(collect(&mut live, 3).await.len(), 3);

    // From the past: its own upstream watch replays history...
    let (_, mut late) = watch(
        &mut client,
        "j",
        Some(WatchOptions::new().with_start_revision(first)),
    )
    .await;
    let history: Vec<String> = collect(&mut late, 3)
        .await
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(history, ["1", "2", "3"]);
    // ...and at the next event, once both streams are at the same revision,
    // it joins the shared one: one upstream watch for both again.
    client.put("j", "4", None).await.unwrap();
    for s in [&mut live, &mut late] {
        let got: Vec<String> = collect(s, 1).await.into_iter().map(|e| e.2).collect();
        assert_eq!(got, ["4"]);
    }
    eventually(
        "caught-up watcher shares the upstream watch",
        Duration::from_secs(20),
        || {
            let n = cluster.watchers_on().iter().sum::<f64>() - baseline;
            async move { (n == 1.0).then_some(()) }
        },
    )
    .await;

    // Both get the next events exactly once, in order.
    client.put("j", "5", None).await.unwrap();
    for s in [&mut live, &mut late] {
        let got: Vec<String> = collect(s, 1).await.into_iter().map(|e| e.2).collect();
        assert_eq!(got, ["5"]);
    }
    client.put("j", "6", None).await.unwrap();
    for s in [&mut live, &mut late] {
        let got: Vec<String> = collect(s, 1).await.into_iter().map(|e| e.2).collect();
        assert_eq!(got, ["6"], "no duplicate after joining");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_watch_responses_split_as_etcd_splits_them() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    let proxy = TestProxy::start(&direct).await;
    let mut client = proxy.client().await;
    let first = revision(&mut client).await + 1;
    let value = "v".repeat(100 * 1024);
    for i in 0..30 {
        client
            .put(format!("frag/{i:02}"), value.as_str(), None)
            .await
            .unwrap();
    }
    // History of ~3 MiB in one answer: over etcd's 2 MiB, so it comes in parts.
    async fn shape(endpoint: &str, first: i64) -> Vec<usize> {
        let mut c = Client::connect([endpoint], None).await.expect("connect");
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(first)
            .with_fragment();
        let (_, mut s) = watch(&mut c, "frag/", Some(opts)).await;
        let mut sizes = Vec::new();
        let mut seen = 0;
        while seen < 30 {
            let resp = tokio::time::timeout(Duration::from_secs(20), s.message())
                .await
                .expect("answer in time")
                .expect("watch")
                .expect("answer");
            seen += resp.events().len();
            sizes.push(resp.events().len());
        }
        sizes
    }
    let via = shape(&proxy.endpoint(), first).await;
    let want = shape(&direct, first).await;
    assert!(want.len() > 1, "etcd itself split the history: {want:?}");
    assert_eq!(via, want, "events per answer through the proxy vs direct");
}
