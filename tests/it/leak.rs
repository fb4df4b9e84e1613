//! Clients that come and go leave nothing behind: after thousands of
//! clients opened watches, keep-alives and progress requests and canceled
//! calls, the proxy's live tasks and open file descriptors are back near
//! their baseline.

use std::time::Duration;

use etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient;
use etcd_grpc_proxy::proto::etcdserverpb::lease_client::LeaseClient;
use etcd_grpc_proxy::proto::etcdserverpb::watch_client::WatchClient;
use etcd_grpc_proxy::proto::etcdserverpb::{
    watch_request, LeaseGrantRequest, LeaseKeepAliveRequest, RangeRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest,
};
use futures::StreamExt;

use crate::support::{eventually, Cluster, TestProxy};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn live_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// One client's life: a connection, a watch with a progress request, a
/// keep-alive, a read it gives up on, then gone.
pub(crate) async fn one_client(addr: String, lease: i64, n: usize) {
    let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
    else {
        return;
    };
    let key = format!("leak/{}", n % 50);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let _ = tx
        .send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: key.into_bytes(),
                    ..Default::default()
                },
            )),
        })
        .await;
    let _ = tx
        .send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::ProgressRequest(
                WatchProgressRequest {},
            )),
        })
        .await;
    if let Ok(w) = WatchClient::new(channel.clone())
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        let mut w = w.into_inner();
        let _ = tokio::time::timeout(Duration::from_secs(5), w.message()).await;
    }
    let ka = futures::stream::iter([LeaseKeepAliveRequest { id: lease }]);
    if let Ok(s) = LeaseClient::new(channel.clone()).lease_keep_alive(ka).await {
        let _ = s.into_inner().next().await;
    }
    // A call given up on before its answer.
    let _ = tokio::time::timeout(
        Duration::from_millis(1),
        KvClient::new(channel).range(RangeRequest {
            key: b"leak/0".to_vec(),
            ..Default::default()
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_clients_come_and_go_and_leave_nothing_behind() {
    let cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.endpoints()).await;
    let addr = proxy.endpoint();
    let lease = LeaseClient::new(crate::support::grpc::channel(&addr).await)
        .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    // A first round warms up what the proxy keeps for good (member
    // channels, the cache's watch, keep-alive shards).
    futures::stream::iter(0..100)
        .for_each_concurrent(50, |n| one_client(addr.clone(), lease, n))
        .await;
    let (tasks_before, fds_before) = (live_tasks(), open_fds());

    const CLIENTS: usize = 10_000;
    futures::stream::iter(0..CLIENTS)
        .for_each_concurrent(100, |n| one_client(addr.clone(), lease, n))
        .await;

    let within = |now: usize, base: usize| now <= base + base / 10 + 5;
    eventually(
        "tasks and file descriptors back near their baseline",
        Duration::from_secs(60),
        || {
            let (tasks, fds) = (live_tasks(), open_fds());
            async move { (within(tasks, tasks_before) && within(fds, fds_before)).then_some(()) }
        },
    )
    .await;
}

/// When `run` returns, every task the proxy started has ended: broadcasts,
/// keep-alive shards, control workers and client streams included, even
/// with clients still connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_run_returns_every_task_it_started_has_ended() {
    let cluster = Cluster::start(1).await;
    let baseline = live_tasks();
    let proxy = TestProxy::start(&cluster.endpoints()).await;
    let addr = proxy.endpoint();
    let lease = LeaseClient::new(crate::support::grpc::channel(&addr).await)
        .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    // Clients that stay connected: a watch with a progress request, and a
    // keep-alive stream left open.
    let channel = crate::support::grpc::channel(&addr).await;
    let (wtx, wrx) = tokio::sync::mpsc::channel(4);
    wtx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"held".to_vec(),
                ..Default::default()
            },
        )),
    })
    .await
    .unwrap();
    let mut watch = WatchClient::new(channel.clone())
        .watch(tokio_stream::wrappers::ReceiverStream::new(wrx))
        .await
        .expect("watch")
        .into_inner();
    assert!(watch.message().await.expect("created").is_some());
    let (ktx, krx) = tokio::sync::mpsc::channel(4);
    ktx.send(LeaseKeepAliveRequest { id: lease }).await.unwrap();
    let mut keep = LeaseClient::new(channel.clone())
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(krx))
        .await
        .expect("keep-alive")
        .into_inner();
    assert!(keep.message().await.expect("renewed").is_some());
    assert!(live_tasks() > baseline, "the proxy runs tasks");

    proxy.stop().await;
    drop((watch, keep, wtx, ktx, channel));
    eventually(
        "every task the proxy started has ended",
        Duration::from_secs(20),
        || async move { (live_tasks() <= baseline + 2).then_some(()) },
    )
    .await;
}
