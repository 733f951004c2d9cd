//! Properties of the frame codec: round-trips, any chunking, and no panic on any input.

use ipc_protocol::{
    encode, AccountId, DialOutcome, Direction, FrameDecoder, FrameError, MessageQuery,
    MessageRecord, MessageStatus, OutgoingText, QueryAnswer, Reason, SendOutcome, SendRefusal,
    ToSupervisor, ToWorker, UnixMillis, WorkerState, WorkerStatus,
};
use proptest::prelude::*;

fn status() -> impl Strategy<Value = WorkerStatus> {
    proptest::sample::select(WorkerStatus::ALL.to_vec())
}

fn reason() -> impl Strategy<Value = Reason> {
    prop_oneof![
        Just(Reason::LoggedOut),
        Just(Reason::Replaced),
        Just(Reason::TempBanned),
        Just(Reason::ClientOutdated),
        Just(Reason::QrExhausted),
        Just(Reason::Network),
        Just(Reason::KeepaliveTimeout),
        any::<u16>().prop_map(Reason::ServerError),
        Just(Reason::CrashLoop),
        Just(Reason::WorkerCrashed),
        Just(Reason::Hung),
        Just(Reason::CredsCorrupt),
        Just(Reason::StorageFull),
        Just(Reason::StorageReadonly),
        Just(Reason::StorageError),
        Just(Reason::CredsNewerVersion),
        Just(Reason::Locked),
        Just(Reason::ProtocolMismatch),
        Just(Reason::SpawnFailed),
        Just(Reason::SessionsKey),
        Just(Reason::CertificateRejected),
        Just(Reason::NotPaired),
        Just(Reason::AdminStopped),
        "[a-z]{1,8}_x".prop_map(Reason::Other),
    ]
}

fn millis() -> impl Strategy<Value = Option<UnixMillis>> {
    proptest::option::of(any::<u64>().prop_map(UnixMillis))
}

fn state() -> impl Strategy<Value = WorkerState> {
    (
        status(),
        proptest::option::of(reason()),
        proptest::option::of(".{0,40}"),
        millis(),
        proptest::option::of("[0-9]{5,15}"),
        (millis(), millis(), any::<u32>(), any::<u32>(), millis()),
        proptest::option::of(".{0,40}"),
    )
        .prop_map(
            |(status, reason, qr, qr_expires_at, phone, times, last_error)| WorkerState {
                status,
                reason,
                qr,
                qr_expires_at,
                jid: phone.as_ref().map(|p| format!("{p}:3@s.whatsapp.net")),
                phone,
                last_event_at: times.0,
                last_message_at: times.1,
                reconnect_attempts: times.2,
                reconnect_count: times.3,
                next_retry_at: times.4,
                last_error,
                decrypt_failures: times.2 / 2,
                dial_queued_since: times.0,
            },
        )
}

fn to_supervisor() -> impl Strategy<Value = ToSupervisor> {
    prop_oneof![
        ("[a-z0-9][a-z0-9_-]{0,63}", any::<u32>(), any::<u32>()).prop_map(|(id, pid, version)| {
            ToSupervisor::Hello {
                account_id: AccountId::parse(&id).expect("strategy makes valid ids"),
                pid,
                version,
            }
        }),
        state().prop_map(ToSupervisor::State),
        millis().prop_map(|last_frame_at| ToSupervisor::Heartbeat { last_frame_at }),
        Just(ToSupervisor::Flushed),
        ".{0,60}".prop_map(|reason| ToSupervisor::Goodbye { reason }),
        any::<u64>().prop_map(|seq| ToSupervisor::DialRequest { seq }),
        (any::<u64>(), dial_outcome())
            .prop_map(|(seq, outcome)| ToSupervisor::DialDone { seq, outcome }),
        (".{0,40}", ".{0,40}", any::<bool>(), millis(), any::<bool>()).prop_map(
            |(call_id, from, video, at, offline)| {
                ToSupervisor::Call(ipc_protocol::CallEvent {
                    call_id,
                    from,
                    kind: "offer".into(),
                    video,
                    at: at.unwrap_or(UnixMillis(0)),
                    offline,
                })
            }
        ),
        (".{0,200}", any::<u64>(), any::<bool>()).prop_map(|(text, cursor, inbound)| {
            ToSupervisor::Message(MessageRecord {
                id: "3EB0AB".into(),
                direction: if inbound {
                    Direction::In
                } else {
                    Direction::Out
                },
                chat: "1@s.whatsapp.net".into(),
                sender: None,
                push_name: Some(text.clone()),
                kind: "text".into(),
                text: Some(text),
                status: MessageStatus::Received,
                timestamp: UnixMillis(cursor / 1000),
                sent_at: None,
                delivered_at: None,
                read_at: None,
                error: None,
                cursor,
            })
        }),
    ]
}

fn dial_outcome() -> impl Strategy<Value = DialOutcome> {
    proptest::sample::select(vec![
        DialOutcome::Success,
        DialOutcome::Failure,
        DialOutcome::Error,
        DialOutcome::Withdrawn,
    ])
}

