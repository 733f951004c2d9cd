//! The real whatsapp-rust client (crates.io `whatsapp-rust` 0.7.0) against wa-sim, on loopback
//! (issue 8, item 7).
//!
//! 1. Find wa-sim: `--sim-bin PATH` (or `WA_SIM_BIN`) starts one and reads its first line
//!    (`{"ws_url","control_url",…}`); otherwise `--ws-url` and `--control-url` (or `WA_SIM_WS_URL`,
//!    `WA_SIM_CONTROL_URL`) name a running one.
//! 2. Start the client with an in-memory store, the WebSocket pointed at wa-sim, and an HTTP
//!    client that serves its version lookup (`https://web.whatsapp.com/sw.js`) from wa-sim's
//!    `/sw.js`. wa-sim's minimum version is set to its current one, so the login only passes
//!    when the client took its version from `/sw.js`.
//! 3. Pair: the client's QR goes to wa-sim's `/scan`; the client gets `pair-success`, the 515,
//!    and logs in with Noise XX, storing the server's certificate chain.
//! 4. Fallback: wa-sim refuses IK (`/config` `refuse_ik`) and sends a 515 (`/restart`); the
//!    client's IK attempt gets an XXfallback ServerHello and must finish that way (wa-sim's
//!    `ik_fallbacks` grows by one).
//! 5. Resume: IK allowed again, another 515; the client logs in with Noise IK (`ik_logins`
//!    grows by one, `ik_fallbacks` stays).
//! 6. Stay: `--stay-secs` (default 180) on that one connection, through the client's own
//!    app-state sync, keepalives and watchdogs. Any disconnect, reconnect, stream error, failure
//!    or failed app-state sync fails the run; wa-sim's session must keep its connection id, and
//!    its `client_pings` must grow (the keepalive ran).
//!
//! Prints one line, `whatsapp-rust interop: PASS …` or `whatsapp-rust interop: FAIL …`, and exits
//! 0 or 1. Client logs go to stderr (`WR_LOG=debug` for more; default `info`).

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use whatsapp_rust::bot::Bot;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::serde_json::{self, json, Value};
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::wacore::store::in_memory::InMemoryBackend;
use whatsapp_rust::TokioRuntime;

/// The phone that scans the QR.
const DEFAULT_PHONE: &str = "15550001111";
/// Pairing and the first login, from the client's start.
const PAIR_DEADLINE: Duration = Duration::from_secs(90);
/// The IK login after the 515.
const RESUME_DEADLINE: Duration = Duration::from_secs(60);
/// How often the stay phase checks wa-sim's session.
const POLL_EVERY: Duration = Duration::from_secs(10);
/// Time for the sim's first line.
const SIM_START_DEADLINE: Duration = Duration::from_secs(30);

type Res<T> = Result<T, String>;

