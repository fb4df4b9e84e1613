//! The retry rule against the real hyper, h2 and tonic error chains: a raw
//! HTTP/2 peer on loopback misbehaves in each way a member or the network
//! can, and the pool must send a write to a second member only when the
//! first provably never saw it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::{Code, Status};

use super::*;
use crate::error::ProxyError;
use crate::proto::etcdserverpb::{PutRequest, PutResponse, RangeRequest, RangeResponse};
use crate::upstream::{ChannelSettings, Credentials, EndpointUrl, Pool, Upstream};

/// What the raw peer does once it has read a request's HEADERS.
#[derive(Clone, Copy, Debug)]
enum Peer {
    /// RST_STREAM with REFUSED_STREAM: the request was not processed.
    RefuseStream,
    /// GOAWAY whose last stream id is below the request's.
    GoAwayBelow,
    /// GOAWAY that includes the request's stream, then the connection closes.
    GoAwayIncluding,
    /// The TCP connection is reset (SO_LINGER 0).
    Reset,
    /// The connection is closed cleanly: h2 reports a broken pipe.
    Close,
}

const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const REFUSED_STREAM: u32 = 0x7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn two_words(a: u32, b: u32) -> Vec<u8> {
    let mut v = a.to_be_bytes().to_vec();
    v.extend_from_slice(&b.to_be_bytes());
    v
}

/// A loopback HTTP/2 peer behaving as `peer`; counts the requests it saw.
async fn raw_member(peer: Peer) -> (EndpointUrl, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url =
        EndpointUrl::parse(&listener.local_addr().expect("addr").to_string(), false).expect("url");
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket, peer, counter.clone()));
        }
    });
    (url, seen)
}

async fn serve(mut socket: TcpStream, peer: Peer, seen: Arc<AtomicUsize>) {
    let mut preface = [0u8; 24];
    if socket.read_exact(&mut preface).await.is_err() {
        return;
    }
    if socket.write_all(&frame(SETTINGS, 0, 0, &[])).await.is_err() {
        return;
    }
    loop {
        let mut head = [0u8; 9];
        if socket.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        if socket.read_exact(&mut payload).await.is_err() {
            return;
        }
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        match head[3] {
            SETTINGS if head[4] & 0x1 == 0 => {
                let _ = socket.write_all(&frame(SETTINGS, 0x1, 0, &[])).await;
            }
            HEADERS => {
                seen.fetch_add(1, Ordering::SeqCst);
                match peer {
                    Peer::RefuseStream => {
                        let rst = frame(RST_STREAM, 0, stream, &REFUSED_STREAM.to_be_bytes());
                        let _ = socket.write_all(&rst).await;
                    }
                    Peer::GoAwayBelow => {
                        let away = frame(GOAWAY, 0, 0, &two_words(stream.saturating_sub(2), 0));
                        let _ = socket.write_all(&away).await;
                    }
                    Peer::GoAwayIncluding => {
                        let away = frame(GOAWAY, 0, 0, &two_words(stream, 0));
                        let _ = socket.write_all(&away).await;
                        let _ = socket.flush().await;
                        return;
                    }
                    Peer::Reset => {
                        // Deprecated because a non-zero linger blocks the runtime on drop; zero
                        // never blocks, and it is how a test sends a reset.
                        #[allow(deprecated)]
                        let _ = socket.set_linger(Some(Duration::ZERO));
                        return;
                    }
                    Peer::Close => return,
                }
            }
            _ => {}
        }
    }
}

/// An upstream over `urls` with the pool's default channel settings.
fn upstream(urls: Vec<EndpointUrl>) -> Upstream {
    let pool = Pool::new(urls, ChannelSettings::default()).expect("pool");
    Upstream::new(pool, 4 << 20, 4 << 20)
}

async fn put(up: &Upstream) -> Result<PutResponse, ProxyError> {
    let req = PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    let call = up.unary(
        "/etcdserverpb.KV/Put",
        RetryPolicy::UnlessApplied,
        Credentials::Anonymous,
        req,
    );
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call ends")
}

