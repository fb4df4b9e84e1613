//! `grpc.health.v1.Health` through the proxy: the same answers as a member
//! while the proxy is ready, NOT_SERVING once no member is in rotation or
//! the drain has started (as Kubernetes `grpc:` probes need).

use std::time::Duration;

use etcd_grpc_proxy::proto::grpc_health_v1::health_check_response::ServingStatus;
use etcd_grpc_proxy::proto::grpc_health_v1::health_client::HealthClient;
use etcd_grpc_proxy::proto::grpc_health_v1::{HealthCheckRequest, HealthListRequest};
use tonic::Streaming;

use crate::support::grpc::{channel, status_text};
use crate::support::proxy::config;
use crate::support::{eventually, Cluster, TestProxy};

const SERVING: i32 = ServingStatus::Serving as i32;
const NOT_SERVING: i32 = ServingStatus::NotServing as i32;

/// A health answer: the status, or the refusal's code and message.
type Outcome = Result<i32, (tonic::Code, String)>;

async fn client(addr: &str) -> HealthClient<tonic::transport::Channel> {
    HealthClient::new(channel(addr).await)
}

async fn check(addr: &str, service: &str) -> Outcome {
    let req = HealthCheckRequest {
        service: service.into(),
    };
    client(addr)
        .await
        .check(req)
        .await
        .map(|r| r.into_inner().status)
        .map_err(|s| status_text(&s))
}

async fn watch(
    addr: &str,
    service: &str,
) -> Streaming<etcd_grpc_proxy::proto::grpc_health_v1::HealthCheckResponse> {
    let req = HealthCheckRequest {
        service: service.into(),
    };
    client(addr)
        .await
        .watch(req)
        .await
        .expect("health watch")
        .into_inner()
}

/// The next status a Watch reports.
async fn next(
    stream: &mut Streaming<etcd_grpc_proxy::proto::grpc_health_v1::HealthCheckResponse>,
) -> Outcome {
    match tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("health watch answer in time")
    {
        Ok(Some(r)) => Ok(r.status),
        Ok(None) => Err((tonic::Code::Ok, "stream ended".into())),
        Err(s) => Err(status_text(&s)),
    }
}

/// Everything a probe may ask, answered by `addr`.
async fn answers(addr: &str) -> Vec<(String, Outcome)> {
    let mut out = Vec::new();
    for service in [
        "",
        "etcdserverpb.KV",
        "grpc.health.v1.Health",
        "no-such-service",
    ] {
        out.push((format!("Check {service:?}"), check(addr, service).await));
        let mut stream = watch(addr, service).await;
        out.push((format!("Watch {service:?}"), next(&mut stream).await));
    }
    let list = client(addr).await.list(HealthListRequest {}).await;
    let list = list.map(|r| {
        r.into_inner()
            .statuses
            .into_iter()
            .map(|(k, v)| format!("{k:?}={}", v.status))
            .collect::<Vec<_>>()
    });
    out.push((format!("List {list:?}"), Ok(0)));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_service_answers_as_a_member_does() {
    let cluster = Cluster::start(1).await;
    let member = cluster.members[0].addr();
    let proxy = TestProxy::start(&member).await;
    let direct = answers(&member).await;
    assert_eq!(direct[0].1, Ok(SERVING), "{direct:?}");
    let proxied = eventually("the proxy ready", Duration::from_secs(20), || {
        let addr = proxy.endpoint();
        async move { Some(answers(&addr).await).filter(|a| a[0].1 == Ok(SERVING)) }
    })
    .await;
    // etcd 3.4's grpc-go has no List; the proxy answers it as newer members do.
    let old_member = direct
        .iter()
        .any(|(what, _)| what.contains("unknown method List"));
    let compared = |a: &[(String, Outcome)]| {
        if old_member {
            a[..a.len() - 1].to_vec()
        } else {
            a.to_vec()
        }
    };
    assert_eq!(compared(&proxied), compared(&direct));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_serving_without_members_or_while_draining() {
    let mut cluster = Cluster::start(1).await;
    let mut c = config(&cluster.endpoints());
    c.drain_grace_period = Duration::from_secs(3);
    let mut draining = TestProxy::with_config(c).await;
    let other = TestProxy::start(&cluster.endpoints()).await;
    let (serving, not_serving): (Outcome, Outcome) = (Ok(SERVING), Ok(NOT_SERVING));
    for p in [&draining, &other] {
        let addr = p.endpoint();
        eventually("proxy serving", Duration::from_secs(20), || {
            let addr = addr.clone();
            async move { (check(&addr, "").await == Ok(SERVING)).then_some(()) }
        })
        .await;
    }

    // Draining: NOT_SERVING at once, on a Watch and a Check, for the whole
    // grace period; the Watch then ends with the drain.
    let mut drain_watch = watch(&draining.endpoint(), "").await;
    assert_eq!(next(&mut drain_watch).await, serving);
    let probe = client(&draining.endpoint()).await;
    draining.begin_shutdown();
    assert_eq!(next(&mut drain_watch).await, not_serving);
    let answer = probe
        .clone()
        .check(HealthCheckRequest::default())
        .await
        .map(|r| r.into_inner().status);
    assert_eq!(answer.map_err(|s| status_text(&s)), not_serving);
    let end = next(&mut drain_watch).await;
    assert_eq!(end.map_err(|(code, _)| code), Err(tonic::Code::Unavailable));
    draining.finished().await;

    // No member in rotation: NOT_SERVING.
    let mut other_watch = watch(&other.endpoint(), "").await;
    assert_eq!(next(&mut other_watch).await, serving);
    cluster.members[0].kill();
    assert_eq!(next(&mut other_watch).await, not_serving);
    let addr = other.endpoint();
    eventually(
        "Check NOT_SERVING without members",
        Duration::from_secs(30),
        || {
            let addr = addr.clone();
            async move { (check(&addr, "").await == Ok(NOT_SERVING)).then_some(()) }
        },
    )
    .await;
    other.stop().await;
}
