//! The Redis backend's [`Replay`]: what a subscription reads back from Redis when this
//! process's mirror does not reach back far enough: the node's sequence and last entry id, and
//! its stream by `XRANGE` / `XREVRANGE`.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use redis::Value;

use super::reader::{parse_entries, with_records, xrange, StreamEntry};
use super::{unavailable, Shared};
use crate::error::CoreResult;
use crate::hub::{EntryId, Replay, ReplayBatch};

/// Decodes stream entries; `next` is where to read on if the batch was full.
fn batch(entries: Vec<StreamEntry>, full: bool) -> ReplayBatch {
    let now = Instant::now();
    let next = entries.last().map(|e| e.sequence + 1).filter(|_| full);
    let mut out = ReplayBatch { next, ..ReplayBatch::default() };
    for entry in entries {
        match entry.into_message(now) {
            Ok(message) => out.messages.push(Arc::new(message)),
            Err(_) => out.undecodable += 1,
        }
    }
    out
}

impl Replay for Shared {
    fn head(&self, topic: u64) -> BoxFuture<'_, CoreResult<u64>> {
        Box::pin(self.current_sequence(topic))
    }

    fn last_entry_id(&self, topic: u64) -> BoxFuture<'_, CoreResult<EntryId>> {
        Box::pin(async move {
            let mut conn = self.conn()?;
            let query = redis::cmd("HGET").arg(self.keys.entries(topic)).arg("last").clone();
            let last: Option<String> = query.query_async(&mut conn).await.map_err(|e| unavailable(&e))?;
            Ok(last.and_then(|l| EntryId::parse(&l).ok()).unwrap_or_default())
        })
    }

    fn range(&self, topic: u64, from: u64, limit: usize) -> BoxFuture<'_, CoreResult<ReplayBatch>> {
        Box::pin(async move {
            let mut conn = self.conn()?;
            let lower = (from > 0).then_some(from);
            let query = xrange(&mut conn, &self.keys, topic, lower, None, Some(limit));
            let entries = query.await.map_err(|e| unavailable(&e))?;
            let full = entries.len() == limit;
            Ok(batch(entries, full))
        })
    }

    fn newest(&self, topic: u64, limit: usize) -> BoxFuture<'_, CoreResult<ReplayBatch>> {
        Box::pin(async move {
            let mut conn = self.conn()?;
            let query =
                redis::cmd("XREVRANGE").arg(self.keys.stream(topic)).arg("+").arg("-").arg("COUNT").arg(limit).clone();
            let value: Value = query.query_async(&mut conn).await.map_err(|e| unavailable(&e))?;
            let entries = with_records(&mut conn, &self.keys, topic, parse_entries(value));
            Ok(batch(entries.await.map_err(|e| unavailable(&e))?, false))
        })
    }
}
