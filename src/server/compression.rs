//! Message compression as etcd members (grpc-go servers) do it.
//!
//! Members accept `grpc-encoding: gzip` requests, and answer in the encoding
//! the request came in, whatever the client lists in `grpc-accept-encoding`:
//! a gzip request gets gzip answers, a plain one plain answers. tonic instead
//! picks the answer's encoding from `grpc-accept-encoding`, so before a call
//! reaches the services that header is rewritten to name the request's own
//! encoding, or removed. A request in an encoding members do not know is
//! refused with grpc-go's words.

use http::header::HeaderValue;
use http::HeaderMap;

use crate::error::WireError;

/// The header naming a request's message encoding.
const ENCODING: &str = "grpc-encoding";
/// The header listing the encodings a client accepts in answers.
const ACCEPT_ENCODING: &str = "grpc-accept-encoding";

/// Makes tonic answer in the request's encoding: `gzip` when the request
/// is gzip-compressed, uncompressed otherwise.
pub fn answer_in_request_encoding(headers: &mut HeaderMap) {
    match headers.get(ENCODING).filter(|e| e.as_bytes() == b"gzip") {
        Some(_) => {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        }
        None => {
            headers.remove(ACCEPT_ENCODING);
        }
    }
}

/// grpc-go's refusal of a request in an encoding it cannot decompress;
/// `None` for gzip, identity, or no encoding at all.
pub fn unsupported(headers: &HeaderMap) -> Option<WireError> {
    let encoding = headers.get(ENCODING)?;
    if matches!(encoding.as_bytes(), b"gzip" | b"identity" | b"") {
        return None;
    }
    Some(WireError::UnknownEncoding(
        String::from_utf8_lossy(encoding.as_bytes()).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(encoding: Option<&'static str>, accept: Option<&'static str>) -> Option<String> {
        let mut h = HeaderMap::new();
        if let Some(e) = encoding {
            h.insert(ENCODING, HeaderValue::from_static(e));
        }
        if let Some(a) = accept {
            h.insert(ACCEPT_ENCODING, HeaderValue::from_static(a));
        }
        answer_in_request_encoding(&mut h);
        h.get(ACCEPT_ENCODING)
            .map(|v| v.to_str().unwrap_or_default().to_string())
    }

    #[test]
    fn answers_use_the_request_encoding() {
        assert_eq!(accepted(Some("gzip"), None).as_deref(), Some("gzip"));
        assert_eq!(
            accepted(Some("gzip"), Some("identity")).as_deref(),
            Some("gzip")
        );
        assert_eq!(accepted(None, Some("gzip")), None);
        assert_eq!(accepted(Some("identity"), Some("gzip,deflate")), None);
    }

    #[test]
    fn unknown_encodings_are_refused_as_grpc_go_words_it() {
        let mut h = HeaderMap::new();
        assert!(unsupported(&h).is_none());
        h.insert(ENCODING, HeaderValue::from_static("gzip"));
        assert!(unsupported(&h).is_none());
        h.insert(ENCODING, HeaderValue::from_static("snappy"));
        let refusal = unsupported(&h)
            .map(tonic::Status::from)
            .map(|s| (s.code(), s.message().to_string()));
        assert_eq!(
            refusal,
            Some((
                tonic::Code::Unimplemented,
                "grpc: Decompressor is not installed for grpc-encoding \"snappy\"".to_string()
            ))
        );
    }
}
