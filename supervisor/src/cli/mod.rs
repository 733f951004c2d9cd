//! `supervisor accounts …`: the admin API from a terminal. It talks to a running service over
//! HTTP (`--url`/`WAFLEET_URL`, default `http://127.0.0.1:$PORT`, `PORT` defaulting to 8080)
//! with the admin token (`--token`/`ADMIN_TOKEN`, else the token file the service keeps in its
//! sessions directory when `SESSIONS_PATH` or `RAILWAY_VOLUME_MOUNT_PATH` points at it).
//!
//! Every command prints the API's own error message and exits 1 when the service refuses, 2 on
//! a usage error. The token is never printed. Workers never reach this module: `main` hands
//! them off before it parses anything else.

mod client;
mod render;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use hyper::Method;
use ipc_protocol::AccountId;
use serde_json::{json, Value};

use client::Api;
pub use client::Token;
use render::QrStyle;

/// How often `qr` looks for a new QR while it waits.
const QR_POLL: Duration = Duration::from_millis(500);

/// `supervisor accounts …`.
#[derive(Debug, Args)]
pub struct AccountsArgs {
    /// The service's URL [default: http://127.0.0.1:$PORT, PORT defaulting to 8080].
    #[arg(long, env = "WAFLEET_URL", global = true)]
    pub url: Option<String>,
    /// The admin token [default: $ADMIN_TOKEN, else the admin-token file in SESSIONS_PATH or
    /// RAILWAY_VOLUME_MOUNT_PATH/sessions].
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<Token>,
    /// Print the API's JSON answer instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Action,
}

/// One account command.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Every account: id, name, masked phone, status, reason, error.
    List,
    /// Adds an account and starts pairing it (then: `qr ID` or `pairing-code ID`).
    Add {
        /// Its display name.
        #[arg(long)]
        name: String,
        /// Its id ([a-z0-9][a-z0-9_-]*, at most 64); generated when omitted.
        #[arg(long)]
        id: Option<String>,
        /// The phone number it will be linked to (shown masked).
        #[arg(long)]
        phone: Option<String>,
    },
    /// Draws the account's QR in the terminal, waiting for one if it has none yet.
    Qr {
        /// The account id.
        id: String,
        /// How long to wait for a QR, in seconds.
        #[arg(long, default_value_t = 60)]
        wait: u64,
        /// Redraw the QR each time it rotates, until the account connects (or `--wait` ends).
        #[arg(long)]
        watch: bool,
        /// Plain characters without colours, light modules as blocks (for a dark terminal
        /// without colours); colours are used on a terminal unless NO_COLOR is set.
        #[arg(long)]
        invert: bool,
    },
    /// Asks for a code to link the account by phone number instead of a QR.
    PairingCode {
        /// The account id.
        id: String,
        /// The account's phone number, with its country code.
        #[arg(long)]
        phone: String,
    },
    /// Restarts the account's worker (also takes back a parked or `conflict` account).
    Restart {
        /// The account id.
        id: String,
    },
    /// Unlinks the device and keeps the account (a new QR pairs it again).
    Logout {
        /// The account id.
        id: String,
    },
    /// Unlinks the device, stops the worker and archives the account's directory.
    Delete {
        /// The account id.
        id: String,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Queues a text message from the account.
    Send {
        /// The account id.
        id: String,
        /// The recipient: a phone number with its country code, or a JID.
        #[arg(long)]
        to: String,
        /// The text.
        #[arg(long)]
        text: String,
        /// An idempotency key: the same key sends once.
        #[arg(long = "key")]
        key: Option<String>,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line or environment is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The service answered with an error (exit 1).
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The API's error message.
        message: String,
    },
    /// No answer (exit 1).
    #[error("{0}")]
    Transport(String),
    /// The command did not get what it waited for (exit 1).
    #[error("{0}")]
    Failed(String),
}

