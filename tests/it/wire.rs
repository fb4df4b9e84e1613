//! The gRPC wire around the etcd API, answered as a member answers it:
//! gzip-compressed calls, and refusals of unknown paths and encodings.
//! Every case is asked of a member directly and through the proxy, and the
//! two answers must be the same.

use std::time::Duration;

use etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient;
use etcd_grpc_proxy::proto::etcdserverpb::watch_client::WatchClient;
use etcd_grpc_proxy::proto::etcdserverpb::{
    watch_request, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest,
};
use tonic::codec::CompressionEncoding::Gzip;

use crate::support::grpc::{call_path, channel};
use crate::support::{Cluster, TestProxy};

/// How a client asks: whether it compresses its requests, whether it
/// accepts compressed answers.
#[derive(Debug, Clone, Copy)]
struct Asking {
    send_gzip: bool,
    accept_gzip: bool,
}

/// What a Put, a Range and a Watch answered, without what differs from
/// one run to the next (revisions, member ids): each answer's
/// `grpc-encoding`, and the key's value, version and count.
#[derive(Debug, PartialEq)]
struct Answers {
    put_encoding: Option<String>,
    range_encoding: Option<String>,
    range: Vec<(Vec<u8>, i64)>,
    count: i64,
    watch_encoding: Option<String>,
    watched: Vec<(Vec<u8>, i64)>,
}

fn encoding(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Put, Range and Watch of `key` on `addr`, asking as `how`; the Put's
/// refusal if it was refused.
async fn answers(addr: &str, key: &str, how: Asking) -> Result<Answers, tonic::Status> {
    let ch = channel(addr).await;
    let mut kv = KvClient::new(ch.clone());
    let mut watch = WatchClient::new(ch);
    if how.send_gzip {
        kv = kv.send_compressed(Gzip);
        watch = watch.send_compressed(Gzip);
    }
    if how.accept_gzip {
        kv = kv.accept_compressed(Gzip);
        watch = watch.accept_compressed(Gzip);
    }
    // A value large enough that compression matters.
    let value = b"compressible ".repeat(100);
    let put = kv
        .put(PutRequest {
            key: key.into(),
            value,
            ..Default::default()
        })
        .await?;
    let put_encoding = encoding(put.metadata());
    let rev = put.into_inner().header.expect("put header").revision;
    let range = kv
        .range(RangeRequest {
            key: key.into(),
            ..Default::default()
        })
        .await
        .expect("range");
    let range_encoding = encoding(range.metadata());
    let range = range.into_inner();
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: key.into(),
                start_revision: rev,
                ..Default::default()
            },
        )),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(create).await.expect("queue create");
    let resp = watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch");
    let watch_encoding = encoding(resp.metadata());
    let mut stream = resp.into_inner();
    let mut watched = Vec::new();
    while watched.is_empty() {
        let msg = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("watch answer in time")
            .expect("watch stream")
            .expect("watch still open");
        watched.extend(
            msg.events
                .into_iter()
                .filter_map(|e| e.kv)
                .map(|kv| (kv.value, kv.version)),
        );
    }
    drop(tx);
    Ok(Answers {
        put_encoding,
        range_encoding,
        range: range
            .kvs
            .into_iter()
            .map(|kv| (kv.value, kv.version))
            .collect(),
        count: range.count,
        watch_encoding,
        watched,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_calls_are_answered_as_a_member_answers_them() {
    let cluster = Cluster::start(1).await;
    let member = cluster.members[0].addr();
    let proxy = TestProxy::start(&member).await;
    let cases = [
        Asking {
            send_gzip: true,
            accept_gzip: true,
        },
        Asking {
            send_gzip: false,
            accept_gzip: true,
        },
        Asking {
            send_gzip: false,
            accept_gzip: false,
        },
    ];
    for (i, how) in cases.into_iter().enumerate() {
        let direct = match answers(&member, &format!("gz/direct/{i}"), how).await {
            Ok(a) => a,
            // etcd 3.4's grpc-go has no gzip; the proxy answers as the
            // members that do: the same answers as without gzip, compressed.
            Err(s) if how.send_gzip && s.message().contains("Decompressor is not installed") => {
                let plain = Asking {
                    send_gzip: false,
                    accept_gzip: false,
                };
                let a = answers(&member, &format!("gz/direct/{i}"), plain)
                    .await
                    .expect("plain put");
                let gzip = Some("gzip".to_string());
                Answers {
                    put_encoding: gzip.clone(),
                    range_encoding: gzip.clone(),
                    watch_encoding: gzip,
                    ..a
                }
            }
            Err(s) => panic!("member refused {how:?}: {s:?}"),
        };
        let proxied = answers(&proxy.endpoint(), &format!("gz/proxy/{i}"), how)
            .await
            .expect("put through the proxy");
        assert_eq!(proxied, direct, "{how:?}");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_encodings_are_refused_in_a_members_words() {
    let cluster = Cluster::start(1).await;
    let member = cluster.members[0].addr();
    let proxy = TestProxy::start(&member).await;
    let cases: &[(&'static str, &[(&'static str, &'static str)])] = &[
        ("/etcdserverpb.KV/NoSuchMethod", &[]),
        ("/etcdserverpb.Watch/NoSuchMethod", &[]),
        ("/etcdserverpb.Lease/Range", &[]),
        ("/v3lockpb.Lock/Nope", &[]),
        ("/no.such.Service/Range", &[]),
        ("/etcdserverpb.KV", &[]),
        ("/noslash", &[]),
        ("/etcdserverpb.KV/Range", &[("grpc-encoding", "snappy")]),
    ];
    let mut differ = Vec::new();
    for (path, headers) in cases {
        let direct = call_path(&member, path, headers).await;
        let proxied = call_path(&proxy.endpoint(), path, headers).await;
        assert_ne!(direct.0, tonic::Code::Ok, "{path} {headers:?}");
        // The older grpc-go of etcd 3.4 refused malformed names with
        // ResourceExhausted; the proxy answers as today's members do.
        let old_malformed = direct.0 == tonic::Code::ResourceExhausted
            && direct.1.starts_with("malformed method name");
        if proxied != direct
            && !(old_malformed && proxied == (tonic::Code::Unimplemented, direct.1.clone()))
        {
            differ.push(format!(
                "{path} {headers:?}: proxy {proxied:?}, member {direct:?}"
            ));
        }
    }
    assert!(differ.is_empty(), "{differ:#?}");
    proxy.stop().await;
}
