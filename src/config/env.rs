//! Configuration from environment variables, in etcd's style for
//! containers: `ETCD_GRPC_PROXY_<FLAG>` sets `--<flag>` (upper snake case,
//! e.g. `ETCD_GRPC_PROXY_LISTEN_ADDR` for `--listen-addr`). A flag given on
//! the command line wins over its variable (clap's `env`).

use clap::{Arg, Command, CommandFactory};

use crate::config::cli::Cli;

/// Prefix of every variable.
pub const PREFIX: &str = "ETCD_GRPC_PROXY_";

/// The variable naming `flag` (without its dashes).
pub fn var_name(flag: &str) -> String {
    format!("{PREFIX}{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// Gives every long flag of `start` its variable.
fn with_env(start: Command) -> Command {
    start.mut_args(|arg: Arg| match arg.get_long().map(var_name) {
        Some(name) => arg.env(name),
        None => arg,
    })
}

/// The command line, with every `start` flag (in both spellings) readable
/// from its `ETCD_GRPC_PROXY_*` variable.
pub fn command() -> Command {
    Cli::command()
        .mut_subcommand("start", with_env)
        .mut_subcommand("grpc-proxy", |g| g.mut_subcommand("start", with_env))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_envs(cmd: &Command) -> Vec<(String, String)> {
        cmd.get_arguments()
            .filter_map(|a| {
                let env = a.get_env()?.to_str()?.to_string();
                Some((a.get_long()?.to_string(), env))
            })
            .collect()
    }

    #[test]
    fn every_start_flag_has_its_variable_in_both_spellings() {
        let cmd = command();
        let start = cmd.find_subcommand("start").unwrap();
        let spelled = cmd
            .find_subcommand("grpc-proxy")
            .and_then(|g| g.find_subcommand("start"))
            .unwrap();
        for c in [start, spelled] {
            let envs = start_envs(c);
            assert_eq!(
                envs.len(),
                c.get_arguments().filter(|a| a.get_long().is_some()).count()
            );
            assert!(envs.contains(&(
                "endpoints-auto-sync-interval".into(),
                "ETCD_GRPC_PROXY_ENDPOINTS_AUTO_SYNC_INTERVAL".into()
            )));
        }
    }
}