fn to_worker() -> impl Strategy<Value = ToWorker> {
    prop_oneof![
        any::<u64>().prop_map(|seq| ToWorker::DialGranted { seq }),
        ".{0,30}".prop_map(|version| ToWorker::SetWaVersion { version }),
        proptest::sample::select(vec![
            ToWorker::Shutdown,
            ToWorker::Logout,
            ToWorker::RequestQr,
            ToWorker::Ping,
        ]),
        (any::<u64>(), ".{0,40}", ".{0,300}").prop_map(|(request, to, text)| ToWorker::Send {
            request,
            message: OutgoingText {
                id: "3EB0".into(),
                to,
                text
            },
        }),
        (
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            any::<u32>()
        )
            .prop_map(|(request, after, limit)| ToWorker::Query {
                request,
                query: MessageQuery::List {
                    direction: Direction::Out,
                    after,
                    limit
                },
            }),
    ]
}

fn decode_all<T: serde::de::DeserializeOwned>(chunks: &[&[u8]]) -> Vec<T> {
    let mut d = FrameDecoder::new();
    let mut out = Vec::new();
    for chunk in chunks {
        d.push(chunk);
        while let Some(frame) = d.next_frame().expect("valid stream") {
            out.push(frame);
        }
    }
    assert_eq!(d.buffered(), 0, "no bytes left over");
    out
}

