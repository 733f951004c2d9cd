//! Webhooks: every event of the [`EventBus`](crate::events::EventBus), POSTed as JSON to the
//! global `WEBHOOK_URL` and to the account's own URL (`PUT …/accounts/:id/webhook`), signed,
//! retried with backoff, at least once, durable across restarts.
//!
//! ```text
//!  EventBus ──live──▶ Sender::run ──(event, target)──▶ .webhooks/<id>-<g|a>.json (durable first)
//!                        │   Queues: per target, id order, one in flight, backoff, expiry, bound
//!                        └──▶ attempt: read body, sign, POST ──2xx──▶ remove the file
//!                                                          └─else──▶ back the target off
//! ```
//!
//! 1. At start the pending set on disk is loaded; delivery resumes in id order (ids grow across
//!    restarts).
//! 2. Each event gets its targets: the account's URL when set, and the global URL when set (two
//!    deliveries when both are set and differ). Each is written durably before any attempt;
//!    events already waiting on the feed share one group commit.
//! 3. Per target, the oldest pending delivery is attempted; a 2xx removes it and resets the
//!    target's backoff; anything else (status, timeout, connect error) backs that target off,
//!    doubling from `WEBHOOK_BACKOFF_BASE_MS` to `WEBHOOK_BACKOFF_MAX_MS` with jitter. Other
//!    targets go on.
//! 4. A delivery older than `WEBHOOK_MAX_AGE_MS` is given up; past `WEBHOOK_MAX_PENDING` the
//!    oldest account events are dropped first. Both are counted and logged.
//! 5. On cancel (given after the fleet has stopped, so the workers' last events are in) the
//!    task stores what is still waiting on the feed and stops; attempts in flight are abandoned
//!    and stay pending on disk.

pub mod backoff;
pub mod client;
pub mod pending;
pub mod queue;
pub mod secret;
pub mod settings;
pub mod sign;
pub mod url;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use ipc_protocol::{AccountId, UnixMillis};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, instrument, warn};
use volume::secret::Secret;

use crate::cache::Cache;
use crate::events::{Event, EventKind, Subscription};
use crate::fleet::FleetMsg;
use crate::registry::Account;

use self::client::{Client, SendError};
use self::pending::{Delivery, PendingStore, TargetKind};
use self::queue::Queues;
pub use self::settings::WebhookArgs;
use self::url::WebhookUrl;

/// Most events stored in one group commit (one directory fsync).
const MAX_BATCH: usize = 256;
/// Header carrying the event id (the receiver's deduplication key).
pub const EVENT_ID_HEADER: &str = "x-wafleet-event-id";
/// Header carrying `t=<unix seconds>,v1=<hex hmac>`.
pub const SIGNATURE_HEADER: &str = "x-wafleet-signature";

