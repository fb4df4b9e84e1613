//! The `/metrics` page: every counter and gauge read at scrape time into
//! metric families, written by the `prometheus` crate's text encoder
//! (exposition format 0.0.4), with its `process_*` collector beside them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use super::{GrpcType, MethodId, Metrics, CODES, METHODS};
use crate::lease::keepalive::KeepAliveHub;
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

/// One sample: its labels and value.
type Sample = (Vec<(&'static str, String)>, f64);

/// A metric family of `kind` with its samples.
fn family(name: &str, help: &str, kind: MetricType, samples: Vec<Sample>) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(name.to_string());
    mf.set_help(help.to_string());
    mf.set_field_type(kind);
    let metrics: Vec<Metric> = samples
        .into_iter()
        .map(|(labels, value)| {
            let mut m = Metric::default();
            let pairs: Vec<LabelPair> = labels
                .into_iter()
                .map(|(k, v)| {
                    let mut l = LabelPair::default();
                    l.set_name(k.to_string());
                    l.set_value(v);
                    l
                })
                .collect();
            m.set_label(pairs);
            if kind == MetricType::COUNTER {
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
            } else {
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
            m
        })
        .collect();
    mf.set_metric(metrics);
    mf
}

/// A counter family with one unlabelled sample.
fn counter(name: &str, help: &str, value: u64) -> MetricFamily {
    family(
        name,
        help,
        MetricType::COUNTER,
        vec![(Vec::new(), value as f64)],
    )
}

/// A gauge family with one unlabelled sample.
fn gauge(name: &str, help: &str, value: u64) -> MetricFamily {
    family(
        name,
        help,
        MetricType::GAUGE,
        vec![(Vec::new(), value as f64)],
    )
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// go-grpc-prometheus' labels of method `i`.
fn method_labels(i: usize) -> Vec<(&'static str, String)> {
    let (svc, method, ty) = METHODS[i];
    vec![
        ("grpc_method", method.to_string()),
        ("grpc_service", svc.to_string()),
        ("grpc_type", ty.label().to_string()),
    ]
}

impl Sources {
    /// The text exposition (Prometheus format 0.0.4).
    pub fn render(&self) -> String {
        let mut families = self.proxy_families();
        families.extend(self.backend_families());
        if let Some(limits) = &self.client_limits {
            families.extend(top_client_families(limits));
        }
        families.extend(self.grpc_families());
        if let Some(prefixes) = &self.metrics.prefixes {
            families.extend(prefix_families(prefixes));
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
        let streams = METHODS
            .iter()
            .enumerate()
            .filter(|(_, (_, _, ty))| *ty != GrpcType::Unary)
            .map(|(i, (svc, method, _))| {
                (
                    vec![
                        ("grpc_service", svc.to_string()),
                        ("grpc_method", method.to_string()),
                    ],
                    self.metrics.in_flight(MethodId(i)) as f64,
                )
            })
            .collect();
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

    /// go-grpc-prometheus' server metrics.
    fn grpc_families(&self) -> Vec<MetricFamily> {
        let m = &self.metrics;
        let each = |value: &dyn Fn(usize) -> u64| -> Vec<Sample> {
            (0..m.methods.len())
                .map(|i| (method_labels(i), value(i) as f64))
                .collect()
        };
        let handled = m
            .methods
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                c.handled.iter().enumerate().filter_map(move |(code, n)| {
                    let n = load(n);
                    (n > 0).then(|| {
                        let mut labels = vec![("grpc_code", CODES[code].to_string())];
                        labels.extend(method_labels(i));
                        (labels, n as f64)
                    })
                })
            })
            .collect();
        vec![
            family(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
                MetricType::COUNTER,
                each(&|i| load(&m.methods[i].started)),
            ),
            family(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                MetricType::COUNTER,
                handled,
            ),
            family(
                "grpc_server_msg_received_total",
                "Total number of RPC stream messages received on the server.",
                MetricType::COUNTER,
                each(&|i| load(&m.methods[i].msg_received)),
            ),
            family(
                "grpc_server_msg_sent_total",
                "Total number of gRPC stream messages sent by the server.",
                MetricType::COUNTER,
                each(&|i| load(&m.methods[i].msg_sent)),
            ),
            counter(
                "etcd_grpc_proxy_unknown_method_calls_total",
                "Calls to paths outside the etcd v3 API (answered Unimplemented).",
                load(&m.unknown_methods),
            ),
        ]
    }
}

/// `--metrics-prefixes`' families: one label value per configured prefix and `other`.
fn prefix_families(p: &super::prefixes::PrefixMetrics) -> Vec<MetricFamily> {
    let labels = |prefix: &str, method: &str| {
        vec![
            ("prefix", prefix.to_string()),
            ("grpc_method", method.to_string()),
        ]
    };
    let requests = p
        .request_samples()
        .into_iter()
        .map(|(prefix, method, code, n)| {
            let mut l = labels(prefix, method);
            l.push(("grpc_code", code.to_string()));
            (l, n as f64)
        })
        .collect();
    let bytes = p.byte_samples();
    let received = bytes
        .iter()
        .map(|(prefix, method, r, _)| (labels(prefix, method), *r as f64))
        .collect();
    let sent = bytes
        .iter()
        .map(|(prefix, method, _, s)| (labels(prefix, method), *s as f64))
        .collect();
    let watch = p.watch_samples();
    let watchers = watch
        .iter()
        .map(|(prefix, n, _)| (vec![("prefix", prefix.to_string())], *n as f64))
        .collect();
    let events = watch
        .iter()
        .map(|(prefix, _, n)| (vec![("prefix", prefix.to_string())], *n as f64))
        .collect();
    vec![
        family(
            "etcd_grpc_proxy_prefix_requests_total",
            "Keyed calls (Range, Put, DeleteRange, Txn; Watch: watchers created) by key prefix, method and final gRPC code.",
            MetricType::COUNTER,
            requests,
        ),
        family(
            "etcd_grpc_proxy_prefix_received_bytes_total",
            "Request message bytes received from clients, by key prefix and method.",
            MetricType::COUNTER,
            received,
        ),
        family(
            "etcd_grpc_proxy_prefix_sent_bytes_total",
            "Response message bytes sent to clients (for Watch: the events' bytes), by key prefix and method.",
            MetricType::COUNTER,
            sent,
        ),
        family(
            "etcd_grpc_proxy_prefix_watchers",
            "Client watchers open now, by the prefix of their key.",
            MetricType::GAUGE,
            watchers,
        ),
        family(
            "etcd_grpc_proxy_prefix_watch_events_total",
            "Watch events delivered to clients, by the prefix of the event's key.",
            MetricType::COUNTER,
            events,
        ),
    ]
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
