//! Hostile clients against the real binary, with a well-behaved client
//! reading through the same proxy all along. Each case asserts three
//! things: the proxy stays up, the good client's p99 stays within 2x its
//! baseline (with a 50 ms floor: the attacker and other tests share the
//! machine's two cores),
//! and the proxy's RSS grows by under 64 MiB.
//!
//! The attacker speaks HTTP/2 itself (the `h2` crate), so it can do what no
//! gRPC library would: reset streams in a loop, open thousands of streams
//! on one connection, announce messages it never sends, never read.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_grpc_proxy::proto::etcdserverpb::{
    watch_request, RangeRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
};
use prost::Message;
use tokio::net::TcpStream;

use crate::support::{eventually, free_port, http, Cluster};

/// `make bench` (`HOSTILE_TARGET=etcd`): attack etcd's grpc-proxy instead.
fn etcds_proxy() -> bool {
    std::env::var("HOSTILE_TARGET").as_deref() == Ok("etcd")
}

/// `make bench` (`HOSTILE_REPORT=1`): print the figures, assert nothing.
fn report_only() -> bool {
    std::env::var_os("HOSTILE_REPORT").is_some() || etcds_proxy()
}

/// How many times longer `make bench` runs each attack (`HOSTILE_SCALE`).
fn scale() -> usize {
    std::env::var("HOSTILE_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The proxy binary, with `--memory-budget-bytes` set as an edge
/// deployment would set it; killed on drop.
struct Binary {
    child: Child,
    addr: String,
}

impl Binary {
    async fn start(endpoints: &str) -> Binary {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = if etcds_proxy() {
            // `make bench`: the same attacks on etcd's own grpc-proxy.
            let mut c = Command::new(crate::support::etcd::etcd_bin());
            c.args(["grpc-proxy", "start"]);
            c
        } else {
            let mut c = Command::new(env!("CARGO_BIN_EXE_etcd-grpc-proxy"));
            c.args(["start", "--memory-budget-bytes=67108864"]);
            c
        };
        let child = cmd
            .args([
                &format!("--listen-addr={addr}"),
                &format!("--endpoints={endpoints}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the proxy binary");
        let bin = Binary { child, addr };
        eventually("the proxy ready", Duration::from_secs(30), || {
            let addr = bin.addr.clone();
            async move {
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .ok()?
                    .connect()
                    .await
                    .ok()?;
                etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient::new(channel)
                    .range(RangeRequest {
                        key: b"good".to_vec(),
                        ..Default::default()
                    })
                    .await
                    .ok()
            }
        })
        .await;
        bin
    }

    /// The process's resident set, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The p99 of 200 serializable Gets by a well-behaved client; `None` when
/// one of them is not answered (within 10 s).
async fn p99(addr: &str) -> Option<Duration> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .ok()?;
    let mut kv = etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient::new(channel);
    let mut took = Vec::with_capacity(200);
    for _ in 0..200 {
        let start = Instant::now();
        kv.range(RangeRequest {
            key: b"good".to_vec(),
            serializable: true,
            ..Default::default()
        })
        .await
        .ok()?;
        took.push(start.elapsed());
    }
    took.sort();
    Some(took[took.len() * 99 / 100])
}

/// One gRPC message frame.
fn grpc_frame(msg: &impl Message) -> Bytes {
    let body = msg.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.into()
}

fn post(addr: &str, path: &str) -> ::http::Request<()> {
    ::http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request")
}

/// An HTTP/2 connection to the proxy, driven in the background.
async fn h2_conn(addr: &str) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Runs `attack` against a fresh proxy while measuring the good client,
/// then checks the three promises.
async fn under_attack<F, Fut>(name: &str, attack: F)
where
    F: FnOnce(String, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cluster = Cluster::start(1).await;
    let mut proxy = Binary::start(&cluster.endpoints()).await;
    let baseline = p99(&proxy.addr)
        .await
        .expect("the good client is answered before");
    let rss_before = proxy.rss();

    attack(proxy.addr.clone(), cluster.endpoints()).await;

    let alive = proxy.alive();
    let allowed = (baseline * 2).max(Duration::from_millis(50));
    let mut during = p99(&proxy.addr).await;
    if during.is_none_or(|d| d > allowed) {
        // Other tests share the machine's two cores: measure once more.
        let again = p99(&proxy.addr).await;
        during = match (during, again) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let grew = proxy.rss().saturating_sub(rss_before);
    let shed = http::get(&proxy.addr, "/metrics")
        .await
        .map(|a| http::metric(&a.body, "etcd_grpc_proxy_calls_shed_total", &[]))
        .unwrap_or(0.0);
    eprintln!(
        "hostile | {} | {name} | {} | {baseline:?} | {} | +{} KiB | {shed} |",
        if etcds_proxy() {
            "etcd's grpc-proxy"
        } else {
            "ours"
        },
        if alive { "up" } else { "DIED" },
        during.map_or("no answer".into(), |d| format!("{d:?}")),
        grew >> 10
    );
    if report_only() {
        return;
    }
    assert!(alive, "{name}: the proxy died");
    let during = during.unwrap_or_else(|| panic!("{name}: the good client got no answer"));
    assert!(
        during <= allowed,
        "{name}: good client's p99 {during:?}, baseline {baseline:?}"
    );
    assert!(grew < 64 << 20, "{name}: RSS grew by {} MiB", grew >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_leaves_the_proxy_serving() {
    under_attack("rapid reset", |addr, _| async move {
        let mut client = h2_conn(&addr).await;
        for _ in 0..10_000 * scale() {
            let Ok(ready) = client.clone().ready().await else {
                // The proxy closed the connection: that is a fine answer.
                client = h2_conn(&addr).await;
                continue;
            };
            client = ready;
            if let Ok((_, mut stream)) =
                client.send_request(post(&addr, "/etcdserverpb.KV/Range"), false)
            {
                stream.send_reset(h2::Reason::CANCEL);
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_watch_streams_on_one_connection_stay_within_the_budget() {
    under_attack("20,000 watch streams", |addr, _| async move {
        let mut client = h2_conn(&addr).await;
        let create = grpc_frame(&WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b"hostile".to_vec(),
                    ..Default::default()
                },
            )),
        });
        let mut held = Vec::new();
        for _ in 0..20_000 * scale().min(5) {
            let Ok(ready) = client.clone().ready().await else {
                break;
            };
            client = ready;
            match client.send_request(post(&addr, "/etcdserverpb.Watch/Watch"), false) {
                Ok((answer, mut stream)) => {
                    let _ = stream.send_data(create.clone(), false);
                    held.push((answer, stream));
                }
                Err(_) => break,
            }
        }
        // Let the proxy take them in.
        tokio::time::sleep(Duration::from_secs(3)).await;
        std::mem::forget(held);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_announced_at_a_gigabyte_are_refused_before_they_are_buffered() {
    under_attack("8 connections announcing 1 GiB", |addr, _| async move {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = h2_conn(&addr).await;
                let Ok(ready) = client.clone().ready().await else {
                    return;
                };
                client = ready;
                let Ok((answer, mut stream)) =
                    client.send_request(post(&addr, "/etcdserverpb.KV/Put"), false)
                else {
                    return;
                };
                let mut data = vec![0u8];
                data.extend_from_slice(&(1u32 << 30).to_be_bytes());
                let _ = stream.send_data(data.into(), false);
                // Up to 64 MiB, as far as the proxy lets it.
                let chunk = Bytes::from(vec![b'x'; 1 << 20]);
                for _ in 0..64 {
                    stream.reserve_capacity(chunk.len());
                    match tokio::time::timeout(
                        Duration::from_millis(500),
                        futures::future::poll_fn(|cx| stream.poll_capacity(cx)),
                    )
                    .await
                    {
                        Ok(Some(Ok(_))) => {
                            if stream.send_data(chunk.clone(), false).is_err() {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
                let _ = tokio::time::timeout(Duration::from_secs(5), answer).await;
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_are_held_cheaply() {
    under_attack("10,000 idle connections", |addr, _| async move {
        let mut idle = Vec::new();
        for _ in 0..10_000 {
            match TcpStream::connect(&addr).await {
                Ok(s) => idle.push(s),
                Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        std::mem::forget(idle);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_progress_requests_costs_one_at_a_time() {
    under_attack("progress flood", |addr, _| async move {
        let mut client = h2_conn(&addr).await;
        let Ok(ready) = client.clone().ready().await else {
            return;
        };
        client = ready;
        let Ok((_answer, mut stream)) =
            client.send_request(post(&addr, "/etcdserverpb.Watch/Watch"), false)
        else {
            return;
        };
        let mut frames = grpc_frame(&WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b"flood".to_vec(),
                    ..Default::default()
                },
            )),
        })
        .to_vec();
        let progress = grpc_frame(&WatchRequest {
            request_union: Some(watch_request::RequestUnion::ProgressRequest(
                WatchProgressRequest {},
            )),
        });
        for _ in 0..100_000 * scale() {
            frames.extend_from_slice(&progress);
        }
        let frames = Bytes::from(frames);
        let mut sent = 0;
        while sent < frames.len() {
            stream.reserve_capacity(frames.len() - sent);
            match tokio::time::timeout(
                Duration::from_secs(2),
                futures::future::poll_fn(|cx| stream.poll_capacity(cx)),
            )
            .await
            {
                Ok(Some(Ok(n))) if n > 0 => {
                    if stream
                        .send_data(frames.slice(sent..sent + n), false)
                        .is_err()
                    {
                        break;
                    }
                    sent += n;
                }
                _ => break,
            }
        }
        std::mem::forget((_answer, stream));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_never_reads_a_busy_key_costs_a_bounded_queue() {
    under_attack(
        "slow reader of a busy watch",
        |addr, endpoints| async move {
            let mut client = h2_conn(&addr).await;
            let Ok(ready) = client.clone().ready().await else {
                return;
            };
            client = ready;
            let create = grpc_frame(&WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(
                    WatchCreateRequest {
                        key: b"busy".to_vec(),
                        ..Default::default()
                    },
                )),
            });
            let Ok((answer, mut stream)) =
                client.send_request(post(&addr, "/etcdserverpb.Watch/Watch"), false)
            else {
                return;
            };
            let _ = stream.send_data(create, false);
            // The answer's body is never read: h2's window fills, then the
            // proxy's queue for this client.
            let _answer = tokio::time::timeout(Duration::from_secs(5), answer).await;
            let member = endpoints.split(',').next().unwrap_or_default().to_string();
            let mut kv = etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient::new(
                crate::support::grpc::channel(&member).await,
            );
            let value = vec![b'v'; 10 * 1024];
            for _ in 0..2_000 * scale() {
                let _ = kv
                    .put(etcd_grpc_proxy::proto::etcdserverpb::PutRequest {
                        key: b"busy".to_vec(),
                        value: value.clone(),
                        ..Default::default()
                    })
                    .await;
            }
            std::mem::forget((_answer, stream));
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    under_attack("CONTINUATION flood", |addr, _| async move {
        let mut tcp = TcpStream::connect(&addr).await.expect("connect");
        let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
            let len = payload.len() as u32;
            let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
            out.extend_from_slice(&stream.to_be_bytes());
            out.extend_from_slice(payload);
            out
        };
        let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        start.extend(frame(0x4, 0, 0, &[]));
        // HEADERS without END_HEADERS: a literal header, then endless
        // CONTINUATION frames of more literal headers.
        let literal = |i: u32| {
            let name = format!("x-flood-{i}");
            let mut block = vec![0x00, name.len() as u8];
            block.extend_from_slice(name.as_bytes());
            block.push(8);
            block.extend_from_slice(b"aaaaaaaa");
            block
        };
        start.extend(frame(0x1, 0, 1, &literal(0)));
        if tcp.write_all(&start).await.is_err() {
            return;
        }
        let mut sent = 0u64;
        for i in 1..200_000u32 {
            let cont = frame(0x9, 0, 1, &literal(i));
            if tcp.write_all(&cont).await.is_err() {
                break;
            }
            sent += cont.len() as u64;
            if sent > 64 << 20 {
                break;
            }
        }
        // The proxy ends the connection rather than buffer the flood.
        let mut buf = vec![0u8; 64 * 1024];
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(n) = tcp.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alives_under_thousands_of_random_tokens_keep_bounded_state() {
    under_attack("keep-alives under random tokens", |addr, _| async move {
        use etcd_grpc_proxy::proto::etcdserverpb::LeaseKeepAliveRequest;
        let mut client = h2_conn(&addr).await;
        let ping = grpc_frame(&LeaseKeepAliveRequest { id: 7 });
        let mut held = Vec::new();
        for i in 0..2_000 * scale() {
            let Ok(ready) = client.clone().ready().await else {
                break;
            };
            client = ready;
            let mut req = post(&addr, "/etcdserverpb.Lease/LeaseKeepAlive");
            let token = format!("random.{i}.{}", fastrand::u64(..));
            if let Ok(v) = token.parse() {
                req.headers_mut().insert("token", v);
            }
            match client.send_request(req, false) {
                Ok((answer, mut stream)) => {
                    let _ = stream.send_data(ping.clone(), false);
                    held.push((answer, stream));
                }
                Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        std::mem::forget(held);
    })
    .await;
}

/// The binary's resident memory after 10,000 clients came and went is back
/// within 10% of where it was (the in-process leak test checks tasks and
/// file descriptors; the heap of a test process is shared by every test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_clients_leave_rss_where_it_was() {
    use etcd_grpc_proxy::proto::etcdserverpb::lease_client::LeaseClient;
    use etcd_grpc_proxy::proto::etcdserverpb::LeaseGrantRequest;
    use futures::StreamExt;

    let cluster = Cluster::start(1).await;
    let proxy = Binary::start(&cluster.endpoints()).await;
    let addr = proxy.addr.clone();
    let lease = LeaseClient::new(crate::support::grpc::channel(&addr).await)
        .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    // The allocator settles first: the baseline is taken after a warm-up
    // as large as one concurrency's worth of clients, many times over.
    futures::stream::iter(0..2_000)
        .for_each_concurrent(100, |n| crate::leak::one_client(addr.clone(), lease, n))
        .await;
    let before = proxy.rss();
    futures::stream::iter(0..10_000)
        .for_each_concurrent(100, |n| crate::leak::one_client(addr.clone(), lease, n))
        .await;
    let limit = before + before / 10;
    eprintln!(
        "RSS before {} KiB, right after {} KiB",
        before >> 10,
        proxy.rss() >> 10
    );
    let rss = eventually("RSS back within 10%", Duration::from_secs(30), || {
        let rss = proxy.rss();
        async move { (rss <= limit).then_some(rss) }
    })
    .await;
    eprintln!(
        "RSS {} KiB -> {} KiB after 10,000 clients",
        before >> 10,
        rss >> 10
    );
}
