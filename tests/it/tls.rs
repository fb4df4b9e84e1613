//! TLS on both sides of the proxy, with real etcd (TLS client URL and
//! required client certificates), etcdctl and the etcd-client crate.

use std::path::Path;
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use etcd_grpc_proxy::tls::{BackendTls, ListenTls, TlsVersion};
use etcd_grpc_proxy::upstream::EndpointUrl;
use etcd_grpc_proxy::Config;
use rustls::CipherSuite;

use crate::support::pki::{CertFiles, Pki};
use crate::support::proxy::config;
use crate::support::tls_etcd::TlsMember;
use crate::support::{etcdctl, Cluster, TestProxy};

/// Runs etcdctl with extra flags; (success, stdout, stderr).
fn ctl(endpoint: &str, flags: &[String], args: &[&str]) -> (bool, String, String) {
    let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    let out = etcdctl(endpoint, &all);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn ctl_async(
    endpoint: String,
    flags: Vec<String>,
    args: Vec<&'static str>,
) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || ctl(&endpoint, &flags, &args))
        .await
        .unwrap()
}

/// A proxy config towards the TLS member, presenting `client` and verifying with the PKI's CA.
fn to_tls_member(member: &TlsMember, pki: &Pki, client: &CertFiles) -> Config {
    let mut c = Config::new(vec![EndpointUrl::parse(&member.client_url, true).unwrap()]);
    c.auto_sync_interval = Some(Duration::from_secs(1));
    c.backend_tls = Some(BackendTls {
        cert: Some(client.cert.clone()),
        key: Some(client.key.clone()),
        cacert: Some(pki.ca.clone()),
        insecure_skip_verify: false,
    });
    c
}

