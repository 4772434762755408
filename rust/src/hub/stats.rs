//! `Stats`: one snapshot of a hub's figures, the backend's counters included (zeros in
//! process). Pure data.

/// Counters a backend keeps about itself (all zero for the in-process backend).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendCounters {
    /// Live events the Redis reader received.
    pub received: u64,
    /// Times the Redis reader reconnected.
    pub reconnects: u64,
    /// Stream history resets seen (Redis flushed or restarted empty).
    pub epoch_changes: u64,
    /// Gaps in the live feed filled by reading the stream back.
    pub gap_fills: u64,
    /// Malformed live events skipped.
    pub bad_messages: u64,
}

/// A hub's figures (see [`crate::hub::Hub::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Topics this process holds (streams in process; followed streams' mirrors with Redis).
    pub topics: usize,
    /// Messages retained in this process over all topics (after expiry).
    pub retained_messages: usize,
    /// Envelope bytes retained in this process over all topics.
    pub retained_bytes: usize,
    /// Live subscriptions of this process.
    pub subscribers: usize,
    /// The process-wide budget for retained bytes (`HubConfig::max_total_bytes`).
    pub max_total_bytes: usize,
    /// Messages evicted to keep within that budget, since the hub was made.
    pub evicted_messages: u64,
    /// Their envelope bytes.
    pub evicted_bytes: u64,
    /// Whether the backend is connected (always true in process).
    pub connected: bool,
    /// The backend's own counters.
    pub backend: BackendCounters,
}
