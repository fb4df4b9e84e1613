//! `--experimental-leasing-prefix`: linearizable single-key reads served
//! from memory while this proxy holds a lease on the key.
//!
//! The protocol is etcd's client-side "leasing KV", done in the proxy:
//! - A linearizable Get of key `K` tries to acquire the leasing key
//!   `<prefix>K`, bound to this proxy's session lease, in the same Txn that
//!   reads `K`. While it holds `<prefix>K`, later Gets of `K` are answered
//!   from the copy read then.
//! - Every proxy watches the whole leasing prefix. A writer that finds
//!   `<prefix>K` held puts a revoke marker in it (a non-empty value, lease
//!   kept); the owner, seeing the marker, drops its copy of `K` first and
//!   then deletes `<prefix>K`. The writer waits for that delete (at most
//!   the session TTL: a dead owner's lease expires by then), then writes
//!   in a Txn guarded by "no leasing key covers what I write", so an owner
//!   that acquired again in between makes it start over.
//! - Writes through the owner itself drop its copy and release the key.
//! - The owner only serves while its session is provably alive (last
//!   keep-alive answer's TTL not yet run out) and its watch is open; when
//!   either is lost every copy is dropped and the session lease revoked.
//!
//! This file holds the state and the Txns the parts share; beside it:
//! - `session`: the session lease, its keep-alives, and a reset when lost;
//! - `acquire`: a Get served from a held copy, or read while acquiring;
//! - `watch`: what other proxies' revokes mean for the copies held;
//! - `write`: a write once no other proxy holds what it touches.
//!
//! Not covered, as in etcd: writers that bypass leasing proxies (direct
//! clients of etcd) do not revoke, so owners keep serving the old value.
//! Calls that carry an auth token are never served from or guarded by
//! leases (cached answers are not shared across users).

use crate::sync::lock;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tracing::{debug, info, info_span, warn, Instrument};

use super::Kv;

/// Keys whose leasing copy one proxy holds at most.
pub const MAX_OWNED: usize = 10_000;
use crate::error::ProxyError;
use crate::keepalive::KeepAliveHub;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::*;
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::KeyValue;
use crate::upstream::resilient_stream::{Choice, Session, Step};
use crate::upstream::Forwarded;
use crate::upstream::{Credentials, Upstream};
use crate::upstream::{Pool, RetryPolicy};

/// TTL of the session lease, in seconds; also the longest a writer waits
/// for an owner to give a key up.
pub const SESSION_TTL_SECS: i64 = 10;

/// The value a writer puts in a leasing key to ask its owner to give it up.
const REVOKE: &[u8] = b"REVOKE";

/// Keep-alive answers are trusted for their TTL minus this margin.
const SAFETY_MARGIN: Duration = Duration::from_secs(1);

/// The leasing state of one proxy: its session, the keys it holds and the
/// copies it serves.
pub struct Leasing {
    prefix: Vec<u8>,
    /// For the leasing watch, which picks its member itself.
    pool: Pool,
    /// Every call the leasing makes to a member.
    upstream: Upstream,
    /// Owner of its background releases.
    tasks: crate::tasks::Tasks,
    state: Mutex<State>,
}

/// A key this proxy holds, with the answer it serves for it.
struct Owned {
    /// `create_revision` of our `<prefix>K`; events for other incarnations are ignored.
    create_rev: i64,
    answer: RangeResponse,
}

#[derive(Default)]
struct State {
    /// The session lease and until when it is surely alive.
    session: Option<(i64, Instant)>,
    /// Whether the watch on the leasing prefix is open for this session.
    watching: bool,
    /// Bumped at every reset, so an acquisition begun before one is not kept.
    generation: u64,
    owned: HashMap<Vec<u8>, Owned>,
    /// Acquisitions under way, per key.
    pending: HashMap<Vec<u8>, usize>,
    /// `create_revision`s of our leasing keys revoked or deleted while an
    /// acquisition of the key was under way.
    lost: HashMap<Vec<u8>, Vec<i64>>,
}

impl State {
    fn usable_lease(&self) -> Option<i64> {
        match self.session {
            Some((lease, until)) if self.watching && Instant::now() < until => Some(lease),
            _ => None,
        }
    }
}

/// Whether a Range may be served from a lease: one key, linearizable, no options.
pub fn servable(r: &RangeRequest) -> bool {
    r.range_end.is_empty()
        && !r.key.is_empty()
        && r.limit == 0
        && r.revision == 0
        && r.sort_order == 0
        && r.sort_target == 0
        && !r.serializable
        && !r.keys_only
        && !r.count_only
        && r.min_mod_revision == 0
        && r.max_mod_revision == 0
        && r.min_create_revision == 0
        && r.max_create_revision == 0
}

fn create_rev_is(key: Vec<u8>, range_end: Vec<u8>, rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key,
        range_end,
        target_union: Some(TargetUnion::CreateRevision(rev)),
    }
}

fn op(r: request_op::Request) -> RequestOp {
    RequestOp { request: Some(r) }
}

impl Leasing {
    /// Leasing under `prefix`; nothing happens until [`Leasing::run`] runs.
    pub fn new(prefix: Vec<u8>, upstream: Upstream, tasks: crate::tasks::Tasks) -> Arc<Leasing> {
        Arc::new(Leasing {
            prefix,
            pool: upstream.pool().clone(),
            upstream,
            tasks,
            state: Mutex::new(State::default()),
        })
    }

    fn leasing_key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(key);
        k
    }

    /// The leasing-key range covering the client range `[key, end)`.
    fn leasing_range(&self, key: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let start = self.leasing_key(key);
        let end = if end.is_empty() {
            Vec::new()
        } else if end == [0] {
            crate::kv::namespace::prefix_end(&self.prefix)
        } else {
            self.leasing_key(end)
        };
        (start, end)
    }

    /// A Txn made for a client's call, sent down the KV stack (`below`)
    /// with the client's credentials.
    async fn client_txn(
        &self,
        below: &dyn Kv,
        fwd: &Forwarded,
        txn: TxnRequest,
    ) -> Result<TxnResponse, ProxyError> {
        below
            .txn(fwd.request(txn))
            .await
            .map(tonic::Response::into_inner)
            .map_err(ProxyError::Upstream)
    }

    /// A Txn of the leasing's own bookkeeping, as the proxy's own user.
    async fn own_txn(
        &self,
        txn: TxnRequest,
        policy: RetryPolicy,
    ) -> Result<TxnResponse, ProxyError> {
        self.upstream
            .unary("/etcdserverpb.KV/Txn", policy, Credentials::Own, txn)
            .await
    }
}

mod acquire;
mod session;
mod watch;
mod write;

#[cfg(test)]
mod tests;
