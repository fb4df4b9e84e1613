//! Unit tests of the parent module: the flags in general (defaults,
//! spellings, repeats, bad values), and the helpers the topic files share:
//! - `tests/tls.rs`: TLS, discovery and the proxy's own user;
//! - `tests/features.rs`: the flags of each optional feature.

use super::*;
mod features;
mod tls;

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

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("egp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
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
