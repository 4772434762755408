//! Redis-Streamer-style entry ids (`"<ms>-<n>"`): parsing publishers' ids and subscribers'
//! cursors, and assigning ids like Redis `XADD *` (wall-clock milliseconds, then a counter).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{CoreError, CoreResult};

/// Largest id part a publisher may give: the Redis publish script computes ids with Lua's
/// doubles, exact only below 2^53 (a millisecond clock reaches that in the year 287396).
pub const MAX_PART: u64 = (1 << 53) - 1;

/// The id of one data message of a topic: strictly increasing per topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryId {
    /// Milliseconds since the Unix epoch (by default; explicit ids may be anything).
    pub ms: u64,
    /// Counter within the millisecond.
    pub n: u64,
}

impl EntryId {
    /// `0-0`: before every entry.
    pub const ZERO: EntryId = EntryId { ms: 0, n: 0 };

    /// The id `<ms>-<n>`.
    pub const fn new(ms: u64, n: u64) -> Self {
        Self { ms, n }
    }

    /// Parses `"<ms>-<n>"` or `"<ms>"` (= `<ms>-0`).
    pub fn parse(text: &str) -> CoreResult<Self> {
        let (ms, n) = match text.split_once('-') {
            Some((ms, n)) => (ms, Some(n)),
            None => (text, None),
        };
        let number =
            |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten();
        match (number(ms), n.map(number)) {
            (Some(ms), None) => Ok(Self::new(ms, 0)),
            (Some(ms), Some(Some(n))) => Ok(Self::new(ms, n)),
            _ => Err(malformed(text)),
        }
    }

    /// The id `XADD *` would give after `self` at wall-clock time `now_ms`.
    pub fn next_auto(self, now_ms: u64) -> Self {
        if now_ms > self.ms {
            Self::new(now_ms, 0)
        } else if self.n < u64::MAX {
            Self::new(self.ms, self.n + 1)
        } else {
            Self::new(self.ms + 1, 0)
        }
    }

    /// The greatest id below `self` (`0-0` stays `0-0`): a cursor that still includes `self`.
    pub fn before(self) -> Self {
        match (self.ms, self.n) {
            (_, n) if n > 0 => Self::new(self.ms, n - 1),
            (0, _) => Self::ZERO,
            (ms, _) => Self::new(ms - 1, u64::MAX),
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.n)
    }
}

fn malformed(text: &str) -> CoreError {
    CoreError::EntryId(format!("invalid entry id {text:?} (expected \"<ms>-<n>\", \"<ms>\" or \"<ms>-*\")"))
}

/// The id a publisher asks for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSpec {
    /// `None` or `"*"`: assigned from the clock.
    Auto,
    /// `"<ms>-*"`: this millisecond, the next counter value.
    AutoSeq(u64),
    /// `"<ms>-<n>"` or `"<ms>"`.
    Explicit(EntryId),
}

impl IdSpec {
    /// Parses a publisher's id (`None` = automatic). `0-0` and parts above [`MAX_PART`] are
    /// refused here; whether an id is greater than the topic's last one is checked on publish.
    pub fn parse(text: Option<&str>) -> CoreResult<Self> {
        let spec = match text {
            None | Some("*") => return Ok(Self::Auto),
            Some(t) => match t.strip_suffix("-*") {
                Some(ms) => Self::AutoSeq(EntryId::parse(ms).map_err(|_| malformed(t))?.ms),
                None if !t.is_empty() => Self::Explicit(EntryId::parse(t)?),
                None => return Err(malformed(t)),
            },
        };
        let (ms, n) = match spec {
            Self::Explicit(id) => (id.ms, id.n),
            Self::AutoSeq(ms) => (ms, 0),
            Self::Auto => (0, 0),
        };
        if ms > MAX_PART || n > MAX_PART {
            return Err(CoreError::EntryId(format!("entry id {:?} is too large (parts must be below 2^53)", text)));
        }
        if spec == Self::Explicit(EntryId::ZERO) {
            return Err(CoreError::EntryId("the entry id 0-0 is not allowed (ids must be greater than 0-0)".into()));
        }
        Ok(spec)
    }

