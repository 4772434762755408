//! `EntryCursor`: where a subscription by entry id (Redis Streamer's pull) is on one topic, and
//! its reads of the ring: up to `count` entries past the cursor (oldest first, the newest with
//! `latest`, or skipping to the newest past the byte cap), counting what it dropped and what
//! was evicted before it read it.

use std::sync::Arc;

use super::close::Close;
use super::entry_id::{EntryId, Start};
use super::message::{Message, MessageKind};
use super::ring::Ring;

/// How one read takes entries from a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Up to `count` oldest entries past the cursor.
    Oldest,
    /// The newest `count`, newest first (Redis Streamer's `latest`).
    Latest,
    /// The newest `count`, oldest first (the byte cap was exceeded).
    SkipToNewest,
}

/// What one read of one topic gave.
#[derive(Debug, Default)]
pub(crate) struct TopicRead {
    pub entries: Vec<Arc<Message>>,
    pub dropped: u64,
    pub missed: u64,
    pub close: Option<Close>,
}

/// Where a subscription is on one topic (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct EntryCursor {
    /// The last id handed out (or the starting point).
    pub id: EntryId,
    /// Data messages of the topic up to the cursor, when known (to count evicted entries).
    ordinal: Option<u64>,
    /// The ring's interrupt count at subscribe time.
    interrupts: u64,
}

fn is_data(message: &&Arc<Message>) -> bool {
    message.kind() == MessageKind::Data
}

impl EntryCursor {
    /// A cursor for `start` on `ring`.
    pub(crate) fn new(ring: &Ring, start: Start) -> Self {
        let id = start.cursor(ring.last_id());
        let ordinal = match start {
            Start::New => Some(ring.added()),
            // From the oldest retained: what was evicted before is not this subscriber's loss.
            Start::Oldest => None,
            Start::After(_) => {
                let index = ring.after_index(id);
                // A cursor older than the ring: the count evicted after it is known only if
                // none of the evicted entries is newer than it.
                (index > 0 || ring.not_evicted_after(id)).then(|| ring.ordinal_before(index))
            }
        };
        Self { id, ordinal, interrupts: ring.interrupts() }
    }

    /// Moves the cursor to `id`, handed out from elsewhere (a replay); its ordinal is unknown.
    pub(crate) fn moved_to(&mut self, id: EntryId) {
        if id != self.id {
            self.id = id;
            self.ordinal = None;
        }
    }

    /// For a `$` start made while this process knew nothing of the topic: `last` is the
    /// stream's last id, read from the backend after the subscription was registered. Entries
    /// up to it were published before the subscription was made (before it returned); those
    /// still on their way to this process are skipped.
    pub(crate) fn settle_new(&mut self, last: EntryId) {
        // With `last` at `0-0` nothing can arrive late: the ordinal stays right.
        if self.id == EntryId::ZERO && last != EntryId::ZERO {
            self.id = last;
            // Entries up to `last` may still reach the ring: what the cursor passed is unknown.
            self.ordinal = None;
        }
    }

    /// The close of this cursor if its ring ended or was interrupted.
    fn closed(&self, ring: &Ring) -> Option<Close> {
        match ring.ended() {
            Some(close) => Some(close.clone()),
            None => (self.interrupts != ring.interrupts()).then_some(Close::LIVE_LOST),
        }
    }

    /// Whether a read would give an entry or a close.
    pub(crate) fn pending(&self, ring: &Ring) -> bool {
        self.closed(ring).is_some() || ring.added() > ring.ordinal_before(ring.after_index(self.id))
    }

    /// Envelope bytes of the messages past the cursor.
    pub(crate) fn backlog(&self, ring: &Ring) -> usize {
        ring.bytes_from_index(ring.after_index(self.id))
    }

    /// Takes up to `count` entries past the cursor and moves it to the newest one taken.
    pub(crate) fn read(&mut self, ring: &Ring, count: usize, mode: Mode) -> TopicRead {
        if let Some(close) = self.closed(ring) {
            return TopicRead { close: Some(close), ..TopicRead::default() };
        }
        let start = ring.after_index(self.id);
        let before = ring.ordinal_before(start);
        let available = ring.added() - before;
        if available == 0 {
            return TopicRead::default();
        }
        let mut read = TopicRead::default();
        if let Some(seen) = self.ordinal {
            read.missed = before.saturating_sub(seen);
        }
        let window = ring.messages().range(start..);
        read.entries = match mode {
            Mode::Oldest => window.filter(is_data).take(count).cloned().collect(),
            Mode::Latest => window.rev().filter(is_data).take(count).cloned().collect(),
            Mode::SkipToNewest => {
                let mut newest: Vec<Arc<Message>> = window.rev().filter(is_data).take(count).cloned().collect();
                newest.reverse();
                newest
            }
        };
        if mode != Mode::Oldest {
            read.dropped = available - read.entries.len() as u64;
        }
        let newest = read.entries.iter().map(|m| m.entry_id()).max().unwrap_or(self.id);
        self.id = newest;
        self.ordinal = Some(ring.ordinal_before(ring.after_index(newest)));
        read
    }
}
