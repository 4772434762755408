//! Bench frames: the writer puts a little-endian u64 frame id in bytes 0..8 of each payload and
//! its CLOCK_MONOTONIC send time (ns) in bytes 8..16 (ids start at 0 when the writer starts); a
//! subscriber counts unique frames, duplicates and the ids missing below the highest one seen
//! (holes; reordering by concurrent writers is not a hole) per socket, and the latency from the
//! stamp to its receipt (same host).

use hdrhistogram::Histogram;

/// Frame ids tracked per socket for duplicates (more are counted, not checked).
const MAX_TRACKED_IDS: u64 = 1 << 26;
/// Highest latency the histogram holds, in microseconds (larger ones are clamped to it).
const MAX_LATENCY_US: u64 = 600_000_000;
/// How many of its slowest frames each socket remembers (for `lat_slowest` in the summary).
pub const SLOWEST: usize = 8;

/// How a subscriber's messages carry the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Payload {
    /// The whole binary message is the frame (the reference relays, Redis Streamer `header=0`).
    Raw,
    /// A msgpack envelope (`envelope_format=msgpack`) whose `payload` holds the frame.
    Msgpack,
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the writer's stamp (and of Python's
/// `time.monotonic_ns`), which `std::time::Instant` does not expose.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

/// Fills `frame` with pseudo-random bytes (xorshift64*): a payload no compressor shrinks, as
/// detector noise, for writers whose frames are stored.
pub fn noise(frame: &mut [u8], seed: u64) {
    let mut state = seed | 1;
    for chunk in frame.chunks_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let value = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&value[..chunk.len()]);
    }
}

/// Fills `frame` with little-endian uint16 photon counts, Poisson-distributed around `mean`
/// (Knuth's method on xorshift64*): what a photon-counting detector sends, mostly small
/// values, which a compressor shrinks several times (unlike [`noise`]).
pub fn photons(frame: &mut [u8], mean: f64, seed: u64) {
    let mut state = seed | 1;
    let mut uniform = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    };
    let limit = (-mean).exp();
    for pixel in frame.chunks_mut(2) {
        let mut count = 0u16;
        let mut product = uniform();
        while product > limit && count < u16::MAX {
            count += 1;
            product *= uniform();
        }
        pixel.copy_from_slice(&count.to_le_bytes()[..pixel.len()]);
    }
}

/// Writes the frame id and the send time into the first 16 bytes (as far as the frame has them).
pub fn stamp(frame: &mut [u8], id: u64) {
    let head = id.to_le_bytes().into_iter().chain(monotonic_ns().to_le_bytes());
    for (byte, value) in frame.iter_mut().zip(head) {
        *byte = value;
    }
}

/// The frame inside a message: the message itself, or the `payload` of a msgpack envelope
/// (`None` for other envelopes, e.g. the schema).
pub fn payload_of(message: &[u8], kind: Payload) -> Option<&[u8]> {
    match kind {
        Payload::Raw => Some(message).filter(|m| !m.is_empty()), // empty = Redis Streamer heartbeat
        Payload::Msgpack => {
            let rmpv::ValueRef::Map(entries) = rmpv::decode::read_value_ref(&mut &message[..]).ok()? else {
                return None;
            };
            entries.into_iter().find_map(|(k, v)| match (k, v) {
                (rmpv::ValueRef::String(k), rmpv::ValueRef::Binary(bytes)) if k.as_bytes() == b"payload" => Some(bytes),
                _ => None,
            })
        }
    }
}

/// What one socket saw of the frames.
#[derive(Debug)]
pub struct FrameStats {
    seen: Vec<u64>,
    /// Distinct frame ids received.
    pub unique: u64,
    /// Frames whose id had been received before.
    pub dups: u64,
    /// The highest id received, if any.
    pub max_id: Option<u64>,
    /// Latency (receipt - stamp) in microseconds.
    pub latency_us: Histogram<u64>,
    /// The [`SLOWEST`] slowest frames so far as (latency in microseconds, id), slowest last.
    pub slowest: Vec<(u64, u64)>,
}

impl Default for FrameStats {
    fn default() -> Self {
        Self {
            seen: Vec::new(),
            unique: 0,
            dups: 0,
            max_id: None,
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("static bounds are valid"),
            slowest: Vec::new(),
        }
    }
}

impl FrameStats {
    /// Ids below the highest one received that never arrived (0 before any frame).
    pub fn holes(&self) -> u64 {
        self.max_id.map_or(0, |max| (max + 1).saturating_sub(self.unique))
    }

