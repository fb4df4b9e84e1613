//! The `/metrics` page: every counter and gauge read at scrape time into
//! metric families, written by the `prometheus` crate's text encoder
//! (exposition format 0.0.4), with its `process_*` collector beside them.

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use crate::keepalive::KeepAliveHub;
use crate::metrics::families::{counter, family, gauge, load, Sample};
use crate::metrics::Metrics;
use crate::upstream::Pool;
use crate::watch::hub::WatchHub;

/// Everything the exposition reads from.
#[derive(Clone)]
pub struct Sources {
    /// The shared counters.
    pub metrics: Arc<Metrics>,
    /// The member set, for per-backend gauges.
    pub pool: Pool,
    /// Watch coalescing counters.
    pub watch_hub: Arc<WatchHub>,
    /// Keep-alive coalescing counters.
    pub keepalive_hub: Arc<KeepAliveHub>,
    /// The range cache's counters and size.
    pub cache: Arc<crate::kv::cache::RangeCache>,
    /// How many linearizable read barriers were sent.
    pub read_barrier: Arc<crate::kv::read_barrier::ReadBarrier>,
    /// Per-client limits, when on: the busiest clients are shown.
    pub client_limits: Option<Arc<crate::limits::ClientLimits>>,
}

/// How many clients the per-client families show (the busiest).
pub const TOP_CLIENTS: usize = 10;