/// Why webhooks could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The pending directory could not be opened.
    #[error("cannot open the webhook pending directory {}", path.display())]
    Pending {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The signing secret could not be read or stored.
    #[error("cannot read or store the webhook secret in {}", path.display())]
    Secret {
        /// The sessions directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

/// What the HTTP side shares with the sender: the secret and the counters.
#[derive(Debug)]
pub struct Webhooks {
    sessions: PathBuf,
    configured_secret: Option<Secret<String>>,
    secret: Mutex<Option<Arc<Secret<String>>>>,
    /// Serialises the per-account URL writes (account.json, then the cache).
    pub account_writes: tokio::sync::Mutex<()>,
    stats: Stats,
}

#[derive(Debug, Default)]
struct Stats {
    ok: AtomicU64,
    failed: AtomicU64,
    expired: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
}

impl Webhooks {
    /// The signing secret, resolved (and generated and stored, the first time) on demand. Call
    /// it before storing a URL, so a receiver can be told the secret before its first event.
    ///
    /// Blocking: file I/O the first time.
    ///
    /// # Errors
    /// When a generated secret cannot be stored.
    pub fn ensure_secret(&self) -> io::Result<Arc<Secret<String>>> {
        let mut slot = self.secret.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(secret) = slot.as_ref() {
            return Ok(secret.clone());
        }
        let secret = Arc::new(secret::resolve(
            self.configured_secret.as_ref(),
            &self.sessions,
        )?);
        *slot = Some(secret.clone());
        Ok(secret)
    }

    /// Appends the webhook series to a Prometheus text page.
    pub fn render_metrics(&self, out: &mut String) {
        out.push_str("# HELP wafleet_webhook_deliveries_total Webhook delivery attempts and give-ups by result.\n# TYPE wafleet_webhook_deliveries_total counter\n");
        let s = &self.stats;
        for (result, n) in [
            ("ok", &s.ok),
            ("failed", &s.failed),
            ("expired", &s.expired),
            ("dropped", &s.dropped),
        ] {
            let _ = writeln!(
                out,
                "wafleet_webhook_deliveries_total{{result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP wafleet_webhook_pending Webhook deliveries waiting for a 2xx.\n# TYPE wafleet_webhook_pending gauge\nwafleet_webhook_pending {}",
            s.pending.load(Ordering::Relaxed)
        );
    }
}

/// Sets webhooks up: opens the pending set, resolves the secret when some URL exists or
/// something is pending, and subscribes to the bus. Call it before anything is published (the
/// first account inserts) so the sender sees every event.
///
/// # Errors
/// [`SetupError`] when the pending directory or the secret fails.
pub fn setup(
    args: &WebhookArgs,
    sessions: &Path,
    cache: Arc<Cache>,
    accounts: &[Account],
) -> Result<(Arc<Webhooks>, Sender), SetupError> {
    let global = args.global_url().ok().flatten();
    let (store, loaded) = PendingStore::open(sessions).map_err(|source| SetupError::Pending {
        path: sessions.join(pending::PENDING_DIR),
        source,
    })?;
    let hub = Arc::new(Webhooks {
        sessions: sessions.to_owned(),
        configured_secret: args.webhook_secret.clone(),
        secret: Mutex::new(None),
        account_writes: tokio::sync::Mutex::new(()),
        stats: Stats::default(),
    });
    let needs_secret = global.is_some()
        || accounts.iter().any(|a| a.webhook_url.is_some())
        || !loaded.deliveries.is_empty();
    if needs_secret {
        hub.ensure_secret().map_err(|source| SetupError::Secret {
            path: sessions.to_owned(),
            source,
        })?;
    }
    let mut queues = Queues::new(
        args.webhook_max_pending,
        Duration::from_millis(args.webhook_max_age_ms),
        args.backoff(),
    );
    let resumed = loaded.deliveries.len();
    for delivery in loaded.deliveries {
        queues.push(delivery);
    }
    hub.stats
        .pending
        .store(queues.len() as u64, Ordering::Relaxed);
    if resumed > 0 || loaded.set_aside > 0 {
        info!(
            pending = resumed,
            set_aside = loaded.set_aside,
            "webhook deliveries resumed"
        );
    }
    let feed = cache.events.subscribe(None);
    let sender = Sender {
        hub: hub.clone(),
        cache,
        global,
        store,
        queues,
        client: Client::new(Duration::from_millis(args.webhook_timeout_ms)),
        feed,
        last_id: None,
        confirmations: None,
    };
    Ok((hub, sender))
}

/// The task that delivers.
#[derive(Debug)]
pub struct Sender {
    hub: Arc<Webhooks>,
    cache: Arc<Cache>,
    global: Option<WebhookUrl>,
    store: PendingStore,
    queues: Queues,
    client: Client,
    feed: Subscription,
    last_id: Option<u64>,
    /// Where to say that received messages are safe (the fleet, which tells the worker).
    confirmations: Option<mpsc::UnboundedSender<FleetMsg>>,
}

/// What one attempt came to.
#[derive(Debug)]
enum Outcome {
    /// The receiver answered with this status.
    Answered(u16),
    /// No answer.
    Failed(SendError),
    /// The pending file could not be read.
    Unreadable(io::Error),
    /// No attempt could be made (no signing secret, a failed task): retried later.
    NotAttempted(io::Error),
}

impl Sender {
    /// Sends `FleetMsg::Confirmed` for every `message.received` event once its deliveries are
    /// durable here (or it has no webhook to go to), so the worker stops reporting it again.
    pub fn with_confirmations(mut self, fleet: mpsc::UnboundedSender<FleetMsg>) -> Self {
        self.confirmations = Some(fleet);
        self
    }

    /// Delivers until `token` is cancelled.
    #[instrument(name = "webhooks", skip_all)]
    pub async fn run(mut self, token: CancellationToken) {
        let mut attempts: JoinSet<(Delivery, Outcome)> = JoinSet::new();
        // What each attempt task carries, so a task that panics still frees its target.
        let mut in_flight: HashMap<tokio::task::Id, Delivery> = HashMap::new();
        let mut feed_open = true;
        loop {
            self.start_due(&mut attempts, &mut in_flight);
            let wake = self.queues.next_retry();
            tokio::select! {
                biased;
                _ = token.cancelled() => {
                    self.store_waiting().await;
                    break;
                }
                Some(joined) = attempts.join_next_with_id(), if !attempts.is_empty() => {
                    match joined {
                        Ok((id, (delivery, outcome))) => {
                            in_flight.remove(&id);
                            self.on_outcome(delivery, outcome).await;
                        }
                        Err(e) => {
                            error!(error = %e, "webhook attempt task failed");
                            if let Some(delivery) = in_flight.remove(&e.id()) {
                                let failure = io::Error::other("attempt task failed");
                                self.on_outcome(delivery, Outcome::NotAttempted(failure)).await;
                            }
                        }
                    }
                }
                received = self.feed.live.recv(), if feed_open => match received {
                    Ok(event) => {
                        // Whatever else is already waiting joins the same group commit.
                        let mut batch = vec![event];
                        let mut lagged = None;
                        while batch.len() < MAX_BATCH {
                            match self.feed.live.try_recv() {
                                Ok(event) => batch.push(event),
                                Err(TryRecvError::Lagged(missed)) => {
                                    lagged = Some(missed);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        self.on_events(batch).await;
                        if let Some(missed) = lagged {
                            self.catch_up(missed).await;
                        }
                    }
                    Err(RecvError::Lagged(missed)) => self.catch_up(missed).await,
                    Err(RecvError::Closed) => feed_open = false,
                },
                _ = sleep_until(wake), if wake.is_some() => {}
            }
        }
        attempts.abort_all();
        info!(
            pending = self.queues.len(),
            "webhook sender stopped; pending deliveries stay on disk"
        );
    }

    /// Stores what is still waiting on the feed (the last events of a shutdown) so that it is
    /// delivered after the restart.
    async fn store_waiting(&mut self) {
        let mut waiting = Vec::new();
        loop {
            match self.feed.live.try_recv() {
                Ok(event) => waiting.push(event),
                Err(TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
        for chunk in waiting.chunks(MAX_BATCH) {
            self.on_events(chunk.to_vec()).await;
        }
    }

    /// Recovers from falling behind the live feed: replays from the bus's ring what is still
    /// there after the last event handled.
    async fn catch_up(&mut self, missed: u64) {
        warn!(
            missed,
            "webhook sender fell behind the event feed; replaying from the ring"
        );
        let sub = self.cache.events.subscribe(Some(self.last_id.unwrap_or(0)));
        // Before the first event the sender has no id to resume from: it subscribed before
        // anything was published, so only a full ring can have lost some.
        let lost = match self.last_id {
            Some(_) => sub.gap,
            None => sub.backlog.len() >= crate::events::RING_LEN,
        };
        if lost {
            error!("some events were lost to webhooks: they left the ring before being stored");
        }
        let backlog = sub.backlog;
        self.feed = Subscription {
            backlog: Vec::new(),
            gap: false,
            live: sub.live,
        };
        for chunk in backlog.chunks(MAX_BATCH) {
            self.on_events(chunk.to_vec()).await;
        }
    }

    /// Stores the deliveries of a batch of events in one group commit, then queues them.
    async fn on_events(&mut self, events: Vec<Arc<Event>>) {
        let mut items: Vec<(Delivery, Arc<Vec<u8>>)> = Vec::new();
        // Received messages, by event id: confirmed once every delivery of theirs is stored.
        let mut received: Vec<Arc<Event>> = Vec::new();
        for event in events {
            if self.last_id.is_some_and(|last| event.id <= last) {
                continue;
            }
            self.last_id = Some(event.id);
            if event.kind == EventKind::MessageReceived {
                received.push(event.clone());
            }
            let account_url = self
                .cache
                .get(&event.account)
                .and_then(|v| v.account.webhook_url);
            let targets = targets(account_url, self.global.clone());
            if targets.is_empty() {
                continue;
            }
            let body = match serde_json::to_vec(&*event) {
                Ok(body) => Arc::new(body),
                Err(e) => {
                    error!(event = event.id, error = %e, "cannot serialise an event for webhooks");
                    continue;
                }
            };
            for (target, url) in targets {
                let delivery = Delivery {
                    event_id: event.id,
                    target,
                    url,
                    kind: event.kind.as_str().to_owned(),
                    timestamp_ms: event.timestamp,
                };
                items.push((delivery, body.clone()));
            }
        }
        if items.is_empty() {
            self.confirm(&received, &[]);
            return;
        }
        for gone in self.queues.make_room(items.len()) {
            self.hub.stats.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(event = gone.event_id, kind = %gone.kind, target = %gone.url, "webhook pending set is full; delivery dropped");
            self.remove_file(gone).await;
        }
        let store = self.store.clone();
        let to_write = items.clone();
        let written = tokio::task::spawn_blocking(move || {
            let batch: Vec<(Delivery, &[u8])> = to_write
                .iter()
                .map(|(d, body)| (d.clone(), body.as_slice()))
                .collect();
            store.write_batch(&batch)
        })
        .await;
        let results = match written {
            Ok(results) => results,
            Err(e) => {
                error!(error = %e, "webhook store task failed");
                Vec::new()
            }
        };
        let mut results = results.into_iter();
        let mut unstored = Vec::new();
        for (delivery, _) in items {
            let result = results.next();
            if !matches!(result, Some(Ok(()))) {
                unstored.push(delivery.event_id);
            }
            match result {
                Some(Ok(())) => {
                    debug!(event = delivery.event_id, target = %delivery.url, "webhook delivery pending");
                    self.queues.push(delivery);
                }
                Some(Err(e)) => {
                    self.hub.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    error!(event = delivery.event_id, error = %e, "cannot store a webhook delivery; dropped");
                }
                None => {
                    self.hub.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    error!(
                        event = delivery.event_id,
                        "webhook delivery not stored; dropped"
                    );
                }
            }
        }
        self.publish_pending();
        self.confirm(&received, &unstored);
    }

    /// Tells the fleet which received messages are safe: all of `received` but the events in
    /// `unstored` (those stay unconfirmed, and the worker reports them again at its next start).
    fn confirm(&self, received: &[Arc<Event>], unstored: &[u64]) {
        let Some(fleet) = &self.confirmations else {
            return;
        };
        let mut by_account: HashMap<AccountId, Vec<String>> = HashMap::new();
        for event in received.iter().filter(|e| !unstored.contains(&e.id)) {
            if let Some(id) = event.data.get("id").and_then(|i| i.as_str()) {
                by_account
                    .entry(event.account.clone())
                    .or_default()
                    .push(id.to_owned());
            }
        }
        for (id, ids) in by_account {
            let _ = fleet.send(FleetMsg::Confirmed { id, ids });
        }
    }

    fn start_due(
        &mut self,
        attempts: &mut JoinSet<(Delivery, Outcome)>,
        in_flight: &mut HashMap<tokio::task::Id, Delivery>,
    ) {
        let now = Instant::now();
        if !self.queues.has_ready(now) {
            return;
        }
        let due = self.queues.take_due(now, UnixMillis::now().0);
        for gone in due.expired {
            self.hub.stats.expired.fetch_add(1, Ordering::Relaxed);
            warn!(event = gone.event_id, kind = %gone.kind, target = %gone.url, "webhook delivery expired; given up");
            let store = self.store.clone();
            // Best effort and off the loop: a file left behind expires again after a restart.
            tokio::task::spawn_blocking(move || store.remove(&gone));
        }
        for delivery in due.send {
            let store = self.store.clone();
            let client = self.client.clone();
            let hub = self.hub.clone();
            let carried = delivery.clone();
            let handle = attempts.spawn(async move {
                let outcome = attempt(&store, &client, &hub, &delivery).await;
                (delivery, outcome)
            });
            in_flight.insert(handle.id(), carried);
        }
        self.publish_pending();
    }

    async fn on_outcome(&mut self, delivery: Delivery, outcome: Outcome) {
        match outcome {
            Outcome::Answered(status) if (200..300).contains(&status) => {
                self.hub.stats.ok.fetch_add(1, Ordering::Relaxed);
                debug!(event = delivery.event_id, target = %delivery.url, status, "webhook delivered");
                self.queues.delivered(&delivery);
                self.remove_file(delivery).await;
            }
            Outcome::Unreadable(e) => {
                error!(event = delivery.event_id, error = %e, "pending webhook file is unreadable; dropped");
                self.hub.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.queues.discard(&delivery);
            }
            other => {
                self.hub.stats.failed.fetch_add(1, Ordering::Relaxed);
                let wait = self
                    .queues
                    .failed(&delivery, Instant::now(), rand::random::<f64>());
                let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                match other {
                    Outcome::Answered(status) => {
                        warn!(event = delivery.event_id, target = %delivery.url, status, wait_ms, "webhook receiver refused; retrying later")
                    }
                    Outcome::Failed(e) => {
                        warn!(event = delivery.event_id, target = %delivery.url, error = %error_chain(&e), wait_ms, "webhook attempt failed; retrying later")
                    }
                    Outcome::NotAttempted(e) => {
                        error!(event = delivery.event_id, error = %e, "webhook attempt could not be made; retrying later")
                    }
                    Outcome::Unreadable(_) => {}
                }
            }
        }
        self.publish_pending();
    }

    async fn remove_file(&self, delivery: Delivery) {
        let store = self.store.clone();
        let event = delivery.event_id;
        match tokio::task::spawn_blocking(move || store.remove(&delivery)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(event, error = %e, "cannot remove a finished webhook delivery"),
            Err(e) => warn!(event, error = %e, "webhook store task failed"),
        }
    }

    fn publish_pending(&self) {
        self.hub
            .stats
            .pending
            .store(self.queues.len() as u64, Ordering::Relaxed);
    }
}

/// An event's targets: the account's own URL, then the global one; one delivery when both are
/// the same URL.
fn targets(
    account: Option<WebhookUrl>,
    global: Option<WebhookUrl>,
) -> Vec<(TargetKind, WebhookUrl)> {
    let mut out = Vec::with_capacity(2);
    if let Some(url) = global {
        out.push((TargetKind::Global, url));
    }
    if let Some(url) = account {
        if out.iter().all(|(_, g)| *g != url) {
            out.push((TargetKind::Account, url));
        }
    }
    out
}

/// One attempt: read the body, sign it now, POST it.
async fn attempt(
    store: &PendingStore,
    client: &Client,
    hub: &Arc<Webhooks>,
    delivery: &Delivery,
) -> Outcome {
    let read = {
        let store = store.clone();
        let hub = hub.clone();
        let delivery = delivery.clone();
        tokio::task::spawn_blocking(move || {
            let body = store.body(&delivery).map_err(Outcome::Unreadable)?;
            let secret = hub.ensure_secret().map_err(Outcome::NotAttempted)?;
            Ok::<_, Outcome>((body, secret))
        })
        .await
    };
    let (body, secret) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(outcome)) => return outcome,
        Err(e) => return Outcome::NotAttempted(io::Error::other(e)),
    };
    let t = UnixMillis::now().0 / 1000;
    let signature = sign::signature(&secret, t, &body);
    let headers = [
        (
            HeaderName::from_static(EVENT_ID_HEADER),
            HeaderValue::from(delivery.event_id),
        ),
        (
            HeaderName::from_static(SIGNATURE_HEADER),
            HeaderValue::from_str(&signature).unwrap_or(HeaderValue::from_static("")),
        ),
    ];
    match client
        .post(&delivery.url, &headers, Bytes::from(body))
        .await
    {
        Ok(status) => Outcome::Answered(status.as_u16()),
        Err(e) => Outcome::Failed(e),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;
    use clap::Parser;
    use ipc_protocol::AccountId;
    use std::sync::Mutex as StdMutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: WebhookArgs,
    }

    fn args(url: Option<&str>) -> WebhookArgs {
        let mut argv = vec![
            "supervisor".to_owned(),
            "--webhook-secret".into(),
            "whsec-test".into(),
            "--webhook-backoff-base-ms".into(),
            "10".into(),
            "--webhook-backoff-max-ms".into(),
            "40".into(),
        ];
        if let Some(url) = url {
            argv.extend(["--webhook-url".into(), url.to_owned()]);
        }
        Cli::try_parse_from(argv).expect("flags").args
    }

    #[derive(Clone, Debug)]
    struct Seen {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// A receiver on 127.0.0.1:0 answering the given statuses in turn, then 200.
    async fn receiver(statuses: Vec<u16>) -> (String, Arc<StdMutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                let request = loop {
                    let Ok(n) = sock.read(&mut buf).await else {
                        break None;
                    };
                    if n == 0 {
                        break None;
                    }
                    raw.extend_from_slice(&buf[..n]);
                    if let Some(parsed) = parse(&raw) {
                        break Some(parsed);
                    }
                };
                let Some(request) = request else { continue };
                log.lock().expect("log").push(request);
                let status = statuses.next().unwrap_or(200);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = sock.write_all(answer.as_bytes()).await;
            }
        });
        (url, seen)
    }

    fn parse(raw: &[u8]) -> Option<Seen> {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..end]).to_string();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let body = raw.get(end + 4..)?;
        (body.len() >= len).then(|| Seen {
            headers,
            body: body[..len].to_vec(),
        })
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn count(seen: &StdMutex<Vec<Seen>>) -> usize {
        seen.lock().expect("log").len()
    }

    #[tokio::test]
    async fn an_event_is_posted_signed_and_retried_until_a_2xx() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, seen) = receiver(vec![500, 503]).await;
        let cache = Arc::new(Cache::default());
        let (hub, sender) =
            setup(&args(Some(&url)), dir.path(), cache.clone(), &[]).expect("setup");
        let token = CancellationToken::new();
        let task = tokio::spawn(sender.run(token.clone()));

        let account = AccountId::parse("acct").expect("id");
        let event = cache.events.publish(
            EventKind::AccountStatus,
            &account,
            serde_json::json!({"status": "needs_qr", "text": "h\u{e9}"}),
        );
        wait_for("three attempts", || count(&seen) >= 3).await;
        wait_for("the pending set to empty", || {
            hub.stats.pending.load(Ordering::Relaxed) == 0
        })
        .await;
        let seen = seen.lock().expect("log").clone();
        assert_eq!(seen.len(), 3, "two refusals, then delivered once");
        let body = serde_json::to_vec(&*event).expect("json");
        for request in &seen {
            assert_eq!(request.body, body, "the exact event bytes");
            assert_eq!(
                request.header("x-wafleet-event-id"),
                Some(event.id.to_string().as_str())
            );
            let signature = request.header("x-wafleet-signature").expect("signed");
            let t: u64 = signature
                .strip_prefix("t=")
                .and_then(|s| s.split_once(','))
                .and_then(|(t, _)| t.parse().ok())
                .expect("t=");
            let secret = Secret::new("whsec-test".to_owned());
            assert_eq!(signature, sign::signature(&secret, t, &body));
            assert_eq!(request.header("content-type"), Some("application/json"));
        }
        let mut metrics = String::new();
        hub.render_metrics(&mut metrics);
        assert!(
            metrics.contains("wafleet_webhook_deliveries_total{result=\"ok\"} 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("wafleet_webhook_deliveries_total{result=\"failed\"} 2\n"),
            "{metrics}"
        );
        assert!(metrics.contains("wafleet_webhook_pending 0\n"), "{metrics}");
        let left = std::fs::read_dir(dir.path().join(pending::PENDING_DIR))
            .expect("list")
            .count();
        assert_eq!(left, 0, "the delivered file is removed");
        token.cancel();
        task.await.expect("stops");
    }

    #[tokio::test]
    async fn a_delivery_left_on_disk_by_a_crash_is_sent_at_start_in_id_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, seen) = receiver(vec![]).await;
        let (store, _) = PendingStore::open(dir.path()).expect("open");
        let now = UnixMillis::now().0;
        for (id, body) in [(7u64, "{\"id\":7}"), (5, "{\"id\":5}")] {
            let delivery = Delivery {
                event_id: id,
                target: TargetKind::Account,
                url: WebhookUrl::parse(&url).expect("url"),
                kind: "message.received".into(),
                timestamp_ms: now,
            };
            store.write(&delivery, body.as_bytes()).expect("write");
        }
        let expired = Delivery {
            event_id: 3,
            target: TargetKind::Global,
            url: WebhookUrl::parse(&url).expect("url"),
            kind: "account.status".into(),
            timestamp_ms: now - 2 * 86_400_000,
        };
        store.write(&expired, b"{\"id\":3}").expect("write");

        // No URL configured now: what is pending still goes where it was meant to.
        let cache = Arc::new(Cache::default());
        let (hub, sender) = setup(&args(None), dir.path(), cache, &[]).expect("setup");
        assert_eq!(hub.stats.pending.load(Ordering::Relaxed), 3);
        let token = CancellationToken::new();
        let task = tokio::spawn(sender.run(token.clone()));
        wait_for("both deliveries", || count(&seen) >= 2).await;
        wait_for("the pending set to empty", || {
            hub.stats.pending.load(Ordering::Relaxed) == 0
        })
        .await;
        let bodies: Vec<_> = seen
            .lock()
            .expect("log")
            .iter()
            .map(|s| String::from_utf8_lossy(&s.body).to_string())
            .collect();
        assert_eq!(
            bodies,
            ["{\"id\":5}", "{\"id\":7}"],
            "id order; the expired one never sent"
        );
        assert_eq!(hub.stats.expired.load(Ordering::Relaxed), 1);
        token.cancel();
        task.await.expect("stops");
    }

    #[tokio::test]
    async fn a_sender_that_falls_behind_the_feed_replays_what_it_missed_from_the_ring() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, seen) = receiver(vec![]).await;
        let cache = Arc::new(Cache::default());
        let (hub, sender) = setup(&args(None), dir.path(), cache.clone(), &[]).expect("setup");
        let hooked = Account {
            id: AccountId::parse("hooked").expect("id"),
            name: "Hooked".into(),
            phone: None,
            created_at: UnixMillis(1),
            enabled: true,
            webhook_url: Some(WebhookUrl::parse(&url).expect("url")),
            browser: None,
            conflict_since: None,
        };
        cache.insert(crate::cache::AccountView::idle(hooked.clone(), false));
        for n in 0..3 {
            cache.events.publish(
                EventKind::MessageReceived,
                &hooked.id,
                serde_json::json!({ "n": n }),
            );
        }
        // Enough unhooked events to push the first ones out of the live feed's buffer (but
        // not out of the ring) before the sender reads anything.
        let quiet = AccountId::parse("quiet").expect("id");
        for _ in 0..1100 {
            cache
                .events
                .publish(EventKind::AccountStatus, &quiet, serde_json::Value::Null);
        }
        let token = CancellationToken::new();
        let task = tokio::spawn(sender.run(token.clone()));
        wait_for("the hooked account's four events", || count(&seen) >= 4).await;
        wait_for("the pending set to empty", || {
            hub.stats.pending.load(Ordering::Relaxed) == 0
        })
        .await;
        let kinds: Vec<_> = seen
            .lock()
            .expect("log")
            .iter()
            .map(|s| {
                serde_json::from_slice::<serde_json::Value>(&s.body).expect("json")["type"].clone()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "account.status",
                "message.received",
                "message.received",
                "message.received"
            ]
        );
        token.cancel();
        task.await.expect("stops");
    }

    #[tokio::test]
    async fn on_cancel_the_events_still_waiting_are_stored_for_the_next_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let refused = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            format!("http://{}/", l.local_addr().expect("addr"))
        };
        let cache = Arc::new(Cache::default());
        let (_, sender) =
            setup(&args(Some(&refused)), dir.path(), cache.clone(), &[]).expect("setup");
        let account = AccountId::parse("late").expect("id");
        let event = cache.events.publish(
            EventKind::AccountStatus,
            &account,
            serde_json::json!({"status": "stopped"}),
        );
        let token = CancellationToken::new();
        token.cancel();
        sender.run(token).await;
        let (_, loaded) = PendingStore::open(dir.path()).expect("reopen");
        let ids: Vec<u64> = loaded.deliveries.iter().map(|d| d.event_id).collect();
        assert_eq!(ids, [event.id]);
    }

    #[test]
    fn an_account_with_its_own_url_gets_two_targets_unless_they_are_the_same() {
        let a = WebhookUrl::parse("https://a.example/h").expect("url");
        let g = WebhookUrl::parse("https://g.example/h").expect("url");
        assert_eq!(
            targets(Some(a.clone()), Some(g.clone())),
            [
                (TargetKind::Global, g.clone()),
                (TargetKind::Account, a.clone())
            ]
        );
        assert_eq!(
            targets(Some(g.clone()), Some(g.clone())),
            [(TargetKind::Global, g.clone())]
        );
        assert_eq!(targets(Some(a.clone()), None), [(TargetKind::Account, a)]);
        assert!(targets(None, None).is_empty());
    }
}
