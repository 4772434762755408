//! `OwnRecords`: large records this process has just uploaded for a node it follows, kept
//! until their announcement comes back on the live channel, so that its mirror takes them from
//! memory instead of reading back from Redis the bytes it has just sent there.
//!
//! Without it a process that both publishes and follows a node (one worker with Redis, or the
//! writer's and a subscriber's connections on the same worker) sent each large record to Redis
//! and read it back with `MGET`: twice the bytes through Redis's one thread, a round trip more
//! before its subscribers got the frame. The bytes are the same: the publish script renames the
//! upload keys, it never changes them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::record::Record;

/// Most bytes kept at once. A record that would pass it is not kept (the mirror reads it from
/// Redis as any other process does); normally a record is kept for one round trip.
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// A record whose announcement has not come back after this long is dropped when room is
/// needed (its announcement was lost with the live connection).
const MAX_AGE: Duration = Duration::from_secs(10);

/// Records by upload name (see the module docs).
#[derive(Default)]
pub(crate) struct OwnRecords {
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    records: HashMap<String, (Record, Instant)>,
    bytes: usize,
}

impl Kept {
    fn remove(&mut self, upload: &str) -> Option<Record> {
        let (record, _) = self.records.remove(upload)?;
        self.bytes -= record.len();
        Some(record)
    }
}

impl OwnRecords {
    /// Keeps `record`, uploaded as `upload`, unless that would pass [`MAX_BYTES`].
    pub(crate) fn keep(&self, upload: String, record: Record, now: Instant) {
        let mut kept = self.inner.lock();
        if kept.bytes + record.len() > MAX_BYTES {
            let stale: Vec<String> = kept
                .records
                .iter()
                .filter(|(_, (_, at))| now.saturating_duration_since(*at) > MAX_AGE)
                .map(|(name, _)| name.clone())
                .collect();
            for name in stale {
                kept.remove(&name);
            }
            if kept.bytes + record.len() > MAX_BYTES {
                return;
            }
        }
        kept.bytes += record.len();
        if let Some((old, _)) = kept.records.insert(upload, (record, now)) {
            kept.bytes -= old.len();
        }
    }

    /// The record uploaded as `upload`, if it was kept (it is kept no longer).
    pub(crate) fn take(&self, upload: &str) -> Option<Record> {
        self.inner.lock().remove(upload)
    }

    /// Drops the records of a batch that was not published.
    pub(crate) fn forget(&self, uploads: &[String]) {
        let mut kept = self.inner.lock();
        for upload in uploads {
            kept.remove(upload);
        }
    }

    /// Drops everything (the live connection was lost, and the announcements with it).
    pub(crate) fn clear(&self) {
        *self.inner.lock() = Kept::default();
    }

    /// Bytes kept now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_until_taken_within_the_byte_cap() {
        let own = OwnRecords::default();
        let t0 = Instant::now();
        let size = |record: Option<Record>| record.map(|r| r.len());
        own.keep("a".into(), Record::filled(10), t0);
        own.keep("b".into(), Record::filled(MAX_BYTES - 10), t0);
        own.keep("c".into(), Record::filled(1), t0); // over the cap, and nothing is stale: not kept
        assert_eq!(own.bytes(), MAX_BYTES);
        assert_eq!(size(own.take("c")), None);
        assert_eq!(size(own.take("a")), Some(10));
        assert_eq!(size(own.take("a")), None);
        // A record older than MAX_AGE makes room when room is needed.
        own.keep("d".into(), Record::filled(20), t0 + MAX_AGE + Duration::from_secs(1));
        assert_eq!(size(own.take("b")), None);
        assert_eq!(own.bytes(), 20);
        own.forget(&["d".to_owned()]);
        assert_eq!(own.bytes(), 0);
        own.keep("e".into(), Record::filled(3), t0);
        own.clear();
        assert_eq!((size(own.take("e")), own.bytes()), (None, 0));
    }
}
