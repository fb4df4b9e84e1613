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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leasing_prefix_flag_is_accepted_and_takes_effect() {
    // Its bad companions are refused, and not as "not implemented".
    let (code, err) = proxy_cli(&[
        "grpc-proxy",
        "start",
        "--experimental-leasing-prefix=lp/",
        "--endpoints=http://127.0.0.1",
    ]);
    assert_eq!(code, 2);
    assert!(!err.contains("not implemented"), "{err}");
    assert!(err.contains("--endpoints"), "{err}");

    // With good ones, the real binary leases what it reads: the member
    // holds `lp/<key>`, bound to the proxy's session lease.
    let cluster = Cluster::start(1).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_etcd-grpc-proxy"))
        .args([
            "grpc-proxy",
            "start",
            "--experimental-leasing-prefix=lp/",
            &format!("--listen-addr={addr}"),
            &format!("--endpoints={}", cluster.endpoints()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the proxy binary");
    let _child = KillOnDrop(child);
    let mut direct = etcd_client::Client::connect([cluster.members[0].addr()], None)
        .await
        .expect("direct client");
    direct.put("k", "v", None).await.expect("direct put");
    eventually(
        "the proxy leases the key it read",
        Duration::from_secs(30),
        || {
            let (addr, mut direct) = (addr.clone(), direct.clone());
            async move {
                let mut through = etcd_client::Client::connect([addr], None).await.ok()?;
                let got = through.get("k", None).await.ok()?;
                assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"v"[..]));
                let lk = direct.get("lp/k", None).await.expect("direct get");
                lk.kvs()
                    .first()
                    .map(|kv| assert_ne!(kv.lease(), 0, "leasing key bound to a lease"))
            }
        },
    )
    .await;
}

/// Kills the spawned binary when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

/// A Put whose gRPC length prefix announces `announced` bytes, of which only
/// 64 KiB are sent; the status the server answers with, without the rest.
async fn put_announcing(addr: &str, announced: u32) -> (tonic::Code, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{addr}/etcdserverpb.KV/Put"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (answer, mut body) = client.send_request(req, false).expect("send headers");
    let mut data = vec![0u8];
    data.extend_from_slice(&announced.to_be_bytes());
    data.extend(std::iter::repeat_n(b'x', 64 * 1024));
    body.reserve_capacity(data.len());
    let _ = body.send_data(data.into(), false);
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), answer)
        .await
        .expect("answered without the rest of the message")
        .expect("response");
    let status = |h: &http::HeaderMap| {
        h.get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map(|c| {
                let msg = h
                    .get("grpc-message")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                (tonic::Code::from_i32(c), msg)
            })
    };
    if let Some(s) = status(answer.headers()) {
        return s;
    }
    let mut body = answer.into_body();
    while body.data().await.is_some() {}
    let trailers = body.trailers().await.expect("trailers").expect("some");
    status(&trailers).expect("grpc-status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_members_take_is_refused_from_its_prefix_as_a_member_refuses_it() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    let proxy = TestProxy::start(&direct).await;
    let via = proxy.endpoint();

    // A real 3 MiB Put: the member's refusal, word for word.
    let big = |addr: String| async move {
        let mut c = etcd_client::Client::connect([addr], None)
            .await
            .expect("client");
        match c.put("big", vec![b'x'; 3 << 20], None).await {
            Err(etcd_client::Error::GRpcStatus(s)) => (s.code(), s.message().to_string()),
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    assert_eq!(big(via.clone()).await, big(direct.clone()).await);

    // Announced at 1 GiB, 64 KiB sent: refused at once, as the member does.
    let on_member = put_announcing(&direct, 1 << 30).await;
    assert_eq!(on_member.0, tonic::Code::ResourceExhausted, "{on_member:?}");
    assert_eq!(put_announcing(&via, 1 << 30).await, on_member);
}

/// The log, sent to a file as an operator's service manager does: one JSON
/// object per line with zap's keys, no terminal escape byte anywhere; and
/// `--log-format=text` is still plain text off a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_json_lines_like_etcds_and_text_on_request() {
    let cluster = Cluster::start(1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    for format in ["json", "text"] {
        let log = dir.path().join(format!("proxy.{format}.log"));
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_etcd-grpc-proxy"))
            .args([
                "start",
                "--debug",
                &format!("--log-format={format}"),
                &format!("--listen-addr={addr}"),
                // One member that is not there, so a warning is logged too.
                &format!("--endpoints={},127.0.0.1:1", cluster.endpoints()),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn the proxy binary");
        let mut child = KillOnDrop(child);
        eventually("the proxy serves", Duration::from_secs(30), || {
            let addr = addr.clone();
            async move {
                let mut c = etcd_client::Client::connect([addr], None).await.ok()?;
                c.put("logged", "v", None).await.ok()
            }
        })
        .await;
        // SIGTERM: the drain logs its steps, then the process exits.
        // SAFETY: a plain signal to the child this test spawned.
        unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
        let _ = child.0.wait();
        let text = std::fs::read(&log).expect("read the log");
        assert!(!text.contains(&0x1b), "{format}: escape bytes in the log");
        let text = String::from_utf8(text).expect("the log is UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() >= 3, "{format}: {text}");
        if format == "text" {
            assert!(!lines[0].starts_with('{'), "{text}");
            continue;
        }
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            for key in ["level", "ts", "caller", "msg"] {
                assert!(v[key].is_string(), "no {key} in {line}");
            }
        }
        let levels: Vec<&str> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["level"].as_str().map(str::to_string))
            .map(|l| match l.as_str() {
                "debug" => "debug",
                "info" => "info",
                "warn" => "warn",
                _ => "other",
            })
            .collect();
        assert!(
            levels.contains(&"info") && levels.contains(&"warn"),
            "{levels:?}"
        );
        assert!(
            levels.contains(&"debug"),
            "--debug lowers the level: {levels:?}"
        );
        assert!(!levels.contains(&"other"), "{levels:?}");
    }
}
