//! Watch responses on the wire, compared with a direct member of the same
//! release: every response has a header, refusals read as the member
//! writes them, and progress requests are answered with the store's
//! revision under etcd's rule (only once every watcher has caught up).

use std::time::Duration;

use etcd_grpc_proxy::proto::etcdserverpb::auth_client::AuthClient;
use etcd_grpc_proxy::proto::etcdserverpb::watch_client::WatchClient;
use etcd_grpc_proxy::proto::etcdserverpb::{
    watch_request, AuthenticateRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
    WatchResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use watch_request::RequestUnion::{CreateRequest as Create, ProgressRequest as Progress};

use crate::support::ctl::{enable_auth_with_alice_and_bob, ok, run};
use crate::support::{eventually, Cluster, TestProxy};

/// One raw Watch stream: requests in, responses out.
struct RawWatch {
    tx: mpsc::Sender<WatchRequest>,
    rx: Streaming<WatchResponse>,
}

impl RawWatch {
    /// Opens a stream with its first request (members answer the call
    /// only once a first response is due).
    async fn open(
        endpoint: &str,
        token: Option<&str>,
        first: watch_request::RequestUnion,
    ) -> RawWatch {
        Self::open_with(endpoint, token, vec![first]).await
    }

    async fn open_with(
        endpoint: &str,
        token: Option<&str>,
        firsts: Vec<watch_request::RequestUnion>,
    ) -> RawWatch {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(16);
        for first in firsts {
            tx.send(WatchRequest {
                request_union: Some(first),
            })
            .await
            .unwrap();
        }
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(t) = token {
            req.metadata_mut().insert("token", t.parse().unwrap());
        }
        let rx = WatchClient::new(channel)
            .watch(req)
            .await
            .expect("open watch stream")
            .into_inner();
        RawWatch { tx, rx }
    }

    async fn create(&self, create: WatchCreateRequest) {
        self.send(watch_request::RequestUnion::CreateRequest(create))
            .await
    }

    async fn progress(&self) {
        self.send(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        ))
        .await
    }

    async fn send(&self, r: watch_request::RequestUnion) {
        self.tx
            .send(WatchRequest {
                request_union: Some(r),
            })
            .await
            .expect("send watch request")
    }

    /// The next response, or `None` if none comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<WatchResponse> {
        match tokio::time::timeout(wait, self.rx.message()).await {
            Ok(r) => r.expect("watch stream error"),
            Err(_) => None,
        }
    }

    async fn must_next(&mut self) -> WatchResponse {
        self.next(Duration::from_secs(20))
            .await
            .expect("a watch response")
    }
}

/// A response with what may differ between two routes to one cluster
/// taken out (which member answered), and whether it had a header.
fn shape(r: &WatchResponse) -> String {
    format!(
        "header={} id={} created={} canceled={} reason={:?} compact={} events={}",
        r.header.is_some(),
        r.watch_id,
        r.created,
        r.canceled,
        String::from_utf8_lossy(r.cancel_reason.as_ref()),
        r.compact_revision,
        r.events.len()
    )
}

async fn token(endpoint: &str, user: &str, password: &str) -> String {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let req = AuthenticateRequest {
        name: user.into(),
        password: password.into(),
    };
    let token = AuthClient::new(channel)
        .authenticate(req)
        .await
        .expect("authenticate")
        .into_inner()
        .token;
    String::from_utf8(token).expect("etcd tokens are text")
}

