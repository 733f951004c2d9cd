//! The account's messages on the volume: the outbox (queued sends), and the record of what went
//! out and what came in. The worker is the only writer; every write is atomic.
//!
//! ```text
//!  <account>/messages/
//!    outbox/<cursor>-<id>.json   queued, not yet accepted by the server; drained oldest first
//!    out/<cursor>-<id>.json      sent (or failed), with delivery and read times as they come
//!    in/<cursor>-<id>.json       received
//!    unconfirmed/<cursor>-<id>   received, not yet in the supervisor's hands (reported again
//!                                at every start until the supervisor confirms it)
//! ```
//!
//! A cursor grows with every message (Unix microseconds, bumped past the last one), so file
//! names sort in arrival order and `after=<cursor>` pages are a directory listing away. Nothing is
//! held in memory but the last cursor and the outbox count: lookups read the directory, which
//! retention keeps bounded (7 days and 10,000 messages per direction by default).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ipc_protocol::{Direction, MessageRecord, MessageStatus, UnixMillis};

use super::atomic::{sync_dir, write_atomic};

const FILE_MODE: u32 = 0o600;
/// Markers of received messages the supervisor has not confirmed.
const UNCONFIRMED: &str = "unconfirmed";
/// Longest message id kept as is in a file name; longer or odd ids are hex-encoded.
const MAX_PLAIN_ID: usize = 64;

/// Where one record lives.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Shelf {
    Outbox,
    Out,
    In,
}

impl Shelf {
    fn dir_name(self) -> &'static str {
        match self {
            Shelf::Outbox => "outbox",
            Shelf::Out => "out",
            Shelf::In => "in",
        }
    }

    fn of(record: &MessageRecord) -> Shelf {
        match (record.direction, record.status) {
            (Direction::In, _) => Shelf::In,
            (Direction::Out, MessageStatus::Queued) => Shelf::Outbox,
            (Direction::Out, _) => Shelf::Out,
        }
    }
}

/// What retention keeps.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Retention {
    /// Records older than this (by their timestamp) go.
    pub max_age_ms: u64,
    /// At most this many records per direction.
    pub max_count: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age_ms: 7 * 24 * 3600 * 1000,
            max_count: 10_000,
        }
    }
}

/// One account's message store.
#[derive(Debug)]
pub struct MessageStore {
    root: PathBuf,
    last_cursor: u64,
    queued: usize,
}

impl MessageStore {
    /// Opens (creating) the store under `account_dir/messages`, finishing any move from the
    /// outbox that a crash interrupted.
    ///
    /// # Errors
    /// Any I/O error creating or listing the directories.
    pub fn open(account_dir: &Path) -> io::Result<Self> {
        let root = account_dir.join(volume::layout::MESSAGES_DIR);
        for shelf in [Shelf::Outbox, Shelf::Out, Shelf::In] {
            fs::create_dir_all(root.join(shelf.dir_name()))?;
        }
        fs::create_dir_all(root.join(UNCONFIRMED))?;
        let mut store = MessageStore {
            root,
            last_cursor: 0,
            queued: 0,
        };
        let sent: Vec<String> = store
            .names(Shelf::Out)?
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        for (cursor, id) in store.names(Shelf::Outbox)? {
            if sent.contains(&id) {
                // Written to out/ but not yet removed from the outbox when the worker died.
                fs::remove_file(store.path(Shelf::Outbox, cursor, &id))?;
            } else {
                store.queued += 1;
            }
        }
        for shelf in [Shelf::Outbox, Shelf::Out, Shelf::In] {
            if let Some((cursor, _)) = store.names(shelf)?.last() {
                store.last_cursor = store.last_cursor.max(*cursor);
            }
        }
        Ok(store)
    }

    /// A fresh cursor: now in microseconds, past every cursor handed out before.
    pub fn next_cursor(&mut self) -> u64 {
        let now = UnixMillis::now().0.saturating_mul(1000);
        self.last_cursor = now.max(self.last_cursor + 1);
        self.last_cursor
    }