fn serve_tls(pki: &Pki, require_client_certs: bool) -> ListenTls {
    let mut t = ListenTls::from_files(&pki.server.cert, &pki.server.key);
    if require_client_certs {
        t.trusted_ca = Some(pki.ca.clone());
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_through_tls_proxy_to_tls_member_with_client_certs() {
    let pki = Pki::new();
    let member = TlsMember::start(&pki).await;
    let mut cfg = to_tls_member(&member, &pki, &pki.client);
    cfg.listen_tls = Some(serve_tls(&pki, true));
    let proxy = TestProxy::with_config(cfg).await;
    let via = proxy.endpoint();
    let with_cert = pki.etcdctl_flags(&pki.client);

    // A client that connects and never says anything holds nothing up.
    let _silent = std::net::TcpStream::connect(proxy.addr).unwrap();

    let (ok, out, err) =
        ctl_async(via.clone(), with_cert.clone(), vec!["put", "tls-key", "v1"]).await;
    assert!(ok, "put through TLS proxy: {err}");
    assert_eq!(out.trim(), "OK");
    let (ok, out, err) = ctl_async(
        via.clone(),
        with_cert.clone(),
        vec!["get", "tls-key", "--print-value-only"],
    )
    .await;
    assert!(ok, "get through TLS proxy: {err}");
    assert_eq!(out.trim(), "v1");
    // The write reached the member itself.
    let (ok, out, err) = ctl_async(
        member.addr(),
        with_cert.clone(),
        vec!["get", "tls-key", "--print-value-only"],
    )
    .await;
    assert!(ok && out.trim() == "v1", "direct get: {err}");

    // Without a client certificate the proxy refuses the connection.
    let ca_only = vec![
        format!("--cacert={}", pki.ca.display()),
        "--command-timeout=3s".to_string(),
    ];
    let (ok, _, _) = ctl_async(via.clone(), ca_only, vec!["get", "tls-key"]).await;
    assert!(!ok, "a client without certificate must be refused");
    // Plain text is refused too.
    let (ok, _, _) = ctl_async(
        via.clone(),
        vec!["--command-timeout=3s".into()],
        vec!["get", "tls-key"],
    )
    .await;
    assert!(!ok, "a plain-text client must be refused");
    // A certificate from another CA is refused.
    let mut other = Pki::new();
    let stranger = other.issue("stranger", &[]).0;
    let mut flags = pki.etcdctl_flags(&stranger);
    flags.push("--command-timeout=3s".into());
    let (ok, _, _) = ctl_async(via.clone(), flags, vec!["get", "tls-key"]).await;
    assert!(!ok, "a certificate signed by another CA must be refused");

    // The proxy still serves after all those failed handshakes.
    let (ok, out, err) =
        ctl_async(via, with_cert, vec!["get", "tls-key", "--print-value-only"]).await;
    assert!(ok && out.trim() == "v1", "after refused clients: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_crate_over_tls_through_the_proxy() {
    let pki = Pki::new();
    let member = TlsMember::start(&pki).await;
    let mut cfg = to_tls_member(&member, &pki, &pki.client);
    cfg.listen_tls = Some(serve_tls(&pki, true));
    let proxy = TestProxy::with_config(cfg).await;

    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).unwrap()))
        .identity(Identity::from_pem(
            std::fs::read(&pki.client.cert).unwrap(),
            std::fs::read(&pki.client.key).unwrap(),
        ));
    let mut client = etcd_client::Client::connect(
        [format!("https://{}", proxy.endpoint())],
        Some(ConnectOptions::new().with_tls(tls)),
    )
    .await
    .expect("connect over TLS");
    client
        .put("crate-key", "crate-value", None)
        .await
        .expect("put over TLS");
    let got = client.get("crate-key", None).await.expect("get over TLS");
    assert_eq!(got.kvs()[0].value(), b"crate-value");
    let status = client.status().await.expect("status over TLS");
    assert!(status.leader() != 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_certificates_are_verified_unless_insecure_skip_tls_verify() {
    let pki = Pki::new();
    let member = TlsMember::start(&pki).await;

    // Skip-verify with no CA at all: works (the member still wants our client cert).
    let mut cfg = to_tls_member(&member, &pki, &pki.client);
    if let Some(b) = cfg.backend_tls.as_mut() {
        b.cacert = None;
        b.insecure_skip_verify = true;
    }
    let proxy = TestProxy::with_config(cfg).await;
    let (ok, out, err) = ctl_async(proxy.endpoint(), vec![], vec!["put", "skip", "yes"]).await;
    assert!(
        ok && out.trim() == "OK",
        "put with --insecure-skip-tls-verify: {err}"
    );
    proxy.stop().await;

    // A CA that did not sign the member's certificate: the member is not trusted.
    let other = Pki::new();
    let mut cfg = to_tls_member(&member, &pki, &pki.client);
    if let Some(b) = cfg.backend_tls.as_mut() {
        b.cacert = Some(other.ca.clone());
    }
    let proxy = TestProxy::with_config(cfg).await;
    let (ok, _, err) = ctl_async(
        proxy.endpoint(),
        vec!["--command-timeout=3s".into()],
        vec!["get", "skip"],
    )
    .await;
    assert!(
        !ok,
        "a member with an untrusted certificate must not be used"
    );
    assert!(
        err.contains("Unavailable")
            || err.contains("unavailable")
            || err.contains("no etcd member"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_tls_serves_a_generated_certificate() {
    let cluster = Cluster::start(1).await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&cluster.endpoints());
    cfg.listen_tls = Some(ListenTls::auto(data.path(), "127.0.0.1:0", 1));
    let proxy = TestProxy::with_config(cfg).await;
    let flags = vec![
        "--insecure-transport=false".to_string(),
        "--insecure-skip-tls-verify".to_string(),
    ];
    let (ok, out, err) =
        ctl_async(proxy.endpoint(), flags.clone(), vec!["put", "auto", "tls"]).await;
    assert!(ok && out.trim() == "OK", "put over auto-tls: {err}");
    let (ok, out, err) = ctl_async(
        proxy.endpoint(),
        flags,
        vec!["get", "auto", "--print-value-only"],
    )
    .await;
    assert!(ok && out.trim() == "tls", "get over auto-tls: {err}");
    assert!(Path::new(&data.path().join("fixtures/proxy/cert.pem")).is_file());
    // Plain text is refused.
    let (ok, _, _) = ctl_async(
        proxy.endpoint(),
        vec!["--command-timeout=3s".into()],
        vec!["get", "auto"],
    )
    .await;
    assert!(!ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_client_certificates_are_refused() {
    let mut pki = Pki::new();
    let (revoked, serial) = pki.issue("revoked-client", &[]);
    let crl = pki.crl(&[serial]);
    let cluster = Cluster::start(1).await;
    let mut cfg = config(&cluster.endpoints());
    let mut listen = serve_tls(&pki, true);
    listen.client_crl = Some(crl);
    cfg.listen_tls = Some(listen);
    let proxy = TestProxy::with_config(cfg).await;

    let (ok, _, err) = ctl_async(
        proxy.endpoint(),
        pki.etcdctl_flags(&pki.client),
        vec!["put", "crl", "ok"],
    )
    .await;
    assert!(ok, "a valid client certificate works: {err}");
    let mut flags = pki.etcdctl_flags(&revoked);
    flags.push("--command-timeout=3s".into());
    let (ok, _, _) = ctl_async(proxy.endpoint(), flags, vec!["get", "crl"]).await;
    assert!(!ok, "a revoked client certificate must be refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cipher_suites_and_versions_are_applied() {
    let pki = Pki::new();
    let cluster = Cluster::start(1).await;

    // TLS 1.2 only, one ECDSA suite (the test certificates are ECDSA): Go's client agrees.
    let mut cfg = config(&cluster.endpoints());
    let mut listen = serve_tls(&pki, false);
    listen.max_version = Some(TlsVersion::Tls12);
    listen.cipher_suites = vec![CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256];
    cfg.listen_tls = Some(listen);
    let proxy = TestProxy::with_config(cfg).await;
    let ca = vec![format!("--cacert={}", pki.ca.display())];
    let (ok, _, err) = ctl_async(proxy.endpoint(), ca.clone(), vec!["put", "suite", "ok"]).await;
    assert!(ok, "TLS 1.2 with a chosen suite: {err}");
    proxy.stop().await;

    // Only RSA suites with an ECDSA certificate: no handshake can succeed.
    let mut cfg = config(&cluster.endpoints());
    let mut listen = serve_tls(&pki, false);
    listen.max_version = Some(TlsVersion::Tls12);
    listen.cipher_suites = vec![CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256];
    cfg.listen_tls = Some(listen);
    let proxy = TestProxy::with_config(cfg).await;
    let mut flags = ca.clone();
    flags.push("--command-timeout=3s".into());
    let (ok, _, _) = ctl_async(proxy.endpoint(), flags, vec!["get", "suite"]).await;
    assert!(!ok, "no shared cipher suite: the handshake must fail");
    proxy.stop().await;

    // TLS 1.3 only works too, for a client that offers it: the Rust
    // etcd-client does (rustls); etcdctl 3.5.1's Go TLS stack does not.
    let mut cfg = config(&cluster.endpoints());
    let mut listen = serve_tls(&pki, false);
    listen.min_version = TlsVersion::Tls13;
    cfg.listen_tls = Some(listen);
    let proxy = TestProxy::with_config(cfg).await;
    let tls =
        TlsOptions::new().ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).unwrap()));
    let mut client = etcd_client::Client::connect(
        [format!("https://{}", proxy.endpoint())],
        Some(ConnectOptions::new().with_tls(tls)),
    )
    .await
    .expect("connect with TLS 1.3");
    let got = client.get("suite", None).await.expect("get over TLS 1.3");
    assert_eq!(got.kvs()[0].value(), b"ok", "TLS 1.3 only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_stop_the_proxy_with_the_flag_named() {
    let mut cfg = config("127.0.0.1:1");
    cfg.listen_tls = Some(ListenTls::from_files(
        "/nonexistent/cert.pem",
        "/nonexistent/key.pem",
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = etcd_grpc_proxy::run(cfg, listener, async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--cert-file") && err.contains("/nonexistent/cert.pem"),
        "{err}"
    );

    let pki = Pki::new();
    let mut cfg = config("127.0.0.1:1");
    // Key of another certificate.
    cfg.listen_tls = Some(ListenTls::from_files(&pki.server.cert, &pki.client.key));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = etcd_grpc_proxy::run(cfg, listener, async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--key-file"), "{err}");

    let mut cfg = config("127.0.0.1:1");
    cfg.backend_tls = Some(BackendTls {
        cacert: Some(pki.dir().join("missing-ca.pem")),
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = etcd_grpc_proxy::run(cfg, listener, async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--cacert"), "{err}");
}

/// The binary's answer to bad TLS flags: an exit code and a message naming the flag.
fn proxy_cli(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_etcd-grpc-proxy"))
        .args([
            "start",
            "--listen-addr=127.0.0.1:0",
            "--endpoints=127.0.0.1:1",
        ])
        .args(args)
        .output()
        .expect("run proxy binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_names_the_bad_tls_flag() {
    let (code, err) = proxy_cli(&[
        "--cert-file=/nonexistent/c.pem",
        "--key-file=/nonexistent/k.pem",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--cert-file") && err.contains("/nonexistent/c.pem"),
        "{err}"
    );
    let (code, err) = proxy_cli(&[
        "--auto-tls",
        "--listen-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_FAKE",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--listen-cipher-suites") && err.contains("TLS_FAKE"),
        "{err}"
    );
    let (code, err) = proxy_cli(&[
        "--auto-tls",
        "--tls-min-version=TLS1.3",
        "--tls-max-version=TLS1.2",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--tls-min-version") && err.contains("--tls-max-version"),
        "{err}"
    );
    let (code, err) = proxy_cli(&["--auto-tls", "--self-signed-cert-validity=0"]);
    assert_eq!(code, 2);
    assert!(err.contains("--self-signed-cert-validity"), "{err}");
    let (code, err) = proxy_cli(&["--cacert=/nonexistent/ca.pem"]);
    assert_ne!(code, 0);
    assert!(err.contains("--cacert"), "{err}");
}

/// The binary, killed on drop.
struct ProxyProcess(std::process::Child);

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_with_etcds_tls_flags_end_to_end() {
    let pki = Pki::new();
    let member = TlsMember::start(&pki).await;
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let arg = |flag: &str, p: &Path| format!("--{flag}={}", p.display());
    let _proxy = ProxyProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_etcd-grpc-proxy"))
            .args(["grpc-proxy", "start", &format!("--listen-addr={listen}")])
            // No scheme: https, because backend TLS flags are given.
            .arg(format!("--endpoints={}", member.addr()))
            .arg(arg("cert", &pki.client.cert))
            .arg(arg("key", &pki.client.key))
            .arg(arg("cacert", &pki.ca))
            .arg(arg("cert-file", &pki.server.cert))
            .arg(arg("key-file", &pki.server.key))
            .arg(arg("trusted-ca-file", &pki.ca))
            .arg("--listen-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")
            .arg("--tls-min-version=TLS1.2")
            .arg("--tls-max-version=TLS1.3")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the proxy binary"),
    );
    let flags = pki.etcdctl_flags(&pki.client);
    crate::support::eventually(
        "put through the proxy binary over TLS",
        Duration::from_secs(30),
        || {
            let (listen, flags) = (listen.clone(), flags.clone());
            async move {
                let (ok, _, _) = ctl_async(listen, flags, vec!["put", "bin", "tls"]).await;
                ok.then_some(())
            }
        },
    )
    .await;
    let (ok, out, err) = ctl_async(
        member.addr(),
        flags.clone(),
        vec!["get", "bin", "--print-value-only"],
    )
    .await;
    assert!(ok && out.trim() == "tls", "the member has the value: {err}");
    let (ok, _, _) = ctl_async(
        listen,
        vec![
            format!("--cacert={}", pki.ca.display()),
            "--command-timeout=3s".into(),
        ],
        vec!["get", "bin"],
    )
    .await;
    assert!(!ok, "no client certificate: refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificates_and_crls_apply_without_a_restart() {
    let mut pki = Pki::new();
    let (c2, c2_serial) = pki.issue("client-two", &[]);
    let files = tempfile::tempdir().unwrap();
    let (cert, key, crl) = (
        files.path().join("cert.pem"),
        files.path().join("key.pem"),
        files.path().join("crl.pem"),
    );
    std::fs::copy(&pki.server.cert, &cert).unwrap();
    std::fs::copy(&pki.server.key, &key).unwrap();
    std::fs::copy(pki.crl(&[]), &crl).unwrap();

    let cluster = Cluster::start(1).await;
    let mut cfg = config(&cluster.endpoints());
    let mut listen = ListenTls::from_files(&cert, &key);
    listen.trusted_ca = Some(pki.ca.clone());
    listen.client_crl = Some(crl.clone());
    cfg.listen_tls = Some(listen);
    let proxy = TestProxy::with_config(cfg).await;
    let short = |mut f: Vec<String>| {
        f.push("--command-timeout=3s".into());
        f
    };

    let (ok, _, err) = ctl_async(
        proxy.endpoint(),
        pki.etcdctl_flags(&c2),
        vec!["put", "rot", "1"],
    )
    .await;
    assert!(ok, "client-two before revocation: {err}");
    // Revoke client-two: its next connection is refused, others still work.
    std::fs::copy(pki.crl(&[c2_serial]), &crl).unwrap();
    let (ok, _, _) = ctl_async(
        proxy.endpoint(),
        short(pki.etcdctl_flags(&c2)),
        vec!["get", "rot"],
    )
    .await;
    assert!(
        !ok,
        "client-two must be refused once the CRL file revokes it"
    );
    let (ok, _, err) = ctl_async(
        proxy.endpoint(),
        pki.etcdctl_flags(&pki.client),
        vec!["get", "rot"],
    )
    .await;
    assert!(ok, "other clients still served: {err}");

    // Serve a certificate from another CA: clients trusting only the old CA now refuse the proxy.
    let other = Pki::new();
    std::fs::copy(&other.server.key, &key).unwrap();
    std::fs::copy(&other.server.cert, &cert).unwrap();
    let mut flags = pki.etcdctl_flags(&pki.client);
    flags[0] = format!("--cacert={}", other.ca.display());
    let (ok, out, err) = ctl_async(
        proxy.endpoint(),
        flags,
        vec!["get", "rot", "--print-value-only"],
    )
    .await;
    assert!(
        ok && out.trim() == "1",
        "new server certificate served: {err}"
    );
    let (ok, _, _) = ctl_async(
        proxy.endpoint(),
        short(pki.etcdctl_flags(&pki.client)),
        vec!["get", "rot"],
    )
    .await;
    assert!(!ok, "the old CA no longer verifies the proxy");
}

/// The last line the real `etcd grpc-proxy start` of the release under test
/// writes to stderr with `args`; it must exit non-zero within 30 s.
fn etcd_proxy_refusal(args: &[String]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    let mut child = std::process::Command::new(crate::support::tls_etcd::etcd_bin())
        .args(["grpc-proxy", "start", "--listen-addr=127.0.0.1:0"])
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("run etcd grpc-proxy start");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("etcd grpc-proxy start {args:?} did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !status.success(),
        "etcd grpc-proxy start {args:?} succeeded"
    );
    let err = std::fs::read_to_string(&log).unwrap();
    err.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A put then a get of `key` through `proxy`, with plain etcdctl.
async fn put_get_through(proxy: &TestProxy, key: &'static str, flags: Vec<String>) {
    let (ok, out, err) = ctl_async(proxy.endpoint(), flags.clone(), vec!["put", key, "v"]).await;
    assert!(
        ok && out.trim() == "OK",
        "put {key} through the proxy: {err}"
    );
    let (ok, out, err) = ctl_async(
        proxy.endpoint(),
        flags,
        vec!["get", key, "--print-value-only"],
    )
    .await;
    assert!(
        ok && out.trim() == "v",
        "get {key} through the proxy: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_facing_certificate_with_a_common_name_is_refused_as_etcd_does() {
    let mut pki = Pki::new();
    let member = TlsMember::start(&pki).await;
    // A CN names an etcd user on members with --client-cert-auth: every
    // token-less call the proxy forwards would run as `root`.
    let (root, _) = pki.issue("root", &[]);
    let flags = [
        format!("--cert={}", root.cert.display()),
        format!("--key={}", root.key.display()),
        format!("--cacert={}", pki.ca.display()),
    ];
    let mut etcd_args = flags.to_vec();
    etcd_args.push(format!("--endpoints={}", member.addr()));
    let etcd_says = etcd_proxy_refusal(&etcd_args);
    assert!(
        etcd_says.starts_with("cert has non empty Common Name (root)"),
        "etcd's own proxy: {etcd_says}"
    );

    // run() refuses it with etcd's words (3.4 leaves out the file name).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = etcd_grpc_proxy::run(to_tls_member(&member, &pki, &root), listener, async {})
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "cert has non empty Common Name (root): {}",
            root.cert.display()
        )
    );
    assert!(
        err.starts_with(&etcd_says),
        "ours: {err}\netcd: {etcd_says}"
    );

    // So does the binary, which does not start.
    let (code, stderr) = proxy_cli(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(code, 0);
    assert!(stderr.contains(&etcd_says), "{stderr}");

    // A certificate without CN is served.
    let proxy = TestProxy::with_config(to_tls_member(&member, &pki, &pki.client)).await;
    put_get_through(&proxy, "no-cn", vec![]).await;

    // The served certificate (--cert-file) may have a CN, as in etcd.
    let mut cfg = to_tls_member(&member, &pki, &pki.client);
    cfg.listen_tls = Some(serve_tls(&pki, false));
    let proxy = TestProxy::with_config(cfg).await;
    put_get_through(
        &proxy,
        "served-cn",
        vec![format!("--cacert={}", pki.ca.display())],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x509_v1_client_certificate_is_accepted_as_go_accepts_it() {
    let pki = Pki::new();
    let member = TlsMember::start(&pki).await;
    let v1 = pki.issue_v1_with_openssl("v1-client");
    // The member takes it from etcdctl...
    let direct = vec![
        format!("--cacert={}", pki.ca.display()),
        format!("--cert={}", v1.cert.display()),
        format!("--key={}", v1.key.display()),
    ];
    let (ok, _, err) = ctl_async(member.addr(), direct, vec!["put", "v1-direct", "x"]).await;
    assert!(ok, "etcdctl with the v1 certificate: {err}");
    // ...and from the proxy.
    let proxy = TestProxy::with_config(to_tls_member(&member, &pki, &v1)).await;
    put_get_through(&proxy, "v1", vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_started_with_auto_tls_are_reached() {
    // etcd's --auto-tls certificates carry ECDSA P-521 keys.
    let member = TlsMember::start_auto_tls().await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(vec![EndpointUrl::parse(&member.client_url, true).unwrap()]);
    cfg.auto_sync_interval = Some(Duration::from_secs(1));
    cfg.backend_tls = Some(BackendTls {
        insecure_skip_verify: true,
        ..Default::default()
    });
    // And the proxy's own --auto-tls towards its clients.
    cfg.listen_tls = Some(ListenTls::auto(data.path(), "127.0.0.1:0", 1));
    let proxy = TestProxy::with_config(cfg).await;
    let flags = vec![
        "--insecure-transport=false".to_string(),
        "--insecure-skip-tls-verify".to_string(),
    ];
    put_get_through(&proxy, "auto-tls-member", flags.clone()).await;
    let (ok, out, err) = ctl_async(
        member.addr(),
        flags,
        vec!["get", "auto-tls-member", "--print-value-only"],
    )
    .await;
    assert!(ok && out.trim() == "v", "the member has the value: {err}");
    proxy.stop().await;

    // Verified, with the member's own certificate as --cacert.
    let mut cfg = Config::new(vec![EndpointUrl::parse(&member.client_url, true).unwrap()]);
    cfg.auto_sync_interval = Some(Duration::from_secs(1));
    cfg.backend_tls = Some(BackendTls {
        cacert: Some(member.auto_tls_cert()),
        ..Default::default()
    });
    let proxy = TestProxy::with_config(cfg).await;
    put_get_through(&proxy, "auto-tls-verified", vec![]).await;
}
