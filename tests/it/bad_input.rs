//! Bad input gets a clear error, never a panic or a hang.

use std::process::Command;
use std::time::Duration;

use crate::support::{eventually, free_port, proxy, Cluster, TestProxy};

fn proxy_cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_etcd-grpc-proxy"))
        .args(args)
        .output()
        .expect("run proxy binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_flag_is_refused_by_name() {
    let (code, err) = proxy_cli(&["start", "--no-such-flag=1"]);
    assert_ne!(code, 0);
    assert!(err.contains("--no-such-flag"), "{err}");
}

#[test]
fn malformed_endpoint_is_refused() {
    let (code, err) = proxy_cli(&["start", "--endpoints=http://127.0.0.1"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--endpoints") && err.contains("no port"),
        "{err}"
    );
}

#[test]
fn leasing_prefix_flag_is_accepted() {
    // Every etcd flag is implemented now: the last one refused as "not
    // implemented" is accepted and only its bad companions are refused.
    let (code, err) = proxy_cli(&[
        "grpc-proxy",
        "start",
        "--experimental-leasing-prefix=lp/",
        "--endpoints=http://127.0.0.1",
    ]);
    assert_eq!(code, 2);
    assert!(!err.contains("not implemented"), "{err}");
    assert!(err.contains("--endpoints"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_member_at_start_answers_unavailable_then_recovers() {
    let port = free_port();
    let proxy = TestProxy::start(&format!("127.0.0.1:{port}")).await;
    let mut client = proxy.client().await;
    let err = client.get("k", None).await.unwrap_err();
    match err {
        etcd_client::Error::GRpcStatus(s) => {
            assert_eq!(s.code(), tonic::Code::Unavailable);
            assert!(
                s.message().contains("no etcd member reachable"),
                "{}",
                s.message()
            );
            assert!(s.message().contains(&port.to_string()), "{}", s.message());
        }
        other => panic!("expected a gRPC status, got {other}"),
    }
    let cluster = Cluster::start_on_client_port(port).await;
    eventually(
        "the proxy serves once a member appears",
        Duration::from_secs(30),
        || {
            let mut client = client.clone();
            async move { client.put("k", "v", None).await.ok() }
        },
    )
    .await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_larger_than_max_recv_bytes_is_refused() {
    let cluster = Cluster::start(1).await;
    let mut cfg = proxy::config(&cluster.members[0].addr());
    cfg.max_recv_bytes = 1024;
    let proxy = TestProxy::with_config(cfg).await;
    let mut client = proxy.client().await;
    let err = client.put("big", vec![b'x'; 4096], None).await.unwrap_err();
    match err {
        etcd_client::Error::GRpcStatus(s) => {
            assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
            assert!(
                s.message().contains("received message larger than max"),
                "{}",
                s.message()
            );
        }
        other => panic!("expected a gRPC status, got {other}"),
    }
    // Nothing was written, and the proxy still serves.
    assert_eq!(client.get("big", None).await.unwrap().count(), 0);
    client.put("small", "v", None).await.unwrap();
}
