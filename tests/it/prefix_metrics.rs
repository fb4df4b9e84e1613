//! `--metrics-prefixes`: known traffic under two configured prefixes and
//! outside them, and the per-prefix counters on the proxy's /metrics equal
//! it, `other` included; the watchers gauge and events delivered follow a
//! watch.

use std::time::Duration;

use etcd_client::{GetOptions, WatchOptions};
use etcd_grpc_proxy::proto::etcdserverpb::{PutRequest, RangeRequest};
use prost::Message;

use crate::support::http::{get, metric};
use crate::support::proxy::config;
use crate::support::{eventually, Cluster, TestProxy};

const PODS: &str = "/registry/pods/";
const EVENTS: &str = "/registry/events/";

async fn scrape(proxy: &TestProxy) -> String {
    get(&proxy.endpoint(), "/metrics")
        .await
        .expect("proxy /metrics")
        .body
}

fn requests(body: &str, prefix: &str, method: &str, code: &str) -> f64 {
    metric(
        body,
        "etcd_grpc_proxy_prefix_requests_total",
        &[
            &format!("prefix=\"{prefix}\""),
            &format!("grpc_method=\"{method}\""),
            &format!("grpc_code=\"{code}\""),
        ],
    )
}

fn per_prefix(body: &str, name: &str, prefix: &str, more: &[&str]) -> f64 {
    let p = format!("prefix=\"{prefix}\"");
    let mut filters = vec![p.as_str()];
    filters.extend_from_slice(more);
    metric(body, name, &filters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_prefix_counters_equal_the_traffic_sent() {
    let cluster = Cluster::start(1).await;
    let mut c = config(&cluster.endpoints());
    c.metrics_prefixes = vec![PODS.into(), EVENTS.into(), "/registry/".into()];
    let proxy = TestProxy::with_config(c).await;
    let mut client = proxy.client().await;

    // One watcher on the pods prefix, open before the writes.
    let mut events = client
        .watch(PODS, Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    eventually(
        "the watcher counts as open",
        Duration::from_secs(10),
        || async {
            let body = scrape(&proxy).await;
            (per_prefix(&body, "etcd_grpc_proxy_prefix_watchers", PODS, &[]) == 1.0).then_some(())
        },
    )
    .await;

    let mut put_bytes = 0;
    for i in 0..7 {
        let (key, value) = (format!("{PODS}p{i}"), format!("v{i}"));
        put_bytes += PutRequest {
            key: key.clone().into_bytes(),
            value: value.clone().into_bytes(),
            ..Default::default()
        }
        .encoded_len();
        client.put(key, value, None).await.expect("put pod");
    }
    let mut range_bytes = 0;
    for i in 0..3 {
        let key = format!("{PODS}p{i}");
        range_bytes += RangeRequest {
            key: key.clone().into_bytes(),
            ..Default::default()
        }
        .encoded_len();
        client.get(key, None).await.expect("get pod");
    }
    for i in 0..2 {
        client
            .put(format!("{EVENTS}e{i}"), "e", None)
            .await
            .expect("put event");
    }
    // Longest prefix wins: under /registry/ but in neither longer prefix.
    client
        .put("/registry/leases/l", "l", None)
        .await
        .expect("put lease");
    client
        .put("/elsewhere", "x", None)
        .await
        .expect("put other");
    // A refused call is counted with its code: etcd refuses an empty key.
    client.put("", "x", None).await.expect_err("empty key");
    // A prefix read: counted under its start key's prefix.
    client
        .get(EVENTS, Some(GetOptions::new().with_prefix()))
        .await
        .expect("list events");

    let mut seen = 0;
    let mut watch_id = 0;
    while seen < 7 {
        let resp = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("watch events in time")
            .expect("watch stream")
            .expect("watch response");
        seen += resp.events().len();
        watch_id = resp.watch_id();
    }

    let body = eventually(
        "all 7 pod events delivered",
        Duration::from_secs(10),
        || async {
            let body = scrape(&proxy).await;
            (per_prefix(
                &body,
                "etcd_grpc_proxy_prefix_watch_events_total",
                PODS,
                &[],
            ) == 7.0)
                .then_some(body)
        },
    )
    .await;
    assert_eq!(requests(&body, PODS, "Put", "OK"), 7.0, "{body}");
    assert_eq!(requests(&body, PODS, "Range", "OK"), 3.0);
    assert_eq!(requests(&body, PODS, "Watch", "OK"), 1.0);
    assert_eq!(requests(&body, EVENTS, "Put", "OK"), 2.0);
    assert_eq!(requests(&body, EVENTS, "Range", "OK"), 1.0);
    assert_eq!(requests(&body, "/registry/", "Put", "OK"), 1.0);
    assert_eq!(requests(&body, "other", "Put", "OK"), 1.0);
    assert_eq!(requests(&body, "other", "Put", "InvalidArgument"), 1.0);
    // Nothing else was counted anywhere.
    assert_eq!(
        metric(&body, "etcd_grpc_proxy_prefix_requests_total", &[]),
        17.0
    );
    let received = |prefix: &str, method: &str| {
        let m = format!("grpc_method=\"{method}\"");
        per_prefix(
            &body,
            "etcd_grpc_proxy_prefix_received_bytes_total",
            prefix,
            &[&m],
        )
    };
    let sent = |prefix: &str, method: &str| {
        let m = format!("grpc_method=\"{method}\"");
        per_prefix(
            &body,
            "etcd_grpc_proxy_prefix_sent_bytes_total",
            prefix,
            &[&m],
        )
    };
    assert_eq!(received(PODS, "Put"), put_bytes as f64);
    assert_eq!(received(PODS, "Range"), range_bytes as f64);
    assert!(sent(PODS, "Put") > 0.0 && sent(PODS, "Range") > 0.0);
    assert!(sent(PODS, "Watch") > 0.0, "event bytes are counted");
    assert_eq!(sent("other", "Watch"), 0.0);
    assert_eq!(
        per_prefix(&body, "etcd_grpc_proxy_prefix_watchers", PODS, &[]),
        1.0
    );
    assert_eq!(
        per_prefix(&body, "etcd_grpc_proxy_prefix_watchers", "other", &[]),
        0.0
    );
    assert_eq!(
        per_prefix(
            &body,
            "etcd_grpc_proxy_prefix_watch_events_total",
            EVENTS,
            &[]
        ),
        0.0
    );

    // Canceling the watcher closes it in its bucket.
    events.cancel(watch_id).await.expect("cancel");
    eventually("the watcher is closed", Duration::from_secs(10), || async {
        let body = scrape(&proxy).await;
        (per_prefix(&body, "etcd_grpc_proxy_prefix_watchers", PODS, &[]) == 0.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prefixes_no_per_prefix_metric_is_exposed() {
    let cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.endpoints()).await;
    let mut client = proxy.client().await;
    client
        .put("/registry/pods/a", "1", None)
        .await
        .expect("put");
    let body = scrape(&proxy).await;
    assert!(!body.contains("etcd_grpc_proxy_prefix_"), "{body}");
}
