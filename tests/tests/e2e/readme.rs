//! The README's command sequences, run as a newcomer pastes them: "Try it without a phone" (the
//! simulator, the supervisor, adding an account, scanning its QR and watching it connect, then
//! pairing a second one by code) and the Admin API's curl block, each in a fresh `bash`. Only what a test must change is
//! changed: the fixed ports become free loopback ports, `/tmp/wafleet-demo` a temp dir, and
//! `./target/debug/` the directory the binaries were built in.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use wa_sim::harness::process::binary;
use wa_sim::harness::wait_until;

use super::STATE_DEADLINE;

/// The README at the workspace root.
fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ```sh blocks of the section headed `heading` (up to the next `## `), in order.
fn sh_blocks(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &readme[start + heading.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(body.join("\n"));
        }
    }
    blocks
}

/// A free loopback port (bound, then released for the command to take).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("addr").port()
}

/// What a test must change in a block.
struct Rewrite {
    sim_ws: u16,
    sim_control: u16,
    api: u16,
    demo_dir: PathBuf,
    bin_dir: PathBuf,
}

impl Rewrite {
    fn apply(&self, block: &str) -> String {
        block
            .replace(":7001", &format!(":{}", self.sim_ws))
            .replace(":7002", &format!(":{}", self.sim_control))
            .replace(":8080", &format!(":{}", self.api))
            .replace("/tmp/wafleet-demo", &self.demo_dir.display().to_string())
            .replace("./target/debug/", &format!("{}/", self.bin_dir.display()))
    }
}

/// A long-running block (`bash -c`, in its own process group), stopped with its whole group.
/// What it prints goes to `<cwd>/<what>.out`, its log to `<cwd>/<what>.log` (shown when the
/// test fails).
struct Running {
    child: Child,
    what: &'static str,
    log: PathBuf,
}

impl Running {
    fn start(what: &'static str, script: &str, env: &[(&str, &str)], cwd: &Path) -> Self {
        let log = cwd.join(format!("{what}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let out = std::fs::File::create(cwd.join(format!("{what}.out"))).expect("out file");
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(file)
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
        Running { child, what, log }
    }

    /// The first line it prints, once it has.
    fn first_line(&self) -> String {
        wait_until(
            &format!("{}'s first line", self.what),
            STATE_DEADLINE,
            || {
                let text = std::fs::read_to_string(self.log.with_extension("out"))
                    .map_err(|e| e.to_string())?;
                match text.split_once('\n') {
                    Some((line, _)) => Ok(line.to_owned()),
                    None => Err(text),
                }
            },
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- {} (last lines)", self.what);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        let group = Pid::from_raw(self.child.id() as i32);
        // SIGTERM first, so the supervisor stops its workers; then make sure.
        let _ = killpg(group, Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a block to its end in a fresh `bash -e`, under a deadline.
fn run_block(what: &str, script: &str, env: &[(&str, &str)], cwd: &Path) -> Output {
    let output = Command::new("timeout")
        .args(["--kill-after=5", "60", "bash", "-e", "-c", script])
        .current_dir(cwd)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{script}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn the_try_it_blocks_and_the_admin_api_block_work_when_pasted() {
    let readme = readme();
    let try_it = sh_blocks(&readme, "## Try it without a phone");
    assert!(
        try_it.len() >= 4,
        "four blocks: sim, supervisor, account by QR, account by code"
    );
    let admin = sh_blocks(&readme, "## Admin API");
    assert!(!admin.is_empty(), "the Admin API's curl block");

    let scratch = tempfile::tempdir().expect("temp dir");
    let sup_bin = binary("supervisor");
    binary("wa-sim");
    let rewrite = Rewrite {
        sim_ws: free_port(),
        sim_control: free_port(),
        api: free_port(),
        demo_dir: scratch.path().join("wafleet-demo"),
        bin_dir: sup_bin.parent().expect("bin dir").to_path_buf(),
    };
    let cwd = scratch.path();
    // The supervisor's own keys a test must set: loopback only, and the free port.
    let port = rewrite.api.to_string();
    let base_env = [("BIND_ADDR", "127.0.0.1"), ("PORT", port.as_str())];

    // 1. The simulator, in its terminal: its first line is the one the README shows.
    let sim = Running::start("wa-sim", &rewrite.apply(&try_it[0]), &[], cwd);
    let line = sim.first_line();
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(
        ready["ws_url"],
        format!("ws://127.0.0.1:{}/ws/chat", rewrite.sim_ws)
    );

    // 2. The supervisor, in the second terminal, with the root key read from the simulator.
    let sup = Running::start("supervisor", &rewrite.apply(&try_it[1]), &base_env, cwd);
    let health = format!("http://127.0.0.1:{}/health", rewrite.api);
    wait_until("the supervisor to answer /health", STATE_DEADLINE, || {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(&health)
            .output()
            .map_err(|e| e.to_string())?;
        if out.stdout == b"200" {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stdout).into_owned())
        }
    });

    // 3. The third terminal: add, read the QR, scan it, wait for the login, look.
    let out = run_block("the account block", &rewrite.apply(&try_it[2]), &[], cwd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#""accountId":"demo""#) && stdout.contains(r#""status":"connected""#),
        "the dashboard shows the account connected:\n{stdout}"
    );
    assert!(
        stdout.contains(r#""qrCode":"data:image/png;base64,"#),
        "add-account answered with the first QR:\n{stdout}"
    );
    assert!(!stdout.contains("malformed"), "{stdout}");

    // 4. A second account, paired by phone-number code; the block ends once it is connected.
    let out = run_block(
        "the pairing-code block",
        &rewrite.apply(&try_it[3]),
        &[],
        cwd,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#""ok":true"#),
        "the phone took the code:\n{stdout}"
    );

    // The Admin API's block, with ADMIN_TOKEN set as its first line expects.
    let out = run_block(
        "the Admin API block",
        &rewrite.apply(&admin[0]),
        &[("ADMIN_TOKEN", "demo")],
        cwd,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains(r#""success":false"#),
        "every call of the block succeeds:\n{stdout}"
    );
    assert!(
        stdout.contains(r#""accountId":"account-01""#),
        "add-account named account-01, which the next lines use:\n{stdout}"
    );
    let png = std::fs::read(cwd.join("qr.png")).expect("qr.png written by the block");
    assert!(!png.is_empty());
    drop(sup);
    drop(sim);
}
