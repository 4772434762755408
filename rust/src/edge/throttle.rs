//! `Throttle`: a subscriber's `max_fps=N`: at most N frames a second, the newest wins. Frames
//! arriving faster replace the one held back; each frame delivered says how many were skipped
//! since the previous one (`skipped`), so that received + skipped = published.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::hub::Message;

/// See the module docs.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    next_at: Instant,
    held: Option<Arc<Message>>,
    skipped: u64,
}

impl Throttle {
    /// At most `max_fps` frames a second (> 0).
    pub fn new(max_fps: f64) -> Self {
        let interval = Duration::try_from_secs_f64(1.0 / max_fps).unwrap_or(Duration::from_secs(3600));
        Self { interval, next_at: Instant::now(), held: None, skipped: 0 }
    }

    /// A frame arrived; returns how many frames this one replaced (0 or 1).
    pub fn offer(&mut self, message: &Arc<Message>) -> u64 {
        let replaced = u64::from(self.held.replace(Arc::clone(message)).is_some());
        self.skipped += replaced;
        replaced
    }

    /// When the frame held back is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.held.as_ref().map(|_| self.next_at)
    }

    /// The frame held back and the frames skipped before it; the next is due an interval later.
    pub fn release(&mut self) -> Option<(Arc<Message>, u64)> {
        let held = self.held.take()?;
        self.next_at = Instant::now() + self.interval;
        Some((held, std::mem::take(&mut self.skipped)))
    }
}
