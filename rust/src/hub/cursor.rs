//! `Cursor`: where a subscription by sequence is in its stream, and everything it does with
//! the messages it meets, whether they come from the ring or from a backend's replay: skipping
//! what it already passed, counting (and, if asked, noticing) gaps, closing at an
//! end-of-stream marker, following sequence restarts, and the overflow policy on its live
//! backlog. O(1) memory per subscriber: the messages stay in the shared ring.

use std::sync::Arc;

use super::close::Close;
use super::message::{Message, MessageKind};
use super::notice::{self, GapReason, Notice};
use super::policy::{Overflow, Policy};
use super::ring::{EpochStart, Ring};

/// Why sequences from `from` on are no longer in `ring`: evicted for the process's budget, or
/// past the topic's own retention.
fn lost(ring: &Ring, from: u64) -> GapReason {
    if from <= ring.evicted_through() {
        GapReason::Evicted
    } else {
        GapReason::Expired
    }
}

/// Where a subscription is in its topic's sequence (see the module docs).
#[derive(Debug, Default, Clone)]
pub(crate) struct Cursor {
    /// Next sequence to deliver (0: from the oldest a replay gives).
    pub next: u64,
    /// The stream's head at subscribe time when replaying (`start` given), else 0.
    pub replay_end: u64,
    /// An end-of-stream marker was met inside the replay range: close once it is sent.
    pub end_in_replay: bool,
    /// Ring epoch the cursor refers to (changes when the sequence restarts).
    pub epoch: u64,
    /// Sequence of the last frame handed out.
    pub last_sequence: u64,
    /// Sequences skipped because they were no longer retained.
    pub missed: u64,
    /// Set once the subscription has ended; terminal.
    pub close: Option<Close>,
    /// The subscriber's options (notices, byte cap, overflow policy).
    pub policy: Policy,
    /// Messages skipped or abandoned by the overflow policy.
    pub dropped: u64,
    /// The ring's interrupt count at subscribe time.
    pub interrupts: u64,
    /// Notices owed before the next data (only with `policy.notify_gaps`).
    pub notices: Vec<Notice>,
}

impl Cursor {
    /// A cursor at the ring's head: nothing the ring receives later is missed.
    pub(crate) fn register(ring: &Ring, policy: Policy) -> Self {
        Self { next: ring.head() + 1, epoch: ring.epoch(), interrupts: ring.interrupts(), policy, ..Self::default() }
    }

    /// Places a registered cursor for `start` (`None`: live; `0`: the oldest retained; `n`:
    /// from `n`), where `head` is the stream's head (the ring's, or for a mirror the
    /// backend's, read after the cursor registered). With `remote` (a backend can replay),
    /// returns the sequence to fetch from the backend first (0: its oldest) when the ring does
    /// not hold `start`.
    ///
    /// A live cursor skips everything at or below `head`: a mirror may receive such a message
    /// (published by another process, and acknowledged, before this subscription was made)
    /// after the cursor registered, and it must not be delivered as live.
    pub(crate) fn start(&mut self, ring: &Ring, start: Option<u64>, head: u64, remote: bool) -> Option<u64> {
        if start.is_none_or(|n| n > head) {
            self.next = self.next.max(head + 1);
        }
        match start {
            Some(n) if n <= head => {
                self.replay_end = head;
                let held = n >= 1 && !ring.messages().is_empty() && ring.oldest() <= n;
                if remote && !held {
                    self.next = n;
                    return Some(n);
                }
                let oldest = ring.oldest();
                self.next = n.max(oldest);
                if n > 0 && oldest > n {
                    self.missed = oldest - n;
                    self.notice(Notice::Gap { from: n, to: oldest - 1, reason: lost(ring, n) });
                }
            }
            // Resuming beyond the head: the history this client saw is gone (restart, flush).
            Some(n) if n > head + 1 => {
                self.notice(Notice::Epoch { last_sequence: n - 1, current: head, reason: notice::BEYOND_HEAD });
            }
            _ => {}
        }
        None
    }

    /// Owes the subscriber `notice` before its next data, if it asked for notices.
    pub(crate) fn notice(&mut self, notice: Notice) {
        if self.policy.notify_gaps {
            self.notices.push(notice);
        }
    }

    /// Moves the owed notices into `frames`.
    pub(crate) fn drain_notices(&mut self, frames: &mut Vec<Arc<Message>>) {
        frames.extend(self.notices.drain(..).map(|n| n.message()));
    }

    /// Ends the cursor if its ring ended or was interrupted; whether it is still open.
    pub(crate) fn check(&mut self, ring: &Ring) -> bool {
        if self.close.is_none() {
            if let Some(close) = ring.ended() {
                self.close = Some(close.clone());
            } else if self.interrupts != ring.interrupts() {
                self.close = Some(Close::LIVE_LOST);
            }
        }
        self.close.is_none()
    }

    /// Takes one message of the stream, in sequence order, from a backend's replay: skips it if
    /// the cursor is past it, counts the sequences missing before it as a gap.
    pub(crate) fn accept(&mut self, message: &Arc<Message>, frames: &mut Vec<Arc<Message>>) {
        let seq = message.sequence();
        if seq < self.next || self.close.is_some() {
            return;
        }
        if self.next > 0 && seq > self.next {
            // Tiled skips expired sequences silently; ferrotile counts them, and tells the
            // subscribers that asked.
            self.skip_to(seq, GapReason::Expired, frames);
        }
        self.take(message, frames);
    }