    /// Messages waiting in the outbox.
    pub fn queued_count(&self) -> usize {
        self.queued
    }

    /// Writes `record` where its direction and status put it, durably; a record leaving the
    /// outbox is written to `out/` first and removed from the outbox after.
    ///
    /// # Errors
    /// Any I/O error; the previous copy is then intact.
    pub fn put(&mut self, record: &MessageRecord) -> io::Result<()> {
        let shelf = Shelf::of(record);
        let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
        let was_queued = shelf != Shelf::Outbox
            && record.direction == Direction::Out
            && self.path(Shelf::Outbox, record.cursor, &record.id).exists();
        let is_new_in_outbox =
            shelf == Shelf::Outbox && !self.path(shelf, record.cursor, &record.id).exists();
        write_atomic(
            &self.path(shelf, record.cursor, &record.id),
            &bytes,
            FILE_MODE,
        )?;
        if was_queued {
            fs::remove_file(self.path(Shelf::Outbox, record.cursor, &record.id))?;
            sync_dir(&self.root.join(Shelf::Outbox.dir_name()))?;
            self.queued = self.queued.saturating_sub(1);
        }
        if is_new_in_outbox {
            self.queued += 1;
        }
        Ok(())
    }

    /// The record of message `id` in `direction`, if kept.
    ///
    /// # Errors
    /// Any I/O error, or a record that does not parse.
    pub fn get(&self, direction: Direction, id: &str) -> io::Result<Option<MessageRecord>> {
        let shelves: &[Shelf] = match direction {
            Direction::In => &[Shelf::In],
            Direction::Out => &[Shelf::Out, Shelf::Outbox],
        };
        let encoded = encode_id(id);
        for &shelf in shelves {
            for (cursor, name_id) in self.names(shelf)? {
                if name_id == encoded {
                    return self.read(shelf, cursor, &name_id).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// The record of message `id` in either direction (ours first).
    ///
    /// # Errors
    /// As [`MessageStore::get`].
    pub fn find(&self, id: &str) -> io::Result<Option<MessageRecord>> {
        match self.get(Direction::Out, id)? {
            Some(r) => Ok(Some(r)),
            None => self.get(Direction::In, id),
        }
    }

    /// Up to `limit` records of `direction` after `after`, oldest first, stopping early once
    /// `max_bytes` of JSON are gathered; and whether more may follow.
    ///
    /// # Errors
    /// Any I/O error, or a record that does not parse.
    pub fn list(
        &self,
        direction: Direction,
        after: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> io::Result<(Vec<MessageRecord>, bool)> {
        let shelves: &[Shelf] = match direction {
            Direction::In => &[Shelf::In],
            Direction::Out => &[Shelf::Out, Shelf::Outbox],
        };
        let mut names = Vec::new();
        for &shelf in shelves {
            names.extend(
                self.names(shelf)?
                    .into_iter()
                    .filter(|(c, _)| after.is_none_or(|a| *c > a))
                    .map(|(c, id)| (c, id, shelf)),
            );
        }
        names.sort_unstable_by_key(|(c, _, _)| *c);
        let mut out = Vec::new();
        let mut bytes = 0;
        for (cursor, id, shelf) in &names {
            if out.len() >= limit || (bytes >= max_bytes && !out.is_empty()) {
                return Ok((out, true));
            }
            let record = self.read(*shelf, *cursor, id)?;
            bytes += record.text.as_ref().map_or(0, String::len) + 256;
            out.push(record);
        }
        Ok((out, false))
    }

    /// The queued messages, oldest first.
    ///
    /// # Errors
    /// Any I/O error, or a record that does not parse.
    pub fn outbox(&self) -> io::Result<Vec<MessageRecord>> {
        self.names(Shelf::Outbox)?
            .into_iter()
            .map(|(c, id)| self.read(Shelf::Outbox, c, &id))
            .collect()
    }

    /// Marks a received message as not yet in the supervisor's hands, durably. Written before
    /// the record itself, so a record on disk always has its marker until confirmed.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn mark_unconfirmed(&self, record: &MessageRecord) -> io::Result<()> {
        let name = file_name(record.cursor, &encode_id(&record.id));
        write_atomic(&self.root.join(UNCONFIRMED).join(name), b"", FILE_MODE)
    }

    /// Forgets the markers of `ids`; returns how many there were.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn confirm(&self, ids: &[String]) -> io::Result<usize> {
        let wanted: Vec<String> = ids.iter().map(|i| encode_id(i)).collect();
        let dir = self.root.join(UNCONFIRMED);
        let mut removed = 0;
        for (cursor, id) in self.markers()? {
            if wanted.contains(&id) {
                fs::remove_file(dir.join(file_name(cursor, &id)))?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&dir)?;
        }
        Ok(removed)
    }

    /// The received messages not yet confirmed, oldest first; markers whose record is gone
    /// (pruned, or a crash between the two writes) are dropped.
    ///
    /// # Errors
    /// Any I/O error, or a record that does not parse.
    pub fn unconfirmed(&self) -> io::Result<Vec<MessageRecord>> {
        let dir = self.root.join(UNCONFIRMED);
        let mut out = Vec::new();
        for (cursor, id) in self.markers()? {
            if self
                .root
                .join(Shelf::In.dir_name())
                .join(file_name(cursor, &id))
                .exists()
            {
                out.push(self.read(Shelf::In, cursor, &id)?);
            } else {
                fs::remove_file(dir.join(file_name(cursor, &id)))?;
            }
        }
        Ok(out)
    }

    fn markers(&self) -> io::Result<Vec<(u64, String)>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(self.root.join(UNCONFIRMED))? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if let Some((cursor, id)) = stem.split_once('-') {
                if let Ok(cursor) = cursor.parse::<u64>() {
                    names.push((cursor, id.to_owned()));
                }
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// Drops sent and received records past `retention` (never queued ones); returns how many.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn prune(&self, now: UnixMillis, retention: Retention) -> io::Result<usize> {
        let oldest_kept = now
            .0
            .saturating_sub(retention.max_age_ms)
            .saturating_mul(1000);
        let mut removed = 0;
        for shelf in [Shelf::In, Shelf::Out] {
            let names = self.names(shelf)?;
            let excess = names.len().saturating_sub(retention.max_count);
            for (i, (cursor, id)) in names.iter().enumerate() {
                if i < excess || *cursor < oldest_kept {
                    fs::remove_file(self.path(shelf, *cursor, id))?;
                    removed += 1;
                }
            }
            if removed > 0 {
                sync_dir(&self.root.join(shelf.dir_name()))?;
            }
        }
        Ok(removed)
    }

    fn read(&self, shelf: Shelf, cursor: u64, encoded_id: &str) -> io::Result<MessageRecord> {
        let path = self
            .root
            .join(shelf.dir_name())
            .join(file_name(cursor, encoded_id));
        let bytes = fs::read(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not parse: {e}", path.display()),
            )
        })
    }

    fn path(&self, shelf: Shelf, cursor: u64, id: &str) -> PathBuf {
        self.root
            .join(shelf.dir_name())
            .join(file_name(cursor, &encode_id(id)))
    }

    /// `(cursor, encoded id)` of every record on a shelf, sorted by cursor. Names that are not
    /// records (temp files) are skipped.
    fn names(&self, shelf: Shelf) -> io::Result<Vec<(u64, String)>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(self.root.join(shelf.dir_name()))? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let Some((cursor, id)) = stem.split_once('-') else {
                continue;
            };
            if let Ok(cursor) = cursor.parse::<u64>() {
                names.push((cursor, id.to_owned()));
            }
        }
        names.sort_unstable();
        Ok(names)
    }
}

