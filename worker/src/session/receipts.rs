//! Incoming receipts: delivery, read and retry reports about messages we sent
//! (wa-messaging.md §6.11). Each one is acknowledged; a delivery or read receipt moves our
//! message on (never back), and the change is recorded before the ack; a retry receipt gets
//! the message encrypted again for the device that asked ([`super::resend`]).

use ipc_protocol::{Direction, MessageStatus, UnixMillis};
use tracing::debug;

use super::actions::{Actions, Persist};
use super::receive::acked;
use super::stage::Ctx;
use crate::wa::binary::Node;

/// `<receipt>`: update our messages it reports on, then ack it.
pub(crate) fn on_receipt(ctx: &mut Ctx<'_>, receipt: &Node) -> Actions {
    let kind = receipt.attr_str("type");
    let status = match kind.as_deref() {
        None | Some("inactive") => Some(MessageStatus::Delivered),
        Some("read" | "played") => Some(MessageStatus::Read),
        _ => None,
    };
    let mut actions = Actions::none();
    if let (Some(status), Some(store)) = (status, ctx.messages) {
        let at = receipt
            .attr_str("t")
            .and_then(|t| t.parse::<u64>().ok())
            .map_or_else(UnixMillis::now, |s| UnixMillis(s.saturating_mul(1000)));
        for id in ids(receipt) {
            let Ok(Some(mut record)) = store.get(Direction::Out, &id) else {
                continue;
            };
            if record.status.rank() >= status.rank() || record.status == MessageStatus::Queued {
                continue;
            }
            debug!(%id, ?status, "receipt");
            record.status = status;
            match status {
                MessageStatus::Read => {
                    record.read_at = Some(at);
                    record.delivered_at.get_or_insert(at);
                }
                _ => record.delivered_at = Some(at),
            }
            actions = actions.and_persist(Persist::Message(record));
        }
    }
    if kind.as_deref() == Some("retry") {
        let resend = super::resend::on_retry(ctx, receipt);
        actions.persist.extend(resend.persist);
        actions.send.extend(resend.send);
    }
    let ack = acked(receipt);
    actions.send.extend(ack.send);
    actions
}

/// The message ids a receipt names: `id`, then `<list><item id/>…`.
fn ids(receipt: &Node) -> Vec<String> {
    let mut ids: Vec<String> = receipt
        .attr_str("id")
        .map(|i| i.into_owned())
        .into_iter()
        .collect();
    if let Some(list) = receipt.child("list") {
        ids.extend(
            list.children_by_tag("item")
                .filter_map(|i| i.attr_str("id").map(|i| i.into_owned())),
        );
    }
    ids
}
