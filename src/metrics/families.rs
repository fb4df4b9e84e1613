//! Metric families from the proxy's counters, for the `/metrics` page:
//! the builders every part's families are made with, and the families of
//! the counters this module keeps (go-grpc-prometheus' server metrics,
//! open streams by method, per-prefix counters).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use super::prefixes::PrefixMetrics;
use super::{GrpcType, MethodId, Metrics, CODES, METHODS};

/// One sample: its labels and value.
pub type Sample = (Vec<(&'static str, String)>, f64);

/// A metric family of `kind` with its samples.
pub fn family(name: &str, help: &str, kind: MetricType, samples: Vec<Sample>) -> MetricFamily {
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
pub fn counter(name: &str, help: &str, value: u64) -> MetricFamily {
    family(
        name,
        help,
        MetricType::COUNTER,
        vec![(Vec::new(), value as f64)],
    )
}

/// A gauge family with one unlabelled sample.
pub fn gauge(name: &str, help: &str, value: u64) -> MetricFamily {
    family(
        name,
        help,
        MetricType::GAUGE,
        vec![(Vec::new(), value as f64)],
    )
}

/// A counter's value now.
pub fn load(a: &AtomicU64) -> u64 {
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

impl Metrics {
    /// Streams open now by method (Watch, LeaseKeepAlive, …).
    pub fn open_streams(&self) -> Vec<Sample> {
        METHODS
            .iter()
            .enumerate()
            .filter(|(_, (_, _, ty))| *ty != GrpcType::Unary)
            .map(|(i, (svc, method, _))| {
                (
                    vec![
                        ("grpc_service", svc.to_string()),
                        ("grpc_method", method.to_string()),
                    ],
                    self.in_flight(MethodId(i)) as f64,
                )
            })
            .collect()
    }

    /// go-grpc-prometheus' server metrics.
    pub fn grpc_families(&self) -> Vec<MetricFamily> {
        let m = self;
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

impl PrefixMetrics {
    /// `--metrics-prefixes`' families: one label value per configured prefix and `other`.
    pub fn families(&self) -> Vec<MetricFamily> {
        let p = self;
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
}
