//! `WriteLocks`: one lock per node for persisted writes, held from storing to publishing, so
//! subscribers see a node's writes in the order they were stored.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// One lock per node for persisted writes (store, then publish).
#[derive(Default)]
pub struct WriteLocks {
    locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
}

impl WriteLocks {
    /// The lock of `node`.
    pub fn get(&self, node: u64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock();
        // Forget the locks nobody holds, so the map stays as small as the writes in flight.
        if locks.len() > 1024 {
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        Arc::clone(locks.entry(node).or_default())
    }
}
