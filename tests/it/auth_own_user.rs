//! With auth on, the proxy's own calls (health probes, MemberList) run as
//! its own user (`--user`, `--password-file`), which auth-hardened etcd
//! (3.4.42, 3.5.28, 3.6.9, 3.7 and later) requires; clients keep their own
//! tokens, and a lease is renewed under its client's token only.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, LeaseGrantOptions, PutOptions};
use etcd_grpc_proxy::upstream::OwnUser;

use crate::support::ctl::{enable_auth_with_alice_and_bob, ok};
use crate::support::http;
use crate::support::proxy::config;
use crate::support::{eventually, Cluster, TestProxy};

async fn client_as(endpoint: &str, user: &str, password: &str) -> Client {
    Client::connect(
        [endpoint],
        Some(ConnectOptions::new().with_user(user, password)),
    )
    .await
    .expect("authenticate")
}

/// Whether a keep-alive of `lease` by `client` is answered, in etcd's words.
async fn keep_alive_outcome(client: &mut Client, lease: i64) -> String {
    let fut = async {
        let (mut keeper, mut stream) = match client.lease_keep_alive(lease).await {
            Ok(k) => k,
            Err(e) => return format!("error {e}"),
        };
        if let Err(e) = keeper.keep_alive().await {
            return format!("error {e}");
        }
        match stream.message().await {
            Ok(Some(r)) => format!("renewed ttl>0: {}", r.ttl() > 0),
            Ok(None) => "ended".into(),
            Err(etcd_client::Error::GRpcStatus(s)) => {
                format!("error {:?} {}", s.code(), s.message())
            }
            Err(e) => format!("error {e}"),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| "no answer".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_on_the_proxy_runs_its_own_calls_as_its_user() {
    let mut cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    enable_auth_with_alice_and_bob(&direct);
    // The proxy's own user needs no role: Status and MemberList only ask
    // for an authenticated user.
    ok(
        &direct,
        &["--user=root:rootpw", "user", "add", "proxy:proxypw"],
    );

    let mut cfg = config(&direct);
    cfg.channel.own_user = Some(OwnUser {
        name: b"proxy".to_vec(),
        password: b"proxypw".to_vec(),
    });
    let proxy = TestProxy::with_config(cfg).await;
    let via = proxy.endpoint();

    // Ready, and stays ready: its health probes are answered.
    eventually(
        "/readyz is 200 with auth on",
        Duration::from_secs(20),
        || {
            let via = via.clone();
            async move { (http::get(&via, "/readyz").await?.status == 200).then_some(()) }
        },
    )
    .await;

    // Membership is followed: a member added later serves calls sent to the proxy.
    let m2 = cluster.add_member_as(Some("root:rootpw")).await;
    let mut alice = client_as(&via, "alice", "pa").await;
    alice
        .put("/a/story", "v", None)
        .await
        .expect("alice writes through the proxy");
    let before = cluster.members[m2].ranges_served();
    eventually(
        "the added member serves calls sent to the proxy",
        Duration::from_secs(30),
        || {
            let mut alice = alice.clone();
            let member = &cluster.members[m2];
            async move {
                for _ in 0..20 {
                    alice.get("/a/story", None).await.ok()?;
                }
                (member.ranges_served() > before).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        http::get(&via, "/readyz").await.map(|a| a.status),
        Some(200),
        "still ready"
    );

    // A lease kept alive through the proxy outlives several TTLs.
    let lease = alice
        .lease_grant(2, None::<LeaseGrantOptions>)
        .await
        .expect("grant")
        .id();
    alice
        .put("/a/leased", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("put under the lease");
    let (mut keeper, mut answers) = alice
        .lease_keep_alive(lease)
        .await
        .expect("keep-alive stream");
    for _ in 0..8 {
        keeper.keep_alive().await.expect("send keep-alive");
        let r = answers
            .message()
            .await
            .expect("keep-alive answer")
            .expect("stream open");
        assert!(r.ttl() > 0, "renewed");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let got = alice.get("/a/leased", None).await.expect("get");
    assert_eq!(
        got.kvs().len(),
        1,
        "the leased key survived 5.6 s of a 2 s lease"
    );

    // Bob may not write /a/: his keep-alive of alice's lease is answered as
    // the member answers it (refused on auth-hardened releases), never
    // served from alice's renewals.
    let mut bob_via = client_as(&via, "bob", "pb").await;
    let mut bob_direct = client_as(&direct, "bob", "pb").await;
    let through = keep_alive_outcome(&mut bob_via, lease).await;
    let straight = keep_alive_outcome(&mut bob_direct, lease).await;
    assert_eq!(
        through, straight,
        "bob's keep-alive of alice's lease: proxy (left), direct (right)"
    );
}
