//! What a `<stream:error>` or `<failure>` means for the account (wa-protocol.md §8.5, §8.6,
//! architecture.md's statuses and reasons).

use std::time::Duration;

use ipc_protocol::{Reason, WorkerStatus};

use super::actions::{Actions, Persist};
use super::pushes;
use super::stage::Ctx;
use crate::wa::binary::Node;

/// How a live connection ended, and what to do next.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum Disconnect {
    /// Dial again at once (515 restart).
    Restart,
    /// Dial again after the backoff.
    Retry {
        /// Why.
        reason: Reason,
        /// For people.
        error: String,
    },
    /// Retry only after `after` (a temporary ban's expiry), status `disconnected`.
    RetryAfter {
        /// Why.
        reason: Reason,
        /// For people.
        error: String,
        /// When to try again.
        after: Duration,
    },
    /// Stop; do not reconnect on our own.
    Stop {
        /// The status to report.
        status: WorkerStatus,
        /// Why.
        reason: Reason,
        /// For people.
        error: String,
        /// The creds are dead: archive them.
        archive_creds: bool,
    },
    /// Every QR ref expired without a scan.
    QrExhausted,
}

impl Disconnect {
    /// The device was unlinked: `logged_out`, creds archived, no reconnect.
    pub(crate) fn logged_out(error: String) -> Self {
        Disconnect::Stop {
            status: WorkerStatus::LoggedOut,
            reason: Reason::LoggedOut,
            error,
            archive_creds: true,
        }
    }
}

/// WhatsApp refused the account itself (403 locked, 406 banned): status `banned`, the creds
/// archived as the references drop them, no reconnect.
fn banned(reason: Reason, text: String, what: &str) -> Disconnect {
    Disconnect::Stop {
        status: WorkerStatus::Banned,
        reason,
        error: format!("{text}: {what}; a new QR is needed once WhatsApp allows it again"),
        archive_creds: true,
    }
}

/// Classifies `<stream:error>` (§8.5). 515 asks for a restart (at once only after the pairing or
/// a stable connection: [`super::reconnect::Backoff::on_restart`]); 409, 429, 5xx and other codes
/// retry with the growing backoff, a 429 with extra steps ([`super::reconnect::steps_for`]).
pub(crate) fn stream_error(node: &Node) -> Disconnect {
    let code = node.attr_str("code").and_then(|c| c.parse::<u16>().ok());
    let conflict = node
        .child("conflict")
        .and_then(|c| c.attr_str("type"))
        .map(|t| t.into_owned());
    let text = format!(
        "stream error{}{}",
        code.map(|c| format!(" {c}")).unwrap_or_default(),
        conflict
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default()
    );
    match (code, conflict.as_deref()) {
        (_, Some("device_removed")) | (Some(401), _) => Disconnect::logged_out(text),
        (_, Some("replaced")) => Disconnect::Stop {
            status: WorkerStatus::Conflict,
            reason: Reason::Replaced,
            error: text,
            archive_creds: false,
        },
        (Some(515), _) => Disconnect::Restart,
        (Some(code), _) => Disconnect::Retry {
            reason: Reason::ServerError(code),
            error: text,
        },
        (None, _) => Disconnect::Retry {
            reason: Reason::Network,
            error: text,
        },
    }
}

/// Classifies `<failure reason=…>` (§8.6).
pub(crate) fn failure(node: &Node) -> Disconnect {
    let code = node
        .attr_str("reason")
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(500);
    let mut text = format!("login failure {code}");
    // What WhatsApp shows on the phone, when it says (a ban or a lock comes with it).
    for key in ["logout_message_header", "logout_message_subtext"] {
        if let Some(more) = node.attr_str(key).filter(|m| !m.trim().is_empty()) {
            text.push_str(&format!(" ({})", more.trim()));
        }
    }
    match code {
        401 => Disconnect::logged_out(text),
        // The references log these out like a 401; the status tells a ban wave from unlinks.
        403 => banned(Reason::AccountLocked, text, "the account is locked"),
        406 => banned(Reason::Banned, text, "the account is banned"),
        405 => Disconnect::Stop {
            status: WorkerStatus::Failed,
            reason: Reason::ClientOutdated,
            error: "WhatsApp refuses this client version (405): set the current WhatsApp Web version (PUT /api/settings {\"waVersion\"}, or WA_VERSION)".into(),
            archive_creds: false,
        },
        402 => {
            let expire = node.attr_str("expire").and_then(|e| e.parse::<u64>().ok()).unwrap_or(0);
            Disconnect::RetryAfter {
                reason: Reason::TempBanned,
                error: format!("temporarily banned (code {})", node.attr_str("code").unwrap_or_default()),
                after: Duration::from_secs(expire.max(60)),
            }
        }
        500..=599 => Disconnect::Retry {
            reason: Reason::ServerError(code),
            error: text,
        },
        _ => Disconnect::Stop {
            status: WorkerStatus::Failed,
            reason: Reason::ServerError(code),
            error: text,
            archive_creds: false,
        },
    }
}

/// `<failure>`: the login was refused.
pub(crate) fn on_failure(_ctx: &mut Ctx<'_>, node: &Node) -> Actions {
    Actions::end(failure(node))
}

/// `<stream:error>`.
pub(crate) fn on_stream_error(_ctx: &mut Ctx<'_>, node: &Node) -> Actions {
    Actions::end(stream_error(node))
}

