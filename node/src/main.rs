//! `soak-node run`: start the node, the admin API, write `node.json`, run until SIGINT/SIGTERM.
//! `soak-node guard …`: the host-local dead-man's switch of host faults (the `soak-guard` crate;
//! deployed with the node so every host that runs a node can guard its faults).
//!
//! Exit codes: 0 clean shutdown (also when the process named by `--exit-with-parent` is gone),
//! 1 runtime failure (bind, identity, data dir), 2 usage or configuration error (including an
//! `--exit-with-parent` process that does not exist at start-up).

mod watchdog;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use soak_node::config::{Cli, Command, Settings};
use soak_node::shell::Node;
use soak_node::{admin, identity};
use tracing::{error, info, warn};

fn main() -> ExitCode {
    // `guard` is dispatched before clap: it is std-only and has its own argument parser.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "guard") {
        return soak_guard::cli::main(args);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOAK_NODE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let Command::Run(args) = cli.command;
    let (settings, warnings) = match Settings::resolve(&args) {
        Ok(s) => s,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    for w in warnings {
        warn!("config: {w}");
    }
    // Identify the watched process (pid + start time) before anything starts, so a parent
    // that dies during start-up is still noticed at the first check.
    let watched = match args
        .exit_with_parent
        .map(watchdog::Watched::new)
        .transpose()
    {
        Ok(w) => w,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("failed to start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(settings, watched)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(settings: Settings, watched: Option<watchdog::Watched>) -> anyhow::Result<()> {
    let data_dir = settings.data_dir.clone();
    let admin_addr = settings.admin;
    let node = Node::start(settings).await?;
    let (token, warning) = identity::load_or_create_token(&data_dir)?;
    if let Some(w) = warning {
        warn!("admin token: {w}");
    }
    let admin_local = admin::serve(node.clone(), token, admin_addr)
        .await
        .map_err(|e| anyhow::anyhow!("failed to bind admin API {admin_addr}: {e}"))?;
    let shared = node.shared();
    let info = soak_api::NodeInfo {
        peer_id: node.peer_id.to_string(),
        quic_addr: shared.advertise.to_string(),
        admin_addr: admin_local.to_string(),
        pid: std::process::id(),
        started_at_ms: shared.identity.started_at_ms,
        instance_id: shared.identity.instance_id.clone(),
    };
    identity::write_node_info(&data_dir, &info)?;
    info!(
        peer_id = %info.peer_id,
        quic = %info.quic_addr,
        admin = %info.admin_addr,
        "listening; node.json written"
    );
    match &watched {
        Some(watched) => {
            info!(
                pid = watched.pid(),
                "exiting with process {} (--exit-with-parent)",
                watched.pid()
            );
            tokio::select! {
                () = wait_for_signal() => {}
                reason = watched.gone() => info!("{reason} (--exit-with-parent)"),
            }
        }
        None => wait_for_signal().await,
    }
    info!("shutting down");
    node.shutdown().await;
    identity::remove_node_info(&data_dir);
    // Give the CONNECTION_CLOSE frames a moment to leave, so peers notice at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
