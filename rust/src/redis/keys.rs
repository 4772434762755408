//! Redis key names, the publish script and its arguments, and the live-channel message format.

use std::time::Duration;

use crate::error::{CoreError, CoreResult};
use crate::hub::{EntryId, RetentionOverride};

/// A record of at least this many bytes goes to Redis beside the publish script, not through
/// it: upload keys (`SET ... PX`) that the script renames into the record's own keys. Redis's
/// Lua hashes every byte of every string it is handed (since 7.0, ~1.3 ns per byte here), and
/// the script used to be handed each record and to build a second string from it for the live
/// channel: 0.7 ms of Redis's one thread per 256 KiB record, 80% of its time at 800 frames/s.
/// Under this size the record stays an argument and rides the live channel (no extra read).
pub const KEYED_MIN: usize = 64 * 1024;

/// A kept record is cut into parts of at most this many bytes, one key each: Redis spends
/// ~0.6 ns per byte to store and read back values up to 2 MiB, but ~2.0 ns per byte for 8 MiB
/// values (SET then GET, measured here with Redis 7.0), so an 8 MiB frame costs its one thread
/// ~5 ms in parts instead of ~17 ms whole.
pub const PART_MAX: usize = 1024 * 1024;

/// How long an upload key lives if its script never runs (the connection was lost between
/// them): long enough for any batch, short enough that nothing lingers.
pub const UPLOAD_TTL_MS: u64 = 60_000;

/// The publish script: one atomic round trip for a batch of events of one node. Per event it
/// assigns the next sequence and (data) the next entry id, appends the event to the node's
/// stream (stream ID `<seq>-0`, so replay is `XRANGE <start>-0 +`; fields `d <record>
/// i <entry id> p <previous entry id>`, `k <parts> i .. p ..` for a record kept in its own keys, or
/// for an end-of-stream marker `c "" i <last entry id>`), trims it, and announces it on the
/// live channel; then it refreshes the TTLs. Entry ids are assigned like `XADD *` from Redis's
/// clock (`TIME`) after the last id, kept in the node's entries hash (with `added`, `kept` and
/// the node's retention override). Explicit ids are checked before anything is written: one at
/// or below the previous id fails the whole batch with an `ENTRYID` error and changes nothing
/// (but deletes the batch's upload keys).
///
/// A record of [`KEYED_MIN`] bytes or more arrives as upload keys `<upload>:1..=n` (parts of
/// at most [`PART_MAX`] bytes), which the script renames to `<record prefix><seq>:1..=n` (no
/// copy, and the bytes never become a Lua string), expiring with the data TTL; the stream
/// entry holds `k <n>` and the event is announced without the bytes (kind `s<n>@<upload>`:
/// each process that follows the node reads the parts, except the publisher, which kept the
/// record under its upload name). Records that fall out of the retained window are
/// deleted from the oldest (`kept` in the entries hash), at most 1,000 per event; replay skips
/// an entry whose parts are gone. Announcing large records without them also keeps one 64 MiB
/// frame off the live channel, where Redis disconnects a pub/sub client whose output buffer
/// passes 32 MiB (its default `client-output-buffer-limit pubsub`).
///
/// KEYS: sequence counter, stream, entries hash. ARGV: kind (`d` data, `c` end of stream),
/// max count, max bytes, data TTL (ms), sequence TTL (ms), live channel, node id, record key
/// prefix, then per event: id spec (`*`, `<ms>-*` or `<ms>-<n>`), record (empty if uploaded),
/// upload key (empty if the record is inline), its number of parts (0 if inline). Returns
/// `{last sequence, ids...}`.
pub const PUBLISH_SCRIPT: &str = r"
local function parse(id)
  local ms, n = string.match(id or '', '^(%d+)%-(%d+)$')
  if not ms then return 0, 0 end
  return tonumber(ms), tonumber(n)
