//! Auth through the proxy: every Auth RPC is forwarded, each client's token
//! travels with its own calls, and etcd enforces permissions per user, also
//! on watches that share one upstream stream.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use crate::support::ctl::{enable_auth_with_alice_and_bob, error_line, ok, run};
use crate::support::{Cluster, TestProxy};

async fn client_as(endpoint: &str, user: &str, password: &str) -> Client {
    Client::connect(
        [endpoint],
        Some(ConnectOptions::new().with_user(user, password)),
    )
    .await
    .expect("authenticate")
}

/// How a watch creation ends, without ids or headers: comparable across targets.
async fn watch_outcome(client: &mut Client, key: &str) -> String {
    let fut = async {
        match client.watch(key, None).await {
            Err(etcd_client::Error::GRpcStatus(s)) => {
                format!("error {:?} {}", s.code(), s.message())
            }
            Err(e) => format!("error {e}"),
            Ok(mut stream) => match stream.message().await {
                Ok(Some(r)) => format!(
                    "created={} canceled={} reason={:?}",
                    r.created(),
                    r.canceled(),
                    r.cancel_reason()
                ),
                Ok(None) => "ended".into(),
                Err(etcd_client::Error::GRpcStatus(s)) => {
                    format!("error {:?} {}", s.code(), s.message())
                }
                Err(e) => format!("error {e}"),
            },
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| "no answer".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_see_only_what_their_roles_allow() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    let proxy = TestProxy::start(&direct).await;
    let via = proxy.endpoint();

    // Set up users and roles through the proxy: the Auth RPCs are forwarded.
    enable_auth_with_alice_and_bob(&via);
    let root = ["--user=root:rootpw"];
    assert_eq!(
        ok(&via, &[&root[..], &["user", "list"]].concat()),
        ok(&direct, &[&root[..], &["user", "list"]].concat())
    );
    assert_eq!(
        ok(&via, &[&root[..], &["role", "get", "ra"]].concat()),
        ok(&direct, &[&root[..], &["role", "get", "ra"]].concat())
    );

    // etcdctl: each user reaches its own prefix and is refused elsewhere, in etcd's words.
    assert_eq!(
        ok(&via, &["--user=alice:pa", "put", "/a/1", "x"]).trim(),
        "OK"
    );
    assert_eq!(
        ok(&via, &["--user=bob:pb", "put", "/b/1", "y"]).trim(),
        "OK"
    );
    for args in [
        &["--user=bob:pb", "get", "/a/1"][..],
        &["--user=alice:pa", "put", "/b/1", "z"],
        &["get", "/a/1"],
        &["--user=alice:wrong", "get", "/a/1"],
    ] {
        let (d_ok, _, d_err) = run(&direct, args);
        let (p_ok, _, p_err) = run(&via, args);
        assert!(!d_ok && !p_ok, "{args:?} must fail");
        assert_eq!(error_line(&p_err), error_line(&d_err), "{args:?}");
    }

    // etcd-client: same, with interleaved users on one proxy.
    let mut alice = client_as(&via, "alice", "pa").await;
    let mut bob = client_as(&via, "bob", "pb").await;
    let got = alice.get("/a/1", None).await.expect("alice reads /a/1");
    assert_eq!(got.kvs()[0].value(), b"x");
    match bob.get("/a/1", None).await {
        Err(etcd_client::Error::GRpcStatus(s)) => {
            assert_eq!(s.code(), tonic::Code::PermissionDenied);
            assert_eq!(s.message(), "etcdserver: permission denied");
        }
        other => panic!("bob must not read /a/1: {other:?}"),
    }

    // Watches: alice's watch on /a/1 is allowed; bob's watch on the same key
    // (which would share alice's upstream watch) is refused as etcd refuses it.
    let mut alice_stream = alice.watch("/a/1", None).await.expect("alice watches");
    let first = alice_stream
        .message()
        .await
        .expect("alice watch")
        .expect("created");
    assert!(first.created() && !first.canceled());
    let mut bob_direct = client_as(&direct, "bob", "pb").await;
    let want = watch_outcome(&mut bob_direct, "/a/1").await;
    let got = watch_outcome(&mut bob, "/a/1").await;
    assert_eq!(got, want, "bob's watch on alice's key");
    assert!(
        want.contains("canceled=true") || want.starts_with("error"),
        "{want}"
    );
    // Without any token the shared watch is refused too, as etcd refuses it.
    let mut anonymous_direct = Client::connect([direct.as_str()], None)
        .await
        .expect("connect");
    let mut anonymous = Client::connect([via.as_str()], None)
        .await
        .expect("connect");
    assert_eq!(
        watch_outcome(&mut anonymous, "/a/1").await,
        watch_outcome(&mut anonymous_direct, "/a/1").await
    );

    alice.put("/a/1", "x2", None).await.expect("alice writes");
    let event = tokio::time::timeout(Duration::from_secs(10), alice_stream.message())
        .await
        .expect("alice's event in time")
        .expect("alice stream")
        .expect("event");
    assert_eq!(event.events()[0].kv().expect("kv").value(), b"x2");

    // Leave the member usable for nobody else: the cluster is dropped here.
    ok(&via, &["--user=root:rootpw", "auth", "disable"]);
}
