//! The HTTP endpoints beside gRPC: /health, /livez, /readyz, /metrics on
//! the gRPC port and on --metrics-addr; health through a member outage;
//! metrics counting calls and coalesced watchers.

use std::time::Duration;

use etcd_client::WatchOptions;

use crate::support::http::{get, get_slow, metric, request};
use crate::support::proxy::config;
use crate::support::{eventually, free_port, Cluster, TestProxy};

async fn proxy_with_metrics_addr(endpoints: &str) -> (TestProxy, String) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut c = config(endpoints);
    c.metrics_addr = Some(metrics.clone());
    (TestProxy::with_config(c).await, metrics)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_endpoints_on_the_grpc_port_and_on_metrics_addr() {
    let cluster = Cluster::start(1).await;
    let (proxy, metrics_addr) = proxy_with_metrics_addr(&cluster.endpoints()).await;

    // gRPC and HTTP share the listen port.
    let mut client = proxy.client().await;
    client
        .put("k", "v", None)
        .await
        .expect("put through the proxy");

    for addr in [proxy.endpoint(), metrics_addr.clone()] {
        let ready = eventually(
            &format!("/readyz 200 on {addr}"),
            Duration::from_secs(20),
            || {
                let addr = addr.clone();
                async move { get(&addr, "/readyz").await.filter(|a| a.status == 200) }
            },
        )
        .await;
        assert_eq!(ready.body, "ok\n");
        let live = get(&addr, "/livez").await.expect("livez");
        assert_eq!((live.status, live.body.as_str()), (200, "ok\n"));
        // HTTP/1.0 too, as simple health checkers (and the Dockerfile's) speak it.
        let a = addr.clone();
        let old =
            tokio::task::spawn_blocking(move || crate::support::etcd::http_get(&a, "/readyz"))
                .await
                .unwrap();
        assert_eq!(old.as_deref(), Some("ok\n"));
        for path in ["/health", "/proxy/health"] {
            let h = get(&addr, path).await.expect("health");
            assert_eq!(h.status, 200, "{path} on {addr}: {h:?}");
            assert_eq!(h.body, "{\"health\":\"true\"}");
            assert!(
                h.head
                    .to_ascii_lowercase()
                    .contains("content-type: application/json"),
                "{h:?}"
            );
        }
        for path in ["/metrics", "/proxy/metrics"] {
            let m = get(&addr, path).await.expect("metrics");
            assert_eq!(m.status, 200);
            for name in [
                "etcd_grpc_proxy_cache_hits_total",
                "etcd_grpc_proxy_cache_misses_total",
                "etcd_grpc_proxy_cache_keys_total",
                "etcd_grpc_proxy_watchers_coalescing_total",
                "etcd_grpc_proxy_events_coalescing_total",
                "grpc_server_started_total",
                "grpc_server_handled_total",
                "grpc_server_msg_received_total",
                "grpc_server_msg_sent_total",
                "etcd_grpc_proxy_backend_members_in_rotation",
            ] {
                assert!(
                    m.body.contains(&format!("# TYPE {name} ")),
                    "{name} missing from {path} on {addr}"
                );
            }
            assert_eq!(
                metric(
                    &m.body,
                    "grpc_server_handled_total",
                    &["grpc_method=\"Put\"", "grpc_code=\"OK\""]
                ),
                1.0
            );
        }
        let (addr2, path) = (addr.clone(), "/health".to_string());
        let post = tokio::task::spawn_blocking(move || request(&addr2, "POST", &path))
            .await
            .unwrap()
            .expect("post");
        assert_eq!(post.status, 405, "{post:?}");
        assert_eq!(get(&addr, "/no/such/page").await.expect("404").status, 404);
        // Not enabled: no profiling page.
        assert_eq!(
            get(&addr, "/debug/pprof/profile")
                .await
                .expect("pprof")
                .status,
            404
        );
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pprof_flag_serves_a_cpu_flamegraph() {
    let cluster = Cluster::start(1).await;
    let mut c = config(&cluster.endpoints());
    c.enable_pprof = true;
    let proxy = TestProxy::with_config(c).await;
    let addr = proxy.endpoint();
    let index = eventually("pprof index", Duration::from_secs(10), || {
        let addr = addr.clone();
        async move { get(&addr, "/debug/pprof/").await }
    })
    .await;
    assert_eq!(index.status, 200, "{index:?}");
    assert!(
        index.body.contains("/debug/pprof/profile?seconds=N"),
        "{index:?}"
    );
    assert_eq!(
        get(&addr, "/debug/pprof/profile?seconds=0")
            .await
            .expect("bad seconds")
            .status,
        400
    );

    // Keep the proxy busy while it profiles itself.
    let mut client = proxy.client().await;
    let load = tokio::spawn(async move {
        for i in 0..100_000u32 {
            if client.put("pprof-load", i.to_string(), None).await.is_err() {
                break;
            }
        }
    });
    let profile = get_slow(&addr, "/debug/pprof/profile?seconds=1")
        .await
        .expect("profile");
    load.abort();
    assert_eq!(profile.status, 200, "{}", &profile.head);
    assert!(
        profile
            .head
            .to_ascii_lowercase()
            .contains("content-type: image/svg+xml"),
        "{}",
        profile.head
    );
    assert!(profile.body.contains("<svg"), "not an SVG");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_readiness_follow_a_member_outage() {
    let mut cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.endpoints()).await;
    let addr = proxy.endpoint();
    eventually("healthy proxy", Duration::from_secs(20), || {
        let addr = addr.clone();
        async move { get(&addr, "/health").await.filter(|a| a.status == 200) }
    })
    .await;

    cluster.members[0].kill();

    let h = eventually(
        "/health 503 after the member died",
        Duration::from_secs(30),
        || {
            let addr = addr.clone();
            async move { get(&addr, "/health").await.filter(|a| a.status == 503) }
        },
    )
    .await;
    assert!(
        h.body.starts_with("{\"health\":\"false\",\"reason\":\""),
        "{h:?}"
    );
    let r = eventually(
        "/readyz 503 after the member died",
        Duration::from_secs(30),
        || {
            let addr = addr.clone();
            async move { get(&addr, "/readyz").await.filter(|a| a.status == 503) }
        },
    )
    .await;
    assert!(r.body.contains("no etcd member"), "{r:?}");
    // The process itself is alive.
    assert_eq!(get(&addr, "/livez").await.expect("livez").status, 200);
    let m = get(&addr, "/metrics").await.expect("metrics");
    assert_eq!(
        metric(&m.body, "etcd_grpc_proxy_backend_members_in_rotation", &[]),
        0.0
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_calls_and_coalesced_watchers() {
    let cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.endpoints()).await;
    let mut client = proxy.client().await;
    for _ in 0..5 {
        client.get("some-key", None).await.expect("range");
    }
    let _ = client.get("", None).await; // empty key: etcd answers InvalidArgument

    // Two watchers on the same key share one upstream watch.
    let mut s1 = client.watch("wk", None).await.expect("watch 1");
    let mut s2 = client
        .watch("wk", Some(WatchOptions::new()))
        .await
        .expect("watch 2");
    // Write only once both watches exist (etcd-client returns before `created`).
    for s in [&mut s1, &mut s2] {
        let created = s.message().await.expect("watch stream").expect("created");
        assert!(created.created());
    }
    client.put("wk", "x", None).await.expect("put");
    for s in [&mut s1, &mut s2] {
        loop {
            let resp = s
                .message()
                .await
                .expect("watch stream")
                .expect("watch response");
            if !resp.events().is_empty() {
                break;
            }
        }
    }

    let body = get(&proxy.endpoint(), "/metrics")
        .await
        .expect("metrics")
        .body;
    let range_ok = metric(
        &body,
        "grpc_server_handled_total",
        &["grpc_method=\"Range\"", "grpc_code=\"OK\""],
    );
    assert_eq!(range_ok, 5.0, "{body}");
    let range_bad = metric(
        &body,
        "grpc_server_handled_total",
        &["grpc_method=\"Range\"", "grpc_code=\"InvalidArgument\""],
    );
    assert_eq!(range_bad, 1.0, "{body}");
    assert_eq!(
        metric(
            &body,
            "grpc_server_started_total",
            &["grpc_method=\"Range\"", "grpc_type=\"unary\""]
        ),
        6.0
    );
    assert_eq!(
        metric(
            &body,
            "grpc_server_msg_received_total",
            &["grpc_method=\"Range\""]
        ),
        6.0
    );
    assert_eq!(
        metric(
            &body,
            "grpc_server_msg_sent_total",
            &["grpc_method=\"Range\""]
        ),
        5.0
    );
    assert!(
        metric(
            &body,
            "grpc_server_started_total",
            &["grpc_method=\"Watch\"", "grpc_type=\"bidi_stream\""]
        ) >= 1.0
    );
    assert!(
        metric(
            &body,
            "grpc_server_msg_received_total",
            &["grpc_method=\"Watch\""]
        ) >= 2.0,
        "{body}"
    );
    assert!(
        metric(&body, "etcd_grpc_proxy_watchers_coalescing_total", &[]) >= 1.0,
        "{body}"
    );
    assert!(
        metric(&body, "etcd_grpc_proxy_events_coalescing_total", &[]) >= 1.0,
        "{body}"
    );
    // The two watchers' shared watch, and the range cache's watch over the key space.
    assert_eq!(
        metric(&body, "etcd_grpc_proxy_upstream_watches", &[]),
        2.0,
        "{body}"
    );
    assert!(
        metric(
            &body,
            "etcd_grpc_proxy_client_streams",
            &["grpc_method=\"Watch\""]
        ) >= 1.0,
        "{body}"
    );
    proxy.stop().await;
}