fn create(key: &str, watch_id: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.into(),
        watch_id,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_duplicate_watches_answer_as_the_member_does_with_a_header() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    enable_auth_with_alice_and_bob(&direct);
    let proxy = TestProxy::start(&direct).await;
    let via = proxy.endpoint();

    // A user watching a key it may not read; an anonymous watch; a duplicate id.
    let mut seen = Vec::new();
    for target in [&direct, &via] {
        let bob = token(&direct, "bob", "pb").await;
        let mut as_bob = RawWatch::open(target, Some(&bob), Create(create("/a/1", 0))).await;
        let refused = as_bob.must_next().await;
        let mut anonymous = RawWatch::open(target, None, Create(create("/a/1", 0))).await;
        let anon = anonymous.must_next().await;
        as_bob.create(create("/b/1", 7)).await;
        let first = as_bob.must_next().await;
        as_bob.create(create("/b/2", 7)).await;
        let duplicate = as_bob.must_next().await;
        for r in [&refused, &anon, &first, &duplicate] {
            assert!(
                r.header.is_some(),
                "{target}: every watch response has a header: {r:?}"
            );
        }
        seen.push([
            shape(&refused),
            shape(&anon),
            shape(&first),
            shape(&duplicate),
        ]);
    }
    assert_eq!(
        seen[1], seen[0],
        "through the proxy (left) as direct (right)"
    );

    // etcdctl of this release, as bob watching /a/1: the same words, no crash.
    let outcome = |endpoint: &str| {
        let (_, out, err) = run(endpoint, &["--user=bob:pb", "watch", "/a/1"]);
        assert!(
            !err.contains("panic"),
            "etcdctl crashed through {endpoint}: {err}"
        );
        (out, crate::support::ctl::error_line(&err))
    };
    assert_eq!(outcome(&via), outcome(&direct));
}

/// What a progress request on a stream answers: per target, the answer's
/// watch id and whether its revision is the store's current one.
async fn progress_after_other_writes(target: &str, via_ctl: &str, key: &str) -> (i64, bool) {
    let mut w = RawWatch::open(target, None, Create(create(key, 0))).await;
    assert!(w.must_next().await.created);
    for i in 0..5 {
        ok(via_ctl, &["put", &format!("{key}-other-{i}"), "v"]);
    }
    let store = ok(via_ctl, &["get", "x", "-w", "json"]);
    let store_rev = crate::support::ctl::json_revision(&store);
    w.progress().await;
    let answer = w.must_next().await;
    assert!(
        answer.events.is_empty() && !answer.created && !answer.canceled,
        "{answer:?}"
    );
    let rev = answer.header.expect("header").revision;
    (answer.watch_id, rev == store_rev)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_requests_answer_with_the_store_revision_as_the_member_does() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    let proxy = TestProxy::start(&direct).await;
    let via = proxy.endpoint();

    // A watch on one key, writes to others, then a progress request.
    let d = progress_after_other_writes(&direct, &direct, "pd").await;
    let p = progress_after_other_writes(&via, &direct, "pp").await;
    assert_eq!(
        p, d,
        "(watch id, revision is the store's): proxy (left), direct (right)"
    );
    assert!(d.1, "the member answers with its store revision");

    // Several watchers on one stream, one of them replaying history: the
    // answer comes once all have caught up, with the store revision.
    for target in [&direct, &via] {
        let mut w = RawWatch::open(target, None, Create(create("multi-a", 0))).await;
        w.create(WatchCreateRequest {
            key: "multi-b".into(),
            start_revision: 1,
            ..Default::default()
        })
        .await;
        let mut created = 0;
        while created < 2 {
            if w.must_next().await.created {
                created += 1;
            }
        }
        ok(&direct, &["put", "multi-b", "1"]);
        let store_rev =
            crate::support::ctl::json_revision(&ok(&direct, &["get", "x", "-w", "json"]));
        // etcd drops a request while a watcher is still catching up; ask
        // again every 100 ms, as Kubernetes does.
        let mut answered = None;
        for _ in 0..100 {
            w.progress().await;
            if let Some(r) = w.next(Duration::from_millis(100)).await {
                if r.events.is_empty() && !r.created {
                    answered = Some(r);
                    break;
                }
            }
        }
        let r = answered.unwrap_or_else(|| panic!("{target}: no progress answer"));
        assert_eq!(r.header.expect("header").revision, store_rev, "{target}");
    }

    // A stream without watchers: the member's release decides whether it
    // answers at all; a create sent right after shows what came first.
    let mut shapes = Vec::new();
    for target in [&direct, &via] {
        let firsts = vec![
            Progress(WatchProgressRequest {}),
            Create(create("after-progress", 0)),
        ];
        let mut w = RawWatch::open_with(target, None, firsts).await;
        let first = w.must_next().await;
        shapes.push(shape(&first));
    }
    assert_eq!(
        shapes[1], shapes[0],
        "stream without watchers: proxy (left), direct (right)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_leader_streams_are_told_when_the_cluster_loses_its_leader() {
    use etcd_client::{Client, ConnectOptions};
    let mut cluster = Cluster::start(3).await;
    let survivor = cluster.members[2].addr();
    let proxy = TestProxy::start(&cluster.endpoints()).await;
    let via = proxy.endpoint();
    let require = || Some(ConnectOptions::new().with_require_leader(true));

    let mut direct_strict = Client::connect([survivor.clone()], require())
        .await
        .unwrap();
    let mut via_strict = Client::connect([via.clone()], require()).await.unwrap();
    let mut via_relaxed = Client::connect([via.clone()], None).await.unwrap();
    let mut d = direct_strict.watch("rl", None).await.unwrap();
    let mut p = via_strict.watch("rl", None).await.unwrap();
    let mut q = via_relaxed.watch("rl", None).await.unwrap();
    for s in [&mut d, &mut p, &mut q] {
        assert!(s.message().await.unwrap().unwrap().created());
    }

    // Two of three members die: the survivor has no leader.
    cluster.members[0].kill();
    cluster.members[1].kill();
    let direct_says = ended(&mut d).await;
    assert_eq!(
        ended(&mut p).await,
        direct_says,
        "a require-leader watch through the proxy (left) as direct (right)"
    );
    // A client that did not ask is not told: its stream stays open.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), q.message())
            .await
            .is_err(),
        "the relaxed watch stays open"
    );
}

