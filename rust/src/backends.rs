//! Choosing a hub's backend, once, from its configuration: in process (`hub::memory`) or Redis
//! (`redis`). It stands above both, so that the hub does not import the backends built on it.

use std::sync::Arc;
use std::time::Duration;

use crate::error::CoreResult;
use crate::hub::memory::Memory;
use crate::hub::{BackendConfig, Hub, HubConfig};
use crate::redis::RedisBackend;

impl Hub {
    /// A hub with validated settings and the backend they name. Nothing connects until
    /// [`Hub::connect`] (a Redis URL is only checked for its form here).
    pub fn new(config: HubConfig) -> CoreResult<Hub> {
        match config.backend.clone() {
            BackendConfig::Memory => {
                let seq_ttl = config.seq_ttl;
                Hub::with_backend(config, seq_ttl, |_, topics| Ok(Arc::new(Memory::new(topics))))
            }
            BackendConfig::Redis { url, key_prefix } => {
                // A mirror never restarts sequences on its own: Redis's counter TTL decides.
                let seq_ttl = Duration::from_secs(u64::MAX / 4);
                Hub::with_backend(config, seq_ttl, |config, topics| {
                    Ok(Arc::new(RedisBackend::new(config, &url, &key_prefix, topics)?))
                })
            }
        }
    }
}
