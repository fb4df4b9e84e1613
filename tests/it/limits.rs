//! The limits a client cannot push past: connections (`--max-connections`)
//! and watchers per stream (`--max-watchers-per-stream`). Each refusal is
//! counted in `/metrics`, and well-behaved clients carry on.

use std::time::Duration;

use etcd_grpc_proxy::proto::etcdserverpb::watch_client::WatchClient;
use etcd_grpc_proxy::proto::etcdserverpb::{
    watch_request, WatchCancelRequest, WatchCreateRequest, WatchRequest,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::support::proxy::config;
use crate::support::{etcdctl, eventually, http, Cluster, TestProxy};

async fn proxy_metric(addr: &str, name: &str) -> f64 {
    let body = http::get(addr, "/metrics").await.expect("metrics").body;
    http::metric(&body, name, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_max_connections_is_closed_and_counted() {
    let cluster = Cluster::start(1).await;
    let mut cfg = config(&cluster.endpoints());
    cfg.max_connections = 3;
    let proxy = TestProxy::with_config(cfg).await;
    let via = proxy.endpoint();

    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(proxy.addr).await.expect("connect"));
    }
    // The fourth is closed by the proxy at once: its read ends.
    let mut extra = TcpStream::connect(proxy.addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buf))
        .await
        .expect("the proxy closes the connection past its limit");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // Once the idle ones go, clients are served again, and the refusal shows.
    drop(idle);
    eventually("a client served again", Duration::from_secs(10), || {
        let via = via.clone();
        async move {
            let out = tokio::task::spawn_blocking(move || etcdctl(&via, &["get", "k"]))
                .await
                .ok()?;
            out.status.success().then_some(())
        }
    })
    .await;
    assert!(proxy_metric(&via, "etcd_grpc_proxy_connections_refused_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_past_max_watchers_per_stream_is_canceled_with_a_reason() {
    let cluster = Cluster::start(1).await;
    let mut cfg = config(&cluster.endpoints());
    cfg.max_watchers_per_stream = 2;
    let proxy = TestProxy::with_config(cfg).await;
    let via = proxy.endpoint();

    let (tx, rx) = mpsc::channel(16);
    let channel = crate::support::grpc::channel(&via).await;
    let create = |key: &str| WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: key.into(),
                ..Default::default()
            },
        )),
    };
    tx.send(create("a")).await.unwrap();
    let mut answers = WatchClient::new(channel)
        .watch(ReceiverStream::new(rx))
        .await
        .expect("watch stream")
        .into_inner();
    let first = next(&mut answers).await;
    assert!(first.created && !first.canceled);
    tx.send(create("b")).await.unwrap();
    let second = next(&mut answers).await;
    assert!(second.created && !second.canceled);
    tx.send(create("c")).await.unwrap();
    let third = next(&mut answers).await;
    assert!(third.created && third.canceled, "{third:?}");
    assert!(
        String::from_utf8_lossy(&third.cancel_reason).contains("--max-watchers-per-stream=2"),
        "{third:?}"
    );

    // A cancel makes room again on the same stream.
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CancelRequest(
            WatchCancelRequest {
                watch_id: first.watch_id,
            },
        )),
    })
    .await
    .unwrap();
    assert!(next(&mut answers).await.canceled);
    tx.send(create("d")).await.unwrap();
    let fourth = next(&mut answers).await;
    assert!(fourth.created && !fourth.canceled, "{fourth:?}");
    assert_eq!(
        proxy_metric(&via, "etcd_grpc_proxy_watchers_refused_total").await,
        1.0
    );
}

async fn next(
    answers: &mut tonic::Streaming<etcd_grpc_proxy::proto::etcdserverpb::WatchResponse>,
) -> etcd_grpc_proxy::proto::etcdserverpb::WatchResponse {
    tokio::time::timeout(Duration::from_secs(20), answers.message())
        .await
        .expect("an answer")
        .expect("stream")
        .expect("not ended")
}

/// A member that accepts connections and never answers (SIGSTOP) stalls no
/// unrelated client: reads and writes without deadlines are answered by the
/// others, and watch creates go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_member_stalls_no_client() {
    let cluster = Cluster::start(3).await;
    let proxy = TestProxy::start(&cluster.endpoints()).await;
    let mut client = proxy.client().await;
    client.put("before", "v", None).await.expect("put");
    let mut leader = None;
    for (i, m) in cluster.members.iter().enumerate() {
        let mut c = etcd_client::Client::connect([m.addr()], None)
            .await
            .expect("direct client");
        let st = c.status().await.expect("status");
        if st.header().map(|h| h.member_id()) == Some(st.leader()) {
            leader = Some(i);
        }
    }
    let leader = leader.expect("a leader");
    let stopped = (leader + 1) % 3;
    cluster.members[stopped].pause(true);

    let start = std::time::Instant::now();
    for i in 0..20 {
        client
            .get("before", None)
            .await
            .expect("read with a member stopped");
        client
            .put(format!("during/{i}"), "v", None)
            .await
            .expect("write with a member stopped");
    }
    let mut events = client
        .watch(
            "during/",
            Some(etcd_client::WatchOptions::new().with_prefix()),
        )
        .await
        .expect("watch create with a member stopped");
    client.put("during/x", "v", None).await.expect("put");
    let got = tokio::time::timeout(Duration::from_secs(30), events.message())
        .await
        .expect("an event")
        .expect("stream")
        .expect("not ended");
    assert!(!got.events().is_empty() || got.created());
    cluster.members[stopped].pause(false);
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "calls took {:?} with one member stopped",
        start.elapsed()
    );
}

/// Past `--memory-budget-bytes`, new calls are answered as etcd answers
/// overload and new connections are closed; once the memory is given back,
/// calls are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_memory_budget_new_work_is_shed_until_memory_is_back() {
    let cluster = Cluster::start(1).await;
    let mut cfg = config(&cluster.endpoints());
    // The heap is the whole test process's: leave room for the tests
    // running beside this one.
    cfg.memory_budget_bytes = etcd_grpc_proxy::server::memory::held_bytes() + (256 << 20);
    let proxy = TestProxy::with_config(cfg).await;
    let via = proxy.endpoint();
    let mut client = proxy.client().await;
    client
        .put("k", "v", None)
        .await
        .expect("served under the budget");

    // What clients could make a proxy hold, stood in for by one buffer.
    let ballast = std::hint::black_box(vec![1u8; 512 << 20]);
    match client.put("k", "v2", None).await {
        Err(etcd_client::Error::GRpcStatus(s)) => {
            assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
            assert_eq!(s.message(), "etcdserver: too many requests");
        }
        other => panic!("expected etcd's overload answer, got {other:?}"),
    }
    let mut fresh = TcpStream::connect(proxy.addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), fresh.read(&mut buf))
        .await
        .expect("a new connection is closed past the budget");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(ballast);

    client.put("k", "v3", None).await.expect("served again");
    let shed = proxy_metric(&via, "etcd_grpc_proxy_calls_shed_total").await;
    assert!(shed >= 1.0, "{shed}");
    assert!(proxy_metric(&via, "etcd_grpc_proxy_connections_shed_total").await >= 1.0);
}
