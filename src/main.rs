//! The `etcd-grpc-proxy` binary: parses the command line and calls
//! [`etcd_grpc_proxy::run`] until SIGINT or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use etcd_grpc_proxy::cli::Cli;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Cli::parse().start_args();
    let level = if args.debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

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
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&listen).await {
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
    })
}

/// Resolves on SIGINT or SIGTERM.
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
