//! Draining on shutdown: /readyz turns 503 at once, the listener keeps
//! serving for the grace period, then closes; unary calls in flight finish,
//! long-lived streams end so clients reconnect elsewhere, and `run` returns.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::LockOptions;

use crate::support::http::{get, metric};
use crate::support::proxy::config;
use crate::support::{eventually, free_port, Cluster, TestProxy};

/// Bound on everything the drain does (grace 2 s + in-flight calls).
const BOUND: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn drain_ends_streams_finishes_unary_calls_and_clients_move_on() {
    let cluster = Cluster::start(1).await;
    let endpoints = cluster.endpoints();
    let mut ca = config(&endpoints);
    ca.drain_grace_period = Duration::from_secs(2);
    ca.drain_timeout = Duration::from_secs(30);
    let mut a = TestProxy::with_config(ca).await;
    let b = TestProxy::start(&endpoints).await;

    // A lock held through B, and a Lock call through A that waits on it:
    // a unary call that is still in flight when A's listener closes.
    let mut via_b = b.client().await;
    let holder_lease = via_b.lease_grant(60, None).await.expect("lease").id();
    let held = via_b
        .lock(
            "drain-lock",
            Some(LockOptions::new().with_lease(holder_lease)),
        )
        .await
        .expect("lock via B");
    let mut waiter = a.client().await;
    let waiter_lease = waiter.lease_grant(60, None).await.expect("lease").id();
    let blocked_lock = tokio::spawn(async move {
        waiter
            .lock(
                "drain-lock",
                Some(LockOptions::new().with_lease(waiter_lease)),
            )
            .await
    });
    let a_addr = a.endpoint();
    eventually("Lock call in flight on A", Duration::from_secs(20), || {
        let a_addr = a_addr.clone();
        async move {
            let body = get(&a_addr, "/metrics").await?.body;
            (metric(
                &body,
                "grpc_server_started_total",
                &["grpc_method=\"Lock\""],
            ) >= 1.0)
                .then_some(())
        }
    })
    .await;

    // A long-lived watch stream on A.
    let mut watcher = a.client().await;
    let mut watch_stream = watcher
        .watch("drain-watch", None)
        .await
        .expect("watch via A");
    // A keep-alive stream and an Observe stream on A.
    let (mut keeper, mut keepalive_stream) = watcher
        .lease_keep_alive(waiter_lease)
        .await
        .expect("keep-alive via A");
    keeper.keep_alive().await.expect("send a keep-alive");
    keepalive_stream
        .message()
        .await
        .expect("keep-alive stream")
        .expect("keep-alive answer");
    via_b
        .campaign("drain-election", "leader", holder_lease)
        .await
        .expect("campaign via B");
    let mut observe_stream = watcher
        .observe("drain-election")
        .await
        .expect("observe via A");
    observe_stream
        .message()
        .await
        .expect("observe stream")
        .expect("current leader");

    // Clients writing in a loop, through A until A says it is not ready.
    let moved = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let (done_a, done_b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for i in 0..4 {
        let (mut to_a, mut to_b) = (a.client().await, b.client().await);
        let (moved, stop, failures, done_a, done_b) = (
            moved.clone(),
            stop.clone(),
            failures.clone(),
            done_a.clone(),
            done_b.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let on_b = moved.load(Ordering::Relaxed);
                let client = if on_b { &mut to_b } else { &mut to_a };
                match client.put(format!("drain-{i}"), n.to_string(), None).await {
                    Ok(_) if on_b => done_b.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => done_a.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("via {}: {e}", if on_b { "B" } else { "A" }));
                        0
                    }
                };
            }
        }));
    }
    eventually("calls through A", Duration::from_secs(20), || {
        let n = done_a.load(Ordering::Relaxed);
        async move { (n >= 20).then_some(()) }
    })
    .await;

    a.begin_shutdown();
    // The answer itself proves A still accepts connections while not ready.
    let not_ready = eventually("A's /readyz turns 503", Duration::from_secs(20), || {
        let a_addr = a_addr.clone();
        async move { get(&a_addr, "/readyz").await.filter(|r| r.status == 503) }
    })
    .await;
    assert!(not_ready.body.contains("draining"), "{not_ready:?}");
    moved.store(true, Ordering::Relaxed);

    // Long-lived streams end with Unavailable once the grace period is over.
    macro_rules! ends {
        ($what:literal, $stream:expr) => {{
            let ended = tokio::time::timeout(BOUND, async {
                loop {
                    match $stream.message().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => break None,
                        Err(e) => break Some(e.to_string()),
                    }
                }
            })
            .await
            .expect(concat!($what, " stream ended within the bound"));
            let e = ended.expect(concat!($what, " stream ended with an error status"));
            assert!(e.contains("shutting down"), "{}: {e}", $what);
        }};
    }
    ends!("watch", watch_stream);
    ends!("keep-alive", keepalive_stream);
    ends!("observe", observe_stream);

    // The listener closes, while the Lock call is still waiting.
    eventually("A's listener closed", BOUND, || {
        let a_addr = a_addr.clone();
        async move { std::net::TcpStream::connect(&a_addr).is_err().then_some(()) }
    })
    .await;
    assert!(
        !blocked_lock.is_finished(),
        "the Lock call should still be waiting on the held lock"
    );
    // Releasing the lock through B lets A's in-flight Lock call finish.
    via_b
        .unlock(held.key().to_vec())
        .await
        .expect("unlock via B");
    let got = tokio::time::timeout(BOUND, blocked_lock)
        .await
        .expect("Lock answered")
        .expect("lock task");
    got.expect("the Lock call in flight through A succeeded during the drain");

    tokio::time::timeout(BOUND, a.finished())
        .await
        .expect("run returned within the bound");

    // Clients moved to B keep being served.
    let before = done_b.load(Ordering::Relaxed);
    eventually("more calls through B", Duration::from_secs(20), || {
        let n = done_b.load(Ordering::Relaxed);
        async move { (n >= before + 20).then_some(()) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "calls failed during the drain: {failures:?}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_drains_on_sigterm_and_exits_zero() {
    let cluster = Cluster::start(1).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_etcd-grpc-proxy"))
        .args(["grpc-proxy", "start", &format!("--listen-addr={listen}")])
        // Configuration from the environment, as in a container.
        .env("ETCD_GRPC_PROXY_ENDPOINTS", cluster.endpoints())
        .env("ETCD_GRPC_PROXY_METRICS_ADDR", format!("http://{metrics}"))
        .env("ETCD_GRPC_PROXY_DRAIN_GRACE_PERIOD", "3s")
        // The command line wins over the environment.
        .env("ETCD_GRPC_PROXY_LISTEN_ADDR", "127.0.0.1:1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the proxy binary");

    for addr in [listen.clone(), metrics.clone()] {
        eventually(
            &format!("binary ready on {addr}"),
            Duration::from_secs(30),
            || {
                let addr = addr.clone();
                async move { get(&addr, "/readyz").await.filter(|r| r.status == 200) }
            },
        )
        .await;
    }
    // Both ports listen with the backlog a member's own port has (Go's
    // somaxconn), not the 128 of a plain bind.
    let member_port = cluster.members[0]
        .addr()
        .rsplit(':')
        .next()
        .map(str::to_string);
    let member = listen_backlog(member_port.as_deref().expect("member port"));
    for addr in [&listen, &metrics] {
        let port = addr.rsplit(':').next().expect("port");
        assert_eq!(listen_backlog(port), member, "backlog of {addr}");
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    eventually("/readyz 503 after SIGTERM", Duration::from_secs(20), || {
        let metrics = metrics.clone();
        async move { get(&metrics, "/readyz").await.filter(|r| r.status == 503) }
    })
    .await;
    let exit = eventually("the binary exits", BOUND, || {
        let st = child.try_wait().expect("wait");
        async move { st }
    })
    .await;
    assert!(exit.success(), "exit status {exit:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_never_ends_cannot_hold_the_drain_past_its_timeout() {
    let cluster = Cluster::start(1).await;
    let mut c = config(&cluster.endpoints());
    c.drain_grace_period = Duration::ZERO;
    c.drain_timeout = Duration::from_secs(2);
    let mut proxy = TestProxy::with_config(c).await;

    // A lock held directly on the member; a Lock through the proxy waits forever.
    let mut direct = etcd_client::Client::connect([cluster.members[0].addr()], None)
        .await
        .expect("direct client");
    let lease = direct.lease_grant(60, None).await.expect("lease").id();
    direct
        .lock("stuck", Some(LockOptions::new().with_lease(lease)))
        .await
        .expect("lock");
    let mut waiter = proxy.client().await;
    let waiter_lease = waiter.lease_grant(60, None).await.expect("lease").id();
    let stuck = tokio::spawn(async move {
        waiter
            .lock("stuck", Some(LockOptions::new().with_lease(waiter_lease)))
            .await
    });
    let addr = proxy.endpoint();
    eventually("Lock call in flight", Duration::from_secs(20), || {
        let addr = addr.clone();
        async move {
            let body = get(&addr, "/metrics").await?.body;
            (metric(
                &body,
                "grpc_server_started_total",
                &["grpc_method=\"Lock\""],
            ) >= 1.0)
                .then_some(())
        }
    })
    .await;

    proxy.begin_shutdown();
    tokio::time::timeout(BOUND, proxy.finished())
        .await
        .expect("run returned at the drain timeout");
    // The connection was closed under the stuck call: the client hears about it.
    let answer = tokio::time::timeout(BOUND, stuck)
        .await
        .expect("the stuck call ended")
        .expect("task");
    assert!(
        answer.is_err(),
        "the Lock cannot have succeeded: {answer:?}"
    );
}

/// The accept backlog of the socket listening on loopback `port`, as `ss`
/// shows it (the Send-Q of a listening socket).
fn listen_backlog(port: &str) -> u32 {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) is needed: apt-get install iproute2");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("nothing listens on {port}: {text}"));
    line.split_whitespace()
        .nth(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("no backlog in {line:?}"))
}
