//! DNS SRV discovery (`--discovery-srv`) against real etcd members. DNS
//! itself is stood in for by a tiny loopback UDP responder below that
//! answers SRV queries for a fake domain.

use std::net::SocketAddr;
use std::time::Duration;

use etcd_grpc_proxy::tls::BackendTls;
use etcd_grpc_proxy::upstream::discovery::SrvDiscovery;
use etcd_grpc_proxy::upstream::EndpointUrl;
use etcd_grpc_proxy::Config;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::support::pki::Pki;
use crate::support::tls_etcd::TlsMember;
use crate::support::{etcdctl, Cluster, TestProxy};

/// A loopback DNS server answering SRV queries from a fixed table; every
/// other name is NXDOMAIN, other types of a known name are empty answers.
struct FakeDns {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `records`: (query name without trailing dot, target host, port).
async fn fake_dns(records: Vec<(String, String, u16)>) -> FakeDns {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            if let Some(reply) = answer(&buf[..n], &records) {
                let _ = sock.send_to(&reply, peer).await;
            }
        }
    });
    FakeDns { addr, task }
}

fn encode_name(name: &str, out: &mut Vec<u8>) {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

fn answer(query: &[u8], records: &[(String, String, u16)]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels from byte 12, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    while *query.get(i)? != 0 {
        let len = query[i] as usize;
        labels.push(String::from_utf8_lossy(query.get(i + 1..i + 1 + len)?).to_ascii_lowercase());
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*query.get(i + 1)?, *query.get(i + 2)?]);
    let question_end = i + 5;
    let name = labels.join(".");
    let matching: Vec<&(String, String, u16)> = records
        .iter()
        .filter(|r| r.0.eq_ignore_ascii_case(&name))
        .collect();

    let mut out = Vec::new();
    out.extend_from_slice(&query[0..2]);
    let rd = query[2] & 0x01;
    out.push(0x84 | rd); // QR, AA, RD as asked
    out.push(if matching.is_empty() { 0x83 } else { 0x80 }); // RA, NXDOMAIN or NOERROR
    let answers: Vec<&&(String, String, u16)> = matching.iter().filter(|_| qtype == 33).collect();
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    for (_, target, port) in answers.iter().map(|r| (&r.0, &r.1, r.2)) {
        let mut rdata = Vec::new();
        rdata.extend_from_slice(&0u16.to_be_bytes()); // priority
        rdata.extend_from_slice(&0u16.to_be_bytes()); // weight
        rdata.extend_from_slice(&port.to_be_bytes());
        encode_name(target, &mut rdata);
        out.extend_from_slice(&[0xC0, 0x0C]); // the question's name
        out.extend_from_slice(&33u16.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&60u32.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// A config whose `--endpoints` lead nowhere, so only discovery can find the cluster.
fn discovering(
    domain: &str,
    service_name: Option<&str>,
    insecure: bool,
    dns: SocketAddr,
) -> Config {
    let mut c = Config::new(vec![EndpointUrl::parse("127.0.0.1:1", false).unwrap()]);
    c.auto_sync_interval = Some(Duration::from_secs(1));
    c.discovery = Some(SrvDiscovery {
        domain: domain.into(),
        service_name: service_name.map(str::to_string),
        insecure,
    });
    c.dns_server = Some(dns);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_find_a_plain_member_with_insecure_discovery() {
    let cluster = Cluster::start(1).await;
    let port = port_of(&cluster.members[0].addr());
    let dns = fake_dns(vec![(
        "_etcd-client._tcp.etcd.test".into(),
        "localhost.".into(),
        port,
    )])
    .await;

    let proxy = TestProxy::with_config(discovering("etcd.test", None, true, dns.addr)).await;
    let via = proxy.endpoint();
    let out = tokio::task::spawn_blocking(move || etcdctl(&via, &["put", "srv", "found"]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "put via discovered member: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let direct = cluster.members[0].addr();
    let out = tokio::task::spawn_blocking(move || {
        etcdctl(&direct, &["get", "srv", "--print-value-only"])
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_srv_records_need_insecure_discovery() {
    let cluster = Cluster::start(1).await;
    let port = port_of(&cluster.members[0].addr());
    let dns = fake_dns(vec![(
        "_etcd-client._tcp.etcd.test".into(),
        "localhost.".into(),
        port,
    )])
    .await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = discovering("etcd.test", None, false, dns.addr);
    let err = etcd_grpc_proxy::run(cfg, listener, async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--insecure-discovery") && err.contains("--discovery-srv"),
        "{err}"
    );

    // No record at all: both lookups fail, and the message says so.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = discovering("nothing.test", None, true, dns.addr);
    let err = etcd_grpc_proxy::run(cfg, listener, async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("_etcd-client-ssl._tcp.nothing.test")
            && err.contains("_etcd-client._tcp.nothing.test"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_srv_records_with_a_service_name_find_a_tls_member() {
    let pki = Pki::new();
    let member = TlsMember::start(&pki).await;
    // Only the named service's record points at the member; the unnamed one leads nowhere.
    let dns = fake_dns(vec![
        (
            "_etcd-client-ssl-prod._tcp.etcd.test".into(),
            "localhost.".into(),
            member.port(),
        ),
        (
            "_etcd-client-ssl._tcp.etcd.test".into(),
            "localhost.".into(),
            1,
        ),
    ])
    .await;
    let mut cfg = discovering("etcd.test", Some("prod"), false, dns.addr);
    cfg.backend_tls = Some(BackendTls {
        cert: Some(pki.client.cert.clone()),
        key: Some(pki.client.key.clone()),
        cacert: Some(pki.ca.clone()),
        insecure_skip_verify: false,
    });
    let proxy = TestProxy::with_config(cfg).await;
    let via = proxy.endpoint();
    let out = tokio::task::spawn_blocking(move || etcdctl(&via, &["put", "srv-tls", "found"]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "put via discovered TLS member: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tokio::task::spawn_blocking(move || {
        etcdctl(&proxy.endpoint(), &["get", "srv-tls", "--print-value-only"])
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_discovers_through_the_dns_server_env_var() {
    let cluster = Cluster::start(1).await;
    let port = port_of(&cluster.members[0].addr());
    let dns = fake_dns(vec![(
        "_etcd-client-edge._tcp.etcd.test".into(),
        "localhost.".into(),
        port,
    )])
    .await;
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let _child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_etcd-grpc-proxy"))
            .args([
                "grpc-proxy",
                "start",
                &format!("--listen-addr={listen}"),
                "--endpoints=127.0.0.1:1",
            ])
            .args([
                "--discovery-srv=etcd.test",
                "--discovery-srv-name=edge",
                "--insecure-discovery",
            ])
            .env(
                etcd_grpc_proxy::config::cli::DNS_SERVER_ENV,
                dns.addr.to_string(),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the proxy binary"),
    );
    crate::support::eventually(
        "put through the discovering proxy binary",
        Duration::from_secs(30),
        || {
            let listen = listen.clone();
            async move {
                let out = tokio::task::spawn_blocking(move || {
                    etcdctl(&listen, &["put", "bin-srv", "ok"])
                })
                .await
                .ok()?;
                out.status.success().then_some(())
            }
        },
    )
    .await;
}

/// A child process killed when the test ends, even by a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
