//! `supervisor healthcheck` (issue 10, item 7), the real binary: exit 0 against a running
//! supervisor, found by `PORT` as a container's HEALTHCHECK finds it or by `--url`; exit 1 with
//! a one-line reason against a closed port and against a service that says it is unhealthy.

use std::net::TcpListener;
use std::process::{Command, Output};

use wa_sim::harness::process::binary;
use wa_sim::harness::{Supervisor, Volume};

/// Runs `supervisor healthcheck <args>` with `env`, nothing else of the test's environment.
fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary("supervisor"))
        .arg("healthcheck")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run supervisor healthcheck")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim_end().to_owned()
}

#[test]
fn healthcheck_exits_0_against_a_running_supervisor_and_1_against_a_closed_port() {
    let volume = Volume::new();
    let sup = Supervisor::start(&volume.sessions(), &[]);
    let port = sup.addr().port().to_string();

    // As the image's HEALTHCHECK runs it: PORT from the container's environment.
    let out = healthcheck(&[], &[("PORT", &port)]);
    assert!(out.status.success(), "{out:?}");
    let line = text(&out.stdout);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with(&format!("healthy: 127.0.0.1:{port} answered 200")),
        "{line}"
    );

    let url = format!("http://{}/health", sup.addr());
    let out = healthcheck(&["--url", &url], &[]);
    assert!(out.status.success(), "{out:?}");

    // A closed port: nothing listening, said in one line.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port().to_string();
    drop(closed);
    let out = healthcheck(&["--port", &closed_port], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let reason = text(&out.stderr);
    assert_eq!(reason.lines().count(), 1, "{reason}");
    assert!(
        reason.starts_with("nothing listening on 127.0.0.1:"),
        "{reason}"
    );

    // A path that answers 404 is not healthy either.
    let out = healthcheck(&["--url", &format!("http://{}/nope", sup.addr())], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("answered 404"), "{out:?}");

    // The help names the subcommand the Dockerfile's HEALTHCHECK runs.
    let out = healthcheck(&["--help"], &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("--url"), "{out:?}");
}

#[test]
fn healthcheck_exits_1_when_the_service_says_it_is_unhealthy() {
    let Some(volume) = Volume::on_tmpfs(2048) else {
        eprintln!("skipped: no tmpfs of our own here (needs root)");
        return;
    };
    let sup = Supervisor::start(&volume.sessions(), &[]);
    // The volume turns read-only: /health says 503.
    volume.set_readonly(true);
    let port = sup.addr().port().to_string();
    let out = wa_sim::harness::wait_until("healthcheck to fail", super::STATE_DEADLINE, || {
        let out = healthcheck(&[], &[("PORT", &port)]);
        if out.status.code() == Some(1) {
            Ok(out)
        } else {
            Err(format!("{out:?}"))
        }
    });
    let reason = text(&out.stderr);
    assert!(reason.starts_with("unhealthy: "), "{reason}");
    assert!(reason.contains("answered 503"), "{reason}");
    volume.set_readonly(false);
}
