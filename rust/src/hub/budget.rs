//! `Budget`: the envelope bytes retained in this process over all topics, against
//! `HubConfig::max_total_bytes`. Every ring adds and releases its messages' bytes here;
//! [`crate::hub::topics::Topics::keep_within_budget`] evicts when it is over.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

/// The process-wide retention budget (see the module docs).
#[derive(Debug)]
pub(crate) struct Budget {
    max: usize,
    retained: AtomicUsize,
    evicted_messages: AtomicU64,
    evicted_bytes: AtomicU64,
    /// Held by the one sweep under way.
    sweeping: Mutex<()>,
}

impl Budget {
    /// A budget of `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            retained: AtomicUsize::new(0),
            evicted_messages: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
            sweeping: Mutex::new(()),
        }
    }

    /// The budget in bytes.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Bytes retained now (all rings).
    pub(crate) fn retained(&self) -> usize {
        self.retained.load(Ordering::Relaxed)
    }

    /// A ring took `bytes` more.
    pub(crate) fn add(&self, bytes: usize) {
        self.retained.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A ring let go of `bytes`.
    pub(crate) fn release(&self, bytes: usize) {
        self.retained.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Whether more is retained than the budget.
    pub(crate) fn is_over(&self) -> bool {
        self.retained() > self.max
    }

    /// What a sweep evicts down to: a sixteenth below the budget, so that a full process does
    /// not sweep on every publish.
    pub(crate) fn low_water(&self) -> usize {
        self.max - self.max / 16
    }

    /// The sweep lock, if no other sweep is under way (that one evicts for everyone).
    pub(crate) fn try_sweep(&self) -> Option<parking_lot::MutexGuard<'_, ()>> {
        self.sweeping.try_lock()
    }

    /// A message of `bytes` was evicted to keep within the budget.
    pub(crate) fn count_eviction(&self, bytes: usize) {
        self.evicted_messages.fetch_add(1, Ordering::Relaxed);
        self.evicted_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// `(messages, bytes)` evicted to keep within the budget so far.
    pub(crate) fn evictions(&self) -> (u64, u64) {
        (self.evicted_messages.load(Ordering::Relaxed), self.evicted_bytes.load(Ordering::Relaxed))
    }
}