/// Runs `supervisor accounts …`.
pub fn run(args: AccountsArgs) -> ExitCode {
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
    match runtime.block_on(execute(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("supervisor: {e}");
            match e {
                CliError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

async fn execute(args: AccountsArgs) -> Result<(), CliError> {
    let url = match args.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        Some(url) => url.to_owned(),
        None => default_url(std::env::var("PORT").ok().as_deref())?,
    };
    let token = args.token.filter(|t| !t.is_empty()).or_else(token_file);
    let api = Api::new(&url, token)?;
    let as_json = args.json;
    match args.action {
        Action::List => list(&api, as_json).await,
        Action::Add { name, id, phone } => add(&api, as_json, name, id, phone).await,
        Action::Qr {
            id,
            wait,
            watch,
            invert,
        } => {
            let style = if invert {
                QrStyle::Inverted
            } else if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
                QrStyle::Ansi
            } else {
                QrStyle::Plain
            };
            qr(&api, as_json, &account(&id)?, wait, watch, style).await
        }
        Action::PairingCode { id, phone } => {
            pairing_code(&api, as_json, &account(&id)?, &phone).await
        }
        Action::Restart { id } => action(&api, as_json, &account(&id)?, "restart").await,
        Action::Logout { id } => action(&api, as_json, &account(&id)?, "logout").await,
        Action::Delete { id, yes } => delete(&api, as_json, &account(&id)?, yes).await,
        Action::Send { id, to, text, key } => {
            send(&api, as_json, &account(&id)?, &to, &text, key.as_deref()).await
        }
    }
}

/// `http://127.0.0.1:$PORT`.
fn default_url(port: Option<&str>) -> Result<String, CliError> {
    let port = match port.map(str::trim).filter(|p| !p.is_empty()) {
        None => 8080,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            CliError::Usage(format!(
                "PORT={p:?} is not a port; set --url or WAFLEET_URL"
            ))
        })?,
    };
    Ok(format!("http://127.0.0.1:{port}"))
}

/// The token the service keeps in its sessions directory, when the environment names that
/// directory and the file is readable (on the service's own host or container).
fn token_file() -> Option<Token> {
    let dir = std::env::var_os("SESSIONS_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("RAILWAY_VOLUME_MOUNT_PATH")
                .filter(|p| !p.is_empty())
                .map(|m| PathBuf::from(m).join("sessions"))
        })?;
    let text = std::fs::read_to_string(dir.join(volume::layout::ADMIN_TOKEN_FILE)).ok()?;
    Some(Token::new(&text)).filter(|t| !t.is_empty())
}

fn account(raw: &str) -> Result<AccountId, CliError> {
    AccountId::parse(raw.trim()).map_err(|_| {
        CliError::Usage(format!(
            "{raw:?} is not an account id ([a-z0-9][a-z0-9_-]*, at most 64)"
        ))
    })
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// `list`: the dashboard's accounts.
async fn list(api: &Api, as_json: bool) -> Result<(), CliError> {
    let dashboard = api.json(Method::GET, "/api/status/dashboard", None).await?;
    if as_json {
        print_json(&dashboard);
    } else {
        print!("{}", render::table(&dashboard));
    }
    Ok(())
}

/// `add --name N [--id ID] [--phone P]`.
async fn add(
    api: &Api,
    as_json: bool,
    name: String,
    id: Option<String>,
    phone: Option<String>,
) -> Result<(), CliError> {
    let mut body = json!({ "name": name });
    if let Some(id) = id {
        body["accountId"] = json!(account(&id)?);
    }
    if let Some(phone) = phone {
        body["phone"] = json!(phone);
    }
    let answer = api
        .json(Method::POST, "/api/whatsapp/add-account", Some(&body))
        .await?;
    if as_json {
        print_json(&answer);
        return Ok(());
    }
    let id = answer["account"]["accountId"].as_str().unwrap_or("?");
    println!(
        "added {id} ({}); link it with `supervisor accounts qr {id}` or `supervisor accounts pairing-code {id} --phone <number>`",
        answer["account"]["status"].as_str().unwrap_or("connecting")
    );
    Ok(())
}

/// `qr ID`: waits up to `wait` seconds for a QR and draws it; with `watch`, redraws each new
/// one until the account connects.
async fn qr(
    api: &Api,
    as_json: bool,
    id: &AccountId,
    wait: u64,
    watch: bool,
    style: QrStyle,
) -> Result<(), CliError> {
    let path = format!("/api/whatsapp/qr/{id}?format=json");
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut asked = false;
    let mut shown: Option<String> = None;
    let mut said: Option<String> = None;
    loop {
        let answer = api.json(Method::GET, &path, None).await?;
        let status = answer["status"].as_str().unwrap_or("unknown").to_owned();
        match answer["qr"].as_str() {
            Some(code) if shown.as_deref() != Some(code) => {
                if as_json {
                    print_json(&answer);
                } else {
                    let image = render::qr(code, style).map_err(CliError::Failed)?;
                    if watch && shown.is_some() && style == QrStyle::Ansi {
                        // A fresh screen for the new code, on a terminal only.
                        print!("\x1b[2J\x1b[H");
                    }
                    print!("{image}");
                    println!(
                        "Scan with WhatsApp on the phone: Settings > Linked devices > Link a device{}",
                        match answer["expiresAt"].as_str() {
                            Some(at) => format!(" (this code expires at {at})"),
                            None => String::new(),
                        }
                    );
                }
                let _ = std::io::stdout().flush();
                if !watch {
                    return Ok(());
                }
                shown = Some(code.to_owned());
            }
            Some(_) => {}
            None if status == "connected" => {
                if shown.is_some() {
                    eprintln!("{id} is connected");
                } else if as_json {
                    print_json(&answer);
                } else {
                    eprintln!("{id} is connected: no QR is needed");
                }
                return Ok(());
            }
            None => {
                // A worker that pairs shows its QR within seconds; one that stopped asking
                // (logged out, stopped, parked, the QR's refs used up) is asked once.
                let pairing = matches!(status.as_str(), "connecting" | "needs_qr");
                if !asked && (!pairing || answer["reason"] == "qr_timeout") {
                    asked = true;
                    api.json(
                        Method::POST,
                        &format!("/api/whatsapp/accounts/{id}/qr"),
                        None,
                    )
                    .await?;
                }
                if said.as_deref() != Some(status.as_str()) {
                    eprintln!("waiting for a QR for {id} (status {status})…");
                    said = Some(status.clone());
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(CliError::Failed(match shown {
                Some(_) => format!("{id} did not connect within {wait} s"),
                None => format!(
                    "no QR for {id} within {wait} s (status {status}); try `supervisor accounts restart {id}`"
                ),
            }));
        }
        tokio::time::sleep(QR_POLL).await;
    }
}

/// `pairing-code ID --phone P`.
async fn pairing_code(
    api: &Api,
    as_json: bool,
    id: &AccountId,
    phone: &str,
) -> Result<(), CliError> {
    let answer = api
        .json(
            Method::POST,
            &format!("/api/whatsapp/accounts/{id}/pairing-code"),
            Some(&json!({ "phone": phone })),
        )
        .await?;
    if as_json {
        print_json(&answer);
        return Ok(());
    }
    let code = answer["code"].as_str().ok_or_else(|| {
        CliError::Failed(format!("the service answered without a code: {answer}"))
    })?;
    println!("{code}");
    eprintln!(
        "On the phone: Settings > Linked devices > Link a device > Link with phone number instead, then enter {code}"
    );
    Ok(())
}

/// `restart|logout ID`.
async fn action(api: &Api, as_json: bool, id: &AccountId, verb: &str) -> Result<(), CliError> {
    let answer = api
        .json(
            Method::POST,
            &format!("/api/whatsapp/accounts/{id}/{verb}"),
            None,
        )
        .await?;
    report(&answer, as_json, id);
    Ok(())
}

/// `delete ID [--yes]`: asks first on a terminal, refuses without one unless `--yes`.
async fn delete(api: &Api, as_json: bool, id: &AccountId, yes: bool) -> Result<(), CliError> {
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::Usage(format!(
                "refusing to delete {id} without confirmation: no terminal to ask on; pass --yes"
            )));
        }
        eprint!("Delete {id}? Its device is unlinked and its directory archived. [y/N] ");
        let _ = std::io::stderr().flush();
        let mut reply = String::new();
        let _ = std::io::stdin().lock().read_line(&mut reply);
        if !matches!(reply.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Err(CliError::Failed(format!("{id} was not deleted")));
        }
    }
    let answer = api
        .json(
            Method::DELETE,
            &format!("/api/whatsapp/accounts/{id}"),
            None,
        )
        .await?;
    report(&answer, as_json, id);
    Ok(())
}

