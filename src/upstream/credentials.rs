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
        let (metadata, ext, msg) = req.into_parts();
        // One pass that keeps what travels: removing each hop-by-hop name
        // in turn hashed nine names per call, the costliest part of it.
        let headers = metadata.into_headers();
        let mut kept = http::HeaderMap::with_capacity(headers.len());
        let mut name = None;
        for (next, value) in headers {
            name = next.or(name);
            match &name {
                Some(n) if !HOP_BY_HOP.contains(&n.as_str()) => {
                    kept.append(n.clone(), value);
                }
                _ => {}
            }
        }
        let metadata = MetadataMap::from_headers(kept);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_the_calls_metadata_and_drops_the_connections() {
        let mut req = Request::new(());
        let md = req.metadata_mut();
        for (k, v) in [
            ("te", "trailers"),
            ("content-type", "application/grpc"),
            ("user-agent", "grpc-go/1.60"),
            ("grpc-accept-encoding", "gzip"),
            ("token", "abc.1"),
            ("x-tenant", "a"),
            ("grpc-timeout", "5S"),
        ] {
            md.insert(k, v.parse().unwrap());
        }
        md.append("x-tenant", "b".parse().unwrap());
        let (fwd, ()) = Forwarded::split(req);
        let kept = fwd.metadata();
        for gone in ["te", "content-type", "user-agent", "grpc-accept-encoding"] {
            assert!(kept.get(gone).is_none(), "{gone} was forwarded");
        }
        assert_eq!(kept.get("token").unwrap(), "abc.1");
        assert_eq!(kept.get("grpc-timeout").unwrap(), "5S");
        let tenants: Vec<_> = kept.get_all("x-tenant").iter().collect();
        assert_eq!(tenants, ["a", "b"], "every value of a repeated key travels");
        assert_eq!(fwd.caller().token().unwrap(), "abc.1");
    }
}
