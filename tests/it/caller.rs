//! One caller identity: a client that sends its token as `authorization`
//! metadata (which etcd accepts as well as `token`) is that user for every
//! part of the proxy: never served a leased answer fetched under another
//! user, and its keep-alives renew under its own token.

use etcd_grpc_proxy::proto::etcdserverpb::auth_client::AuthClient;
use etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient;
use etcd_grpc_proxy::proto::etcdserverpb::lease_client::LeaseClient;
use etcd_grpc_proxy::proto::etcdserverpb::{
    AuthenticateRequest, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, RangeRequest,
};
use etcd_grpc_proxy::upstream::OwnUser;
use tonic::Request;

use crate::support::ctl::{enable_auth_with_alice_and_bob, ok};
use crate::support::grpc::{channel, status_text};
use crate::support::proxy::config;
use crate::support::{Cluster, TestProxy};

/// `msg` carrying `token` as `authorization` metadata.
fn as_authorization<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert("authorization", token.parse().expect("ascii token"));
    req
}

async fn token_of(addr: &str, name: &str, password: &str) -> String {
    let token = AuthClient::new(channel(addr).await)
        .authenticate(AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        })
        .await
        .expect("authenticate")
        .into_inner()
        .token;
    String::from_utf8(token).expect("etcd tokens are ASCII")
}

/// What `user` reading `key` with its token in `authorization` is told at `addr`.
async fn read_as(
    addr: &str,
    token: &str,
    key: &str,
) -> Result<Vec<Vec<u8>>, (tonic::Code, String)> {
    KvClient::new(channel(addr).await)
        .range(as_authorization(
            token,
            RangeRequest {
                key: key.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().kvs.into_iter().map(|kv| kv.value).collect())
        .map_err(|s| status_text(&s))
}

/// The TTL (or the refusal) a keep-alive of `lease` under `token` gets at `addr`.
async fn keep_alive_as(addr: &str, token: &str, lease: i64) -> Result<i64, (tonic::Code, String)> {
    let requests = futures::stream::iter([LeaseKeepAliveRequest { id: lease }]);
    let mut answers = LeaseClient::new(channel(addr).await)
        .lease_keep_alive(as_authorization(token, requests))
        .await
        .map_err(|s| status_text(&s))?
        .into_inner();
    match answers.message().await {
        Ok(Some(a)) => Ok(a.ttl),
        Ok(None) => Err((tonic::Code::Ok, "stream ended".into())),
        Err(s) => Err(status_text(&s)),
    }
}

#[tokio::test]
async fn a_token_sent_as_authorization_is_the_callers_own_everywhere() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.endpoints();
    enable_auth_with_alice_and_bob(&direct);
    for args in [
        &["--user=root:rootpw", "user", "add", "proxy:proxypw"][..],
        &["--user=root:rootpw", "user", "grant-role", "proxy", "root"],
        &["--user=root:rootpw", "put", "/a/secret", "alice-only"],
    ] {
        ok(&direct, args);
    }
    let mut cfg = config(&direct);
    cfg.channel.own_user = Some(OwnUser {
        name: b"proxy".to_vec(),
        password: b"proxypw".to_vec(),
    });
    cfg.leasing_prefix = Some(b"lp/".to_vec());
    let proxy = TestProxy::with_config(cfg).await;
    let via = proxy.endpoint();

    // Bob may not read alice's key: through the leasing proxy he is told
    // what the member tells him, never the copy leasing fetches as its own user.
    let bob = token_of(&direct, "bob", "pb").await;
    let refused = read_as(&direct, &bob, "/a/secret").await;
    assert!(
        refused.is_err(),
        "bob reads /a/secret directly: {refused:?}"
    );
    for _ in 0..3 {
        assert_eq!(read_as(&via, &bob, "/a/secret").await, refused);
    }
    let alice = token_of(&direct, "alice", "pa").await;
    assert_eq!(
        read_as(&via, &alice, "/a/secret").await,
        Ok(vec![b"alice-only".to_vec()])
    );

    // Alice's keep-alive of a lease on her key renews under her own token,
    // exactly as it does directly.
    let lease = LeaseClient::new(channel(&direct).await)
        .lease_grant(as_authorization(
            &alice,
            LeaseGrantRequest { ttl: 60, id: 0 },
        ))
        .await
        .expect("grant")
        .into_inner()
        .id;
    KvClient::new(channel(&direct).await)
        .put(as_authorization(
            &alice,
            PutRequest {
                key: b"/a/leased".to_vec(),
                value: b"v".to_vec(),
                lease,
                ..Default::default()
            },
        ))
        .await
        .expect("put with lease");
    let renewed = keep_alive_as(&direct, &alice, lease).await;
    assert!(
        matches!(renewed, Ok(ttl) if ttl > 0),
        "directly: {renewed:?}"
    );
    assert_eq!(keep_alive_as(&via, &alice, lease).await, renewed);
    // Bob's keep-alive of it is answered as the member answers him.
    assert_eq!(
        keep_alive_as(&via, &bob, lease).await,
        keep_alive_as(&direct, &bob, lease).await
    );
}
