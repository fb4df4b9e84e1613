//! A write whose answer is lost after the member applied it is applied at
//! most once: the proxy never sends it to another member, and the client
//! gets `Unavailable` (the write may have happened), as with etcd directly.
//!
//! Each member sits behind a [`Relay`]: the member receives the write and
//! applies it, its answer is dropped, then the connection is reset.

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};
use tonic::Code;

use crate::support::proxy::config;
use crate::support::relay::Relay;
use crate::support::{eventually, Cluster, TestProxy};

/// Three members, each behind a relay the proxy is given instead of it.
struct Rig {
    _cluster: Cluster,
    relays: Vec<Relay>,
    _proxy: TestProxy,
    through_proxy: Client,
    direct: Client,
}

impl Rig {
    async fn start() -> Rig {
        let cluster = Cluster::start(3).await;
        let mut relays = Vec::new();
        for m in &cluster.members {
            relays.push(Relay::start(m.addr()).await);
        }
        let endpoints: Vec<String> = relays.iter().map(Relay::endpoint).collect();
        let mut c = config(&endpoints.join(","));
        // The proxy must keep using the relays, not the members' own URLs.
        c.auto_sync_interval = None;
        let proxy = TestProxy::with_config(c).await;
        let through_proxy = proxy.client().await;
        let direct = Client::connect(
            cluster.members.iter().map(|m| m.addr()).collect::<Vec<_>>(),
            None,
        )
        .await
        .expect("direct client");
        let rig = Rig {
            _cluster: cluster,
            relays,
            _proxy: proxy,
            through_proxy,
            direct,
        };
        rig.wait_until_writes_pass().await;
        rig
    }

    /// Writes go through again, and the proxy holds a connection to every
    /// member (so the next write is sent on one whose answers can be lost).
    async fn wait_until_writes_pass(&self) {
        let mut client = self.through_proxy.clone();
        eventually("a write through the proxy", Duration::from_secs(30), || {
            let mut client = client.clone();
            async move { client.put("warm-up", "x", None).await.ok() }
        })
        .await;
        eventually(
            "the proxy connected to every member",
            Duration::from_secs(30),
            || {
                let mut client = client.clone();
                async move {
                    let _ = client.get("warm-up", None).await;
                    self.relays
                        .iter()
                        .all(|r| r.connections() > 0)
                        .then_some(())
                }
            },
        )
        .await;
        let _ = client.get("warm-up", None).await;
    }

    /// Runs `call` through the proxy with every member's answers dropped,
    /// waits until `applied` sees its effect on the members directly, then
    /// resets the connections; returns what the client was told.
    async fn answer_lost<T, C, A, AF>(
        &self,
        call: C,
        mut applied: A,
    ) -> Result<T, etcd_client::Error>
    where
        T: Send + 'static,
        C: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        A: FnMut(Client) -> AF,
        AF: Future<Output = bool>,
    {
        self.relays.iter().for_each(Relay::lose_answers);
        let call = tokio::spawn(call);
        eventually(
            "the member applied the write",
            Duration::from_secs(20),
            || {
                let fut = applied(self.direct.clone());
                async move { fut.await.then_some(()) }
            },
        )
        .await;
        self.relays.iter().for_each(Relay::reset_losing);
        let told = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("the client is answered")
            .expect("call task");
        self.wait_until_writes_pass().await;
        told
    }
}

/// The answer a client gets when its write's answer was lost: an error
/// saying the member is unavailable (it may have been applied).
fn assert_unavailable<T: std::fmt::Debug>(told: &Result<T, etcd_client::Error>) {
    if let Err(e) = told {
        match e {
            etcd_client::Error::GRpcStatus(s) => assert_eq!(s.code(), Code::Unavailable, "{s:?}"),
            other => panic!("unexpected error {other:?}"),
        }
    }
}

async fn version_of(direct: &mut Client, key: &str) -> i64 {
    let got = direct.get(key, None).await.expect("direct get");
    got.kvs().first().map(|kv| kv.version()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_whose_answer_is_lost_are_applied_at_most_once() {
    let rig = Rig::start().await;

    // A Put leaves the key at version 1.
    let mut c = rig.through_proxy.clone();
    let told = rig
        .answer_lost(
            async move { c.put("put-once", "v", None).await },
            |mut d| async move { version_of(&mut d, "put-once").await > 0 },
        )
        .await;
    assert_unavailable(&told);
    let mut direct = rig.direct.clone();
    assert_eq!(
        version_of(&mut direct, "put-once").await,
        1,
        "Put applied once; told {told:?}"
    );

    // A create-if-absent Txn is never answered FAILURE after it succeeded.
    let mut c = rig.through_proxy.clone();
    let create = Txn::new()
        .when([Compare::version("created", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("created", "once", None)])
        .or_else([TxnOp::get("created", None)]);
    let told = rig
        .answer_lost(async move { c.txn(create).await }, |mut d| async move {
            version_of(&mut d, "created").await > 0
        })
        .await;
    assert_unavailable(&told);
    if let Ok(answer) = &told {
        assert!(
            answer.succeeded(),
            "the Txn that created the key was answered FAILURE"
        );
    }
    assert_eq!(
        version_of(&mut direct, "created").await,
        1,
        "Txn applied once"
    );

    // A LeaseGrant leaves no lease the client was not told of, beyond the one
    // it may have been applied as.
    let before = direct.leases().await.expect("leases").leases().len();
    let mut c = rig.through_proxy.clone();
    let told = rig
        .answer_lost(
            async move { c.lease_grant(600, None).await },
            move |mut d| async move {
                d.leases()
                    .await
                    .map(|l| l.leases().len() > before)
                    .unwrap_or(false)
            },
        )
        .await;
    assert_unavailable(&told);
    let leases = direct.leases().await.expect("leases");
    assert_eq!(leases.leases().len(), before + 1, "LeaseGrant applied once");
    if let Ok(granted) = &told {
        assert!(leases.leases().iter().any(|l| l.id() == granted.id()));
    }

    // A DeleteRange reports what was deleted, or an error.
    direct.put("del/1", "a", None).await.expect("put");
    direct.put("del/2", "b", None).await.expect("put");
    let mut c = rig.through_proxy.clone();
    let told = rig
        .answer_lost(
            async move {
                c.delete("del/", Some(DeleteOptions::new().with_prefix()))
                    .await
            },
            |mut d| async move {
                d.get(
                    "del/",
                    Some(GetOptions::new().with_prefix().with_count_only()),
                )
                .await
                .map(|r| r.count() == 0)
                .unwrap_or(false)
            },
        )
        .await;
    assert_unavailable(&told);
    if let Ok(answer) = &told {
        assert_eq!(
            answer.deleted(),
            2,
            "the delete that removed both keys reported otherwise"
        );
    }
}
