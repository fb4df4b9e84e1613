//! `KV.RangeStream` (etcd 3.7): a Range answered in several messages.
//!
//! The call is relayed to a member and its messages back as they come, so
//! the answer is the member's own: how it splits the keys into messages
//! (it sizes them against its `--max-request-bytes`), the revision it pins
//! the whole stream to, and what it refuses (sort orders, revision filters)
//! or, before 3.7, that it has no such method at all. Around that the
//! proxy does what it does for a Range: keys move into and out of the
//! `--namespace`, the client's token goes along, and opening the stream is
//! retried on another member as a Range would be.
//!
//! Unlike a Range the answer is never served from the range cache: which
//! messages a member would send (or whether it serves RangeStream) is the
//! member's to say.

use std::pin::Pin;
use std::sync::atomic::Ordering;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::error::RpcResult;
use crate::proto::etcdserverpb::{RangeRequest, RangeStreamResponse};
use crate::services::ServiceDeps;
use crate::upstream::Forwarded;
use crate::upstream::{Credentials, RetryPolicy};

/// The messages of one RangeStream answer.
pub type RangeStream =
    Pin<Box<dyn Stream<Item = Result<RangeStreamResponse, Status>> + Send + 'static>>;

/// Serves one RangeStream call through a member.
///
/// With `--experimental-serializable-ordering`, a serializable RangeStream
/// is sent linearizable: its revision is only known from its last message,
/// too late to read again when it is older than one already answered (as a
/// Range is), and a linearizable answer never is.
pub async fn range_stream(
    deps: &ServiceDeps,
    mut request: Request<RangeRequest>,
) -> RpcResult<RangeStream> {
    let ns = deps.namespace.clone();
    if let Some(ns) = &ns {
        ns.range_in(request.get_mut())?;
    }
    if deps.serializable_floor.is_some() {
        request.get_mut().serializable = false;
    }
    let (fwd, msg) = Forwarded::split(request);
    let upstream: tonic::Streaming<RangeStreamResponse> = deps
        .upstream
        .server_stream(
            "/etcdserverpb.KV/RangeStream",
            RetryPolicy::Idempotent,
            Credentials::Client(&fwd),
            msg,
        )
        .await?;
    let floor = deps.serializable_floor.clone();
    let answers = upstream.map(move |message| {
        let mut message = message?;
        if let Some(range) = message.range_response.as_mut() {
            if let (Some(floor), Some(header)) = (&floor, &range.header) {
                floor.fetch_max(header.revision, Ordering::AcqRel);
            }
            if let Some(ns) = &ns {
                ns.range_out(range);
            }
        }
        Ok(message)
    });
    Ok(Response::new(Box::pin(answers)))
}
