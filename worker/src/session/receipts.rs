//! Incoming receipts: delivery, read and retry reports about messages we sent
//! (wa-messaging.md §6.11). Each one is acknowledged.

use super::actions::Actions;
use super::receive::acked;
use super::stage::Ctx;
use crate::wa::binary::Node;

/// `<receipt>`: acknowledged.
pub(crate) fn on_receipt(_ctx: &mut Ctx<'_>, receipt: &Node) -> Actions {
    acked(receipt)
}
