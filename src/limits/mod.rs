//! Per-client limits: one noisy client of a shared cluster is stopped at
//! the proxy, and the others are not slowed.
//!
//! Every call counts against its client ([`identity`]): the etcd user
//! behind its token, else its certificate's common name, else its source
//! IP. Each client has read and write rates (token buckets), a bound on
//! unary calls in flight, on open watchers and on lease keep-alive streams
//! ([`settings`]). A refused unary call or keep-alive stream is answered
//! as etcd answers overload (`ResourceExhausted`, `etcdserver: too many
//! requests`), and a refused watch create is canceled with a reason.
//!
//! - [`identity`]: whose limits a call counts against.
//! - [`settings`]: the limits, from flags and the limits file.
//! - [`reload`]: the limits file, followed while the proxy runs.
//! - `refusal.rs`: what a limit refuses, and how it is told.
//! - `client.rs`: one client's state (token buckets, counts held, permits).
//!
//! With no limit configured none of this exists: the gRPC stack holds
//! `None` and each call pays one branch.

pub mod identity;
pub mod reload;
pub mod settings;

pub use identity::{client_of, ClientId, PeerAddr, TokenUsers};
pub use settings::{LimitSet, LimitSettings, LimitsFileError};

mod client;
mod refusal;
pub use client::Permit;
use client::{evict, Bucket, Client, Rates};
pub use refusal::{Refusal, RefusalKind};

use crate::sync::{lock, read, write};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::metrics::Metrics;

/// Clients with state at once; past it idle ones are forgotten (a client
/// forgotten with a full bucket loses nothing).
pub const MAX_CLIENTS: usize = 100_000;

/// Shards of the client map, so calls of different clients rarely meet on
/// one lock.
const SHARDS: usize = 16;

/// Per-client limits as configured: flags, and the file they may come from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientLimitsConfig {
    /// Every client's limits from the `--limit-*` flags (all 0: none).
    pub defaults: LimitSet,
    /// `--limits-file`: defaults and per-client limits, followed while the proxy runs.
    pub file: Option<PathBuf>,
}

impl ClientLimitsConfig {
    /// Whether any limit may apply; if not, the proxy leaves them out entirely.
    pub fn enabled(&self) -> bool {
        self.file.is_some() || !self.defaults.is_unlimited()
    }
}

/// How a call counts against its client's rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallClass {
    /// Against the read rate.
    Read,
    /// Against the write rate.
    Write,
    /// Against neither (Auth, Cluster, Maintenance, health).
    Other,
}

/// The limits of every client and their state; shared by the gRPC stack,
/// the watch service and the Auth service (which teaches it tokens).
pub struct ClientLimits {
    /// The limits in force, replaced whole on a reload.
    settings: RwLock<Arc<LimitSettings>>,
    /// Bumped on every reload, so each client re-reads its limits once.
    generation: AtomicU64,
    /// Each client's state.
    shards: Vec<Mutex<HashMap<Arc<str>, Arc<Client>>>>,
    /// Token to user, from the Authenticate calls forwarded.
    pub users: TokenUsers,
    /// Where refusals are counted.
    metrics: Arc<Metrics>,
    /// How the limits were configured (the file is read again on change).
    pub config: ClientLimitsConfig,
}

impl ClientLimits {
    /// The limits of `config`, reading its file once; refusals counted in `metrics`.
    pub fn new(
        config: ClientLimitsConfig,
        metrics: Arc<Metrics>,
    ) -> Result<ClientLimits, LimitsFileError> {
        let settings = match &config.file {
            Some(path) => LimitSettings::parse(config.defaults, &std::fs::read_to_string(path)?)?,
            None => LimitSettings {
                default: config.defaults,
                clients: HashMap::new(),
            },
        };
        Ok(ClientLimits {
            settings: RwLock::new(Arc::new(settings)),
            generation: AtomicU64::new(0),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            users: TokenUsers::default(),
            metrics,
            config,
        })
    }

    /// The limits in force now.
    pub fn settings(&self) -> Arc<LimitSettings> {
        read(&self.settings).clone()
    }

