//! `KV.RangeStream` (etcd 3.7) through the proxy: the same messages as a
//! member sends directly, with namespaces and tokens as for a Range; in
//! front of an older member, the member's own refusal.

use etcd_grpc_proxy::proto::etcdserverpb::auth_client::AuthClient;
use etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient;
use etcd_grpc_proxy::proto::etcdserverpb::range_request::SortOrder;
use etcd_grpc_proxy::proto::etcdserverpb::{
    AuthenticateRequest, PutRequest, RangeRequest, RangeResponse,
};

use crate::support::ctl::enable_auth_with_alice_and_bob;
use crate::support::grpc::{channel, status_text};
use crate::support::{proxy, Cluster, TestProxy};

/// The messages of one RangeStream, or how it failed (also midway).
type Outcome = Result<Vec<RangeResponse>, (tonic::Code, String)>;

async fn range_stream(addr: &str, req: RangeRequest, token: Option<&str>) -> Outcome {
    let mut kv = KvClient::new(channel(addr).await);
    let mut req = tonic::Request::new(req);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("token", t.parse().expect("token header"));
    }
    let mut stream = kv
        .range_stream(req)
        .await
        .map_err(|s| status_text(&s))?
        .into_inner();
    let mut messages = Vec::new();
    while let Some(m) = stream.message().await.map_err(|s| status_text(&s))? {
        messages.push(m.range_response.unwrap_or_default());
    }
    Ok(messages)
}

/// Puts `n` keys `{prefix}k{i:03}` directly; returns the revision after the first half.
async fn seed(addr: &str, prefix: &str, n: usize) -> i64 {
    let mut kv = KvClient::new(channel(addr).await);
    let mut half = 0;
    for i in 0..n {
        let put = PutRequest {
            key: format!("{prefix}k{i:03}").into(),
            value: format!("value {i}").into(),
            ..Default::default()
        };
        let rev = kv
            .put(put)
            .await
            .expect("seed put")
            .into_inner()
            .header
            .expect("header")
            .revision;
        if i == n / 2 {
            half = rev;
        }
    }
    half
}

/// Every case asked, for keys under `prefix`.
fn cases(prefix: &str, half: i64) -> Vec<(&'static str, RangeRequest)> {
    let all = RangeRequest {
        key: prefix.into(),
        range_end: format!("{prefix}\u{ff}").into(),
        ..Default::default()
    };
    vec![
        ("all", all.clone()),
        (
            "limit",
            RangeRequest {
                limit: 25,
                ..all.clone()
            },
        ),
        (
            "limit over the total",
            RangeRequest {
                limit: 500,
                ..all.clone()
            },
        ),
        (
            "count only",
            RangeRequest {
                count_only: true,
                ..all.clone()
            },
        ),
        (
            "keys only, serializable",
            RangeRequest {
                keys_only: true,
                serializable: true,
                ..all.clone()
            },
        ),
        (
            "at an older revision",
            RangeRequest {
                revision: half,
                ..all.clone()
            },
        ),
        (
            "one key",
            RangeRequest {
                key: format!("{prefix}k007").into(),
                ..Default::default()
            },
        ),
        (
            "no such key",
            RangeRequest {
                key: format!("{prefix}none").into(),
                ..Default::default()
            },
        ),
        (
            "sorted",
            RangeRequest {
                sort_order: SortOrder::Descend as i32,
                ..all.clone()
            },
        ),
        (
            "revision filter",
            RangeRequest {
                min_mod_revision: 2,
                ..all.clone()
            },
        ),
        (
            "future revision",
            RangeRequest {
                revision: 1 << 40,
                ..all
            },
        ),
        ("no key", RangeRequest::default()),
    ]
}

fn strip(outcome: Outcome, prefix: &[u8]) -> Outcome {
    outcome.map(|messages| {
        messages
            .into_iter()
            .map(|mut r| {
                for kv in &mut r.kvs {
                    kv.key = kv
                        .key
                        .strip_prefix(prefix)
                        .expect("key under the namespace")
                        .to_vec();
                }
                r
            })
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_stream_answers_as_the_member_behind_it() {
    let cluster = Cluster::start(1).await;
    let member = cluster.members[0].addr();
    let proxy = TestProxy::start(&member).await;
    let half = seed(&member, "rs/", 60).await;
    let mut several = false;
    for (what, req) in cases("rs/", half) {
        let direct = range_stream(&member, req.clone(), None).await;
        let proxied = range_stream(&proxy.endpoint(), req, None).await;
        several |= direct.as_ref().is_ok_and(|m| m.len() > 1);
        assert_eq!(proxied, direct, "{what}");
    }
    // A 3.7 member splits the answer; older ones have no RangeStream.
    let old = range_stream(
        &member,
        RangeRequest {
            key: "rs/".into(),
            ..Default::default()
        },
        None,
    )
    .await;
    assert!(several || old.is_err_and(|(code, _)| code == tonic::Code::Unimplemented));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_stream_in_a_namespace() {
    let cluster = Cluster::start(1).await;
    let member = cluster.members[0].addr();
    let mut config = proxy::config(&member);
    config.namespace = etcd_grpc_proxy::kv::namespace::Namespace::new("ns/");
    let proxy = TestProxy::with_config(config).await;
    let half = seed(&member, "ns/rs/", 60).await;
    // Neighbours outside the namespace that must not show.
    seed(&member, "rs/", 3).await;
    for ((what, direct_req), (_, proxied_req)) in
        cases("ns/rs/", half).into_iter().zip(cases("rs/", half))
    {
        let direct = strip(range_stream(&member, direct_req, None).await, b"ns/");
        let proxied = range_stream(&proxy.endpoint(), proxied_req, None).await;
        // A key-less request cannot be moved into the namespace: the proxy
        // refuses it itself, in a 3.7 member's words, whatever the member.
        let no_range_stream = direct
            .as_ref()
            .is_err_and(|(_, m)| m.starts_with("unknown method"));
        if what == "no key" && no_range_stream {
            assert_eq!(
                proxied.map_err(|(code, _)| code),
                Err(tonic::Code::InvalidArgument)
            );
            continue;
        }
        assert_eq!(proxied, direct, "{what}");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_stream_carries_the_clients_token() {
    let cluster = Cluster::start(1).await;
    let member = cluster.members[0].addr();
    let proxy = TestProxy::start(&member).await;
    seed(&member, "/a/", 15).await;
    seed(&member, "/b/", 15).await;
    enable_auth_with_alice_and_bob(&member);
    let auth = AuthenticateRequest {
        name: "alice".into(),
        password: "pa".into(),
    };
    for prefix in ["/a/", "/b/"] {
        let req = RangeRequest {
            key: prefix.into(),
            range_end: format!("{prefix}\u{ff}").into(),
            ..Default::default()
        };
        // A token per target: a member's token is its own.
        let mut answers = Vec::new();
        for addr in [member.clone(), proxy.endpoint()] {
            let token = AuthClient::new(channel(&addr).await)
                .authenticate(auth.clone())
                .await
                .expect("authenticate")
                .into_inner()
                .token;
            let token = String::from_utf8(token).expect("etcd tokens are text");
            let with_token = range_stream(&addr, req.clone(), Some(&token)).await;
            let without = range_stream(&addr, req.clone(), None).await;
            answers.push((with_token, without));
        }
        assert_eq!(answers[1], answers[0], "{prefix}");
    }
    proxy.stop().await;
}