    /// The spec as the Redis publish script reads it: `*`, `<ms>-*` or `<ms>-<n>`.
    pub fn wire(self) -> String {
        match self {
            Self::Auto => "*".into(),
            Self::AutoSeq(ms) => format!("{ms}-*"),
            Self::Explicit(id) => id.to_string(),
        }
    }

    /// The id this spec gives after `last` at `now_ms`, or why it cannot be used.
    pub fn resolve(self, last: EntryId, now_ms: u64) -> CoreResult<EntryId> {
        let id = match self {
            Self::Auto => return Ok(last.next_auto(now_ms)),
            Self::AutoSeq(ms) if ms > last.ms => EntryId::new(ms, 0),
            Self::AutoSeq(ms) if ms == last.ms && last.n < u64::MAX => EntryId::new(ms, last.n + 1),
            Self::AutoSeq(ms) => EntryId::new(ms, 0),
            Self::Explicit(id) => id,
        };
        if id <= last {
            return Err(not_greater(id, last));
        }
        Ok(id)
    }
}

/// The error of an explicit id at or below the last one.
pub(crate) fn not_greater(id: EntryId, last: EntryId) -> CoreError {
    CoreError::EntryId(format!("entry id {id} is not greater than the stream's last id {last}"))
}

/// Assigns ids to a whole batch after `last`, or fails without assigning any.
pub fn assign(last: EntryId, now_ms: u64, specs: &[IdSpec]) -> CoreResult<Vec<EntryId>> {
    let mut ids = Vec::with_capacity(specs.len());
    let mut prev = last;
    for spec in specs {
        prev = spec.resolve(prev, now_ms)?;
        ids.push(prev);
    }
    Ok(ids)
}

/// What can be checked of a batch without the topic's last id: explicit ids increase.
pub fn check_batch(specs: &[IdSpec]) -> CoreResult<()> {
    let mut prev: Option<EntryId> = None;
    for spec in specs {
        let floor = match spec {
            IdSpec::Explicit(id) => Some(*id),
            IdSpec::AutoSeq(ms) => Some(EntryId::new(*ms, 0)),
            IdSpec::Auto => None,
        };
        if let (Some(id), Some(before)) = (floor, prev) {
            let ok = match spec {
                IdSpec::AutoSeq(_) => id.ms >= before.ms,
                _ => id > before,
            };
            if !ok {
                return Err(not_greater(id, before));
            }
        }
        prev = floor.or(prev);
    }
    Ok(())
}

/// Where an entry subscription starts on one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// `"$"`: only entries published after subscribing.
    New,
    /// `"0"`, `"0-0"` or `"-"`: from the oldest retained entry.
    Oldest,
    /// `"<ms>-<n>"` or `"<ms>"`: entries with a greater id (a time cursor).
    After(EntryId),
}

impl Start {
    /// Parses a subscriber's `after`.
    pub fn parse(text: &str) -> CoreResult<Self> {
        match text {
            "$" => Ok(Self::New),
            "-" | "0" | "0-0" => Ok(Self::Oldest),
            _ => EntryId::parse(text).map(Self::After),
        }
    }

    /// The cursor id this start means, given the topic's last id (for `$`).
    pub fn cursor(self, last: EntryId) -> EntryId {
        match self {
            Self::New => last,
            Self::Oldest => EntryId::ZERO,
            Self::After(id) => id,
        }
    }
}