    /// Puts `settings` in force; every client follows at its next call.
    pub fn replace(&self, settings: LimitSettings) {
        *write(&self.settings) = Arc::new(settings);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Clients with state now.
    pub fn clients(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// A call of class `class` by `client`: refused past its rate; for a
    /// unary call (`unary`), also past its calls in flight, else the permit
    /// to hold until the call is answered.
    pub fn admit_call(
        &self,
        client: &ClientId,
        class: CallClass,
        unary: bool,
    ) -> Result<Option<Permit>, Refusal> {
        let state = self.client(client);
        state.requests.fetch_add(1, Ordering::Relaxed);
        let limits = {
            let now = Instant::now();
            let mut rates = lock(&state.rates);
            self.refresh(client, &mut rates);
            rates.last_used = now;
            let l = rates.limits;
            let allowed = match class {
                CallClass::Read => rates.read.take(l.read_rps, l.read_burst, now),
                CallClass::Write => rates.write.take(l.write_rps, l.write_burst, now),
                CallClass::Other => true,
            };
            if !allowed {
                let (kind, limit) = match class {
                    CallClass::Read => (RefusalKind::Read, l.read_rps),
                    _ => (RefusalKind::Write, l.write_rps),
                };
                return Err(self.refused(kind, client, limit));
            }
            l
        };
        if !unary {
            return Ok(None);
        }
        self.permit(
            state,
            client,
            RefusalKind::Concurrency,
            limits.concurrent_calls,
        )
        .map(Some)
    }

    /// A watcher `client` opens: refused past its watchers.
    pub fn admit_watcher(&self, client: &ClientId) -> Result<Permit, Refusal> {
        self.admit_held(client, RefusalKind::Watchers)
    }

    /// A keep-alive stream `client` opens: refused past its streams.
    pub fn admit_keepalive_stream(&self, client: &ClientId) -> Result<Permit, Refusal> {
        self.admit_held(client, RefusalKind::KeepAlive)
    }

    fn admit_held(&self, client: &ClientId, kind: RefusalKind) -> Result<Permit, Refusal> {
        let state = self.client(client);
        let limit = {
            let mut rates = lock(&state.rates);
            self.refresh(client, &mut rates);
            rates.last_used = Instant::now();
            match kind {
                RefusalKind::Watchers => rates.limits.watchers,
                _ => rates.limits.keepalive_streams,
            }
        };
        self.permit(state, client, kind, limit)
    }

    fn permit(
        &self,
        state: Arc<Client>,
        client: &ClientId,
        kind: RefusalKind,
        limit: u32,
    ) -> Result<Permit, Refusal> {
        let held = state.counter(kind).fetch_add(1, Ordering::AcqRel);
        let permit = Permit {
            client: state,
            kind,
        };
        if limit > 0 && held >= limit {
            drop(permit);
            return Err(self.refused(kind, client, f64::from(limit)));
        }
        Ok(permit)
    }

    fn refused(&self, kind: RefusalKind, client: &ClientId, limit: f64) -> Refusal {
        self.metrics.limits.client_refused[kind as usize].fetch_add(1, Ordering::Relaxed);
        self.client(client).refusals.fetch_add(1, Ordering::Relaxed);
        Refusal {
            kind,
            client: client.clone(),
            limit,
        }
    }

    /// Re-reads the client's limits after a reload.
    fn refresh(&self, client: &ClientId, rates: &mut Rates) {
        let generation = self.generation.load(Ordering::Acquire);
        if rates.generation != generation {
            rates.limits = self.settings().of(client.as_str());
            rates.generation = generation;
        }
    }

    /// The `n` clients with the most calls, busiest first: (client,
    /// calls, refusals). Per-client figures go to `/metrics` only this
    /// way, so their label count stays at `n` whatever the fleet's size.
    pub fn top(&self, n: usize) -> Vec<(String, u64, u64)> {
        let mut all: Vec<(String, u64, u64)> = Vec::new();
        for shard in &self.shards {
            let map = lock(shard);
            for (name, c) in map.iter() {
                let calls = c.requests.load(Ordering::Relaxed);
                if calls > 0 {
                    all.push((name.to_string(), calls, c.refusals.load(Ordering::Relaxed)));
                }
            }
        }
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// The state of `client`, made on its first call.
    fn client(&self, client: &ClientId) -> Arc<Client> {
        let shard = &self.shards[shard_of(client.as_str())];
        let mut map = lock(shard);
        if let Some(c) = map.get(client.as_str()) {
            return c.clone();
        }
        if map.len() >= MAX_CLIENTS / SHARDS {
            evict(&mut map);
        }
        let now = Instant::now();
        let c = Arc::new(Client {
            rates: Mutex::new(Rates {
                generation: self.generation.load(Ordering::Acquire),
                limits: self.settings().of(client.as_str()),
                read: Bucket::full(now),
                write: Bucket::full(now),
                last_used: now,
            }),
            calls: AtomicU32::new(0),
            watchers: AtomicU32::new(0),
            keepalives: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        });
        map.insert(client.0.clone(), c.clone());
        c
    }
}

/// The shard of the client map `name` is kept in.
fn shard_of(name: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(name) as usize % SHARDS
}

#[cfg(test)]
mod tests;
