//! `supervisor`: the deployable binary. Without a subcommand it runs the fleet and the admin
//! API; the hidden `worker` subcommand runs one account (the supervisor spawns itself that way).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "supervisor",
    version,
    about = "Keeps many WhatsApp accounts online, one worker process each"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    config: supervisor::Config,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Runs one account's worker (spawned by the supervisor).
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Sub::Worker(args)) = cli.command {
        return worker::main(args);
    }
    let config = cli.config;
    worker::init_tracing(&config.log_format, config.rust_log.as_deref());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("supervisor: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(supervisor::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "supervisor failed");
            let mut chain = format!("supervisor: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                chain.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{chain}");
            ExitCode::from(e.exit_code())
        }
    }
}
