//! Logging out at the admin's request (wa-protocol.md §6.9).
//!
//! 1. Online: send `<iq xmlns=md type=set><remove-companion-device jid reason=user_initiated/>`
//!    and wait for the answer, at most [`LOGOUT_DEADLINE`].
//! 2. The answer (or the deadline) ends the connection as `logged_out`; the creds are archived.
//! 3. Not online: log out locally at once; the phone still lists the device until removed there.

use std::time::Duration;

use super::actions::Actions;
use super::events::Disconnect;
use super::request::Purpose;
use super::stage::{Ctx, Stage};
use crate::wa::binary::{Jid, Node};

/// How long a logout waits for the server to confirm the unlink.
pub(crate) const LOGOUT_DEADLINE: Duration = Duration::from_secs(5);

/// Step 1, or step 3 when the connection is not logged in.
pub(crate) fn start(ctx: &mut Ctx<'_>) -> Actions {
    if !ctx.stage.is_online() {
        return Actions::end(Disconnect::logged_out("logged out by the admin".into()));
    }
    let own = ctx
        .creds
        .and_then(|c| c.me.as_ref())
        .and_then(|me| me.jid.parse::<Jid>().ok());
    let mut unlink = Node::new("remove-companion-device").attr("reason", "user_initiated");
    if let Some(jid) = own {
        unlink = unlink.jid_attr("jid", jid);
    }
    *ctx.stage = Stage::ExpectLogoutConfirmation {
        deadline: ctx.now + LOGOUT_DEADLINE,
    };
    Actions::send(ctx.requests.iq(Purpose::Logout, "md", "set", vec![unlink]))
}

/// Step 2: the server answered.
pub(crate) fn on_answer(_ctx: &mut Ctx<'_>, _answer: &Node) -> Actions {
    Actions::end(Disconnect::logged_out("logged out by the admin".into()))
}

/// Step 2: the server did not answer in time.
pub(crate) fn on_deadline(_ctx: &mut Ctx<'_>) -> Actions {
    Actions::end(Disconnect::logged_out(
        "logged out; the server did not confirm in time".into(),
    ))
}
