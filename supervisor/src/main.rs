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
    Worker(Box<worker::WorkerArgs>),
    /// Manages the accounts of a running service over its API (list, add, qr, pairing-code,
    /// restart, logout, delete, send).
    Accounts(supervisor::cli::AccountsArgs),
    /// Migrates a stopped volume's keys to or from encryption at rest (SESSIONS_KEY).
    Sessions {
        #[command(subcommand)]
        action: SessionsAction,
    },
    /// Imports accounts of another client with their device identity (no QR needed).
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Asks the local service's GET /health; exits 0 when it is up (a container HEALTHCHECK).
    Healthcheck(supervisor::healthcheck::HealthcheckArgs),
}

#[derive(Debug, Subcommand)]
enum ImportFrom {
    /// Baileys multi-file auth folders: one folder (creds.json, session-*.json, …), or the
    /// Node.js backend's `baileys_auth/` holding one folder per account id. The source is only
    /// read.
    Baileys {
        /// The auth folder, or the folder of auth folders.
        dir: std::path::PathBuf,
        /// The new account's id (one folder), or which account folder to import (a parent).
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SessionsAction {
    /// Seals every account's creds and Signal keys with SESSIONS_KEY.
    Encrypt,
    /// Writes every sealed file back in the clear (SESSIONS_KEY opens them).
    Decrypt,
}

/// `supervisor sessions encrypt|decrypt`.
fn sessions(config: &supervisor::Config, action: &SessionsAction) -> ExitCode {
    let Some(text) = &config.sessions_key else {
        eprintln!("supervisor: SESSIONS_KEY must be set (32 bytes, hex or base64)");
        return ExitCode::from(2);
    };
    let key = match volume::seal::SessionsKey::parse(text) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("supervisor: {e}");
            return ExitCode::from(2);
        }
    };
    let direction = match action {
        SessionsAction::Encrypt => supervisor::seal::Direction::Encrypt,
        SessionsAction::Decrypt => supervisor::seal::Direction::Decrypt,
    };
    let dir = supervisor::sessions_dir::resolve(config);
    match supervisor::seal::migrate(&dir, &key, direction) {
        Ok(t) => {
            println!(
                "{} accounts: {} files rewritten, {} already so",
                t.accounts, t.rewritten, t.unchanged
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("supervisor: {e}; nothing more was written");
            ExitCode::FAILURE
        }
    }
}

/// `supervisor import baileys <DIR> [--account ID]`: prints what was imported and skipped;
/// fails when any account was refused.
fn import_baileys(
    config: &supervisor::Config,
    dir: &std::path::Path,
    account: Option<&str>,
) -> ExitCode {
    let sessions = supervisor::sessions_dir::resolve(config);
    let sessions = match supervisor::sessions_dir::prove_writable(&sessions)
        .and_then(|()| sessions.canonicalize())
    {
        Ok(path) => path,
        Err(e) => {
            eprintln!(
                "supervisor: the sessions directory {} is not writable: {e}",
                sessions.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(text) = &config.sessions_key {
        match volume::seal::SessionsKey::parse(text) {
            Ok(key) => volume::seal::install(volume::seal::Sealer::new(&sessions, Some(key))),
            Err(e) => {
                eprintln!("supervisor: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let report = match supervisor::import::import_baileys(&sessions, dir, account) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("supervisor: {e}; nothing written");
            return ExitCode::FAILURE;
        }
    };
    print!(
        "{}",
        supervisor::import::summary(&report, &sessions, config.sessions_key.is_some())
    );
    if report.any_refused() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `supervisor accounts …` parsed on its own: the service's settings (and their checks) play no
/// part in a client.
#[derive(Debug, Parser)]
#[command(
    name = "supervisor accounts",
    bin_name = "supervisor accounts",
    version,
    about = "Manages the accounts of a running service over its API"
)]
struct AccountsCli {
    #[command(flatten)]
    args: supervisor::cli::AccountsArgs,
}

/// The worker's own command line: `supervisor worker --account …`, parsed without building the
/// supervisor's whole command tree (clap's tree for every supervisor key would stay in each
/// worker's heap as allocator slack).
#[derive(Debug, Parser)]
#[command(name = "supervisor worker")]
struct WorkerCli {
    #[command(flatten)]
    args: worker::WorkerArgs,
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "worker") {
        // `worker` stands where a program name would: clap skips it.
        let cli = WorkerCli::parse_from(std::env::args_os().skip(1));
        return worker::main(cli.args);
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "accounts") {
        let cli = AccountsCli::parse_from(std::env::args_os().skip(1));
        return supervisor::cli::run(cli.args);
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Sub::Worker(args)) => return worker::main(*args),
        Some(Sub::Accounts(args)) => return supervisor::cli::run(args),
        Some(Sub::Sessions { action }) => return sessions(&cli.config, &action),
        Some(Sub::Import {
            from: ImportFrom::Baileys { dir, account },
        }) => return import_baileys(&cli.config, &dir, account.as_deref()),
        Some(Sub::Healthcheck(args)) => {
            return match supervisor::healthcheck::check(&args) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(reason) => {
                    eprintln!("{reason}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {}
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
