//! Per-client limits (`--limit-*`, `--limits-file`): a noisy client is
//! stopped at the proxy while a quiet one carries on; refusals are etcd's
//! overload answer (or a canceled watch with a reason); the limits follow
//! the file as it is rewritten.

use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, LockOptions};
use etcd_grpc_proxy::error::TOO_MANY_REQUESTS;
use etcd_grpc_proxy::limits::ClientLimitsConfig;
use etcd_grpc_proxy::proto::etcdserverpb::watch_client::WatchClient;
use etcd_grpc_proxy::proto::etcdserverpb::{
    watch_request, WatchCreateRequest, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::support::ctl::enable_auth_with_alice_and_bob;
use crate::support::proxy::config;
use crate::support::{eventually, http, Cluster, TestProxy};

async fn client_as(endpoint: &str, user: &str, password: &str) -> Client {
    Client::connect(
        [endpoint],
        Some(ConnectOptions::new().with_user(user, password)),
    )
    .await
    .expect("authenticate through the proxy")
}

/// Whether `err` is etcd's overload answer, word for word.
fn is_too_many_requests(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::ResourceExhausted && s.message() == TOO_MANY_REQUESTS
        }
        _ => false,
    }
}

async fn refusals(addr: &str, kind: &str) -> f64 {
    let body = http::get(addr, "/metrics").await.expect("metrics").body;
    http::metric(
        &body,
        "etcd_grpc_proxy_client_limit_refused_total",
        &[&format!("kind=\"{kind}\"")],
    )
}

fn limits_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), text).expect("write limits file");
    file
}

