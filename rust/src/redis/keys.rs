//! Redis key names, the publish script and its arguments, and the live-channel message format.

use std::time::Duration;

use crate::error::{CoreError, CoreResult};

/// The publish script: one atomic round trip that assigns the next sequence, appends the
/// record to the node's stream (entry ID `<seq>-0`, so replay is `XRANGE <start>-0 +`), trims
/// it, refreshes the TTLs and announces it on the live channel.
///
/// KEYS: sequence counter, stream. ARGV: kind (`d` data, `c` end of stream), record, trim
/// length, trim operator (`~` or `=`), data TTL (ms), sequence TTL (ms), live channel, node id.
pub const PUBLISH_SCRIPT: &str = r"
local seq = redis.call('INCR', KEYS[1])
if seq == 1 then redis.call('DEL', KEYS[2]) end
local id = seq .. '-0'
local added = redis.pcall('XADD', KEYS[2], 'MAXLEN', ARGV[4], ARGV[3], id, ARGV[1], ARGV[2])
if type(added) == 'table' and added.err then
  redis.call('DEL', KEYS[2])
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], ARGV[3], id, ARGV[1], ARGV[2])
end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if ARGV[1] == 'c' then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]) + 1000)
else
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
redis.call('PUBLISH', ARGV[7], ARGV[8] .. ':' .. seq .. ':' .. ARGV[1] .. ARGV[2])
return seq
";

/// Field name of a data entry in the stream (its value is the wire record).
pub const DATA: &str = "d";
/// Field name of an end-of-stream entry (empty value).
pub const END: &str = "c";

/// Key names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (e.g. `ferrotile:`).
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// The node's sequence counter (`INCR`).
    pub fn sequence(&self, node: u64) -> String {
        format!("{}seq:{node}", self.prefix)
    }

    /// The node's stream of retained events.
    pub fn stream(&self, node: u64) -> String {
        format!("{}stream:{node}", self.prefix)
    }

    /// The pub/sub channel every process's reader subscribes to.
    pub fn live(&self) -> String {
        format!("{}live", self.prefix)
    }

    /// The epoch id: a random token created once; missing or changed means history was lost.
    pub fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }
}

/// Stream trimming for one event: `MAXLEN <op> <n>` where `n` also approximates the byte cap
/// by assuming the retained events are about this one's size.
pub fn trim_length(max_count: usize, max_bytes: usize, record_len: usize) -> (usize, &'static str) {
    let by_bytes = (max_bytes / record_len.max(1)).max(1);
    let n = max_count.min(by_bytes).max(1);
    // Exact trimming costs little for short streams; `~` is what keeps long ones cheap.
    (n, if n < 1000 { "=" } else { "~" })
}

/// Milliseconds of a TTL for `PEXPIRE` (at least 1).
pub fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX / 2).max(1)
}

/// One message of the live channel: node, sequence, whether it is an end-of-stream marker,
/// and the record.
#[derive(Debug, PartialEq, Eq)]
pub struct LiveMessage {
    /// Node id (topic).
    pub node: u64,
    /// Sequence assigned by the script.
    pub sequence: u64,
    /// End-of-stream marker (no record).
    pub end: bool,
    /// The wire record of a data message.
    pub record: Vec<u8>,
}

/// Parses `<node>:<seq>:<kind><record>`.
pub fn parse_live(mut bytes: Vec<u8>) -> CoreResult<LiveMessage> {
    let bad = || CoreError::envelope("malformed live-channel message");
    let first = bytes.iter().position(|b| *b == b':').ok_or_else(bad)?;
    let second = first + 1 + bytes[first + 1..].iter().position(|b| *b == b':').ok_or_else(bad)?;
    let number = |s: &[u8]| std::str::from_utf8(s).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(bad);
    let node = number(&bytes[..first])?;
    let sequence = number(&bytes[first + 1..second])?;
    let end = match bytes.get(second + 1) {
        Some(b'd') => false,
        Some(b'c') => true,
        _ => return Err(bad()),
    };
    let record = bytes.split_off(second + 2);
    Ok(LiveMessage { node, sequence, end, record })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        let keys = Keys::new("ft:");
        assert_eq!(keys.sequence(0), "ft:seq:0");
        assert_eq!(keys.stream(42), "ft:stream:42");
        assert_eq!(keys.live(), "ft:live");
        assert_eq!(keys.epoch(), "ft:epoch");
    }

    #[test]
    fn trimming_bounds_count_and_approximates_bytes() {
        assert_eq!(trim_length(10_000, 256 << 20, 1024), (10_000, "~"));
        assert_eq!(trim_length(10_000, 1 << 20, 256 << 10), (4, "="));
        assert_eq!(trim_length(10_000, 100, 1 << 20), (1, "="));
        assert_eq!(trim_length(5, 1 << 30, 0), (5, "="));
        assert_eq!(millis(Duration::from_secs(3600)), 3_600_000);
        assert_eq!(millis(Duration::ZERO), 1);
    }

    #[test]
    fn live_messages() {
        let m = parse_live(b"12:345:d\x01\x02:x".to_vec()).unwrap();
        assert_eq!(m, LiveMessage { node: 12, sequence: 345, end: false, record: b"\x01\x02:x".to_vec() });
        let m = parse_live(b"0:1:c".to_vec()).unwrap();
        assert!(m.end && m.record.is_empty() && m.node == 0);
        for bad in [&b""[..], b"1:2", b"x:2:d", b"1:2:z", b"1::d"] {
            assert!(parse_live(bad.to_vec()).is_err(), "{bad:?}");
        }
    }
}