/// Two members both behaving as `peer`; a Put through the pool. Returns
/// how many requests the members saw and the pool's answer.
async fn put_to_two(peer: Peer) -> (usize, Result<PutResponse, ProxyError>) {
    let (a, seen_a) = raw_member(peer).await;
    let (b, seen_b) = raw_member(peer).await;
    let answer = put(&upstream(vec![a, b])).await;
    (
        seen_a.load(Ordering::SeqCst) + seen_b.load(Ordering::SeqCst),
        answer,
    )
}

/// How each attempt of one call on `urls` was classified.
async fn classify_attempts(
    urls: Vec<EndpointUrl>,
    channel_of: Option<tonic::transport::Channel>,
) -> Vec<Failure> {
    let up = upstream(urls);
    let seen = Mutex::new(Vec::new());
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        up.pool().call(RetryPolicy::UnlessApplied, |channel| {
            let channel = channel_of.clone().unwrap_or(channel);
            let seen = &seen;
            async move {
                let mut grpc = tonic::client::Grpc::new(channel);
                let result: Result<PutResponse, Status> = async {
                    grpc.ready().await.map_err(NotSent::status)?;
                    grpc.unary(
                        tonic::Request::new(PutRequest::default()),
                        http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put"),
                        crate::codec::LeanCodec::<PutRequest, PutResponse>::default(),
                    )
                    .await
                    .map(tonic::Response::into_inner)
                }
                .await;
                if let Err(status) = &result {
                    seen.lock().expect("lock").push(Failure::of(status));
                }
                result
            }
        }),
    )
    .await;
    seen.into_inner().expect("lock")
}

fn assert_answer_lost(answer: Result<PutResponse, ProxyError>) {
    match answer {
        Err(e @ ProxyError::AnswerLost { .. }) => {
            assert_eq!(e.status().code(), Code::Unavailable)
        }
        other => panic!("expected the answer to be reported lost, got {other:?}"),
    }
}