/// `<xmlstreamend/>`: the server closed the stream.
pub(crate) fn on_stream_end(_ctx: &mut Ctx<'_>, _node: &Node) -> Actions {
    Actions::end(Disconnect::Retry {
        reason: Reason::Network,
        error: "the server ended the stream".into(),
    })
}

/// `<ib>` (§8.7; no ack): keep the edge routing info for the next connect; the offline backlog's
/// preview, its end and dirty bits go to [`super::pushes`]; other children (`thread_metadata`,
/// `downgrade_webclient`, …) are ignored, as all three clients ignore them.
pub(crate) fn on_ib(ctx: &mut Ctx<'_>, ib: &Node) -> Actions {
    let mut actions = match routing_info(ib) {
        Some(info) => Actions::none().and_persist(Persist::RoutingInfo(info)),
        None => Actions::none(),
    };
    for child in ib.children_slice() {
        let decided = match child.tag.as_str() {
            "offline_preview" => pushes::on_offline_preview(ctx, child),
            "offline" => pushes::on_offline_end(ctx, child),
            "dirty" => pushes::on_dirty(ctx, child),
            "edge_routing" => Actions::none(),
            other => {
                tracing::debug!(child = other, "ib ignored");
                Actions::none()
            }
        };
        actions = actions.merge(decided);
    }
    actions
}

/// The routing info of an `<ib><edge_routing><routing_info>…` stanza (§8.7).
fn routing_info(ib: &Node) -> Option<Vec<u8>> {
    Some(
        ib.child("edge_routing")?
            .child("routing_info")?
            .content_bytes()?
            .to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wa::binary::decode;

    fn node(hex: &str) -> Node {
        decode(&hex::decode(hex).expect("hex")).expect("node")
    }

    #[test]
    fn stream_errors_map_to_the_documented_outcomes() {
        // wa-protocol.md §11.2.3 vectors.
        assert_eq!(
            stream_error(&node("00f8039d70ff82515f")),
            Disconnect::Restart
        );
        assert!(matches!(
            stream_error(&node(
                "00f8049d708df801f803ec0e04fc0e6465766963655f72656d6f766564"
            )),
            Disconnect::Stop {
                status: WorkerStatus::LoggedOut,
                archive_creds: true,
                ..
            }
        ));
        assert!(matches!(
            stream_error(&node("00f8029df801f803ec0e04ec11")),
            Disconnect::Stop {
                status: WorkerStatus::Conflict,
                reason: Reason::Replaced,
                archive_creds: false,
                ..
            }
        ));
        let e503 = Node::new("stream:error").attr("code", "503");
        assert!(matches!(
            stream_error(&e503),
            Disconnect::Retry {
                reason: Reason::ServerError(503),
                ..
            }
        ));
    }

    #[test]
    fn conflict_rate_limit_and_server_errors_reconnect_with_backoff() {
        // 409 without a `conflict` child, 429 (the backoff adds its extra steps for it: see
        // reconnect.rs), 5xx and unknown codes: growing delays, never a stop, never at once.
        for code in [409u16, 429, 500, 502, 503, 599, 403, 418] {
            let e = Node::new("stream:error").attr("code", code.to_string());
            assert_eq!(
                stream_error(&e),
                Disconnect::Retry {
                    reason: Reason::ServerError(code),
                    error: format!("stream error {code}"),
                },
                "{code}"
            );
        }
        // No code at all: a stream error of unknown kind, retried as a network failure.
        assert!(matches!(
            stream_error(&Node::new("stream:error")),
            Disconnect::Retry {
                reason: Reason::Network,
                ..
            }
        ));
        // A 409 with a `replaced` conflict is still a takeover.
        let replaced = Node::new("stream:error")
            .attr("code", "409")
            .children(vec![Node::new("conflict").attr("type", "replaced")]);
        assert!(matches!(
            stream_error(&replaced),
            Disconnect::Stop {
                status: WorkerStatus::Conflict,
                ..
            }
        ));
    }

    #[test]
    fn failures_map_to_the_documented_outcomes() {
        assert!(matches!(
            failure(&node("00f805ee3cec2e8d3dfc03667263")),
            Disconnect::Stop {
                status: WorkerStatus::LoggedOut,
                ..
            }
        ));
        let f = |r: &str| failure(&Node::new("failure").attr("reason", r));
        assert!(matches!(
            f("405"),
            Disconnect::Stop {
                reason: Reason::ClientOutdated,
                ..
            }
        ));
        assert!(matches!(
            f("402"),
            Disconnect::RetryAfter {
                reason: Reason::TempBanned,
                ..
            }
        ));
        assert!(matches!(
            f("403"),
            Disconnect::Stop {
                status: WorkerStatus::Banned,
                reason: Reason::AccountLocked,
                archive_creds: true,
                ..
            }
        ));
        assert!(matches!(
            f("406"),
            Disconnect::Stop {
                status: WorkerStatus::Banned,
                reason: Reason::Banned,
                archive_creds: true,
                ..
            }
        ));
        assert!(matches!(
            f("401"),
            Disconnect::Stop {
                status: WorkerStatus::LoggedOut,
                reason: Reason::LoggedOut,
                ..
            }
        ));
        assert!(matches!(f("503"), Disconnect::Retry { .. }));
        assert!(matches!(
            f("418"),
            Disconnect::Stop {
                status: WorkerStatus::Failed,
                ..
            }
        ));
    }
}
