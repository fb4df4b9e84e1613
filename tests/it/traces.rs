//! `--otlp-traces-endpoint`: an in-test OTLP collector receives the
//! proxy's span of a Put, continuing the client's `traceparent`, and the
//! span of an etcd member (3.5 or later, started with distributed tracing
//! towards the same collector) under the same trace, as the proxy span's child.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient;
use etcd_grpc_proxy::proto::etcdserverpb::PutRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

use crate::support::etcd::wait_member_healthy;
use crate::support::proxy::config;
use crate::support::{eventually, free_port, grpc, TestProxy};

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// Attribute keys of the span.
    attributes: Vec<String>,
    /// Names of its events.
    events: Vec<String>,
}

/// An OTLP/gRPC trace collector keeping every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Received {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span.attributes.iter().map(|a| a.key.clone()).collect(),
                    events: span.events.iter().map(|e| e.name.clone()).collect(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Collector {
    /// Serves on a free loopback port; returns its `127.0.0.1:<port>`.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind collector");
        let addr = listener.local_addr().expect("collector addr").to_string();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        addr
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// An etcd release with distributed tracing (3.5 and later): `$ETCD_TRACING_BIN`,
/// `$ETCD_BIN` if it is one, else the 3.6 or 3.5 build under `target/etcd/`.
fn tracing_etcd() -> Option<(PathBuf, String)> {
    let version = |bin: &PathBuf| -> Option<String> {
        let out = Command::new(bin).arg("--version").output().ok()?;
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            l.strip_prefix("etcd Version:")
                .map(|v| v.trim().to_string())
        })
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/etcd");
    let candidates = [
        std::env::var_os("ETCD_TRACING_BIN").map(PathBuf::from),
        std::env::var_os("ETCD_BIN").map(PathBuf::from),
        Some(root.join("3.6/bin/etcd")),
        Some(root.join("3.5/bin/etcd")),
    ];
    candidates.into_iter().flatten().find_map(|bin| {
        let v = version(&bin)?;
        (!v.starts_with("3.4")).then_some((bin, v))
    })
}

/// Whether `bin --help` lists `flag`: releases of one line differ.
fn knows_flag(bin: &PathBuf, flag: &str) -> bool {
    Command::new(bin)
        .arg("--help")
        .output()
        .map(|out| {
            let text = [out.stdout, out.stderr].concat();
            String::from_utf8_lossy(&text).contains(&format!("{flag} "))
        })
        .unwrap_or(false)
}

/// One etcd member exporting its spans to `collector`; killed on drop.
struct TracingMember {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl TracingMember {
    async fn start(bin: &PathBuf, version: &str, collector: &str) -> TracingMember {
        let dir = tempfile::tempdir().expect("temp dir");
        let client = format!("127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        // 3.5 knows only the experimental names; 3.6 has both; 3.7 only the new ones.
        let flag = |name: &str| {
            if version.starts_with("3.5") {
                format!("--experimental-{name}")
            } else {
                format!("--{name}")
            }
        };
        // 3.5.0 and 3.5.1 have no sampling rate: they follow the sampled
        // flag of the caller's traceparent, which the proxy passes on.
        let sampling = flag("distributed-tracing-sampling-rate");
        let sampling_rate = knows_flag(bin, &sampling).then(|| format!("{sampling}=1000000"));
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log file");
        let child = Command::new(bin)
            .arg("--name=t1")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls=http://{client}"))
            .arg(format!("--advertise-client-urls=http://{client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=t1={peer}"))
            .arg(flag("enable-distributed-tracing"))
            .arg(format!(
                "{}={collector}",
                flag("distributed-tracing-address")
            ))
            .args(sampling_rate)
            .arg(format!("{}=t1", flag("distributed-tracing-instance-id")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let member = TracingMember {
            child,
            addr: client,
            _dir: dir,
        };
        wait_member_healthy(&member.addr, "the tracing member", Duration::from_secs(30)).await;
        member
    }
}

impl Drop for TracingMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_is_one_trace_from_the_client_through_the_proxy_to_etcd() {
    let Some((bin, version)) = tracing_etcd() else {
        panic!("no etcd 3.5+ found: build one with scripts/etcd-build.sh or set $ETCD_TRACING_BIN");
    };
    let collector = Collector::default();
    let collector_addr = collector.start().await;
    let member = TracingMember::start(&bin, &version, &collector_addr).await;
    let mut c = config(&member.addr);
    c.otlp_traces_endpoint = Some(format!("http://{collector_addr}"));
    let proxy = TestProxy::with_config(c).await;

    let mut kv = KvClient::new(grpc::channel(&proxy.endpoint()).await);
    let mut put = tonic::Request::new(PutRequest {
        key: b"traced".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    });
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    put.metadata_mut()
        .insert("traceparent", traceparent.parse().expect("header"));
    kv.put(put).await.expect("put through the proxy");

    let (ours, theirs) = eventually(
        "the proxy's and the member's spans of the Put under the client's trace",
        Duration::from_secs(30),
        || {
            let spans = collector.spans();
            async move {
                let ours = spans.iter().find(|s| {
                    s.service == "etcd-grpc-proxy"
                        && s.trace_id == TRACE_ID
                        && s.name == "etcdserverpb.KV/Put"
                })?;
                // etcd 3.7 adds spans of its own under its gRPC span: the
                // one wanted is the proxy span's child.
                let theirs = spans.iter().find(|s| {
                    s.service != "etcd-grpc-proxy"
                        && s.trace_id == TRACE_ID
                        && s.parent_span_id == ours.span_id
                })?;
                Some((ours.clone(), theirs.clone()))
            }
        },
    )
    .await;
    assert_eq!(
        ours.parent_span_id, CLIENT_SPAN,
        "the proxy continues the client's span"
    );
    assert!(ours.events.iter().any(|e| e == "attempt"), "{ours:?}");
    for key in ["rpc.method", "rpc.grpc.status_code", "etcd.member"] {
        assert!(ours.attributes.iter().any(|a| a == key), "{key}: {ours:?}");
    }
    assert_eq!(theirs.service, "etcd", "{theirs:?}");
    assert_eq!(
        theirs.name, "etcdserverpb.KV/Put",
        "etcd {version}'s gRPC span: {theirs:?}"
    );
}
