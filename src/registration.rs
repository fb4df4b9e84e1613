//! `--resolver-prefix`: each proxy registers its advertised address in etcd
//! under a lease, in the endpoint-registration format etcd's own proxy and
//! tooling use, and answers MemberList with every registered proxy, so
//! clients that auto-sync their endpoints find all proxy instances.
//!
//! Key: `<prefix>/<advertise-client-url>`. Value:
//! `{"Op":0,"Addr":"<addr>","Metadata":"{\"name\":\"<hostname>\"}"}`
//! (Metadata is a JSON string that itself holds JSON, as etcd writes it).

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, info_span, warn, Instrument};

use crate::error::ProxyError;
use crate::keepalive::KeepAliveHub;
use crate::proto::etcdserverpb::*;
use crate::upstream::RetryPolicy;
use crate::upstream::{Credentials, Upstream};

/// What and where a proxy registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// `--resolver-prefix`, without a trailing `/`.
    pub prefix: String,
    /// `--resolver-ttl`: the lease's TTL in seconds (at least 1).
    pub ttl_secs: i64,
    /// `--advertise-client-url`: the address clients reach this proxy at.
    pub advertise: String,
    /// This host's name, carried in the metadata.
    pub hostname: String,
}

/// One proxy found under the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The address it registered.
    pub addr: String,
    /// The name in its metadata (its host name).
    pub name: String,
}

/// The machine's host name, as etcd's proxy puts it in the metadata.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Quotes `s` as a JSON string (the log's escaper: one for the crate).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::logging::push_json_string(&mut out, s);
    out
}

