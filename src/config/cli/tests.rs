//! Unit tests of the parent module.

use super::*;

fn parse(args: &[&str]) -> Result<Config, String> {
    let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
    cli.start_args().into_config().map_err(|e| e.to_string())
}

#[test]
fn defaults_match_etcd() {
    let c = parse(&["p", "start"]).unwrap();
    assert_eq!(c.endpoints[0].as_str(), "http://127.0.0.1:2379");
    assert_eq!(c.max_send_bytes, 1_572_864);
    assert_eq!(c.max_recv_bytes, 2_147_483_647);
    assert_eq!(c.max_concurrent_streams, u32::MAX);
}

#[test]
fn both_spellings_and_both_value_forms() {
    let c = parse(&[
        "p",
        "grpc-proxy",
        "start",
        "--endpoints",
        "a:1,b:2",
        "--endpoints=c:3",
    ])
    .unwrap();
    assert_eq!(c.endpoints.len(), 3);
    let c = parse(&["p", "start", "--endpoints-auto-sync-interval=0"]).unwrap();
    assert!(c.auto_sync_interval.is_none());
}

#[test]
fn etcd_defaults_are_accepted_as_given() {
    parse(&["p", "start", "--auto-tls=false"]).unwrap();
}

#[test]
fn own_user_comes_from_user_and_password_file() {
    let dir = tempfile_dir();
    let file = dir.join("pw");
    std::fs::write(&file, "s3cret\n").unwrap();
    let c = parse(&[
        "p",
        "start",
        "--user=proxy",
        &format!("--password-file={}", file.display()),
    ])
    .unwrap();
    let u = c.channel.own_user.unwrap();
    assert_eq!(
        (u.name.as_slice(), u.password.as_slice()),
        (&b"proxy"[..], &b"s3cret"[..])
    );
    let c = parse(&["p", "start", "--user=proxy:pw"]).unwrap();
    assert_eq!(c.channel.own_user.unwrap().password, b"pw");
    assert!(parse(&["p", "start", "--user=proxy"])
        .unwrap_err()
        .to_string()
        .contains("--password-file"));
    assert!(parse(&["p", "start", "--password-file=/x"])
        .unwrap_err()
        .to_string()
        .contains("--user"));
    let missing = parse(&[
        "p",
        "start",
        "--user=proxy",
        "--password-file=/nonexistent/pw",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        missing.contains("--password-file") && missing.contains("/nonexistent/pw"),
        "{missing}"
    );
    assert!(parse(&["p", "start"]).unwrap().channel.own_user.is_none());
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("egp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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
fn metrics_addr_is_an_http_url() {
    let c = parse(&["p", "start", "--metrics-addr=http://127.0.0.1:9379"]).unwrap();
    assert_eq!(c.metrics_addr.as_deref(), Some("127.0.0.1:9379"));
    assert!(parse(&["p", "start"]).unwrap().metrics_addr.is_none());
    let err = parse(&["p", "start", "--metrics-addr=https://127.0.0.1:9379"]).unwrap_err();
    assert!(err.contains("https is not supported"), "{err}");
    assert!(parse(&["p", "start", "--metrics-addr=127.0.0.1:9379"]).is_err());
    assert!(parse(&["p", "start", "--metrics-addr=http://127.0.0.1"]).is_err());
}

#[test]
fn drain_flags_and_pprof() {
    let c = parse(&[
        "p",
        "start",
        "--drain-grace-period=1s",
        "--drain-timeout=3s",
        "--enable-pprof",
    ])
    .unwrap();
    assert_eq!(c.drain_grace_period, Duration::from_secs(1));
    assert_eq!(c.drain_timeout, Duration::from_secs(3));
    assert!(c.enable_pprof);
    assert!(parse(&["p", "start", "--drain-grace-period=later"]).is_err());
    // SIGTERM exits as promptly as etcd's proxy by default.
    assert_eq!(
        parse(&["p", "start"]).unwrap().drain_grace_period,
        Duration::ZERO
    );
}

#[test]
fn bad_values_are_refused() {
    assert!(parse(&["p", "start", "--endpoints=http://x"])
        .unwrap_err()
        .contains("--endpoints"));
    assert!(parse(&["p", "start", "--endpoints-auto-sync-interval=soon"]).is_err());
    assert!(parse(&["p", "start", "--no-such-flag"]).is_err());
}

#[test]
fn tls_flags_are_checked_as_etcd_checks_them() {
    let err = parse(&[
        "p",
        "start",
        "--cert-file=c.pem",
        "--key-file=k.pem",
        "--listen-cipher-suites=TLS_BOGUS",
    ])
    .unwrap_err();
    assert!(
        err.contains("--listen-cipher-suites") && err.contains("TLS_BOGUS"),
        "{err}"
    );
    let err = parse(&[
        "p",
        "start",
        "--auto-tls",
        "--tls-min-version=TLS1.3",
        "--tls-max-version=TLS1.2",
    ])
    .unwrap_err();
    assert!(err.contains("--tls-min-version"), "{err}");
    let err = parse(&[
        "p",
        "start",
        "--auto-tls",
        "--tls-min-version=TLS1.3",
        "--listen-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ])
    .unwrap_err();
    assert!(err.contains("--listen-cipher-suites"), "{err}");
    let err = parse(&["p", "start", "--auto-tls", "--tls-min-version=TLS1.0"]).unwrap_err();
    assert!(err.contains("--tls-min-version"), "{err}");
    let err = parse(&["p", "start", "--auto-tls", "--self-signed-cert-validity=0"]).unwrap_err();
    assert!(err.contains("--self-signed-cert-validity"), "{err}");
    let err = parse(&["p", "start", "--key-file=k.pem"]).unwrap_err();
    assert!(err.contains("--cert-file"), "{err}");
    let err = parse(&["p", "start", "--cert-file=c.pem"]).unwrap_err();
    assert!(err.contains("--key-file"), "{err}");
    let err = parse(&["p", "start", "--cert=c.pem"]).unwrap_err();
    assert!(err.contains("--key"), "{err}");
    let err = parse(&["p", "start", "--insecure-skip-tls-verify=maybe"]).unwrap_err();
    assert!(err.contains("--insecure-skip-tls-verify"), "{err}");
    let c = parse(&[
        "p",
        "start",
        "--cert-file=c.pem",
        "--key-file=k.pem",
        "--trusted-ca-file=ca.pem",
    ])
    .unwrap();
    assert!(c.listen_tls.unwrap().trusted_ca.is_some());
}

#[test]
fn backend_tls_flags_make_bare_endpoints_https() {
    let c = parse(&[
        "p",
        "start",
        "--endpoints=127.0.0.1:2379,http://127.0.0.1:2380",
        "--cacert=ca.pem",
    ])
    .unwrap();
    assert_eq!(c.endpoints[0].as_str(), "https://127.0.0.1:2379");
    assert_eq!(c.endpoints[1].as_str(), "http://127.0.0.1:2380");
    let c = parse(&["p", "start", "--insecure-skip-tls-verify"]).unwrap();
    assert_eq!(c.endpoints[0].as_str(), "https://127.0.0.1:2379");
    assert!(c.listen_tls.is_none());
}

#[test]
fn discovery_flags() {
    let c = parse(&[
        "p",
        "start",
        "--discovery-srv=example.test",
        "--discovery-srv-name=prod",
        "--insecure-discovery",
    ])
    .unwrap();
    let d = c.discovery.unwrap();
    assert_eq!(
        (d.domain.as_str(), d.service_name.as_deref(), d.insecure),
        ("example.test", Some("prod"), true)
    );
    assert!(parse(&["p", "start", "--discovery-srv-name=prod"])
        .unwrap_err()
        .contains("--discovery-srv"));
}

/// The `start` flags as parsed by clap (before any check of their values).
fn start_args(args: &[String]) -> Result<String, String> {
    let mut argv = vec!["p".to_string(), "start".to_string()];
    argv.extend(args.iter().cloned());
    Cli::try_parse_from(argv)
        .map(|cli| format!("{:?}", cli.start_args()))
        .map_err(|e| e.to_string())
}

#[test]
fn every_flag_given_twice_keeps_its_last_value_and_lists_add_up() {
    use clap::CommandFactory;
    const SAMPLES: &[&str] = &[
        "1s",
        "2s",
        "1",
        "2",
        "true",
        "false",
        "a",
        "b",
        "127.0.0.1:1",
        "127.0.0.1:2",
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        "TLS1.2",
        "TLS1.3",
        "json",
        "text",
    ];
    let cmd = Cli::command();
    let start = cmd.find_subcommand("start").expect("start");
    let mut checked = 0;
    for arg in start.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let flag = |v: &str| format!("--{long}={v}");
        let usable: Vec<&str> = SAMPLES
            .iter()
            .copied()
            .filter(|v| start_args(&[flag(v)]).is_ok())
            .collect();
        assert!(usable.len() >= 2, "no two sample values for --{long}");
        let (first, last) = (usable[0], usable[1]);
        let twice = start_args(&[flag(first), flag(last)])
            .unwrap_or_else(|e| panic!("--{long} given twice: {e}"));
        let expected = if matches!(arg.get_action(), ArgAction::Append) {
            start_args(&[flag(&format!("{first},{last}"))])
        } else {
            start_args(&[flag(last)])
        };
        assert_eq!(Ok(twice), expected, "--{long}");
        checked += 1;
    }
    assert!(checked >= 39, "only {checked} flags checked");
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