proptest! {
    #[test]
    fn every_worker_message_round_trips(msg in to_supervisor()) {
        let frame = encode(&msg).expect("encodes");
        prop_assert_eq!(decode_all::<ToSupervisor>(&[&frame]), vec![msg]);
    }

    #[test]
    fn every_supervisor_message_round_trips(msg in to_worker()) {
        let frame = encode(&msg).expect("encodes");
        prop_assert_eq!(decode_all::<ToWorker>(&[&frame]), vec![msg]);
    }

    #[test]
    fn any_split_of_the_stream_decodes_to_the_same_frames(
        msgs in proptest::collection::vec(to_supervisor(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let stream: Vec<u8> = msgs.iter().flat_map(|m| encode(m).expect("encodes")).collect();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&stream[start..p]);
            start = p;
        }
        chunks.push(&stream[start..]);
        prop_assert_eq!(decode_all::<ToSupervisor>(&chunks), msgs);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut d = FrameDecoder::new();
        d.push(&bytes);
        for _ in 0..bytes.len() + 1 {
            match d.next_frame::<ToSupervisor>() {
                Ok(Some(_)) | Err(FrameError::Json(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn arbitrary_json_bodies_never_panic_the_decoder(body in ".{0,200}") {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body.as_bytes());
        let mut d = FrameDecoder::new();
        d.push(&frame);
        let _ = d.next_frame::<ToSupervisor>();
        let _ = d.next_frame::<ToWorker>();
    }
}

/// Golden JSON of every message, so the wire format cannot drift silently between releases.
#[test]
fn messages_match_their_golden_json() {
    let cases: Vec<(&str, serde_json::Value)> = vec![
        (
            "hello.json",
            serde_json::to_value(ToSupervisor::Hello {
                account_id: AccountId::parse("acct-01").expect("valid"),
                pid: 4242,
                version: 1,
            })
            .expect("serializes"),
        ),
        (
            "state.json",
            serde_json::to_value(ToSupervisor::State(WorkerState {
                status: WorkerStatus::Reconnecting,
                reason: Some(Reason::ServerError(503)),
                qr: None,
                qr_expires_at: None,
                jid: Some("40712345678:3@s.whatsapp.net".into()),
                phone: Some("40712345678".into()),
                last_event_at: Some(UnixMillis(1_764_000_000_000)),
                last_message_at: None,
                reconnect_attempts: 2,
                reconnect_count: 5,
                next_retry_at: Some(UnixMillis(1_764_000_004_000)),
                last_error: Some("connection refused".into()),
                decrypt_failures: 0,
                dial_queued_since: None,
            }))
            .expect("serializes"),
        ),
        (
            "heartbeat.json",
            serde_json::to_value(ToSupervisor::Heartbeat {
                last_frame_at: Some(UnixMillis(1_764_000_000_000)),
            })
            .expect("serializes"),
        ),
        (
            "flushed.json",
            serde_json::to_value(ToSupervisor::Flushed).expect("serializes"),
        ),
        (
            "goodbye.json",
            serde_json::to_value(ToSupervisor::Goodbye {
                reason: "sigterm".into(),
            })
            .expect("serializes"),
        ),
        (
            "shutdown.json",
            serde_json::to_value(ToWorker::Shutdown).expect("serializes"),
        ),
        (
            "logout.json",
            serde_json::to_value(ToWorker::Logout).expect("serializes"),
        ),
        (
            "request_qr.json",
            serde_json::to_value(ToWorker::RequestQr).expect("serializes"),
        ),
        (
            "ping.json",
            serde_json::to_value(ToWorker::Ping).expect("serializes"),
        ),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for (file, value) in cases {
        let text = std::fs::read_to_string(dir.join(file)).expect("golden file exists");
        let golden: serde_json::Value = serde_json::from_str(&text).expect("golden is json");
        assert_eq!(value, golden, "{file}");
    }
}

/// The messaging frames (protocol 2): golden JSON both ways, so the supervisor and the worker of
/// one release agree and a change of shape is a visible diff.
#[test]
fn messaging_frames_match_their_golden_json_both_ways() {
    let record = |status, direction| MessageRecord {
        id: "3EB05765B9D1119841E331".into(),
        direction,
        chat: "40712345678@s.whatsapp.net".into(),
        sender: None,
        push_name: None,
        kind: "text".into(),
        text: Some("hello".into()),
        status,
        timestamp: UnixMillis(1_764_000_000_000),
        sent_at: None,
        delivered_at: None,
        read_at: None,
        error: None,
        cursor: 1_764_000_000_000_000,
    };
    let to_worker = [
        (
            "send.json",
            ToWorker::Send {
                request: 7,
                message: OutgoingText {
                    id: "3EB05765B9D1119841E331".into(),
                    to: "40712345678@s.whatsapp.net".into(),
                    text: "hello".into(),
                },
            },
        ),
        (
            "confirm.json",
            ToWorker::Confirm {
                ids: vec!["ABCDEF0123".into(), "3EB05765B9D1119841E331".into()],
            },
        ),
        (
            "query_list.json",
            ToWorker::Query {
                request: 9,
                query: MessageQuery::List {
                    direction: Direction::In,
                    after: Some(1_764_000_000_000_000),
                    limit: 50,
                },
            },
        ),
    ];
    let to_supervisor = [
        (
            "send_answer_accepted.json",
            ToSupervisor::SendAnswer {
                request: 7,
                outcome: SendOutcome::Accepted {
                    message: Box::new(record(MessageStatus::Queued, Direction::Out)),
                },
            },
        ),
        (
            "send_answer_refused.json",
            ToSupervisor::SendAnswer {
                request: 8,
                outcome: SendOutcome::Refused {
                    refusal: SendRefusal::OutboxFull { limit: 10_000 },
                },
            },
        ),
        (
            "query_answer_page.json",
            ToSupervisor::QueryAnswer {
                request: 9,
                answer: QueryAnswer::Page {
                    messages: Vec::new(),
                    next: None,
                },
            },
        ),
        (
            "message.json",
            ToSupervisor::Message(MessageRecord {
                id: "ABCDEF0123".into(),
                chat: "120363000000000001@g.us".into(),
                sender: Some("40712345678@s.whatsapp.net".into()),
                push_name: Some("Ana".into()),
                text: Some("hi all".into()),
                cursor: 1_764_000_000_000_001,
                ..record(MessageStatus::Received, Direction::In)
            }),
        ),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let golden = |file: &str| -> String {
        std::fs::read_to_string(dir.join(file)).expect("golden file exists")
    };
    for (file, msg) in to_worker {
        let parsed: ToWorker = serde_json::from_str(&golden(file)).expect("golden parses");
        assert_eq!(parsed, msg, "{file}");
        let value = serde_json::to_value(&msg).expect("serializes");
        let expected: serde_json::Value = serde_json::from_str(&golden(file)).expect("json");
        assert_eq!(value, expected, "{file}");
    }
    for (file, msg) in to_supervisor {
        let parsed: ToSupervisor = serde_json::from_str(&golden(file)).expect("golden parses");
        assert_eq!(parsed, msg, "{file}");
        let value = serde_json::to_value(&msg).expect("serializes");
        let expected: serde_json::Value = serde_json::from_str(&golden(file)).expect("json");
        assert_eq!(value, expected, "{file}");
    }
}

/// The dial permit frames (protocol 3): golden JSON both ways.
#[test]
fn dial_permit_frames_match_their_golden_json_both_ways() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let golden = |file: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join(file)).expect("golden file exists");
        serde_json::from_str(&text).expect("golden is json")
    };
    let up = [
        ("dial_request.json", ToSupervisor::DialRequest { seq: 7 }),
        (
            "dial_done.json",
            ToSupervisor::DialDone {
                seq: 7,
                outcome: DialOutcome::Failure,
            },
        ),
    ];
    for (file, msg) in up {
        assert_eq!(
            serde_json::to_value(&msg).expect("serializes"),
            golden(file),
            "{file}"
        );
        let back: ToSupervisor = serde_json::from_value(golden(file)).expect("parses");
        assert_eq!(back, msg, "{file}");
    }
    let down = ToWorker::DialGranted { seq: 7 };
    assert_eq!(
        serde_json::to_value(&down).expect("serializes"),
        golden("dial_granted.json")
    );
    let back: ToWorker = serde_json::from_value(golden("dial_granted.json")).expect("parses");
    assert_eq!(back, down);
    // A state snapshot from a worker that is not queued carries no `dial_queued_since`.
    let idle = serde_json::to_value(WorkerState::default()).expect("serializes");
    assert!(idle.get("dial_queued_since").is_none(), "{idle}");
}
