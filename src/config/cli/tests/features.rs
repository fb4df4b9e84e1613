//! Unit tests of the flags of each optional feature: leasing, ordering,
//! keep-alive and logging checks, registration, per-prefix metrics, traces
//! and per-client limits.

use super::*;

#[test]
fn leasing_prefix_is_parsed() {
    let c = parse(&["p", "start", "--experimental-leasing-prefix=lp/"]).unwrap();
    assert_eq!(c.leasing_prefix.as_deref(), Some(&b"lp/"[..]));
    assert!(parse(&["p", "start", "--experimental-leasing-prefix="])
        .unwrap()
        .leasing_prefix
        .is_none());
    assert!(parse(&["p", "start"]).unwrap().leasing_prefix.is_none());
}

#[test]
fn keepalive_min_time_and_grpc_logging_are_checked() {
    parse(&["p", "start", "--grpc-keepalive-min-time=10s"]).unwrap();
    assert!(parse(&["p", "start", "--grpc-keepalive-min-time=soon"])
        .unwrap_err()
        .contains("grpc-keepalive-min-time"));
    parse(&["p", "start", "--experimental-enable-grpc-logging"]).unwrap();
    assert!(parse(&["p", "start", "--experimental-enable-grpc-logging=loud"]).is_err());
}

#[test]
fn serializable_ordering_is_a_switch() {
    assert!(
        parse(&["p", "start", "--experimental-serializable-ordering"])
            .unwrap()
            .serializable_ordering
    );
    assert!(!parse(&["p", "start"]).unwrap().serializable_ordering);
    assert!(parse(&["p", "start", "--experimental-serializable-ordering=maybe"]).is_err());
}

#[test]
fn registration_flags_go_together() {
    let c = parse(&[
        "p",
        "start",
        "--resolver-prefix=/proxies",
        "--resolver-ttl=5",
        "--advertise-client-url=10.0.0.1:23790",
    ])
    .unwrap();
    let r = c.registration.unwrap();
    assert_eq!(r.key(), "/proxies/10.0.0.1:23790");
    assert!(parse(&["p", "start", "--resolver-prefix=/proxies"])
        .unwrap_err()
        .contains("resolver-ttl"));
    assert!(parse(&["p", "start", "--resolver-ttl=5"])
        .unwrap_err()
        .contains("resolver-prefix"));
    assert!(parse(&[
        "p",
        "start",
        "--resolver-prefix=/p",
        "--resolver-ttl=5",
        "--advertise-client-url="
    ])
    .unwrap_err()
    .contains("advertise-client-url"));
    assert!(parse(&["p", "start", "--resolver-ttl=soon"])
        .unwrap_err()
        .contains("resolver-ttl"));
    assert!(parse(&["p", "start"]).unwrap().registration.is_none());
}

#[test]
fn metrics_prefixes_are_a_bounded_comma_list() {
    let c = parse(&[
        "p",
        "start",
        "--metrics-prefixes=/registry/pods/,/registry/events/",
        "--metrics-prefixes=/registry/leases/",
    ])
    .unwrap();
    assert_eq!(
        c.metrics_prefixes,
        ["/registry/pods/", "/registry/events/", "/registry/leases/"]
    );
    assert!(parse(&["p", "start"]).unwrap().metrics_prefixes.is_empty());
    let many: Vec<String> = (0..65).map(|i| format!("/p{i}/")).collect();
    let flag = format!("--metrics-prefixes={}", many.join(","));
    let err = parse(&["p", "start", &flag]).unwrap_err();
    assert!(err.contains("65 prefixes given, at most 64"), "{err}");
}

#[test]
fn otlp_traces_endpoint_is_a_url_and_off_by_default() {
    let c = parse(&["p", "start", "--otlp-traces-endpoint=http://127.0.0.1:4317"]).unwrap();
    assert_eq!(
        c.otlp_traces_endpoint.as_deref(),
        Some("http://127.0.0.1:4317")
    );
    assert!(parse(&["p", "start"])
        .unwrap()
        .otlp_traces_endpoint
        .is_none());
    assert!(parse(&["p", "start", "--otlp-traces-endpoint=127.0.0.1:4317"]).is_err());
    assert!(parse(&[
        "p",
        "start",
        "--otlp-traces-endpoint=https://collector:4317"
    ])
    .is_err());
}

#[test]
fn client_limits_are_off_by_default_and_set_by_flags_and_file() {
    assert!(!parse(&["p", "start"]).unwrap().client_limits.enabled());
    let c = parse(&[
        "p",
        "start",
        "--limit-read-rps=100",
        "--limit-read-burst=150",
        "--limit-write-rps=0.5",
        "--limit-concurrent-calls=8",
        "--limit-watchers=20",
        "--limit-keepalive-streams=2",
    ])
    .unwrap();
    let d = c.client_limits.defaults;
    assert!(c.client_limits.enabled());
    assert_eq!((d.read_rps, d.read_burst, d.write_rps), (100.0, 150, 0.5));
    assert_eq!(
        (d.concurrent_calls, d.watchers, d.keepalive_streams),
        (8, 20, 2)
    );
    assert!(parse(&["p", "start", "--limit-write-rps=-1"]).is_err());

    let dir = tempfile_dir();
    let good = dir.join("limits-good");
    std::fs::write(&good, "[user:a]\nwatchers = 1\n").unwrap();
    let arg = format!("--limits-file={}", good.display());
    let c = parse(&["p", "start", &arg]).unwrap();
    assert!(c.client_limits.enabled());
    assert_eq!(c.client_limits.file.as_deref(), Some(good.as_path()));
    // A bad file stops the start, naming the flag and the line.
    let bad = dir.join("limits-bad");
    std::fs::write(&bad, "watchers = 1\nnope = 2\n").unwrap();
    let err = parse(&["p", "start", &format!("--limits-file={}", bad.display())]).unwrap_err();
    assert!(
        err.contains("limits-file") && err.contains("line 2"),
        "{err}"
    );
    assert!(parse(&["p", "start", "--limits-file=/no/such/file"]).is_err());
}
