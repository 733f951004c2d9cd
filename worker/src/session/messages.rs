//! The account's messages as the supervisor asks for them (architecture.md, "Messages").
//!
//! 1. `Send`: refuse what cannot be sent (never paired, a bad recipient, a full outbox); a
//!    repeated id answers with the message already recorded; otherwise write it to the outbox
//!    durably, then answer `Accepted` (the API answers 202 only then).
//! 2. `Query`: one message by id, or a page of one direction, oldest first, kept under the IPC
//!    frame cap.

use ipc_protocol::{
    Direction, MessageQuery, MessageRecord, MessageStatus, OutgoingText, QueryAnswer, SendOutcome,
    SendRefusal, UnixMillis,
};
use tracing::{info, warn};

use crate::store::messages::MessageStore;
use crate::wa::recipient::parse_recipient;

/// The most messages one page holds.
pub(crate) const MAX_PAGE: u32 = 500;
/// A page stops growing past this much text, well under the IPC frame cap of 1 MiB.
const MAX_PAGE_BYTES: usize = 512 * 1024;

/// Step 1.
pub(crate) fn queue(
    store: Option<&mut MessageStore>,
    paired: bool,
    limit: u32,
    message: OutgoingText,
) -> SendOutcome {
    let refused = |refusal| SendOutcome::Refused { refusal };
    if !paired {
        return refused(SendRefusal::NotPaired);
    }
    let to = match parse_recipient(&message.to) {
        Ok(jid) => jid,
        Err(e) => return refused(SendRefusal::InvalidRecipient(e.to_string())),
    };
    let Some(store) = store else {
        return refused(SendRefusal::Storage(
            "the message store could not be opened".into(),
        ));
    };
    match store.get(Direction::Out, &message.id) {
        Ok(Some(existing)) => {
            return SendOutcome::Accepted {
                message: Box::new(existing),
            }
        }
        Ok(None) => {}
        Err(e) => return refused(SendRefusal::Storage(e.to_string())),
    }
    if store.queued_count() >= limit as usize {
        return refused(SendRefusal::OutboxFull { limit });
    }
    let record = MessageRecord {
        id: message.id,
        direction: Direction::Out,
        chat: to.to_string(),
        sender: None,
        push_name: None,
        kind: "text".into(),
        text: Some(message.text),
        status: MessageStatus::Queued,
        timestamp: UnixMillis::now(),
        sent_at: None,
        delivered_at: None,
        read_at: None,
        error: None,
        cursor: store.next_cursor(),
    };
    match store.put(&record) {
        Ok(()) => {
            info!(id = %record.id, queued = store.queued_count(), "message queued");
            SendOutcome::Accepted {
                message: Box::new(record),
            }
        }
        Err(e) => {
            warn!(error = %e, "message could not be queued");
            refused(SendRefusal::Storage(e.to_string()))
        }
    }
}

/// Step 2.
pub(crate) fn answer(store: Option<&MessageStore>, query: MessageQuery) -> QueryAnswer {
    let Some(store) = store else {
        return QueryAnswer::Failed {
            error: "the message store could not be opened".into(),
        };
    };
    let result = match query {
        MessageQuery::Get { id } => store.find(&id).map(|message| QueryAnswer::One {
            message: message.map(Box::new),
        }),
        MessageQuery::List {
            direction,
            after,
            limit,
        } => store
            .list(
                direction,
                after,
                limit.clamp(1, MAX_PAGE) as usize,
                MAX_PAGE_BYTES,
            )
            .map(|(messages, more)| QueryAnswer::Page {
                next: more.then(|| messages.last().map(|m| m.cursor)).flatten(),
                messages,
            }),
    };
    result.unwrap_or_else(|e| QueryAnswer::Failed {
        error: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(id: &str, to: &str) -> OutgoingText {
        OutgoingText {
            id: id.into(),
            to: to.into(),
            text: "hello".into(),
        }
    }

    #[test]
    fn queues_durably_once_per_id_and_refuses_what_cannot_go() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = MessageStore::open(dir.path()).expect("open");
        let to = "+40712345678";
        assert_eq!(
            queue(Some(&mut store), false, 10, text("A", to)),
            SendOutcome::Refused {
                refusal: SendRefusal::NotPaired
            }
        );
        assert!(matches!(
            queue(Some(&mut store), true, 10, text("A", "nobody")),
            SendOutcome::Refused {
                refusal: SendRefusal::InvalidRecipient(_)
            }
        ));
        let SendOutcome::Accepted { message } = queue(Some(&mut store), true, 2, text("A", to))
        else {
            panic!("accepted")
        };
        assert_eq!(message.chat, "40712345678@s.whatsapp.net");
        assert_eq!(message.status, MessageStatus::Queued);
        let again = queue(Some(&mut store), true, 2, text("A", to));
        assert_eq!(
            again,
            SendOutcome::Accepted {
                message: message.clone()
            },
            "same id, same message"
        );
        assert_eq!(store.queued_count(), 1);
        assert!(matches!(
            queue(Some(&mut store), true, 2, text("B", to)),
            SendOutcome::Accepted { .. }
        ));
        assert_eq!(
            queue(Some(&mut store), true, 2, text("C", to)),
            SendOutcome::Refused {
                refusal: SendRefusal::OutboxFull { limit: 2 }
            }
        );
        let reopened = MessageStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.queued_count(), 2, "durable");
        assert_eq!(
            answer(Some(&reopened), MessageQuery::Get { id: "A".into() }),
            QueryAnswer::One {
                message: Some(message)
            }
        );
    }

    #[test]
    fn pages_carry_the_next_cursor_only_when_more_may_follow() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = MessageStore::open(dir.path()).expect("open");
        for id in ["A", "B", "C"] {
            queue(Some(&mut store), true, 10, text(id, "40712345678"));
        }
        let page = |after, limit| {
            answer(
                Some(&store),
                MessageQuery::List {
                    direction: Direction::Out,
                    after,
                    limit,
                },
            )
        };
        let QueryAnswer::Page { messages, next } = page(None, 2) else {
            panic!("page")
        };
        assert_eq!(messages.len(), 2);
        assert_eq!(next, Some(messages[1].cursor));
        let QueryAnswer::Page { messages, next } = page(next, 2) else {
            panic!("page")
        };
        assert_eq!(
            messages.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["C"]
        );
        assert_eq!(next, None);
    }
}
