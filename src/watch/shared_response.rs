//! Watch responses encoded once and shared by every watcher that receives
//! them unchanged.
//!
//! With thousands of watchers on one key, cloning each event and encoding a
//! response per watcher was most of the fan-out's CPU. A broadcast now
//! encodes the upstream events once per view (with or without `prev_kv`);
//! each watcher's response on the wire is its watch id followed by those
//! shared bytes. Protobuf allows fields in any order, so this is the same
//! message a client decodes from etcd.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::proto::etcdserverpb::WatchResponse;

/// `watch_id`'s field number in `WatchResponse`.
const WATCH_ID_FIELD: u32 = 2;

/// What the watch hub hands a client stream: a response of its own, or
/// one shared with every other watcher that receives the same events.
#[derive(Debug, Clone)]
pub enum WatchOut {
    /// A response built for this watcher alone.
    Own(WatchResponse),
    /// A shared response, sent under this watcher's id.
    Shared {
        /// The client's id for the watcher.
        watch_id: i64,
        /// The response every watcher with this view receives.
        view: Arc<SharedView>,
    },
}

/// One response as every watcher of a view receives it: decoded (for the
/// range cache, namespaces and fragmenting) and encoded without a watch id.
#[derive(Debug)]
pub struct SharedView {
    /// The response, with `watch_id` 0.
    pub resp: WatchResponse,
    /// Its encoding (no `watch_id` field, since it is 0).
    body: Bytes,
}

impl SharedView {
    /// Encodes `resp` once for every watcher that will receive it.
    pub fn new(mut resp: WatchResponse) -> Arc<SharedView> {
        resp.watch_id = 0;
        let body = Bytes::from(resp.encode_to_vec());
        Arc::new(SharedView { resp, body })
    }
}

impl WatchOut {
    /// The response's fields (for a shared one, `watch_id` reads 0: see
    /// [`WatchOut::watch_id`]).
    pub fn response(&self) -> &WatchResponse {
        match self {
            WatchOut::Own(r) => r,
            WatchOut::Shared { view, .. } => &view.resp,
        }
    }

    /// The client's id for the watcher this response is for.
    pub fn watch_id(&self) -> i64 {
        match self {
            WatchOut::Own(r) => r.watch_id,
            WatchOut::Shared { watch_id, .. } => *watch_id,
        }
    }

    /// A response of its own, for changes no other watcher may see
    /// (namespaces, fragments).
    pub fn into_response(self) -> WatchResponse {
        match self {
            WatchOut::Own(r) => r,
            WatchOut::Shared { watch_id, view } => {
                let mut r = view.resp.clone();
                r.watch_id = watch_id;
                r
            }
        }
    }
}

impl Default for WatchOut {
    fn default() -> Self {
        WatchOut::Own(WatchResponse::default())
    }
}

impl From<WatchResponse> for WatchOut {
    fn from(r: WatchResponse) -> Self {
        WatchOut::Own(r)
    }
}

impl Message for WatchOut {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            WatchOut::Own(r) => r.encode_raw(buf),
            WatchOut::Shared { watch_id, view } => {
                if *watch_id != 0 {
                    prost::encoding::int64::encode(WATCH_ID_FIELD, watch_id, buf);
                }
                buf.put_slice(&view.body);
            }
        }
    }

    /// Decoding (never done by the server side) reads a plain response.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let mut r = std::mem::take(self).into_response();
        let merged = r.merge_field(tag, wire_type, buf, ctx);
        *self = WatchOut::Own(r);
        merged
    }

    fn encoded_len(&self) -> usize {
        match self {
            WatchOut::Own(r) => r.encoded_len(),
            WatchOut::Shared { watch_id, view } => {
                let id = if *watch_id != 0 {
                    prost::encoding::int64::encoded_len(WATCH_ID_FIELD, watch_id)
                } else {
                    0
                };
                id + view.body.len()
            }
        }
    }

    fn clear(&mut self) {
        *self = WatchOut::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::ResponseHeader;
    use crate::proto::mvccpb::{Event, KeyValue};

    fn sample() -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader {
                revision: 42,
                cluster_id: 7,
                member_id: 9,
                raft_term: 3,
            }),
            events: vec![Event {
                kv: Some(KeyValue {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    mod_revision: 42,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_shared_response_decodes_as_the_watchers_own() {
        let view = SharedView::new(sample());
        for watch_id in [0, 1, 12345, -1] {
            let shared = WatchOut::Shared {
                watch_id,
                view: view.clone(),
            };
            let bytes = shared.encode_to_vec();
            assert_eq!(bytes.len(), shared.encoded_len());
            let decoded = WatchResponse::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(
                decoded,
                WatchResponse {
                    watch_id,
                    ..sample()
                }
            );
            assert_eq!(shared.into_response(), decoded);
        }
    }
}