end
local function fmt(ms, n) return string.format('%.0f-%.0f', ms, n) end
local kind = ARGV[1]
local count = (#ARGV - 8) / 4
local function refuse(message)
  for i = 1, count do
    for j = 1, tonumber(ARGV[8 + 4 * i]) do redis.call('DEL', ARGV[7 + 4 * i] .. ':' .. j) end
  end
  return redis.error_reply(message)
end
for i = 1, count do
  for j = 1, tonumber(ARGV[8 + 4 * i]) do
    if redis.call('EXISTS', ARGV[7 + 4 * i] .. ':' .. j) == 0 then
      return refuse('ERR upload ' .. ARGV[7 + 4 * i] .. ' is missing part ' .. j)
    end
  end
end
local info = redis.call('HMGET', KEYS[3], 'last', 'max_count', 'max_bytes', 'max_age', 'kept')
local lms, ln = parse(info[1])
local prev = fmt(lms, ln)
local ids = {}
if kind == 'd' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for i = 1, count do
    local spec = ARGV[5 + 4 * i]
    local ms, n
    if spec == '*' then
      if now > lms then ms, n = now, 0 else ms, n = lms, ln + 1 end
    else
      local a, b = string.match(spec, '^(%d+)%-(.*)$')
      ms = tonumber(a)
      if b == '*' then
        if ms == lms then n = ln + 1 else n = 0 end
      else
        n = tonumber(b)
      end
      if ms < lms or (ms == lms and n <= ln) then
        return refuse('ENTRYID entry id ' .. fmt(ms, n) ..
          [[ is not greater than the stream's last id ]] .. fmt(lms, ln))
      end
    end
    lms, ln = ms, n
    ids[i] = fmt(ms, n)
  end
end
local max_count = tonumber(info[2]) or tonumber(ARGV[2])
local max_bytes = tonumber(info[3]) or tonumber(ARGV[3])
local ttl = tonumber(info[4]) or tonumber(ARGV[4])
local kept = tonumber(info[5])
local seq = 0
for i = 1, count do
  local record = ARGV[6 + 4 * i]
  local upload = ARGV[7 + 4 * i]
  local parts = tonumber(ARGV[8 + 4 * i])
  seq = redis.call('INCR', KEYS[1])
  if seq == 1 then
    redis.call('DEL', KEYS[2])
    kept = nil
  end
  local size = #record
  local field = kind
  if parts > 0 then
    size = 0
    for j = 1, parts do
      local key = ARGV[8] .. seq .. ':' .. j
      size = size + redis.call('STRLEN', upload .. ':' .. j)
      redis.call('RENAME', upload .. ':' .. j, key)
      redis.call('PEXPIRE', key, ttl)
    end
    field = 'k'
    record = tostring(parts)
    kept = kept or seq
  end
  local keep = math.max(1, math.min(max_count, math.floor(max_bytes / math.max(1, size))))
  local op = '~'
  if keep < 1000 then op = '=' end
  local id = ids[i] or prev
  local fields
  if kind == 'd' then
    fields = {field, record, 'i', id, 'p', prev}
  else
    fields = {'c', record, 'i', prev}
  end
  local sid = seq .. '-0'
  local added = redis.pcall('XADD', KEYS[2], 'MAXLEN', op, keep, sid, unpack(fields))
  if type(added) == 'table' and added.err then
    redis.call('DEL', KEYS[2])
    redis.call('XADD', KEYS[2], 'MAXLEN', op, keep, sid, unpack(fields))
  end
  if kept then
    local last = math.min(seq - keep, kept + 999)
    for s = kept, last do
      local j = 1
      while redis.call('DEL', ARGV[8] .. s .. ':' .. j) == 1 do j = j + 1 end
    end
    kept = math.max(kept, last + 1)
  end
  if parts > 0 then
    redis.call('PUBLISH', ARGV[6], ARGV[7] .. ':' .. seq .. ':' .. id .. ':s' .. parts .. '@' .. upload)
  else
    redis.call('PUBLISH', ARGV[6], ARGV[7] .. ':' .. seq .. ':' .. id .. ':' .. kind .. record)
  end
  if kind == 'd' then prev = id end
end
redis.call('PEXPIRE', KEYS[2], ttl)
if kind == 'c' then
  redis.call('PEXPIRE', KEYS[1], ttl + 1000)
else
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('HSET', KEYS[3], 'last', prev)
  redis.call('HINCRBY', KEYS[3], 'added', count)
end
if kept then redis.call('HSET', KEYS[3], 'kept', kept) end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[5]) end
local out = {seq}
for i = 1, #ids do out[i + 1] = ids[i] end
return out
";

/// The retention script: sets (or, for an empty value, clears) the node's retention override
/// in its entries hash, trims the stream to a new count at once, and announces the override on
/// the live channel so every process's mirror applies it.
///
/// KEYS: stream, entries hash. ARGV: max count, max bytes, max age (ms) (each `''` = the hub's
/// default), sequence TTL (ms), live channel, node id.
pub const RETENTION_SCRIPT: &str = r"
local names = {'max_count', 'max_bytes', 'max_age'}
for i = 1, 3 do
  if ARGV[i] == '' then
    redis.call('HDEL', KEYS[2], names[i])
  else
    redis.call('HSET', KEYS[2], names[i], ARGV[i])
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if ARGV[1] ~= '' then redis.call('XTRIM', KEYS[1], 'MAXLEN', '=', ARGV[1]) end
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
redis.call('PUBLISH', ARGV[5], ARGV[6] .. ':0:-:r' .. ARGV[1] .. ',' .. ARGV[2] .. ',' .. ARGV[3])
return 1
";

/// Field name of a data entry in the stream (its value is the wire record).
pub const DATA: &str = "d";
/// Field name of a data entry whose record is kept in keys of its own (value: the number of
/// parts; see [`Keys::record`]).
pub const KEYED: &str = "k";
/// Field name of an end-of-stream entry (empty value).
pub const END: &str = "c";
/// Field name of an entry's id (`<ms>-<n>`; for a marker, the last data entry's id).
pub const ID: &str = "i";
/// Field name of the id of the data entry before this one (`0-0` if none).
pub const PREVIOUS: &str = "p";

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

    /// The node's entries hash: `last` entry id, `added` count, retention override.
    pub fn entries(&self, node: u64) -> String {
        format!("{}entries:{node}", self.prefix)
    }

    /// The key of one part (from 1) of a record kept apart from the node's stream (see
    /// [`KEYED_MIN`]).
    pub fn record(&self, node: u64, sequence: u64, part: usize) -> String {
        format!("{}{sequence}:{part}", self.record_prefix(node))
    }

    /// What the publish script appends `<seq>:<part>` to for a record's keys.
    pub fn record_prefix(&self, node: u64) -> String {
        format!("{}record:{node}:", self.prefix)
    }

    /// An upload's name: its parts (`<name>:<part>`) wait there for the publish script.
    pub fn upload(&self, token: &str) -> String {
        format!("{}upload:{token}", self.prefix)
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

/// Milliseconds of a TTL for `PEXPIRE` (at least 1).
pub fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX / 2).max(1)
}

/// One message of the live channel.
#[derive(Debug, PartialEq, Eq)]
pub enum Live {
    /// An event: node, sequence, entry id (for a marker, the last data entry's id), whether it
    /// is an end-of-stream marker, and the record.
    Event {
        /// Node id (topic).
        node: u64,
        /// Sequence assigned by the script.
        sequence: u64,
        /// Entry id assigned by the script.
        entry_id: EntryId,
        /// End-of-stream marker (no record).
        end: bool,
        /// The wire record of a data message.
        record: Vec<u8>,
    },
    /// A data event announced without its record (`s<parts>@<upload>`): read it from its keys
    /// ([`Keys::record`]), unless this process published it and kept it.
    Stored {
        /// Node id (topic).
        node: u64,
        /// Sequence assigned by the script.
        sequence: u64,
        /// Entry id assigned by the script.
        entry_id: EntryId,
        /// The record's number of parts.
        parts: usize,
        /// The upload name it was published under.
        upload: String,
    },
    /// A node's retention override changed (`None`: the hub's default).
    Retention {
        /// Node id (topic).
        node: u64,
        /// The new override.
        retention: RetentionOverride,
    },
}

/// Parses `<node>:<seq>:<entry id>:<kind><record>` (kind `d` or `c`),
/// `<node>:<seq>:<entry id>:s<parts>@<upload>` or
/// `<node>:0:-:r<max count>,<max bytes>,<max age ms>`.
pub fn parse_live(mut bytes: Vec<u8>) -> CoreResult<Live> {
    let bad = || CoreError::envelope("malformed live-channel message");
    let mut at = 0;
    let mut field = || -> CoreResult<String> {
        let len = bytes[at..].iter().position(|b| *b == b':').ok_or_else(bad)?;
        let text = std::str::from_utf8(&bytes[at..at + len]).map_err(|_| bad())?.to_owned();
        at += len + 1;
        Ok(text)
    };
    let number = |s: &str| s.parse::<u64>().map_err(|_| bad());
    let node = number(&field()?)?;
    let sequence = number(&field()?)?;
    let entry_id = field()?;
    let kind = bytes.get(at).copied();
    let record = bytes.split_off((at + 1).min(bytes.len()));
    match kind {
        Some(b'd' | b'c') => Ok(Live::Event {
            node,
            sequence,
            entry_id: EntryId::parse(&entry_id).map_err(|_| bad())?,
            end: kind == Some(b'c'),
            record,
        }),
        Some(b's') => {
            let text = std::str::from_utf8(&record).map_err(|_| bad())?;
            let (parts, upload) = text.split_once('@').filter(|(_, u)| !u.is_empty()).ok_or_else(bad)?;
            let parts = parts.parse::<usize>().ok().filter(|p| *p > 0).ok_or_else(bad)?;
            let entry_id = EntryId::parse(&entry_id).map_err(|_| bad())?;
            Ok(Live::Stored { node, sequence, entry_id, parts, upload: upload.to_owned() })
        }
        Some(b'r') => {
            let text = std::str::from_utf8(&record).map_err(|_| bad())?;
            let mut parts = text.split(',').map(|p| (!p.is_empty()).then(|| number(p)).transpose());
            let mut next = || parts.next().unwrap_or_else(|| Err(bad()));
            let (max_count, max_bytes, max_age) = (next()?, next()?, next()?);
            let retention = RetentionOverride {
                max_count: max_count.map(|n| n as usize),
                max_bytes: max_bytes.map(|n| n as usize),
                max_age: max_age.map(Duration::from_millis),
            };
            Ok(Live::Retention { node, retention })
        }
        _ => Err(bad()),
    }
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
        assert_eq!(keys.record(42, 7, 1), "ft:record:42:7:1");
        assert_eq!(keys.upload("a1:9"), "ft:upload:a1:9");
        assert_eq!(keys.epoch(), "ft:epoch");
    }

    #[test]
    fn ttl_millis() {
        assert_eq!(millis(Duration::from_secs(3600)), 3_600_000);
        assert_eq!(millis(Duration::ZERO), 1);
    }

    #[test]
    fn live_messages() {
        let m = parse_live(b"12:345:17-2:d\x01\x02:x".to_vec()).unwrap();
        let record = b"\x01\x02:x".to_vec();
        assert_eq!(m, Live::Event { node: 12, sequence: 345, entry_id: EntryId::new(17, 2), end: false, record });
        let m = parse_live(b"0:1:0-0:c".to_vec()).unwrap();
        assert_eq!(m, Live::Event { node: 0, sequence: 1, entry_id: EntryId::ZERO, end: true, record: vec![] });
        let upload = "ft:upload:a1:9".to_owned();
        let stored = Live::Stored { node: 7, sequence: 9, entry_id: EntryId::new(17, 2), parts: 12, upload };
        assert_eq!(parse_live(b"7:9:17-2:s12@ft:upload:a1:9".to_vec()).unwrap(), stored);
        let m = parse_live(b"5:0:-:r10,,2000".to_vec()).unwrap();
        let retention =
            RetentionOverride { max_count: Some(10), max_bytes: None, max_age: Some(Duration::from_secs(2)) };
        assert_eq!(m, Live::Retention { node: 5, retention });
        for bad in [
            &b""[..],
            b"1:2",
            b"x:2:1-0:d",
            b"1:2:1-0:z",
            b"1::1-0:d",
            b"1:2:d",
            b"1:2:x-1:d",
            b"1:0:-:r1,2",
            b"1:2:1-0:sx",
            b"1:2:1-0:s",
            b"1:2:1-0:s0",
            b"1:2:1-0:s12",
            b"1:2:1-0:s12@",
            b"1:2:1-0:s0@u",
            b"1:2:x:s",
        ] {
            assert!(parse_live(bad.to_vec()).is_err(), "{bad:?}");
        }
    }
}