    /// Keeps `(micros, id)` if it is among the [`SLOWEST`] slowest frames so far.
    fn remember_if_slow(&mut self, micros: u64, id: u64) {
        if self.slowest.len() == SLOWEST {
            if micros <= self.slowest[0].0 {
                return;
            }
            self.slowest.remove(0);
        }
        let at = self.slowest.partition_point(|&(m, _)| m < micros);
        self.slowest.insert(at, (micros, id));
    }

    /// Counts one frame received at `now_ns` (CLOCK_MONOTONIC). Frames under 8 bytes carry no id.
    pub fn record(&mut self, frame: &[u8], now_ns: u64) {
        let Some(id) = frame.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))) else {
            return;
        };
        if let Some(sent) = frame.get(8..16).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))) {
            let micros = (now_ns.saturating_sub(sent) / 1000).clamp(1, MAX_LATENCY_US);
            let _ = self.latency_us.record(micros);
            self.remember_if_slow(micros, id);
        }
        self.max_id = Some(self.max_id.map_or(id, |max| max.max(id)));
        if id >= MAX_TRACKED_IDS {
            self.unique += 1;
            return;
        }
        let (word, bit) = (usize::try_from(id / 64).expect("below MAX_TRACKED_IDS"), 1u64 << (id % 64));
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit == 0 {
            self.seen[word] |= bit;
            self.unique += 1;
        } else {
            self.dups += 1;
        }
    }
}

/// A msgpack map of `entries`, in order: the server messages the tests read.
#[cfg(test)]
pub fn packed(entries: Vec<(&str, rmpv::Value)>) -> Vec<u8> {
    let map = rmpv::Value::Map(entries.into_iter().map(|(key, value)| (key.into(), value)).collect());
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, &map).expect("writing to a Vec");
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_unique_dups_gaps_and_latency() {
        let mut stats = FrameStats::default();
        let mut frame = [0u8; 32];
        for id in [0, 1, 1, 4, 3, 5] {
            stamp(&mut frame, id);
            stats.record(&frame, monotonic_ns() + 2_000_000);
        }
        assert_eq!((stats.unique, stats.dups, stats.holes(), stats.max_id), (5, 1, 1, Some(5)));
        assert_eq!(stats.latency_us.len(), 6);
        assert!(stats.latency_us.value_at_quantile(0.5) >= 1900, "2 ms stamped in the past");
        stats.record(&[1, 2, 3], 0); // too short to carry an id
        assert_eq!(stats.unique, 5);
    }

    #[test]
    fn keeps_the_slowest_frames() {
        let mut stats = FrameStats::default();
        let mut frame = [0u8; 16]; // sent at 0 ns
        for id in [3u64, 19, 0, 7, 12, 5, 18, 1, 15, 9, 14, 2, 17, 11, 16, 4, 13, 6, 10, 8] {
            frame[..8].copy_from_slice(&id.to_le_bytes());
            stats.record(&frame, (100 + 10 * id) * 1000); // slower as the id grows
        }
        let ids: Vec<u64> = stats.slowest.iter().map(|&(_, id)| id).collect();
        assert_eq!(ids, (12..20).collect::<Vec<_>>());
        assert_eq!(stats.slowest.last(), Some(&(290, 19)));
    }

    #[test]
    fn finds_the_payload() {
        let buf = packed(vec![("type", "array-data".into()), ("payload", vec![7u8; 16].into())]);
        assert_eq!(payload_of(&buf, Payload::Msgpack), Some(&[7u8; 16][..]));
        assert_eq!(payload_of(b"\x81\xa4type\xa6schema", Payload::Msgpack), None);
        assert_eq!(payload_of(b"abc", Payload::Raw), Some(&b"abc"[..]));
        assert_eq!(payload_of(b"", Payload::Raw), None);
    }

    #[test]
    fn photon_counts_average_the_mean() {
        let mut frame = vec![0u8; 2 * 100_000];
        photons(&mut frame, 2.0, 7);
        let counts: Vec<u16> = frame.chunks(2).map(|p| u16::from_le_bytes([p[0], p[1]])).collect();
        let mean = counts.iter().map(|&c| f64::from(c)).sum::<f64>() / counts.len() as f64;
        assert!((mean - 2.0).abs() < 0.05, "mean {mean}");
        assert!(counts.iter().all(|&c| c < 30));
    }
}