fn file_name(cursor: u64, encoded_id: &str) -> String {
    format!("{cursor:020}-{encoded_id}.json")
}

/// Ids made of `[A-Za-z0-9]` up to 64 characters name files as they are; anything else is
/// hex-encoded behind an `x` (which plain ids of that alphabet cannot be confused with, since a
/// plain id never contains the `_` that follows it).
fn encode_id(id: &str) -> String {
    let plain =
        !id.is_empty() && id.len() <= MAX_PLAIN_ID && id.bytes().all(|b| b.is_ascii_alphanumeric());
    if plain {
        id.to_owned()
    } else {
        let digest = id
            .bytes()
            .take(96)
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        format!("x_{digest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        store: &mut MessageStore,
        id: &str,
        direction: Direction,
        status: MessageStatus,
    ) -> MessageRecord {
        MessageRecord {
            id: id.into(),
            direction,
            chat: "40712345678@s.whatsapp.net".into(),
            sender: None,
            push_name: None,
            kind: "text".into(),
            text: Some(format!("text of {id}")),
            status,
            timestamp: UnixMillis::now(),
            sent_at: None,
            delivered_at: None,
            read_at: None,
            error: None,
            cursor: store.next_cursor(),
        }
    }

    #[test]
    fn a_queued_message_moves_from_the_outbox_when_sent_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = MessageStore::open(dir.path()).expect("open");
        let mut m = record(&mut store, "3EB0AA", Direction::Out, MessageStatus::Queued);
        store.put(&m).expect("put");
        store.put(&m).expect("idempotent");
        assert_eq!(store.queued_count(), 1);
        assert_eq!(store.outbox().expect("outbox"), vec![m.clone()]);

        let reopened = MessageStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.queued_count(), 1, "the count is rebuilt from disk");

        m.status = MessageStatus::Sent;
        m.sent_at = Some(UnixMillis::now());
        store.put(&m).expect("sent");
        assert_eq!(store.queued_count(), 0);
        assert!(store.outbox().expect("outbox").is_empty());
        assert_eq!(
            store.get(Direction::Out, "3EB0AA").expect("get"),
            Some(m.clone())
        );
        assert_eq!(store.find("3EB0AA").expect("find"), Some(m));
    }

    #[test]
    fn a_crash_between_the_two_halves_of_a_move_is_finished_at_open() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = MessageStore::open(dir.path()).expect("open");
        let mut m = record(&mut store, "3EB0BB", Direction::Out, MessageStatus::Queued);
        store.put(&m).expect("queued");
        // The first half of the move only: out/ written, the outbox copy still there.
        m.status = MessageStatus::Sent;
        let bytes = serde_json::to_vec(&m).expect("json");
        write_atomic(&store.path(Shelf::Out, m.cursor, &m.id), &bytes, FILE_MODE).expect("write");

        let reopened = MessageStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.queued_count(), 0, "not sent twice");
        assert!(reopened.outbox().expect("outbox").is_empty());
        assert_eq!(
            reopened
                .get(Direction::Out, "3EB0BB")
                .expect("get")
                .map(|r| r.status),
            Some(MessageStatus::Sent)
        );
    }

    #[test]
    fn pages_run_oldest_first_after_a_cursor() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = MessageStore::open(dir.path()).expect("open");
        let ids: Vec<String> = (0..5).map(|i| format!("IN{i}")).collect();
        for id in &ids {
            let m = record(&mut store, id, Direction::In, MessageStatus::Received);
            store.put(&m).expect("put");
        }
        let (first, more) = store
            .list(Direction::In, None, 2, usize::MAX)
            .expect("list");
        assert_eq!(
            first.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["IN0", "IN1"]
        );
        assert!(more);
        let (rest, more) = store
            .list(Direction::In, Some(first[1].cursor), 10, usize::MAX)
            .expect("list");
        assert_eq!(
            rest.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["IN2", "IN3", "IN4"]
        );
        assert!(!more);
        let (capped, more) = store.list(Direction::In, None, 10, 1).expect("list");
        assert_eq!(capped.len(), 1, "the byte cap stops a page early");
        assert!(more);
        assert!(store
            .list(Direction::Out, None, 10, usize::MAX)
            .expect("list")
            .0
            .is_empty());
    }

    #[test]
    fn received_messages_stay_unconfirmed_until_the_supervisor_confirms_them() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = MessageStore::open(dir.path()).expect("open");
        let a = record(&mut store, "A", Direction::In, MessageStatus::Received);
        let b = record(&mut store, "B", Direction::In, MessageStatus::Received);
        for m in [&a, &b] {
            store.mark_unconfirmed(m).expect("mark");
            store.put(m).expect("put");
        }
        // A marker left by a crash before its record was written.
        let c = record(&mut store, "C", Direction::In, MessageStatus::Received);
        store.mark_unconfirmed(&c).expect("mark");
        let reopened = MessageStore::open(dir.path()).expect("reopen");
        assert_eq!(
            reopened.unconfirmed().expect("list"),
            vec![a.clone(), b.clone()]
        );
        assert_eq!(
            reopened
                .confirm(&["A".into(), "Z".into()])
                .expect("confirm"),
            1
        );
        assert_eq!(reopened.unconfirmed().expect("list"), vec![b]);
        assert_eq!(
            reopened.get(Direction::In, "A").expect("get"),
            Some(a),
            "the record stays"
        );
    }

    #[test]
    fn cursors_grow_across_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = MessageStore::open(dir.path()).expect("open");
        let mut m = record(&mut store, "A1", Direction::In, MessageStatus::Received);
        m.cursor = u64::MAX / 2;
        store.put(&m).expect("put");
        let mut reopened = MessageStore::open(dir.path()).expect("reopen");
        assert!(reopened.next_cursor() > u64::MAX / 2);
    }

    #[test]
    fn odd_ids_cannot_escape_or_collide() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = MessageStore::open(dir.path()).expect("open");
        for id in [
            "../../etc/passwd",
            "a/b",
            "x_61",
            "",
            "a b",
            &"z".repeat(300),
        ] {
            let m = record(&mut store, id, Direction::In, MessageStatus::Received);
            store.put(&m).expect("put");
            assert_eq!(
                store.get(Direction::In, id).expect("get").map(|r| r.id),
                Some(id.to_owned())
            );
        }
        let in_dir = dir.path().join("messages/in");
        assert_eq!(
            fs::read_dir(&in_dir).expect("dir").count(),
            6,
            "all inside in/"
        );
        assert_eq!(encode_id("a"), "a");
        assert_ne!(encode_id("x_61"), encode_id("a"));
    }

    #[test]
    fn retention_drops_old_and_excess_records_but_never_the_outbox() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = MessageStore::open(dir.path()).expect("open");
        let mut old = record(&mut store, "OLD", Direction::In, MessageStatus::Received);
        old.cursor = 1000;
        store.put(&old).expect("put");
        for i in 0..4 {
            let m = record(
                &mut store,
                &format!("N{i}"),
                Direction::In,
                MessageStatus::Received,
            );
            store.put(&m).expect("put");
        }
        let mut queued = record(&mut store, "Q", Direction::Out, MessageStatus::Queued);
        queued.cursor = 2000;
        store.put(&queued).expect("put");
        let removed = store
            .prune(
                UnixMillis::now(),
                Retention {
                    max_age_ms: 3_600_000,
                    max_count: 3,
                },
            )
            .expect("prune");
        assert_eq!(removed, 2, "the old one and one excess");
        let (kept, _) = store
            .list(Direction::In, None, 10, usize::MAX)
            .expect("list");
        assert_eq!(
            kept.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["N1", "N2", "N3"]
        );
        assert_eq!(store.outbox().expect("outbox").len(), 1);
    }
}