fn assert_no_member_reachable(answer: Result<PutResponse, ProxyError>) {
    match answer {
        Err(e @ ProxyError::NoMemberReachable { .. }) => {
            assert_eq!(e.status().code(), Code::Unavailable)
        }
        other => panic!("expected no member reachable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_write_whose_connection_is_reset_after_sending_is_not_sent_again() {
    let (seen, answer) = put_to_two(Peer::Reset).await;
    assert_eq!(seen, 1, "the write reached exactly one member");
    assert_answer_lost(answer);
}

#[tokio::test]
async fn a_write_whose_connection_closes_after_sending_is_not_sent_again() {
    let (seen, answer) = put_to_two(Peer::Close).await;
    assert_eq!(seen, 1, "the write reached exactly one member");
    assert_answer_lost(answer);
}

#[tokio::test]
async fn a_write_inside_a_goaway_is_not_sent_again() {
    let (seen, answer) = put_to_two(Peer::GoAwayIncluding).await;
    assert_eq!(seen, 1, "the member may have processed it");
    assert_answer_lost(answer);
}

#[tokio::test]
async fn a_write_above_a_goaway_goes_to_another_member() {
    let (seen, answer) = put_to_two(Peer::GoAwayBelow).await;
    assert_eq!(seen, 2, "refused by both, so tried on both");
    assert_no_member_reachable(answer);
}

#[tokio::test]
async fn a_refused_stream_goes_to_another_member() {
    let (seen, answer) = put_to_two(Peer::RefuseStream).await;
    assert_eq!(seen, 2, "refused by both, so tried on both");
    assert_no_member_reachable(answer);
}

#[tokio::test]
async fn a_read_whose_connection_is_reset_goes_to_another_member() {
    let (a, seen_a) = raw_member(Peer::Reset).await;
    let (b, seen_b) = raw_member(Peer::Reset).await;
    let up = upstream(vec![a, b]);
    let call = up.unary::<RangeRequest, RangeResponse>(
        "/etcdserverpb.KV/Range",
        RetryPolicy::Idempotent,
        Credentials::Anonymous,
        RangeRequest::default(),
    );
    let answer = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call ends");
    assert_eq!(
        seen_a.load(Ordering::SeqCst) + seen_b.load(Ordering::SeqCst),
        2
    );
    assert!(matches!(answer, Err(ProxyError::AnswerLost { .. })));
}

#[tokio::test]
async fn the_transport_failures_are_classified_by_type() {
    for (peer, expected) in [
        (Peer::RefuseStream, Failure::NotReached),
        (Peer::GoAwayBelow, Failure::NotReached),
        (Peer::GoAwayIncluding, Failure::LostInFlight),
        (Peer::Reset, Failure::LostInFlight),
        (Peer::Close, Failure::LostInFlight),
    ] {
        let (url, _) = raw_member(peer).await;
        let seen = classify_attempts(vec![url], None).await;
        assert_eq!(seen, vec![expected], "{peer:?}");
    }
}

#[tokio::test]
async fn connect_refused_is_never_reached() {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url =
        EndpointUrl::parse(&closed.local_addr().expect("addr").to_string(), false).expect("url");
    drop(closed);
    assert_eq!(
        classify_attempts(vec![url.clone()], None).await,
        vec![Failure::NotReached]
    );
    assert_no_member_reachable(put(&upstream(vec![url])).await);
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_never_reached() {
    // The connector fails as hyper-util's resolver does, without asking a
    // DNS server: tonic wraps every connector failure as a ConnectError.
    let connector = tower::service_fn(|_: http::Uri| async {
        Err::<hyper_util::rt::TokioIo<TcpStream>, _>(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "dns error: failed to lookup address information: Name or service not known",
        ))
    });
    let channel = tonic::transport::Endpoint::from_static("http://no-such-member.invalid:2379")
        .connect_with_connector_lazy(connector);
    let (url, seen) = raw_member(Peer::Reset).await;
    assert_eq!(
        classify_attempts(vec![url], Some(channel)).await,
        vec![Failure::NotReached]
    );
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

#[test]
fn etcd_answers_are_never_retried_as_writes() {
    let f = Failure::of(&Status::unavailable("etcdserver: request timed out"));
    assert_eq!(f, Failure::Unavailable);
    assert!(!f.retry_allowed(RetryPolicy::UnlessApplied));
    assert!(f.retry_allowed(RetryPolicy::Idempotent));
}

#[test]
fn an_answer_that_only_reads_like_a_connection_error_is_an_answer() {
    // The old rule matched "connect" in the text; types decide now.
    for text in ["connection reset by peer", "error trying to connect"] {
        let f = Failure::of(&Status::unavailable(text));
        assert_eq!(f, Failure::Unavailable, "{text}");
        assert!(!f.retry_allowed(RetryPolicy::UnlessApplied));
    }
}

#[test]
fn no_leader_is_retried_and_marks_unhealthy() {
    let f = Failure::of(&Status::unavailable(NO_LEADER));
    assert_eq!(f, Failure::NoLeader);
    assert!(f.retry_allowed(RetryPolicy::UnlessApplied));
    assert!(f.member_unhealthy());
}

#[test]
fn permission_errors_are_answers() {
    let f = Failure::of(&Status::permission_denied("etcdserver: permission denied"));
    assert_eq!(f, Failure::Answer);
    assert!(!f.retry_allowed(RetryPolicy::Idempotent));
}

#[test]
fn an_attempt_given_up_on_may_have_been_applied() {
    let f = Failure::of(&AttemptTimedOut::status(Duration::from_secs(15)));
    assert_eq!(f, Failure::LostInFlight);
    assert!(!f.retry_allowed(RetryPolicy::UnlessApplied));
    assert!(f.retry_allowed(RetryPolicy::Idempotent));
    assert!(f.member_unhealthy());
}
