//! The standalone worker binary, for development: `worker --account <id> --sessions <dir>`.
//! In production the supervisor re-executes itself with its hidden `worker` subcommand.

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "worker", version, about = "Runs one WhatsApp account")]
struct Cli {
    #[command(flatten)]
    args: worker::WorkerArgs,
}

fn main() -> ExitCode {
    worker::main(Cli::parse().args)
}