/// Rewrites the file in place (the proxy polls its content).
fn rewrite(file: &tempfile::NamedTempFile, text: &str) {
    std::fs::write(file.path(), text).expect("rewrite limits file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_user_is_limited_and_a_quiet_one_is_not() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    enable_auth_with_alice_and_bob(&direct);
    // Every client: 5 writes at once, then 2 per second; bob is unlimited.
    let file = limits_file("write_rps = 2\nwrite_burst = 5\n\n[user:bob]\nwrite_rps = 0\n");
    let mut cfg = config(&direct);
    cfg.client_limits = ClientLimitsConfig {
        defaults: Default::default(),
        file: Some(file.path().to_path_buf()),
    };
    let proxy = TestProxy::with_config(cfg).await;
    let via = proxy.endpoint();
    let mut alice = client_as(&via, "alice", "pa").await;
    let mut bob = client_as(&via, "bob", "pb").await;

    let start = Instant::now();
    let (mut alice_ok, mut alice_refused, mut bob_ok) = (0u32, 0u32, 0u32);
    for i in 0..40 {
        match alice.put(format!("/a/{i}"), "v", None).await {
            Ok(_) => alice_ok += 1,
            Err(e) if is_too_many_requests(&e) => alice_refused += 1,
            Err(e) => panic!("alice: unexpected {e:?}"),
        }
        bob.put(format!("/b/{i}"), "v", None)
            .await
            .expect("the quiet client is never refused");
        bob_ok += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(bob_ok, 40);
    // Alice got her burst and what her rate refilled meanwhile, no more.
    let allowed = 5.0 + 2.0 * elapsed + 1.0;
    assert!(
        f64::from(alice_ok) <= allowed && alice_refused > 0,
        "alice: {alice_ok} ok, {alice_refused} refused in {elapsed:.1}s"
    );
    // Reads are a separate budget: alice still reads.
    alice
        .get("/a/0", None)
        .await
        .expect("reads are not limited");
    assert_eq!(refusals(&via, "write").await, f64::from(alice_refused));
    assert_eq!(refusals(&via, "read").await, 0.0);
    // Per-client figures come as the busiest clients only, by etcd user.
    let body = http::get(&via, "/metrics").await.expect("metrics").body;
    let top =
        |name: &str, user: &str| http::metric(&body, name, &[&format!("client=\"user:{user}\"")]);
    assert_eq!(top("etcd_grpc_proxy_top_client_calls", "bob"), 40.0);
    // Alice: her 40 puts and her get (the Authenticate is not limited).
    assert_eq!(top("etcd_grpc_proxy_top_client_calls", "alice"), 41.0);
    assert_eq!(
        top("etcd_grpc_proxy_top_client_refused", "alice"),
        f64::from(alice_refused)
    );
    assert_eq!(top("etcd_grpc_proxy_top_client_refused", "bob"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_follow_a_reload_of_the_file_and_a_bad_file_keeps_them() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    enable_auth_with_alice_and_bob(&direct);
    let file = limits_file("[user:alice]\nwatchers = 1\n");
    let mut cfg = config(&direct);
    cfg.client_limits.file = Some(file.path().to_path_buf());
    let proxy = TestProxy::with_config(cfg).await;
    let via = proxy.endpoint();
    let token = alice_token(&via).await;

    let mut stream = WatchStream::open(&via, Some(&token)).await;
    let first = stream.create("/a/1").await;
    assert!(first.created && !first.canceled, "{first:?}");
    let refused = stream.create("/a/2").await;
    assert!(refused.canceled, "{refused:?}");
    let reason = String::from_utf8_lossy(&refused.cancel_reason).into_owned();
    assert!(
        reason.contains("user:alice") && reason.contains("watchers"),
        "{reason}"
    );

    rewrite(&file, "[user:alice]\nwatchers = 3\n");
    stream
        .create_until_served("/a/more", "the new watcher limit applies")
        .await;
    stream.create("/a/3").await;
    // Three now held: the fourth is refused.
    assert!(stream.create("/a/4").await.canceled);

    // A file that does not parse is not taken: three stay the limit.
    rewrite(&file, "[user:alice]\nwatchers = lots\n");
    tokio::time::sleep(etcd_grpc_proxy::limits::reload::POLL * 3).await;
    assert!(stream.create("/a/5").await.canceled);
}

/// A token of alice's, obtained through the proxy (so it learns whose it is).
async fn alice_token(via: &str) -> String {
    use etcd_grpc_proxy::proto::etcdserverpb::auth_client::AuthClient;
    use etcd_grpc_proxy::proto::etcdserverpb::AuthenticateRequest;
    let channel = crate::support::grpc::channel(via).await;
    let token = AuthClient::new(channel)
        .authenticate(AuthenticateRequest {
            name: "alice".into(),
            password: "pa".into(),
        })
        .await
        .expect("authenticate")
        .into_inner()
        .token;
    String::from_utf8(token).expect("a token is text")
}

/// One raw watch stream, to see each create's answer.
struct WatchStream {
    tx: mpsc::Sender<WatchRequest>,
    /// The call, until its headers come (with the first answer).
    call: Option<tokio::task::JoinHandle<Result<tonic::Streaming<WatchResponse>, tonic::Status>>>,
    answers: Option<tonic::Streaming<WatchResponse>>,
}

impl WatchStream {
    async fn open(via: &str, token: Option<&str>) -> WatchStream {
        let (tx, rx) = mpsc::channel(16);
        let channel = crate::support::grpc::channel(via).await;
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(t) = token {
            request
                .metadata_mut()
                .insert("token", t.parse().expect("ascii token"));
        }
        let call = tokio::spawn(async move {
            WatchClient::new(channel)
                .watch(request)
                .await
                .map(tonic::Response::into_inner)
        });
        WatchStream {
            tx,
            call: Some(call),
            answers: None,
        }
    }

    /// Creates a watch on `key` again until one is not refused (polling
    /// at the file's reload pace), or panics naming `what`.
    async fn create_until_served(&mut self, key: &str, what: &str) {
        let start = Instant::now();
        while self.create(key).await.canceled {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn create(&mut self, key: &str) -> WatchResponse {
        self.tx
            .send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(
                    WatchCreateRequest {
                        key: key.into(),
                        ..Default::default()
                    },
                )),
            })
            .await
            .expect("send create");
        if let Some(call) = self.call.take() {
            self.answers = Some(call.await.expect("task").expect("watch stream"));
        }
        let answers = self.answers.as_mut().expect("opened");
        tokio::time::timeout(Duration::from_secs(20), answers.message())
            .await
            .expect("an answer")
            .expect("stream")
            .expect("not ended")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_its_watchers_is_canceled_across_its_streams() {
    let cluster = Cluster::start(1).await;
    let mut cfg = config(&cluster.endpoints());
    cfg.client_limits.defaults.watchers = 2;
    let proxy = TestProxy::with_config(cfg).await;
    let via = proxy.endpoint();

    // No credentials: the client is its source address.
    let mut one = WatchStream::open(&via, None).await;
    let mut two = WatchStream::open(&via, None).await;
    assert!(!one.create("a").await.canceled);
    assert!(!two.create("b").await.canceled);
    let third = two.create("c").await;
    assert!(third.created && third.canceled, "{third:?}");
    let reason = String::from_utf8_lossy(&third.cancel_reason).into_owned();
    assert!(
        reason.contains("ip:127.0.0.1") && reason.contains("watchers limit (2)"),
        "{reason}"
    );
    assert_eq!(refusals(&via, "watchers").await, 1.0);

    // A stream that ends gives its watchers back.
    drop(one);
    two.create_until_served("d", "the ended stream's watcher is given back")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalive_stream_past_the_limit_ends_with_too_many_requests() {
    let cluster = Cluster::start(1).await;
    let mut cfg = config(&cluster.endpoints());
    cfg.client_limits.defaults.keepalive_streams = 1;
    let proxy = TestProxy::with_config(cfg).await;
    let via = proxy.endpoint();
    let mut client = proxy.client().await;
    let lease = client.lease_grant(30, None).await.expect("grant").id();

    let (mut keeper, mut answers) = client.lease_keep_alive(lease).await.expect("first stream");
    keeper.keep_alive().await.expect("send");
    let renewed = answers.message().await.expect("answer").expect("renewal");
    assert!(renewed.ttl() > 0);

    let mut other = proxy.client().await;
    let second = match other.lease_keep_alive(lease).await {
        Ok((mut k, mut s)) => {
            // Depending on the client, the status shows at the first read.
            let _ = k.keep_alive().await;
            s.message().await.map(|_| ())
        }
        Err(e) => Err(e),
    };
    match second {
        Err(e) => assert!(is_too_many_requests(&e), "{e:?}"),
        Ok(()) => panic!("a second keep-alive stream was served"),
    }
    assert!(refusals(&via, "keepalive").await >= 1.0);

    // Once the first stream ends, a new one is served.
    drop((keeper, answers));
    eventually(
        "a keep-alive stream served again",
        Duration::from_secs(20),
        || {
            let mut other = other.clone();
            async move {
                let (mut k, mut s) = other.lease_keep_alive(lease).await.ok()?;
                k.keep_alive().await.ok()?;
                s.message().await.ok()?.map(|_| ())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_past_the_limit_get_too_many_requests() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    let mut cfg = config(&direct);
    cfg.client_limits.defaults.concurrent_calls = 1;
    let proxy = TestProxy::with_config(cfg).await;

    // A lock held directly at the member, so a Lock through the proxy waits.
    let mut holder = Client::connect([direct.as_str()], None)
        .await
        .expect("direct");
    let lease = holder.lease_grant(60, None).await.expect("grant").id();
    holder
        .lock("l", Some(LockOptions::new().with_lease(lease)))
        .await
        .expect("hold the lock");

    let mut waiter = proxy.client().await;
    let mut waiting = tokio::spawn(async move { waiter.lock("l", None).await.map(|_| ()) });
    // The Lock waits once its own key is under the lock's prefix at the
    // member; only then may another call meet it (else that call could be
    // the one in flight, and the Lock the one refused).
    eventually(
        "the Lock waits at the member",
        Duration::from_secs(20),
        || {
            let mut holder = holder.clone();
            async move {
                let keys = holder
                    .get(
                        "l/",
                        Some(GetOptions::new().with_prefix().with_count_only()),
                    )
                    .await
                    .ok()?;
                (keys.count() == 2).then_some(())
            }
        },
    )
    .await;
    let other = proxy.client().await;
    let refused = async {
        tokio::select! {
            r = &mut waiting => panic!("the Lock ended while the lock was held: {r:?}"),
            r = refused_while_waiting(&other) => r,
        }
    }
    .await;
    let () = refused;
    assert!(refusals(&proxy.endpoint(), "concurrency").await >= 1.0);

    // The lock is released: the waiting call is answered, and others served.
    holder.lease_revoke(lease).await.expect("revoke");
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the Lock is answered")
        .expect("task")
        .expect("locked");
    // The waiter's permit is given back when its answer's body has been
    // sent, which may be just after the client has the answer: poll.
    eventually("calls served again", Duration::from_secs(20), || {
        let mut other = other.clone();
        async move { other.get("k", None).await.ok() }
    })
    .await;
}

/// Polls until a Get from `other` is refused as too many requests.
async fn refused_while_waiting(other: &Client) {
    eventually(
        "a call refused while the Lock waits",
        Duration::from_secs(20),
        || {
            let mut other = other.clone();
            async move {
                match other.get("k", None).await {
                    Err(e) if is_too_many_requests(&e) => Some(()),
                    _ => None,
                }
            }
        },
    )
    .await
}