/// Milliseconds since the Unix epoch now.
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, n: u64) -> EntryId {
        EntryId::new(ms, n)
    }

    #[test]
    fn parse_and_format() {
        assert_eq!(EntryId::parse("1700000000000-3"), Ok(id(1_700_000_000_000, 3)));
        assert_eq!(EntryId::parse("42"), Ok(id(42, 0)));
        assert_eq!(id(5, 7).to_string(), "5-7");
        for bad in ["", "-", "1-", "-1", "a-1", "1-b", "1-2-3", "+1", "1 -2", "99999999999999999999"] {
            assert!(matches!(EntryId::parse(bad), Err(CoreError::EntryId(_))), "{bad:?}");
        }
        assert_eq!(id(3, 0).before(), id(2, u64::MAX));
        assert_eq!(id(3, 2).before(), id(3, 1));
        assert_eq!(EntryId::ZERO.before(), EntryId::ZERO);
    }

    #[test]
    fn auto_ids_follow_the_clock_and_never_go_back() {
        assert_eq!(EntryId::ZERO.next_auto(1000), id(1000, 0));
        // Same millisecond: the counter goes up.
        assert_eq!(id(1000, 0).next_auto(1000), id(1000, 1));
        // The clock went backwards: stay on the last millisecond.
        assert_eq!(id(1000, 4).next_auto(900), id(1000, 5));
        assert_eq!(id(1000, 4).next_auto(1001), id(1001, 0));
        assert_eq!(id(7, u64::MAX).next_auto(0), id(8, 0));
    }

    #[test]
    fn specs() {
        assert_eq!(IdSpec::parse(None), Ok(IdSpec::Auto));
        assert_eq!(IdSpec::parse(Some("*")), Ok(IdSpec::Auto));
        assert_eq!(IdSpec::parse(Some("5-*")), Ok(IdSpec::AutoSeq(5)));
        assert_eq!(IdSpec::parse(Some("5")), Ok(IdSpec::Explicit(id(5, 0))));
        assert_eq!(IdSpec::parse(Some("5-2")), Ok(IdSpec::Explicit(id(5, 2))));
        for bad in ["0-0", "0", "", "x", "5-*-*", "-*", "9007199254740992-0", "1-9007199254740992"] {
            assert!(matches!(IdSpec::parse(Some(bad)), Err(CoreError::EntryId(_))), "{bad:?}");
        }
        assert_eq!(IdSpec::parse(Some("0-*")).unwrap().resolve(EntryId::ZERO, 10), Ok(id(0, 1)));
        assert_eq!(IdSpec::AutoSeq(5).resolve(id(5, 3), 0), Ok(id(5, 4)));
        assert_eq!(IdSpec::AutoSeq(6).resolve(id(5, 3), 0), Ok(id(6, 0)));
        assert!(IdSpec::AutoSeq(4).resolve(id(5, 3), 0).is_err());
        assert_eq!(IdSpec::Explicit(id(5, 4)).resolve(id(5, 3), 0), Ok(id(5, 4)));
        assert!(IdSpec::Explicit(id(5, 3)).resolve(id(5, 3), 0).is_err());
        assert_eq!(IdSpec::AutoSeq(5).wire(), "5-*");
        assert_eq!(IdSpec::Auto.wire(), "*");
    }

    #[test]
    fn batches_are_all_or_nothing() {
        let specs = [IdSpec::Explicit(id(10, 0)), IdSpec::Auto, IdSpec::AutoSeq(10), IdSpec::Explicit(id(11, 0))];
        assert_eq!(assign(id(9, 9), 5, &specs), Ok(vec![id(10, 0), id(10, 1), id(10, 2), id(11, 0)]));
        let err = assign(id(10, 0), 5, &specs).unwrap_err();
        assert_eq!(err, CoreError::EntryId("entry id 10-0 is not greater than the stream's last id 10-0".into()));
        assert!(check_batch(&specs).is_ok());
        assert!(check_batch(&[IdSpec::Explicit(id(3, 0)), IdSpec::Auto, IdSpec::Explicit(id(3, 0))]).is_err());
        assert!(check_batch(&[IdSpec::Explicit(id(3, 1)), IdSpec::AutoSeq(3)]).is_ok());
        assert!(check_batch(&[IdSpec::Explicit(id(3, 1)), IdSpec::AutoSeq(2)]).is_err());
    }

    #[test]
    fn starts() {
        assert_eq!(Start::parse("$"), Ok(Start::New));
        for oldest in ["0", "0-0", "-"] {
            assert_eq!(Start::parse(oldest), Ok(Start::Oldest));
        }
        assert_eq!(Start::parse("12-3"), Ok(Start::After(id(12, 3))));
        assert_eq!(Start::parse("12"), Ok(Start::After(id(12, 0))));
        assert!(Start::parse("+").is_err());
        assert_eq!(Start::New.cursor(id(4, 4)), id(4, 4));
        assert_eq!(Start::Oldest.cursor(id(4, 4)), EntryId::ZERO);
    }
}
