//! Configuration from environment variables, in etcd's style for
//! containers: `ETCD_GRPC_PROXY_<FLAG>` sets `--<flag>` (upper snake case,
//! e.g. `ETCD_GRPC_PROXY_LISTEN_ADDR` for `--listen-addr`). A flag given on
//! the command line wins over its variable.
//!
//! Done as a rewrite of argv before clap parses it, so every flag of the
//! `start` command gets a variable without touching its definition.

use std::ffi::OsString;

use clap::CommandFactory;

use crate::config::cli::Cli;

/// Prefix of every variable.
pub const PREFIX: &str = "ETCD_GRPC_PROXY_";

/// The variable naming `flag` (without its dashes).
pub fn var_name(flag: &str) -> String {
    format!("{PREFIX}{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// The long flags of the `start` command.
pub fn start_flags() -> Vec<String> {
    let cmd = Cli::command();
    cmd.find_subcommand("start")
        .map(|start| {
            start
                .get_arguments()
                .filter_map(|a| a.get_long())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `argv` already gives `--flag` (as `--flag`, `--flag value` or `--flag=value`).
fn has_flag(argv: &[OsString], flag: &str) -> bool {
    let long = format!("--{flag}");
    let with_value = format!("--{flag}=");
    argv.iter()
        .filter_map(|a| a.to_str())
        .any(|a| a == long || a.starts_with(&with_value))
}

/// `argv` with `--flag=value` appended for each set variable whose flag
/// is absent. `lookup` reads a variable (`std::env::var_os` in the binary).
///
/// Appending is enough: flags belong to the last sub-command (`start`).
/// Nothing is added when there is no sub-command (e.g. `--help`).
pub fn apply(argv: Vec<OsString>, lookup: impl Fn(&str) -> Option<OsString>) -> Vec<OsString> {
    let has_start = argv.iter().skip(1).any(|a| a == "start");
    if !has_start {
        return argv;
    }
    let mut out = argv.clone();
    for flag in start_flags() {
        if has_flag(&argv, &flag) {
            continue;
        }
        if let Some(value) = lookup(&var_name(&flag)) {
            let mut arg = OsString::from(format!("--{flag}="));
            arg.push(value);
            out.push(arg);
        }
    }
    out
}

/// The process's argv with the environment applied.
pub fn args_from_env() -> Vec<OsString> {
    apply(std::env::args_os().collect(), |name| std::env::var_os(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cli::Cli;
    use clap::Parser;
    use std::collections::HashMap;

    fn run(argv: &[&str], env: &[(&str, &str)]) -> Vec<String> {
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        apply(argv.iter().map(OsString::from).collect(), |k| {
            env.get(k).cloned()
        })
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect()
    }

    #[test]
    fn names_are_upper_snake() {
        assert_eq!(var_name("listen-addr"), "ETCD_GRPC_PROXY_LISTEN_ADDR");
        assert!(start_flags().contains(&"endpoints-auto-sync-interval".to_string()));
    }

    #[test]
    fn variables_fill_absent_flags() {
        let argv = run(
            &["p", "start"],
            &[
                ("ETCD_GRPC_PROXY_LISTEN_ADDR", "127.0.0.1:1"),
                ("ETCD_GRPC_PROXY_ENDPOINTS", "a:1,b:2"),
            ],
        );
        assert!(
            argv.contains(&"--listen-addr=127.0.0.1:1".to_string()),
            "{argv:?}"
        );
        let args = Cli::try_parse_from(&argv).unwrap().start_args();
        assert_eq!(args.listen_addr, "127.0.0.1:1");
        assert_eq!(args.endpoints, vec!["a:1", "b:2"]);
    }

    #[test]
    fn command_line_wins_in_every_spelling() {
        let env = [
            ("ETCD_GRPC_PROXY_LISTEN_ADDR", "127.0.0.1:1"),
            ("ETCD_GRPC_PROXY_DEBUG", "true"),
        ];
        for argv in [
            &[
                "p",
                "grpc-proxy",
                "start",
                "--listen-addr",
                "127.0.0.1:2",
                "--debug",
            ][..],
            &["p", "start", "--listen-addr=127.0.0.1:2", "--debug=true"][..],
        ] {
            let out = run(argv, &env);
            assert_eq!(out.len(), argv.len(), "{out:?}");
            let args = Cli::try_parse_from(&out).unwrap().start_args();
            assert_eq!(args.listen_addr, "127.0.0.1:2");
            assert!(args.debug);
        }
    }

    #[test]
    fn booleans_and_unrelated_variables() {
        let out = run(
            &["p", "start"],
            &[
                ("ETCD_GRPC_PROXY_DEBUG", "true"),
                ("ETCD_GRPC_PROXY_NO_SUCH", "x"),
            ],
        );
        assert_eq!(out, vec!["p", "start", "--debug=true"]);
        assert!(Cli::try_parse_from(&out).unwrap().start_args().debug);
    }

    #[test]
    fn no_subcommand_is_left_alone() {
        assert_eq!(
            run(&["p", "--help"], &[("ETCD_GRPC_PROXY_DEBUG", "true")]),
            vec!["p", "--help"]
        );
    }
}
