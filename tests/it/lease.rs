//! Leases through the proxy: etcdctl as direct, coalesced keep-alives, and
//! a lease that outlives the member holding its upstream keep-alive.

use std::time::Duration;

use crate::support::{etcdctl, Cluster, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lease_commands_work_through_the_proxy() {
    let cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.members[0].addr()).await;
    let via = proxy.endpoint();
    let out = etcdctl(&via, &["lease", "grant", "60"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains("granted with TTL(60s)"),
        "{text}"
    );
    let id = text.split_whitespace().nth(1).unwrap().to_string();

    let out = etcdctl(&via, &["put", "leased", "v", &format!("--lease={id}")]);
    assert!(out.status.success());
    let out = etcdctl(&via, &["lease", "keep-alive", "--once", &id]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains(&format!("lease {id} keepalived with TTL(60)")),
        "{text}"
    );
    let out = etcdctl(&via, &["lease", "timetolive", &id, "--keys"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("granted with TTL(60s)") && text.contains("attached keys([leased])"),
        "{text}"
    );
    let out = etcdctl(&via, &["lease", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    let out = etcdctl(&via, &["lease", "revoke", &id]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked"));
    let out = etcdctl(&via, &["get", "leased"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    // etcd's error for a lease that no longer exists, unchanged.
    let out = etcdctl(&via, &["lease", "revoke", &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("etcdserver: requested lease not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_lease_reaches_every_keep_alive_stream_as_ttl_zero() {
    let cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.members[0].addr()).await;
    let mut client = proxy.client().await;
    let id = client.lease_grant(30, None).await.unwrap().id();
    let mut streams = Vec::new();
    for _ in 0..10 {
        // etcd-client consumes the answer to its first keep-alive itself.
        streams.push(client.lease_keep_alive(id).await.unwrap());
    }
    client.lease_revoke(id).await.unwrap();
    for (keeper, stream) in streams.iter_mut() {
        keeper.keep_alive().await.unwrap();
        let resp = stream.message().await.unwrap().unwrap();
        assert_eq!(resp.id(), id);
        assert_eq!(resp.ttl(), 0, "a revoked lease answers TTL 0, as etcd does");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_kept_alive_by_100_streams_survives_death_of_the_keepalive_member() {
    let mut cluster = Cluster::start(3).await;
    let proxy = TestProxy::start(&cluster.endpoints()).await;
    let mut client = proxy.client().await;
    let ttl = 3;
    let id = client.lease_grant(ttl, None).await.unwrap().id();
    let before: Vec<f64> = cluster
        .members
        .iter()
        .map(|m| {
            m.metric(
                "grpc_server_started_total",
                &["grpc_method=\"LeaseKeepAlive\""],
            )
        })
        .collect();

    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let killed = std::sync::Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (mut keeper, mut stream) = client.lease_keep_alive(id).await.unwrap();
        let (stop, killed) = (stop.clone(), killed.clone());
        tasks.push(tokio::spawn(async move {
            // (answers after the kill, errors): the member's death must be
            // invisible to every client stream.
            let (mut after_kill, mut errors) = (0u32, Vec::new());
            while !stop.load(Relaxed) {
                let was_killed = killed.load(Relaxed);
                if let Err(e) = keeper.keep_alive().await {
                    errors.push(format!("send: {e}"));
                }
                // A slow answer is read on a later turn; only errors count.
                match tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
                    Ok(Ok(Some(r))) => {
                        assert!(r.ttl() > 0, "lease expired while kept alive");
                        if was_killed {
                            after_kill += 1;
                        }
                    }
                    Ok(Ok(None)) => errors.push("stream ended".into()),
                    Ok(Err(e)) => errors.push(format!("stream: {e}")),
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            (after_kill, errors)
        }));
    }
    // Find the member holding the upstream keep-alive stream, and kill it.
    let holder = crate::support::eventually(
        "an upstream keep-alive stream on a member",
        Duration::from_secs(10),
        || {
            let idx = cluster.members.iter().zip(&before).position(|(m, b)| {
                m.metric(
                    "grpc_server_started_total",
                    &["grpc_method=\"LeaseKeepAlive\""],
                ) > *b
            });
            async move { idx }
        },
    )
    .await;
    cluster.members[holder].kill();
    killed.store(true, Relaxed);
    // Keep going for more than twice the TTL: the lease must not expire.
    tokio::time::sleep(Duration::from_secs(2 * ttl as u64 + 2)).await;
    stop.store(true, Relaxed);
    for (i, t) in tasks.into_iter().enumerate() {
        let (after_kill, errors) = t.await.unwrap();
        assert!(errors.is_empty(), "stream {i} saw errors: {errors:?}");
        assert!(after_kill > 0, "stream {i} got no answer after the kill");
    }
    let ttl_left = client.lease_time_to_live(id, None).await.unwrap().ttl();
    assert!(
        ttl_left > 0,
        "lease survived the keep-alive member's death (ttl {ttl_left})"
    );
}

/// A client that floods one keep-alive stream with renewals of one lease and
/// never reads costs the proxy a counter, not a task per message: the
/// runtime's live tasks stay near where they were, and every request read
/// is answered once the client reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_flood_costs_no_task_per_message() {
    use etcd_grpc_proxy::proto::etcdserverpb::lease_client::LeaseClient;
    use etcd_grpc_proxy::proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest};

    let cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.members[0].addr()).await;
    let channel = crate::support::grpc::channel(&proxy.endpoint()).await;
    let id = LeaseClient::new(channel.clone())
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();

    const FLOOD: usize = 20_000;
    let requests = futures::stream::iter((0..FLOOD).map(move |_| LeaseKeepAliveRequest { id }));
    let mut answers = LeaseClient::new(channel)
        .lease_keep_alive(requests)
        .await
        .expect("keep-alive stream")
        .into_inner();
    let mut most = before;
    for _ in 0..30 {
        most = most.max(tasks());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        most < before + 200,
        "live tasks grew from {before} to {most} while {FLOOD} keep-alives waited"
    );
    // Reading now, the renewals come back with the lease's TTL.
    for _ in 0..1000 {
        let a = answers.message().await.expect("answer").expect("not ended");
        assert_eq!(a.id, id);
        assert!(a.ttl > 0);
    }
}

/// Keep-alives under tokens etcd does not accept are answered as the
/// member answers them, and leave no renewal state behind in the proxy
/// (where the member refuses them; etcd 3.4.23 renews under any token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alives_under_random_tokens_leave_no_state() {
    use etcd_grpc_proxy::proto::etcdserverpb::lease_client::LeaseClient;
    use etcd_grpc_proxy::proto::etcdserverpb::LeaseKeepAliveRequest;

    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    crate::support::ctl::enable_auth_with_alice_and_bob(&direct);
    let proxy = TestProxy::start(&direct).await;
    let via = proxy.endpoint();

    let answer_at = |addr: String, token: String| async move {
        let channel = crate::support::grpc::channel(&addr).await;
        let mut req = tonic::Request::new(futures::stream::iter([LeaseKeepAliveRequest { id: 7 }]));
        req.metadata_mut()
            .insert("token", token.parse().expect("ascii"));
        match LeaseClient::new(channel).lease_keep_alive(req).await {
            Err(s) => crate::support::grpc::status_text(&s),
            Ok(r) => match r.into_inner().message().await {
                Err(s) => crate::support::grpc::status_text(&s),
                Ok(m) => (tonic::Code::Ok, format!("{m:?}")),
            },
        }
    };
    let mut refused = true;
    for i in 0..50 {
        let token = format!("random.{i}.{}", fastrand::u64(..));
        let on_member = answer_at(direct.clone(), token.clone()).await;
        refused &= on_member.0 == tonic::Code::Unauthenticated;
        assert_eq!(answer_at(via.clone(), token).await, on_member);
    }
    if !refused {
        // Releases before the auth hardening renew under any token: state
        // is kept per token then, within the proxy's token limit.
        return;
    }
    let body = crate::support::http::get(&via, "/metrics")
        .await
        .expect("metrics")
        .body;
    let tokens = crate::support::http::metric(&body, "etcd_grpc_proxy_keepalive_tokens", &[]);
    assert!(tokens <= 1.0, "{tokens} tokens kept after 50 refused ones");
}