impl Sources {
    /// The text exposition (Prometheus format 0.0.4).
    pub fn render(&self) -> String {
        let mut families = self.proxy_families();
        families.extend(self.backend_families());
        if let Some(limits) = &self.client_limits {
            families.extend(top_client_families(limits));
        }
        families.extend(self.metrics.grpc_families());
        if let Some(prefixes) = &self.metrics.prefixes {
            families.extend(prefixes.families());
        }
        families.extend(prometheus::process_collector::ProcessCollector::for_self().collect());
        // The encoder refuses a family without samples (no backend yet, say).
        families.retain(|f| !f.get_metric().is_empty());
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "metrics exposition failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// etcd grpc-proxy's own metrics and the coalescing counters.
    fn proxy_families(&self) -> Vec<MetricFamily> {
        let w = &self.watch_hub.stats;
        let c = &self.cache.stats;
        let k = &self.keepalive_hub.stats;
        let streams = self.metrics.open_streams();
        let limits = &self.metrics.limits;
        vec![
            gauge(
                "etcd_grpc_proxy_memory_held_bytes",
                "Heap bytes the proxy holds now (what --memory-budget-bytes bounds).",
                crate::server::memory::held_bytes() as u64,
            ),
            counter(
                "etcd_grpc_proxy_calls_shed_total",
                "Calls answered 'too many requests' because the memory budget was reached.",
                load(&limits.calls_shed),
            ),
            counter(
                "etcd_grpc_proxy_connections_shed_total",
                "Connections closed at once because the memory budget was reached.",
                load(&limits.connections_shed),
            ),
            gauge(
                "etcd_grpc_proxy_keepalive_tokens",
                "Auth tokens with keep-alive renewal state (bounded; tokens etcd refuses keep none).",
                self.keepalive_hub.tokens() as u64,
            ),
            gauge(
                "etcd_grpc_proxy_client_connections",
                "Client connections open now.",
                load(&limits.connections_open),
            ),
            counter(
                "etcd_grpc_proxy_connections_refused_total",
                "Client connections closed at once because --max-connections were open.",
                load(&limits.connections_refused),
            ),
            counter(
                "etcd_grpc_proxy_watchers_refused_total",
                "Watch creates canceled because the stream held --max-watchers-per-stream watchers.",
                load(&limits.watchers_refused),
            ),
            family(
                "etcd_grpc_proxy_client_limit_refused_total",
                "Calls, watchers and keep-alive streams refused by per-client limits, by kind.",
                MetricType::COUNTER,
                crate::limits::RefusalKind::ALL
                    .iter()
                    .map(|k| {
                        (
                            vec![("kind", k.label().to_string())],
                            load(&limits.client_refused[*k as usize]) as f64,
                        )
                    })
                    .collect(),
            ),
            counter("etcd_grpc_proxy_cache_hits_total", "Total number of cache hits.", load(&c.hits)),
            counter("etcd_grpc_proxy_cache_misses_total", "Total number of cache misses.", load(&c.misses)),
            // A gauge despite its name, as in etcd.
            gauge("etcd_grpc_proxy_cache_keys_total", "Total number of keys/ranges cached.", self.cache.len() as u64),
            counter(
                "etcd_grpc_proxy_cache_invalidations_total",
                "Cached ranges dropped because a write or watch event touched them.",
                load(&c.invalidations),
            ),
            counter(
                "etcd_grpc_proxy_read_barriers_total",
                "Linearizable reads sent to etcd as barriers shared by the linearizable reads answered from the cache.",
                load(&self.read_barrier.sent),
            ),
            counter(
                "etcd_grpc_proxy_watchers_coalescing_total",
                "Total number of client watchers that joined an existing upstream watch.",
                load(&w.watchers_coalescing),
            ),
            counter(
                "etcd_grpc_proxy_events_coalescing_total",
                "Total number of events delivered to more than one watcher (counted once per extra watcher).",
                load(&w.events_coalescing),
            ),
            gauge("etcd_grpc_proxy_upstream_watches", "Upstream watches open now.", load(&w.upstream_watches)),
            counter(
                "etcd_grpc_proxy_watch_failovers_total",
                "Upstream watches re-opened on another member.",
                load(&w.failovers),
            ),
            counter(
                "etcd_grpc_proxy_keepalive_upstream_requests_total",
                "Lease keep-alives sent to members.",
                load(&k.upstream_requests),
            ),
            counter(
                "etcd_grpc_proxy_keepalive_coalesced_total",
                "Client lease keep-alives answered by sharing another one's.",
                load(&k.coalesced),
            ),
            counter(
                "etcd_grpc_proxy_keepalive_upstream_streams_opened_total",
                "Upstream keep-alive streams opened (more than one means failovers).",
                load(&k.streams_opened),
            ),
            family(
                "etcd_grpc_proxy_client_streams",
                "Client streams open now, by method.",
                MetricType::GAUGE,
                streams,
            ),
        ]
    }

    /// The member set and each member's state.
    fn backend_families(&self) -> Vec<MetricFamily> {
        let backends = self.pool.backends();
        let healthy = backends.iter().filter(|b| b.is_healthy()).count();
        let per = |value: &dyn Fn(&crate::upstream::Backend) -> f64| -> Vec<Sample> {
            backends
                .iter()
                .map(|b| (vec![("endpoint", b.url.as_str().to_string())], value(b)))
                .collect()
        };
        vec![
            gauge(
                "etcd_grpc_proxy_backend_members",
                "Members in the proxy's member set.",
                backends.len() as u64,
            ),
            gauge(
                "etcd_grpc_proxy_backend_members_in_rotation",
                "Members in rotation (healthy).",
                healthy as u64,
            ),
            family(
                "etcd_grpc_proxy_backend_healthy",
                "1 when the member is in rotation, 0 when out.",
                MetricType::GAUGE,
                per(&|b| f64::from(u8::from(b.is_healthy()))),
            ),
            family(
                "etcd_grpc_proxy_backend_inflight",
                "Calls under way on the member.",
                MetricType::GAUGE,
                per(&|b| b.inflight() as f64),
            ),
            counter(
                "etcd_grpc_proxy_backend_retries_total",
                "Unary calls sent again to another member after a failure.",
                load(&self.pool.stats().retries),
            ),
        ]
    }
}

/// The busiest clients' calls and refusals: [`TOP_CLIENTS`] series each,
/// whatever the fleet's size.
fn top_client_families(limits: &crate::limits::ClientLimits) -> Vec<MetricFamily> {
    let top = limits.top(TOP_CLIENTS);
    let samples = |pick: fn(&(String, u64, u64)) -> u64| -> Vec<Sample> {
        top.iter()
            .map(|t| (vec![("client", t.0.clone())], pick(t) as f64))
            .collect()
    };
    vec![
        family(
            "etcd_grpc_proxy_top_client_calls",
            "Calls of the 10 busiest clients (etcd user, certificate CN or address) since the proxy first saw them.",
            MetricType::GAUGE,
            samples(|t| t.1),
        ),
        family(
            "etcd_grpc_proxy_top_client_refused",
            "Calls, watchers and keep-alive streams refused to the 10 busiest clients since the proxy first saw them.",
            MetricType::GAUGE,
            samples(|t| t.2),
        ),
    ]
}
