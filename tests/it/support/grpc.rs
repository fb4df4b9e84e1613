//! Plain gRPC towards a member or a proxy with the proxy crate's own
//! generated clients, for what `etcd-client` cannot ask: compression,
//! arbitrary paths, headers of the answer.

use std::time::Duration;

use etcd_grpc_proxy::codec::LeanCodec;
use etcd_grpc_proxy::proto::etcdserverpb::{RangeRequest, RangeResponse};
use tonic::transport::Channel;

/// A connected channel to `addr` (`127.0.0.1:<port>`).
pub async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("endpoint url")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// A status as comparable text: code and message.
pub fn status_text(status: &tonic::Status) -> (tonic::Code, String) {
    (status.code(), status.message().to_string())
}

/// A unary call of an empty `RangeRequest` to `path` with extra request
/// headers; the status it ends with (`Ok` when it was answered).
pub async fn call_path(
    addr: &str,
    path: &'static str,
    headers: &[(&'static str, &'static str)],
) -> (tonic::Code, String) {
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    grpc.ready().await.expect("channel ready");
    let mut req = tonic::Request::new(RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    });
    for (name, value) in headers {
        req.metadata_mut()
            .insert(*name, value.parse().expect("header value"));
    }
    let path = http::uri::PathAndQuery::from_static(path);
    match grpc
        .unary::<_, RangeResponse, _>(req, path, LeanCodec::default())
        .await
    {
        Ok(_) => (tonic::Code::Ok, String::new()),
        Err(s) => status_text(&s),
    }
}
