//! The IPC socket: only the children the supervisor spawned get a link.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use ipc_protocol::{encode, AccountId, ToSupervisor, PROTOCOL_VERSION};
use wa_sim::harness::{Supervisor, Volume};

use super::{all_linked, STATE_DEADLINE};

fn hello_is_dropped(socket: &str, account: &str, version: u32) {
    let mut stream = UnixStream::connect(socket).expect("connect to the ipc socket");
    stream
        .set_read_timeout(Some(STATE_DEADLINE))
        .expect("timeout");
    let hello = ToSupervisor::Hello {
        account_id: AccountId::parse(account).expect("valid"),
        pid: std::process::id(),
        version,
    };
    stream
        .write_all(&encode(&hello).expect("encode"))
        .expect("send hello");
    let mut buf = [0u8; 64];
    let n = stream
        .read(&mut buf)
        .expect("the supervisor closes the link");
    assert_eq!(n, 0, "no command is ever sent to an impostor");
}

#[test]
fn a_hello_that_is_not_from_a_spawned_child_is_dropped_and_logged() {
    let volume = Volume::new();
    volume.add_account("real", true);
    let sup = Supervisor::start(&volume.sessions(), &[]);
    sup.wait_dashboard("the real worker linked", STATE_DEADLINE, |d| {
        all_linked(d, 1)
    });
    let socket = sup.wait_event("ipc listening", Duration::from_secs(5))["socket"]
        .as_str()
        .expect("socket path in the log")
        .to_owned();
    let dir = std::path::Path::new(&socket).parent().expect("runtime dir");
    let mode = std::fs::metadata(dir).expect("runtime dir").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700,
        "private runtime dir"
    );

    hello_is_dropped(&socket, "real", PROTOCOL_VERSION);
    sup.wait_event(
        "ipc hello does not match a worker we spawned",
        STATE_DEADLINE,
    );
    hello_is_dropped(&socket, "real", PROTOCOL_VERSION + 1);
    sup.wait_event("ipc hello with another protocol version", STATE_DEADLINE);

    let real = sup.account("real");
    assert_eq!(
        real["status"], "reconnecting",
        "the real worker keeps its link"
    );
}