#[derive(Debug)]
struct Args {
    sim_bin: Option<PathBuf>,
    ws_url: Option<String>,
    control_url: Option<String>,
    stay: Duration,
    phone: String,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        sim_bin: std::env::var_os("WA_SIM_BIN").map(PathBuf::from),
        ws_url: std::env::var("WA_SIM_WS_URL").ok(),
        control_url: std::env::var("WA_SIM_CONTROL_URL").ok(),
        stay: Duration::from_secs(180),
        phone: DEFAULT_PHONE.to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--sim-bin" => args.sim_bin = Some(PathBuf::from(value()?)),
            "--ws-url" => args.ws_url = Some(value()?),
            "--control-url" => args.control_url = Some(value()?),
            "--stay-secs" => {
                let secs = value()?;
                let secs: u64 = secs
                    .parse()
                    .map_err(|_| format!("--stay-secs takes seconds, got {secs:?}"))?;
                args.stay = Duration::from_secs(secs);
            }
            "--phone" => args.phone = value()?,
            "-h" | "--help" => {
                println!(
                    "usage: whatsapp-rust-interop [--sim-bin PATH | --ws-url URL --control-url URL] \
                     [--stay-secs N] [--phone DIGITS]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    Logger::install();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            println!("whatsapp-rust interop: FAIL cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(summary) => {
            println!("whatsapp-rust interop: PASS {summary}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("whatsapp-rust interop: FAIL {why}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Res<String> {
    let args = parse_args()?;
    let mut sim_child = None;
    let (ws_url, control_url) = match (&args.sim_bin, &args.ws_url, &args.control_url) {
        (Some(bin), _, _) => {
            let (child, ws, control) = start_sim(bin).await?;
            sim_child = Some(child);
            (ws, control)
        }
        (None, Some(ws), Some(control)) => (ws.clone(), control.clone()),
        _ => return Err("give --sim-bin, or both --ws-url and --control-url".into()),
    };
    let control = Control::new(&control_url)?;
    let outcome = drive(&args, &ws_url, &control).await;
    if let Some(mut child) = sim_child {
        // By its own PID (kill_on_drop is the fallback).
        let _ = child.kill().await;
    }
    outcome
}

/// Starts wa-sim and reads its first line.
async fn start_sim(bin: &PathBuf) -> Res<(Child, String, String)> {
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start wa-sim {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("wa-sim has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(SIM_START_DEADLINE, lines.next_line())
        .await
        .map_err(|_| "wa-sim printed no first line in time".to_owned())?
        .map_err(|e| format!("cannot read wa-sim's first line: {e}"))?
        .ok_or("wa-sim exited before its first line")?;
    let ready: Value =
        serde_json::from_str(&line).map_err(|e| format!("wa-sim's first line {line:?}: {e}"))?;
    let field = |name: &str| {
        ready[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("wa-sim's first line lacks {name}: {line}"))
    };
    Ok((child, field("ws_url")?, field("control_url")?))
}

/// What the test watches, from the client's event bus.
#[derive(Debug)]
enum Seen {
    Qr(String),
    PairSuccess(String),
    Connected,
    /// Anything that ends or troubles a connection.
    Trouble(String),
}

fn classify(event: &Event) -> Option<Seen> {
    Some(match event {
        Event::PairingQrCode(qr) => Seen::Qr(qr.code.clone()),
        Event::PairSuccess(p) => Seen::PairSuccess(p.id.to_string()),
        Event::Connected(_) => Seen::Connected,
        Event::Disconnected(d) => Seen::Trouble(format!("disconnected: {}", d.reason)),
        Event::LoggedOut(l) => Seen::Trouble(format!("logged out: {:?}", l.reason)),
        Event::StreamError(e) => Seen::Trouble(format!("stream error {}", e.code)),
        Event::StreamReplaced(_) => Seen::Trouble("stream replaced".into()),
        Event::ConnectFailure(f) => Seen::Trouble(format!("connect failure {:?}", f.reason)),
        Event::ClientOutdated(_) => Seen::Trouble("client outdated (405)".into()),
        Event::TemporaryBan(b) => Seen::Trouble(format!("temporary ban {:?}", b.code)),
        Event::PairError(e) => Seen::Trouble(format!("pair error: {e:?}")),
        Event::AppStateSyncFailed(f) => Seen::Trouble(format!(
            "app-state sync failed: fatal {:?}, retryable {:?}",
            f.fatal, f.retryable
        )),
        _ => return None,
    })
}

async fn drive(args: &Args, ws_url: &str, control: &Control) -> Res<String> {
    // The client must take its version from /sw.js: require exactly the published one.
    let version = control.get("/version").await?;
    let current = version["current"]
        .as_str()
        .ok_or_else(|| format!("GET /version: {version}"))?
        .to_owned();
    control.post("/version", json!({ "min": current })).await?;

    let (events_tx, mut events) = mpsc::unbounded_channel::<Seen>();
    let transport = TokioWebSocketTransportFactory::new()
        .with_url(ws_url)
        .without_origin();
    let bot = Bot::builder()
        .with_backend(InMemoryBackend::new())
        .with_transport_factory(transport)
        .with_http_client(SimHttp {
            control: control.clone(),
        })
        .with_runtime(TokioRuntime)
        .skip_history_sync()
        .on_event(move |event, _client| {
            if let Some(seen) = classify(&event) {
                let _ = events_tx.send(seen);
            }
            async {}
        })
        .build()
        .await
        .map_err(|e| format!("cannot build the client: {e}"))?;
    let handle = bot.spawn();
    let started = Instant::now();
    let outcome = phases(args, control, &mut events, &current).await;
    let client = handle.client();
    let _ = tokio::time::timeout(Duration::from_secs(10), client.disconnect()).await;
    handle.abort();
    outcome.map(|summary| format!("{summary}; {} s in all", started.elapsed().as_secs()))
}

async fn phases(
    args: &Args,
    control: &Control,
    events: &mut mpsc::UnboundedReceiver<Seen>,
    current: &str,
) -> Res<String> {
    // Pairing and the first (XX) login.
    let deadline = tokio::time::Instant::now() + PAIR_DEADLINE;
    let mut jid = None;
    loop {
        let seen = next_event(events, deadline, "pairing and the first login").await?;
        match seen {
            Seen::Qr(code) if jid.is_none() => {
                let answer = control
                    .post("/scan", json!({ "qr": code, "phone": args.phone }))
                    .await?;
                let scanned = answer["jid"]
                    .as_str()
                    .ok_or_else(|| format!("/scan: {answer}"))?;
                log::info!("interop: QR scanned, device {scanned}");
                jid = Some(scanned.to_owned());
            }
            Seen::Qr(_) => {}
            Seen::PairSuccess(id) => log::info!("interop: pair-success for {id}"),
            // The 515 after pairing ends the registration connection: expected here.
            Seen::Trouble(why) if jid.is_some() && why.starts_with("disconnected") => {}
            Seen::Trouble(why) => return Err(format!("while pairing: {why}")),
            Seen::Connected if jid.is_some() => break,
            Seen::Connected => return Err("connected without pairing".into()),
        }
    }
    let jid = jid.expect("set before Connected");
    let after_pairing = control.get("/stats").await?;
    if after_pairing["sw_js_served"].as_u64().unwrap_or(0) == 0 {
        return Err(format!("the client never read /sw.js: {after_pairing}"));
    }
    let count = |stats: &Value, name: &str| stats[name].as_u64().unwrap_or(0);

    // A server that refuses IK: the client must finish with XXfallback.
    log::info!("interop: paired and logged in (XX); now a 515 and IK refused by the server");
    control
        .post("/config", json!({ "refuse_ik": true }))
        .await?;
    restart(control, events, &jid, "the XXfallback login").await?;
    let fell_back = control.get("/stats").await?;
    if count(&fell_back, "ik_fallbacks") != count(&after_pairing, "ik_fallbacks") + 1
        || count(&fell_back, "ik_logins") != count(&after_pairing, "ik_logins")
    {
        return Err(format!(
            "the login with IK refused was not one XXfallback: before {after_pairing}, after {fell_back}"
        ));
    }

    // Resume with IK.
    log::info!("interop: logged in after XXfallback; now a 515 for an IK login");
    control
        .post("/config", json!({ "refuse_ik": false }))
        .await?;
    restart(control, events, &jid, "the IK login").await?;
    let resumed = control.get("/stats").await?;
    if count(&resumed, "ik_logins") != count(&fell_back, "ik_logins") + 1
        || count(&resumed, "ik_fallbacks") != count(&fell_back, "ik_fallbacks")
    {
        return Err(format!(
            "the login after the 515 was not Noise IK: before {fell_back}, after {resumed}"
        ));
    }
    let conn = session_of(control, &jid).await?;
    log::info!(
        "interop: logged in again with Noise IK (connection {conn}); staying {} s",
        args.stay.as_secs()
    );

    // Stay on that one connection.
    let pings_before = count(&resumed, "client_pings");
    let end = tokio::time::Instant::now() + args.stay;
    let mut next_poll = tokio::time::Instant::now() + POLL_EVERY;
    loop {
        let wake = next_poll.min(end);
        tokio::select! {
            seen = events.recv() => match seen {
                None => return Err("the client's event bus closed".into()),
                Some(Seen::Trouble(why)) => return Err(format!("while staying connected: {why}")),
                Some(Seen::Connected) => return Err("while staying connected: reconnected".into()),
                Some(Seen::Qr(_)) => return Err("while staying connected: asked to pair".into()),
                Some(Seen::PairSuccess(_)) => {}
            },
            () = tokio::time::sleep_until(wake) => {
                let now_conn = session_of(control, &jid).await?;
                if now_conn != conn {
                    return Err(format!("wa-sim sees connection {now_conn}, not {conn}"));
                }
                if tokio::time::Instant::now() >= end {
                    break;
                }
                next_poll += POLL_EVERY;
            }
        }
    }
    let last = control.get("/stats").await?;
    let pings = count(&last, "client_pings") - pings_before;
    if args.stay >= Duration::from_secs(60) && pings == 0 {
        return Err(format!(
            "no keepalive ping in {} s: {last}",
            args.stay.as_secs()
        ));
    }
    Ok(format!(
        "paired {jid}, version {current} from /sw.js, Noise IK login (ik_logins={}, \
         ik_fallbacks={}), stayed {} s on connection {conn} with {pings} keepalive pings, \
         logins={}, usync_queries={}",
        count(&last, "ik_logins"),
        count(&last, "ik_fallbacks"),
        args.stay.as_secs(),
        count(&last, "logins"),
        count(&last, "usync_queries"),
    ))
}

/// wa-sim's `/restart` (a 515) for `jid`, then the client's next `Connected`.
async fn restart(
    control: &Control,
    events: &mut mpsc::UnboundedReceiver<Seen>,
    jid: &str,
    what: &str,
) -> Res<()> {
    control.post("/restart", json!({ "jid": jid })).await?;
    let deadline = tokio::time::Instant::now() + RESUME_DEADLINE;
    loop {
        match next_event(events, deadline, what).await? {
            Seen::Connected => return Ok(()),
            Seen::Trouble(why) if why.starts_with("disconnected") => {}
            Seen::Trouble(why) => return Err(format!("before {what}: {why}")),
            Seen::Qr(_) => return Err(format!("asked to pair again before {what}")),
            Seen::PairSuccess(_) => {}
        }
    }
}

async fn next_event(
    events: &mut mpsc::UnboundedReceiver<Seen>,
    deadline: tokio::time::Instant,
    what: &str,
) -> Res<Seen> {
    match tokio::time::timeout_at(deadline, events.recv()).await {
        Err(_) => Err(format!("timed out waiting for {what}")),
        Ok(None) => Err("the client's event bus closed".into()),
        Ok(Some(seen)) => {
            log::debug!("interop: event {seen:?}");
            Ok(seen)
        }
    }
}

/// The connection id wa-sim has for `jid`, which must be logged in.
async fn session_of(control: &Control, jid: &str) -> Res<u64> {
    let sessions = control.get("/sessions").await?;
    sessions
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["jid"] == jid && r["state"] == "logged_in")
        })
        .and_then(|r| r["conn_id"].as_u64())
        .ok_or_else(|| format!("wa-sim has no logged-in session for {jid}: {sessions}"))
}

/// wa-sim's control API, over a minimal HTTP/1.1 client (loopback, `Connection: close`).
#[derive(Clone, Debug)]
struct Control {
    addr: String,
}

impl Control {
    fn new(url: &str) -> Res<Self> {
        let addr = url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| format!("the control URL must be http://HOST:PORT, got {url:?}"))?;
        Ok(Self {
            addr: addr.to_owned(),
        })
    }

    async fn get(&self, path: &str) -> Res<Value> {
        self.json("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Res<Value> {
        self.json("POST", path, Some(body.to_string().into_bytes()))
            .await
    }

    async fn json(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Res<Value> {
        let (status, bytes) = self.request(method, path, body.as_deref()).await?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{method} {path}: not JSON ({e})"))?;
        if status != 200 {
            return Err(format!("{method} {path}: {status} {value}"));
        }
        Ok(value)
    }

    async fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Res<(u16, Vec<u8>)> {
        let fail = |e: std::io::Error| format!("{method} {path}: {e}");
        let mut stream = TcpStream::connect(&self.addr).await.map_err(fail)?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.map_err(fail)?;
        stream.write_all(body).await.map_err(fail)?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
            .await
            .map_err(|_| format!("{method} {path}: no answer in 30 s"))?
            .map_err(fail)?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("{method} {path}: malformed answer"))?;
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        if head.contains("transfer-encoding: chunked") {
            return Err(format!(
                "{method} {path}: chunked answers are not supported"
            ));
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{method} {path}: no status"))?;
        Ok((status, raw[split + 4..].to_vec()))
    }
}

/// The client's HTTP: its version lookup goes to wa-sim's `/sw.js`; nothing else is expected
/// (no media in this run), so anything else is refused.
#[derive(Debug)]
struct SimHttp {
    control: Control,
}

#[whatsapp_rust::async_trait]
impl HttpClient for SimHttp {
    async fn execute(&self, request: HttpRequest) -> whatsapp_rust::anyhow::Result<HttpResponse> {
        let path = request
            .url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("/");
        if request.method != "GET" || !path.starts_with("/sw.js") {
            whatsapp_rust::anyhow::bail!(
                "wa-sim interop: no HTTP for {} {}",
                request.method,
                request.url
            );
        }
        log::info!(
            "interop: {} {} served by wa-sim /sw.js",
            request.method,
            request.url
        );
        let (status_code, body) = self
            .control
            .request("GET", "/sw.js", None)
            .await
            .map_err(|e| whatsapp_rust::anyhow::anyhow!(e))?;
        Ok(HttpResponse { status_code, body })
    }
}

/// Logs to stderr: `WR_LOG` = `error`, `warn`, `info` (default), `debug` or `trace`.
struct Logger {
    start: Instant,
}

impl Logger {
    fn install() {
        let level = std::env::var("WR_LOG")
            .ok()
            .and_then(|l| l.parse::<log::LevelFilter>().ok())
            .unwrap_or(log::LevelFilter::Info);
        let logger = Box::leak(Box::new(Logger {
            start: Instant::now(),
        }));
        if log::set_logger(logger).is_ok() {
            log::set_max_level(level);
        }
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let t = self.start.elapsed();
            eprintln!(
                "[wr {:>4}.{:03} {:<5} {}] {}",
                t.as_secs(),
                t.subsec_millis(),
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}
