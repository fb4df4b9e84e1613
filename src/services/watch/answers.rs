//! What goes back to a client on its watch stream: each [`WatchOut`] the hub
//! (or the stream's own task) queued for it, passed on as it is in the
//! common case; otherwise with keys taken out of `--namespace`, split for
//! watchers that asked for `fragment`. Per-prefix event counts are taken here.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::kv::namespace::Namespace;
use crate::metrics::prefixes::PrefixMetrics;
use crate::proto::etcdserverpb::WatchResponse;
use crate::watch::shared_response::WatchOut;

use super::fragmenting::{fragments, Fragmenting, FRAGMENT_BYTES};
use super::WatchStream;

/// The answer stream of one client's watch call, over its queue `rx`.
pub(super) fn answer_stream(
    rx: mpsc::Receiver<Result<WatchOut, Status>>,
    fragmenting: Fragmenting,
    ns: Option<Arc<Namespace>>,
    prefixes: Option<Arc<PrefixMetrics>>,
) -> WatchStream {
    let answers = ReceiverStream::new(rx).flat_map(move |answer| {
        let pieces = match answer {
            Ok(out) => {
                let wants_fragments = fragmenting.wants(out.watch_id());
                if let Some(prefixes) = &prefixes {
                    count_events(prefixes, ns.as_deref(), out.response());
                }
                if ns.is_none() && !wants_fragments {
                    // The common case: one response, passed on as it is.
                    return futures::future::Either::Left(futures::stream::once(
                        futures::future::ready(Ok(out)),
                    ));
                }
                let mut resp = out.into_response();
                // Events come back with keys relative to the client's namespace.
                if let Some(ns) = &ns {
                    ns.watch_out(&mut resp);
                }
                if wants_fragments {
                    fragments(resp, FRAGMENT_BYTES)
                        .into_iter()
                        .map(|r| Ok(r.into()))
                        .collect()
                } else {
                    vec![Ok(resp.into())]
                }
            }
            Err(status) => vec![Err(status)],
        };
        futures::future::Either::Right(futures::stream::iter(pieces))
    });
    Box::pin(answers)
}

/// Counts the events of `resp` in the buckets of their keys as the client
/// sees them (without `--namespace`'s prefix).
fn count_events(prefixes: &PrefixMetrics, ns: Option<&Namespace>, resp: &WatchResponse) {
    use prost::Message;
    for ev in &resp.events {
        let Some(kv) = &ev.kv else { continue };
        let key = ns.map_or(kv.key.as_slice(), |ns| ns.relative(&kv.key));
        prefixes.event_delivered(key, ev.encoded_len());
    }
}