    /// Hands out `message` (the next in sequence): a frame, or an end-of-stream marker.
    fn take(&mut self, message: &Arc<Message>, frames: &mut Vec<Arc<Message>>) {
        let in_replay = message.sequence() <= self.replay_end;
        self.next = message.sequence() + 1;
        match message.kind() {
            MessageKind::Data => {
                self.last_sequence = message.sequence();
                frames.push(Arc::clone(message));
            }
            MessageKind::EndOfStream if in_replay => self.end_in_replay = true,
            MessageKind::EndOfStream => self.close = Some(Close::PRODUCER_ENDED),
        }
    }

    /// Sequences `next..to` will never be delivered: counted, and noticed if asked.
    fn skip_to(&mut self, to: u64, reason: GapReason, frames: &mut Vec<Arc<Message>>) {
        // Sequences start at 1: a cursor at 0 (`start=0`, "from the oldest") lost nothing below.
        let from = self.next.max(1);
        if to > from {
            self.missed += to - from;
            if self.policy.notify_gaps {
                frames.push(Notice::Gap { from, to: to - 1, reason }.message());
            }
        }
        self.next = to;
    }

    /// Follows the ring into a new epoch (its sequence restarted, or a mirror joined or
    /// rebased).
    fn follow_epoch(&mut self, ring: &Ring, frames: &mut Vec<Arc<Message>>) {
        if self.epoch == ring.epoch() {
            return;
        }
        self.epoch = ring.epoch();
        match ring.epoch_start() {
            // A mirror joined its remote stream mid-way: nothing was lost, the cursor keeps its
            // place in the remote sequence.
            EpochStart::Joined => self.next = self.next.max(ring.base()),
            EpochStart::Rebased if self.next < ring.base() => {
                self.skip_to(ring.base(), GapReason::Expired, frames);
            }
            EpochStart::Rebased => {}
            EpochStart::Restart => {
                // A cursor that had not passed sequence 1 lost nothing.
                if self.next > 1 {
                    let last_sequence = self.next - 1;
                    self.notice(Notice::Epoch { last_sequence, current: ring.head(), reason: notice::RESTARTED });
                }
                self.next = ring.base();
                self.replay_end = 0;
                self.end_in_replay = false;
            }
        }
    }

    /// Takes up to `max` frames (in all) from the ring after the cursor, and the close if the
    /// subscription has ended (the close comes after every message that precedes it).
    pub(crate) fn read(&mut self, ring: &Ring, max: usize, frames: &mut Vec<Arc<Message>>) {
        if !self.check(ring) {
            return;
        }
        self.follow_epoch(ring, frames);
        let (head, oldest) = (ring.head(), ring.oldest());
        if self.next > self.replay_end && self.next <= head {
            let backlog = ring.bytes_from(self.next);
            if backlog > self.policy.max_queue_bytes || self.next < oldest {
                let ended = ring.get(head).is_some_and(|m| m.kind() == MessageKind::EndOfStream);
                self.overflow(head, oldest, backlog, ended, lost(ring, self.next));
            }
        }
        self.drain_notices(frames);
        while frames.len() < max && self.next <= head && self.close.is_none() {
            if self.end_in_replay && self.next > self.replay_end {
                break;
            }
            if self.next < oldest {
                if self.next <= self.replay_end {
                    // Tiled skips expired sequences silently during replay (notice if asked).
                    let reason = lost(ring, self.next);
                    self.skip_to(oldest.min(self.replay_end + 1), reason, frames);
                    continue;
                }
                // Only reachable mid-batch; the overflow check above handles a cursor behind.
                break;
            }
            let Some(message) = ring.get(self.next) else { break };
            self.take(message, frames);
        }
        if self.close.is_none() && self.end_in_replay && self.next > self.replay_end {
            self.close = Some(Close::PRODUCER_ENDED);
        }
    }

    /// Live-backlog bytes (what `max_queue_bytes` is compared with).
    pub(crate) fn backlog(&self, ring: &Ring) -> usize {
        if self.epoch != ring.epoch() {
            return ring.retained().1;
        }
        ring.bytes_from(self.next.max(self.replay_end + 1))
    }

    /// Applies the overflow policy to a live cursor whose backlog (`backlog` bytes up to
    /// `head`) exceeds its cap, or that fell behind the oldest retained message (for `lost`).
    /// `ended`: the head is the end-of-stream marker.
    fn overflow(&mut self, head: u64, oldest: u64, backlog: usize, ended: bool, lost: GapReason) {
        let behind = self.next < oldest;
        let over = backlog > self.policy.max_queue_bytes && self.next < head;
        if !behind && !over {
            return;
        }
        match self.policy.on_overflow {
            Overflow::Close if behind => {
                self.missed += oldest - self.next;
                self.close = Some(Close::fell_behind(self.next, oldest - 1));
                self.next = oldest;
            }
            Overflow::Close => {
                let dropped = head + 1 - self.next;
                self.dropped += dropped;
                self.close = Some(Close::overflow(dropped, backlog, self.policy.max_queue_bytes));
            }
            Overflow::Latest => {
                // The newest frame wins, also after the stream was closed: then the last data
                // message and the end marker are kept.
                let newest = if ended && head > oldest { head - 1 } else { head };
                let from = self.next;
                if from >= newest {
                    return;
                }
                if behind {
                    self.missed += oldest - from;
                }
                self.dropped += newest - from;
                let reason = if over { GapReason::Overflow } else { lost };
                self.notice(Notice::Gap { from, to: newest - 1, reason });
                self.next = newest;
            }
        }
    }
}