/// `send ID --to R --text T [--key K]`.
async fn send(
    api: &Api,
    as_json: bool,
    id: &AccountId,
    to: &str,
    text: &str,
    key: Option<&str>,
) -> Result<(), CliError> {
    let mut body = json!({ "to": to, "text": text });
    if let Some(key) = key {
        body["id"] = json!(key);
    }
    let answer = api
        .json(
            Method::POST,
            &format!("/api/whatsapp/accounts/{id}/messages"),
            Some(&body),
        )
        .await?;
    if as_json {
        print_json(&answer);
    } else {
        println!(
            "{} {}",
            answer["message"]["status"].as_str().unwrap_or("queued"),
            answer["message"]["id"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// An accepted action: `restarting shop-1`.
fn report(answer: &Value, as_json: bool, id: &AccountId) {
    if as_json {
        print_json(answer);
    } else {
        let action = answer["action"].as_str().unwrap_or("accepted");
        println!("{} {id}", action.replace('_', " "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_is_the_local_port() {
        assert_eq!(default_url(None).expect("default"), "http://127.0.0.1:8080");
        assert_eq!(
            default_url(Some("9090")).expect("port"),
            "http://127.0.0.1:9090"
        );
        assert!(matches!(default_url(Some("x")), Err(CliError::Usage(_))));
        assert!(matches!(default_url(Some("0")), Err(CliError::Usage(_))));
    }

    #[test]
    fn account_ids_are_checked_before_they_reach_a_path() {
        assert!(account("shop-1").is_ok());
        for bad in ["../x", "Shop", "a/b", "", "a?b"] {
            assert!(matches!(account(bad), Err(CliError::Usage(_))), "{bad}");
        }
    }
}
