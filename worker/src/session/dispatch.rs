//! Which handler a stanza, an IQ answer or a timer goes to (whatsmeow's `nodeHandlers`).
//!
//! Every handler is a decision: `fn(&mut Ctx, &Node) -> Actions`, living in the file of its
//! concern. This file only routes.

use tracing::{debug, warn};

use super::actions::Actions;
use super::request::Purpose;
use super::stage::{Ctx, Stage};
use super::{events, keepalive, login, logout, pair, pair_code, pushes, receipts, receive, send};
use crate::wa::binary::Node;

/// A stanza handler.
pub(crate) type Handler = fn(&mut Ctx<'_>, &Node) -> Actions;

/// Top-level stanzas by tag.
const HANDLERS: &[(&str, Handler)] = &[
    ("iq", on_iq),
    ("success", login::on_success),
    ("failure", events::on_failure),
    ("stream:error", events::on_stream_error),
    ("xmlstreamend", events::on_stream_end),
    ("ib", events::on_ib),
    ("message", receive::on_message),
    ("receipt", receipts::on_receipt),
    ("notification", receive::on_notification),
    ("call", pushes::on_call),
    ("status", receive::on_status),
    ("ack", send::on_ack),
];

/// Routes one stanza from the server to its handler.
pub(crate) fn on_node(ctx: &mut Ctx<'_>, node: &Node) -> Actions {
    match HANDLERS.iter().find(|(tag, _)| *tag == node.tag) {
        Some((_, handler)) => handler(ctx, node),
        None => {
            debug!(tag = %node.tag, "stanza without a handler ignored");
            Actions::none()
        }
    }
}

/// Routes the stage's timer, and the message in flight's.
pub(crate) fn on_timer(ctx: &mut Ctx<'_>) -> Actions {
    if ctx.outbound.as_ref().is_some_and(|o| ctx.now >= o.deadline) {
        return send::on_deadline(ctx);
    }
    let due = ctx.stage.deadline().is_some_and(|at| ctx.now >= at);
    if !due {
        return Actions::none();
    }
    match ctx.stage {
        Stage::ExpectScan(..) => pair::show_next_qr(ctx),
        Stage::Online(_) => keepalive::on_tick(ctx),
        Stage::ExpectLogoutConfirmation { .. } => logout::on_deadline(ctx),
        Stage::ExpectPairDevice | Stage::ExpectRestart | Stage::ExpectSuccess => Actions::none(),
    }
}

/// `<iq>`: server requests by their child (or, for its ping, namespace), answers to ours by the
/// purpose we recorded.
fn on_iq(ctx: &mut Ctx<'_>, iq: &Node) -> Actions {
    if pushes::is_server_ping(iq) {
        return pushes::on_server_ping(ctx, iq);
    }
    let kind = iq.attr_str("type").unwrap_or_default();
    if kind == "set" {
        if let Some(pair_device) = iq.child("pair-device") {
            return pair::on_pair_device(ctx, iq, pair_device);
        }
        if iq.child("pair-success").is_some() {
            return pair::on_pair_success(ctx, iq);
        }
    }
    let id = iq.attr_str("id").unwrap_or_default();
    let Some(purpose) = ctx.requests.answer(&id) else {
        debug!(%iq, "unsolicited iq ignored");
        return Actions::none();
    };
    let ok = kind == "result";
    match purpose {
        Purpose::Ping => keepalive::on_pong(ctx, iq),
        Purpose::Logout => logout::on_answer(ctx, iq),
        Purpose::LinkCodeHello => pair_code::on_hello_answer(ctx, iq),
        Purpose::LinkCodeFinish => pair_code::on_finish_answer(ctx, iq),
        Purpose::PrekeyCount if ok => login::on_prekey_count(ctx, iq),
        Purpose::Devices if ok => send::on_devices(ctx, iq),
        Purpose::Bundles if ok => send::on_bundles(ctx, iq),
        Purpose::GroupInfo if ok => send::on_group_info(ctx, iq),
        Purpose::Devices | Purpose::Bundles | Purpose::GroupInfo => send::on_iq_error(ctx, iq),
        Purpose::PrekeyCount | Purpose::PrekeyUpload | Purpose::Active | Purpose::CleanDirty => {
            if !ok {
                warn!(?purpose, %iq, "iq failed");
            }
            Actions::none()
        }
    }
}