/// Reads the JSON string value of `field` in a flat JSON object (enough for
/// the registration format; anything else reads as absent).
fn json_field(json: &str, field: &str) -> Option<String> {
    let needle = format!("\"{field}\"");
    let at = json.find(&needle)? + needle.len();
    let rest = json[at..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

impl Registration {
    /// The key this proxy writes.
    pub fn key(&self) -> String {
        format!("{}/{}", self.prefix, self.advertise)
    }

    /// The value this proxy writes.
    pub fn value(&self) -> String {
        let metadata = format!("{{\"name\":{}}}", json_string(&self.hostname));
        format!(
            "{{\"Op\":0,\"Addr\":{},\"Metadata\":{}}}",
            json_string(&self.advertise),
            json_string(&metadata)
        )
    }

    /// The range holding every registration under the prefix.
    fn range(&self) -> (Vec<u8>, Vec<u8>) {
        let start = format!("{}/", self.prefix).into_bytes();
        let mut end = start.clone();
        if let Some(last) = end.last_mut() {
            *last += 1; // '/' + 1 = '0'
        }
        (start, end)
    }
}

/// Decodes one registration value; `None` for anything not in the format.
pub fn decode(value: &[u8]) -> Option<Registered> {
    let text = std::str::from_utf8(value).ok()?;
    let addr = json_field(text, "Addr")?;
    let name = json_field(text, "Metadata")
        .and_then(|m| json_field(&m, "name"))
        .unwrap_or_default();
    Some(Registered { addr, name })
}

/// The proxies registered now, read through the pool, with the header of the read.
pub async fn list(
    upstream: &Upstream,
    reg: &Registration,
) -> Result<(Option<ResponseHeader>, Vec<Registered>), ProxyError> {
    let (key, range_end) = reg.range();
    let req = RangeRequest {
        key,
        range_end,
        ..Default::default()
    };
    let resp: RangeResponse = upstream
        .unary(
            "/etcdserverpb.KV/Range",
            RetryPolicy::Idempotent,
            Credentials::Own,
            req,
        )
        .await?;
    let found = resp.kvs.iter().filter_map(|kv| decode(&kv.value)).collect();
    Ok((resp.header, found))
}

/// A stable, non-zero member id for a registered address (etcd's proxy
/// answers 0 for all, which makes tools keyed by id merge the entries).
pub fn member_id(addr: &str) -> u64 {
    // FNV-1a, 64 bit.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in addr.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// Keeps the registration in place until the task is dropped: grants a
/// lease, writes the key under it, keeps the lease alive at a third of its
/// TTL and registers again whenever the lease is lost.
pub async fn run(
    upstream: Upstream,
    hub: Arc<KeepAliveHub>,
    reg: Registration,
    lease_out: tokio::sync::watch::Sender<i64>,
) {
    let span = info_span!("registration", key = %reg.key(), ttl = reg.ttl_secs);
    async move {
        let tick = Duration::from_millis((reg.ttl_secs as u64 * 1000 / 3).max(100));
        loop {
            let lease = match register(&upstream, &reg).await {
                Ok(lease) => lease,
                Err(e) => {
                    warn!(error = %e, "could not register; retrying");
                    tokio::time::sleep(tick).await;
                    continue;
                }
            };
            info!(lease, "registered");
            let _ = lease_out.send(lease);
            loop {
                tokio::time::sleep(tick).await;
                match hub
                    .keep_alive(upstream.pool().own_token().as_ref(), lease)
                    .await
                {
                    Ok(resp) if resp.ttl > 0 => {}
                    Ok(_) => {
                        warn!(lease, "registration lease expired; registering again");
                        break;
                    }
                    Err(status) => {
                        warn!(lease, error = %status.message(), "registration keep-alive failed")
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

async fn register(upstream: &Upstream, reg: &Registration) -> Result<i64, ProxyError> {
    let ttl = reg.ttl_secs;
    let grant: LeaseGrantResponse = upstream
        .unary(
            "/etcdserverpb.Lease/LeaseGrant",
            RetryPolicy::UnlessApplied,
            Credentials::Own,
            LeaseGrantRequest { ttl, id: 0 },
        )
        .await?;
    let put = PutRequest {
        key: reg.key().into_bytes(),
        value: reg.value().into_bytes(),
        lease: grant.id,
        ..Default::default()
    };
    upstream
        .unary::<_, PutResponse>(
            "/etcdserverpb.KV/Put",
            RetryPolicy::UnlessApplied,
            Credentials::Own,
            put,
        )
        .await?;
    Ok(grant.id)
}

/// Removes the registration at once (on drain), by revoking its lease.
pub async fn unregister(upstream: &Upstream, lease: i64) {
    if lease == 0 {
        return;
    }
    let revoke = async {
        upstream
            .unary::<_, LeaseRevokeResponse>(
                "/etcdserverpb.Lease/LeaseRevoke",
                RetryPolicy::UnlessApplied,
                Credentials::Own,
                LeaseRevokeRequest { id: lease },
            )
            .await
            .map(|_| ())
    };
    match tokio::time::timeout(Duration::from_secs(2), revoke).await {
        Ok(Ok(())) => info!(lease, "registration removed"),
        Ok(Err(e)) => {
            warn!(lease, error = %e, "could not remove registration; it expires with its lease")
        }
        Err(_) => warn!(
            lease,
            "removing registration timed out; it expires with its lease"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registration {
        Registration {
            prefix: "/proxies".into(),
            ttl_secs: 5,
            advertise: "127.0.0.1:23790".into(),
            hostname: "h1".into(),
        }
    }

    #[test]
    fn writes_etcds_format() {
        assert_eq!(reg().key(), "/proxies/127.0.0.1:23790");
        assert_eq!(
            reg().value(),
            r#"{"Op":0,"Addr":"127.0.0.1:23790","Metadata":"{\"name\":\"h1\"}"}"#
        );
    }

    #[test]
    fn reads_what_it_writes_and_what_etcd_writes() {
        assert_eq!(
            decode(reg().value().as_bytes()),
            Some(Registered {
                addr: "127.0.0.1:23790".into(),
                name: "h1".into()
            })
        );
        assert_eq!(decode(b"not json"), None);
        assert_eq!(
            reg().range(),
            (b"/proxies/".to_vec(), b"/proxies0".to_vec())
        );
    }
}
