//! [`Forwarded`]: what of a client's call travels to the member with it.

use tonic::metadata::MetadataMap;
use tonic::{Extensions, Request};

use super::Caller;

/// The client's metadata, cleaned of what belongs to its own connection,
/// ready to be attached to each upstream attempt.
#[derive(Clone, Debug)]
pub struct Forwarded(MetadataMap, Caller);

/// Headers that describe the client's connection or encoding, not the call.
const HOP_BY_HOP: &[&str] = &[
    "te",
    "content-type",
    "content-length",
    "user-agent",
    "grpc-encoding",
    "grpc-accept-encoding",
    "grpc-message-type",
    "accept-encoding",
    "connection",
];

impl Forwarded {
    /// Splits a client request into forwardable metadata and its message.
    pub fn split<T>(req: Request<T>) -> (Forwarded, T) {
        let (mut metadata, ext, msg) = req.into_parts();
        for h in HOP_BY_HOP {
            metadata.remove(*h);
        }
        let caller = Caller::of(&metadata, &ext);
        (Forwarded(metadata, caller), msg)
    }

    /// An upstream request carrying the client's metadata.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        Request::from_parts(self.0.clone(), Extensions::default(), msg)
    }

    /// The same metadata with `token` as its only credential (none when
    /// `None`), for a call made on another caller's behalf.
    pub fn with_token(&self, token: Option<&tonic::metadata::AsciiMetadataValue>) -> Forwarded {
        let mut metadata = self.0.clone();
        metadata.remove("token");
        metadata.remove("authorization");
        if let Some(t) = token {
            metadata.insert("token", t.clone());
        }
        let caller = match token {
            Some(t) => Caller::Token(t.clone()),
            None => Caller::Anonymous,
        };
        Forwarded(metadata, caller)
    }

    /// Whom the client's call runs as.
    pub fn caller(&self) -> &Caller {
        &self.1
    }

    /// The client's metadata as received (auth token among it).
    pub fn metadata(&self) -> &MetadataMap {
        &self.0
    }
}