/// How a watch stream ends within 30 s: its status, or "still open".
async fn ended(s: &mut etcd_client::WatchStream) -> String {
    let fut = async move {
        loop {
            match s.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return "ended".to_string(),
                Err(etcd_client::Error::GRpcStatus(st)) => {
                    return format!("{:?} {}", st.code(), st.message())
                }
                Err(e) => return format!("{e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| "still open".into())
}

/// Create, write, cancel, create again, 10 times on one stream: what the
/// client sees, as the shapes of the responses in order.
async fn create_cancel_loop(endpoint: &str, writer: &str) -> Vec<String> {
    let watch_on = |key: &str| {
        Create(WatchCreateRequest {
            key: key.into(),
            ..Default::default()
        })
    };
    let mut w = RawWatch::open(endpoint, None, watch_on("ids/k")).await;
    let mut seen = Vec::new();
    let mut canceled = std::collections::HashSet::new();
    for round in 0..10 {
        if round > 0 {
            w.create(WatchCreateRequest {
                key: b"ids/k".to_vec(),
                ..Default::default()
            })
            .await;
        }
        let created = w.must_next().await;
        assert!(created.created, "{created:?}");
        assert!(
            !canceled.contains(&created.watch_id),
            "watch id {} given again after its cancel",
            created.watch_id
        );
        seen.push(shape(&created));
        ok(writer, &["put", "ids/k", &format!("v{round}")]);
        let event = w.must_next().await;
        assert_eq!(event.watch_id, created.watch_id);
        seen.push(shape(&event));
        w.send(watch_request::RequestUnion::CancelRequest(
            etcd_grpc_proxy::proto::etcdserverpb::WatchCancelRequest {
                watch_id: created.watch_id,
            },
        ))
        .await;
        let cancel = w.must_next().await;
        assert!(
            cancel.canceled && cancel.watch_id == created.watch_id,
            "{cancel:?}"
        );
        seen.push(shape(&cancel));
        canceled.insert(created.watch_id);
        // A write now must reach no canceled watcher.
        ok(writer, &["put", "ids/k", &format!("after-cancel-{round}")]);
    }
    if let Some(late) = w.next(Duration::from_millis(500)).await {
        panic!("a response after every watch was canceled: {late:?}");
    }
    seen
}

#[tokio::test]
async fn watch_ids_are_never_reused_within_a_stream_and_cancel_is_final() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.endpoints();
    let proxy = TestProxy::start(&direct).await;
    let through_proxy = create_cancel_loop(&proxy.endpoint(), &direct).await;
    let directly = create_cancel_loop(&direct, &direct).await;
    assert_eq!(through_proxy, directly);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_created_without_a_token_right_after_auth_enable_sees_no_event() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.endpoints();
    let proxy = TestProxy::start(&direct).await;
    let via = proxy.endpoint();
    // A shared upstream watch, opened while auth is off.
    let mut before = RawWatch::open(&via, None, Create(create("/a/k", 0))).await;
    assert!(before.must_next().await.created);
    ok(&direct, &["put", "/a/k", "auth-off"]);
    assert_eq!(before.must_next().await.events.len(), 1);

    // Auth enabled on the member; at once, a token-less create of the same
    // range through the proxy is answered as the member answers one.
    enable_auth_with_alice_and_bob(&direct);
    let mut after = RawWatch::open(&via, None, Create(create("/a/k", 0))).await;
    let mut on_member = RawWatch::open(&direct, None, Create(create("/a/k", 0))).await;
    assert_eq!(
        shape(&after.must_next().await),
        shape(&on_member.must_next().await)
    );
    ok(&direct, &["--user=root:rootpw", "put", "/a/k", "auth-on"]);
    while let Some(r) = after.next(Duration::from_secs(1)).await {
        assert!(
            r.events.is_empty(),
            "a watch created without a token got {r:?}"
        );
    }
}

/// The member's answer to a read of `key` under `token` (`Ok` if it read).
async fn read_with(addr: &str, token: &str, key: &str) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(etcd_grpc_proxy::proto::etcdserverpb::RangeRequest {
        key: key.into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("token", token.parse().expect("ascii"));
    etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient::new(channel)
        .range(req)
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_watch_reopens_under_a_token_that_still_works() {
    let mut cluster = Cluster::start_with_flags(3, &["--auth-token-ttl=2"]).await;
    let members: Vec<String> = cluster.members.iter().map(|m| m.addr()).collect();
    enable_auth_with_alice_and_bob(&members[0]);
    let proxy = TestProxy::start(&cluster.endpoints()).await;
    let via = proxy.endpoint();
    let baseline = cluster.watchers_on();

    // The opener's watch, then a second client's on the same range.
    let first = token(&via, "alice", "pa").await;
    let mut opener = RawWatch::open(&via, Some(&first), Create(create("/a/k", 0))).await;
    assert!(opener.must_next().await.created);
    let second = token(&via, "alice", "pa").await;
    let mut joiner = RawWatch::open(&via, Some(&second), Create(create("/a/k", 0))).await;
    assert!(joiner.must_next().await.created);
    let serving = eventually(
        "the shared upstream watch shows on a member",
        Duration::from_secs(10),
        || {
            let now = cluster.watchers_on();
            let idx = now.iter().zip(&baseline).position(|(n, b)| n > b);
            async move { idx }
        },
    )
    .await;

    // The opener leaves; the second client keeps its token in use on every
    // member, as a live client does, while the opener's expires.
    drop(opener);
    let in_use = {
        let (members, second) = (members.clone(), second.clone());
        tokio::spawn(async move {
            loop {
                for m in &members {
                    let _ = read_with(m, &second, "/a/x").await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let others: Vec<String> = (0..3)
        .filter(|i| *i != serving)
        .map(|i| members[i].clone())
        .collect();
    // A simple token lives --auth-token-ttl past its last use (checked
    // every second); any check would renew it, so this waits the TTL out.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for m in &others {
        assert!(
            read_with(m, &first, "/a/x").await.is_err(),
            "the opener's token still works on {m}"
        );
    }

    // The member serving the shared watch dies; writes after that still
    // reach the remaining watcher.
    cluster.members[serving].kill();
    let writer = others[0].clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    'seen: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the remaining watcher saw no write made after the failover"
        );
        n += 1;
        // Right after the kill etcd may answer "leader changed": the next
        // round writes again.
        let _ = run(
            &writer,
            &["--user=root:rootpw", "put", "/a/k", &format!("after-{n}")],
        );
        while let Some(r) = joiner.next(Duration::from_millis(500)).await {
            if !r.events.is_empty() {
                break 'seen;
            }
        }
    }
    in_use.abort();
}
