//! `--resolver-prefix`: proxies register their advertised address in etcd's
//! format under a lease, MemberList through any proxy lists every registered
//! proxy, and a stopped proxy disappears: at once when it drains, after its
//! lease TTL when it dies.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{etcdctl, eventually, free_port, proxy, Cluster, TestProxy};

/// The client URLs `etcdctl member list` prints through `endpoint`, sorted.
fn listed(endpoint: &str) -> Option<Vec<String>> {
    let out = etcdctl(endpoint, &["member", "list"]);
    if !out.status.success() {
        return None;
    }
    let mut urls: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(',').nth(4).map(|u| u.trim().to_string()))
        .collect();
    urls.sort();
    Some(urls)
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_register_list_each_other_and_vanish_when_gone() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();

    let a = TestProxy::with_config_for(|addr| {
        let mut c = proxy::config(&direct);
        c.registration = Some(etcd_grpc_proxy::registration::Registration {
            prefix: "/proxies".into(),
            ttl_secs: 2,
            advertise: addr.to_string(),
            hostname: "proxy-a".into(),
        });
        c
    })
    .await;

    // A second proxy, the real binary, with etcd's flags.
    let b_addr = format!("127.0.0.1:{}", free_port());
    let mut b = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_etcd-grpc-proxy"))
            .args([
                "grpc-proxy",
                "start",
                &format!("--endpoints={direct}"),
                &format!("--listen-addr={b_addr}"),
                &format!("--advertise-client-url={b_addr}"),
                "--resolver-prefix=/proxies",
                "--resolver-ttl=2",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the proxy binary"),
    );

    let both = {
        let mut v = vec![a.endpoint(), b_addr.clone()];
        v.sort();
        v
    };
    for via in [a.endpoint(), b_addr.clone()] {
        let both = both.clone();
        eventually("both proxies listed", Duration::from_secs(20), || {
            let (via, both) = (via.clone(), both.clone());
            async move { (listed(&via)? == both).then_some(()) }
        })
        .await;
    }

    // etcd's registration format, readable by etcd's own tooling.
    let out = etcdctl(
        &direct,
        &[
            "get",
            &format!("/proxies/{}", a.endpoint()),
            "--print-value-only",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            r#"{{"Op":0,"Addr":"{}","Metadata":"{{\"name\":\"proxy-a\"}}"}}"#,
            a.endpoint()
        )
    );

    // B dies without a word: its entry goes when its 2 s lease expires.
    let _ = b.0.kill();
    let only_a = vec![a.endpoint()];
    eventually(
        "dead proxy's registration expired",
        Duration::from_secs(20),
        || {
            let (via, only_a) = (a.endpoint(), only_a.clone());
            async move { (listed(&via)? == only_a).then_some(()) }
        },
    )
    .await;

    // A stops cleanly: its registration is removed before it exits.
    a.stop().await;
    let out = etcdctl(&direct, &["get", "/proxies/", "--prefix", "--keys-only"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "registration left behind"
    );
}
