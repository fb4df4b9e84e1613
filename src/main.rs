//! The `etcd-grpc-proxy` binary: parses the command line (with
//! `ETCD_GRPC_PROXY_*` variables filling absent flags) and calls
//! [`etcd_grpc_proxy::run`]; SIGINT or SIGTERM starts the drain, after
//! which the process exits 0.

use std::process::ExitCode;

use clap::FromArgMatches;
use etcd_grpc_proxy::config::cli::Cli;
use etcd_grpc_proxy::logging::{self, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let matches = etcd_grpc_proxy::config::env::command().get_matches();
    let args = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli.start_args(),
        Err(e) => e.exit(),
    };
    let mut level = if args.debug { "debug" } else { "info" }.to_string();
    if args.experimental_enable_grpc_logging {
        level.push_str(",tonic=debug,hyper=debug,h2=debug,tower=debug");
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    logging::init(LogFormat::from_flag(&args.log_format), filter);

    let listen = args.listen_addr.clone();
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("etcd-grpc-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("etcd-grpc-proxy: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let listener = match etcd_grpc_proxy::server::bind::listen(&listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("etcd-grpc-proxy: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        match etcd_grpc_proxy::run(config, listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("etcd-grpc-proxy: {e}");
                ExitCode::FAILURE
            }
        }
    });
    // The drain has already bounded its own wait; do not wait on stragglers.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// Resolves on SIGINT or SIGTERM (which start the drain).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
