//! The real `wa-sim` binary under test: started on loopback ephemeral ports, its first stdout
//! line read for the URLs and the root key (and, with `--tls`, the CA certificate file), its
//! control API called over HTTP, killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::http;
use super::process::binary;
use super::wait::wait_until;

/// A running simulator.
#[derive(Debug)]
pub struct Sim {
    child: Child,
    /// `ws://127.0.0.1:PORT/ws/chat`, or `wss://…` with `--tls`.
    pub ws_url: String,
    /// The root public key its certificates chain to, hex.
    pub root_public_key: String,
    /// With `--tls`: the PEM file of the CA its `wss://` certificate chains to.
    pub ca_cert_file: Option<String>,
    control: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    /// Where `ca.pem` lives when the harness chose the directory; removed after the sim.
    _tls_dir: Option<tempfile::TempDir>,
}

impl Sim {
    /// Starts `wa-sim` with `args` on loopback and waits for its first line. With `--tls` and
    /// no `--tls-dir`, the CA certificate goes to a temp directory of the harness's, removed
    /// when the `Sim` is dropped (the sim itself is killed, so it cannot).
    ///
    /// # Panics
    /// When it does not start or its first line is not the expected JSON.
    pub fn start(args: &[&str]) -> Sim {
        let tls_dir = (args.contains(&"--tls") && !args.iter().any(|a| a.starts_with("--tls-dir")))
            .then(|| {
                tempfile::Builder::new()
                    .prefix("wa-sim-tls-")
                    .tempdir()
                    .expect("a temp directory for the sim's CA")
            });
        let mut command = Command::new(binary("wa-sim"));
        command
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(args);
        if let Some(dir) = &tls_dir {
            command.arg("--tls-dir").arg(dir.path());
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wa-sim");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().expect("log lock").push(line);
                }
            });
        }
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("wa-sim printed its first line");
        let info: Value = serde_json::from_str(&first).expect("first line is json");
        let field = |k: &str| {
            info[k]
                .as_str()
                .unwrap_or_else(|| panic!("{k} in {first}"))
                .to_owned()
        };
        let control_url = field("control_url");
        let control = control_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("control_url is http://ip:port");
        let ca_cert_file = info["ca_cert_file"].as_str().map(str::to_owned);
        assert_eq!(
            ca_cert_file.is_some(),
            args.contains(&"--tls"),
            "ca_cert_file with --tls only: {first}"
        );
        Sim {
            child,
            ws_url: field("ws_url"),
            root_public_key: field("root_public_key"),
            ca_cert_file,
            control,
            log,
            _tls_dir: tls_dir,
        }
    }

    /// What a supervisor (and so every worker) needs to reach this sim: `WA_WS_URL`,
    /// `WA_TRUST_ROOT`, and with `--tls` `WA_TLS_CA_FILE`.
    pub fn connection_env(&self) -> Vec<(&str, &str)> {
        let mut env = vec![
            ("WA_WS_URL", self.ws_url.as_str()),
            ("WA_TRUST_ROOT", self.root_public_key.as_str()),
        ];
        if let Some(ca) = &self.ca_cert_file {
            env.push(("WA_TLS_CA_FILE", ca.as_str()));
        }
        env
    }

    /// `http://127.0.0.1:PORT`: the control API (its `/sw.js` is a version URL for tests).
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control)
    }

    /// `POST path` with a JSON body; returns the status and the JSON answer.
    ///
    /// # Panics
    /// On I/O errors or a body that is not JSON.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let text = body.to_string();
        let r = http::request(
            self.control,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(text.as_bytes()),
        )
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        (r.status, r.json())
    }

    /// `GET path` as JSON.
    ///
    /// # Panics
    /// On I/O errors or a non-200 answer.
    pub fn get(&self, path: &str) -> Value {
        let r = http::request(self.control, "GET", path, &[], None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }

    /// Scans `qr` as the phone `phone`; returns the device JID.
    ///
    /// # Panics
    /// When the sim refuses the scan.
    pub fn scan(&self, qr: &str, phone: &str) -> String {
        let (status, body) = self.post("/scan", &serde_json::json!({ "qr": qr, "phone": phone }));
        assert_eq!(status, 200, "scan refused: {body}");
        body["jid"].as_str().expect("jid").to_owned()
    }

    /// The live connections: `[{conn_id, jid, state, connected_at, routing_info, tls}]`.
    pub fn sessions(&self) -> Vec<Value> {
        self.get("/sessions")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The logged-in connection of device `jid`, if any.
    pub fn session_of(&self, jid: &str) -> Option<Value> {
        self.sessions().into_iter().find(|s| s["jid"] == jid)
    }

    /// The counters: registrations, logins, connections.
    pub fn stats(&self) -> Value {
        self.get("/stats")
    }

    /// Waits until device `jid` has a logged-in connection; returns its `conn_id`.
    pub fn wait_logged_in(&self, jid: &str, deadline: Duration) -> Value {
        wait_until(&format!("{jid} logged in at the sim"), deadline, || {
            self.session_of(jid)
                .filter(|s| s["state"] == "logged_in")
                .map(|s| s["conn_id"].clone())
                .ok_or_else(|| serde_json::to_string(&self.sessions()).unwrap_or_default())
        })
    }

    /// Makes the phone of `from` (an account, or any other number: a contact) send `text` to
    /// `to` (a user or group JID, or a phone number), end-to-end encrypted; returns the id.
    ///
    /// # Panics
    /// When the sim refuses the send.
    pub fn send_from_phone(&self, from: &str, to: &str, text: &str) -> String {
        let body = serde_json::json!({ "from": from, "to": to, "text": text });
        let (status, answer) = self.post("/send", &body);
        assert_eq!(status, 200, "send refused: {answer}");
        answer["id"].as_str().expect("id").to_owned()
    }

    /// What the phone of `who` (a phone number or user JID) decrypted:
    /// `[{id, from, chat, text, kind, t[, error]}]`, oldest first.
    pub fn inbox(&self, who: &str) -> Vec<Value> {
        self.get(&format!("/inbox?jid={who}"))["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until the phone of `who` has decrypted (or failed to decrypt) message `id`;
    /// returns its inbox row.
    pub fn wait_inbox(&self, who: &str, id: &str, deadline: Duration) -> Value {
        wait_until(
            &format!("message {id} at the phone of {who}"),
            deadline,
            || {
                let inbox = self.inbox(who);
                inbox
                    .iter()
                    .find(|m| m["id"] == id)
                    .cloned()
                    .ok_or_else(|| serde_json::to_string(&inbox).unwrap_or_default())
            },
        )
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- wa-sim log ----\n{}\n---- end ----",
                self.log().join("\n")
            );
        }
    }
}
