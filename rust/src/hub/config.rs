//! `HubConfig`: every setting of a hub in one struct, validated once: retention per topic
//! (count, bytes, age), sequence expiry, the per-subscriber default cap, the process-wide
//! memory budget, and the backend (in process, or a Redis URL and key prefix). Also the
//! per-topic `Retention` and its `RetentionOverride`. Pure data.

use std::time::Duration;

use crate::error::{CoreError, CoreResult};

/// The server default per-subscriber cap on the live backlog, in envelope bytes.
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// The default budget for retained stream data in one process, over all topics: 1 GiB, which
/// fits a small machine (a large one raises it).
pub const DEFAULT_MAX_TOTAL_BYTES: usize = 1024 * 1024 * 1024;

/// Where streams live.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BackendConfig {
    /// In this process only.
    #[default]
    Memory,
    /// In Redis, shared by every process using the same URL and key prefix.
    Redis {
        /// `redis://[[user]:password@]host[:port][/db]`, `rediss://...`, or
        /// `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db]`.
        url: String,
        /// Prefix of every key and of the live channel.
        key_prefix: String,
    },
}

impl BackendConfig {
    /// The backend named by a `--cache` value: `"memory"` or a `redis://`, `rediss://` or
    /// `redis+sentinel://` URL.
    pub fn parse(cache: &str, key_prefix: &str) -> CoreResult<Self> {
        let scheme = cache.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match (cache, scheme.as_deref()) {
            ("memory", _) => Ok(Self::Memory),
            (_, Some("redis" | "rediss" | "redis+sentinel")) => {
                Ok(Self::Redis { url: cache.to_owned(), key_prefix: key_prefix.to_owned() })
            }
            _ => Err(CoreError::Config(format!(
                "cache must be \"memory\" or a redis://, rediss:// or redis+sentinel:// URL, not {:?}",
                redact(cache)
            ))),
        }
    }
}

/// Every setting of a hub (see the field docs); [`HubConfig::validate`] checks them once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// Most messages retained per topic (>= 1).
    pub max_count: usize,
    /// Most envelope bytes retained per topic (the newest message is always kept).
    pub max_bytes: usize,
    /// How long a message is retained (Tiled's `data_ttl`); a stream closed this long ago
    /// restarts its sequence at 1.
    pub max_age: Duration,
    /// A topic without events for this long restarts its sequence at 1 (Tiled's `seq_ttl`).
    pub seq_ttl: Duration,
    /// The per-subscriber cap on the live backlog when a subscriber names none (>= 1).
    pub max_queue_bytes: usize,
    /// Most envelope bytes retained in this process over all topics (>= 1; with Redis, in its
    /// mirrors). Past it the oldest messages of any topic are evicted first, down to 15/16 of
    /// it (each topic keeps its newest message, so many topics of big messages may stay over).
    pub max_total_bytes: usize,
    /// Where streams live.
    pub backend: BackendConfig,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            max_count: 10_000,
            max_bytes: 256 * 1024 * 1024,
            max_age: Duration::from_secs(3600),
            seq_ttl: Duration::from_secs(30 * 24 * 3600),
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            backend: BackendConfig::Memory,
        }
    }
}

impl HubConfig {
    /// The retention every topic starts with.
    pub fn retention(&self) -> Retention {
        Retention { max_count: self.max_count, max_bytes: self.max_bytes, max_age: self.max_age }
    }

    /// Checks every setting; the one place they are validated.
    pub fn validate(self) -> CoreResult<Self> {
        let positive = |name: &str, value: usize| {
            if value == 0 {
                return Err(CoreError::Config(format!("{name} must be at least 1")));
            }
            Ok(())
        };
        positive("max_count", self.max_count)?;
        positive("max_queue_bytes", self.max_queue_bytes)?;
        positive("max_total_bytes", self.max_total_bytes)?;
        if let BackendConfig::Redis { .. } = self.backend {
            // Redis expires keys after these: zero would delete a stream as it is written.
            for (name, value) in [("max_age", self.max_age), ("seq_ttl", self.seq_ttl)] {
                if value.is_zero() {
                    return Err(CoreError::Config(format!("{name} must be a positive number of seconds")));
                }
            }
        }
        Ok(self)
    }
}

/// Retention limits of one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most messages retained (>= 1).
    pub max_count: usize,
    /// Most envelope bytes retained (the newest message is always kept).
    pub max_bytes: usize,
    /// Messages older than this are evicted.
    pub max_age: Duration,
}

/// A topic's own retention: each `None` keeps the hub's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOverride {
    /// Most messages retained (>= 1).
    pub max_count: Option<usize>,
    /// Most envelope bytes retained.
    pub max_bytes: Option<usize>,
    /// Longest a message is retained.
    pub max_age: Option<Duration>,
}

impl RetentionOverride {
    /// The limits with this override applied to `base`.
    pub fn apply(self, base: Retention) -> CoreResult<Retention> {
        if self.max_count == Some(0) {
            return Err(CoreError::Config("max_count must be at least 1".into()));
        }
        Ok(Retention {
            max_count: self.max_count.unwrap_or(base.max_count),
            max_bytes: self.max_bytes.unwrap_or(base.max_bytes),
            max_age: self.max_age.unwrap_or(base.max_age),
        })
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_backends() {
        assert!(HubConfig::default().validate().is_ok());
        for bad in [
            HubConfig { max_count: 0, ..HubConfig::default() },
            HubConfig { max_queue_bytes: 0, ..HubConfig::default() },
            HubConfig { max_total_bytes: 0, ..HubConfig::default() },
        ] {
            assert!(matches!(bad.validate(), Err(CoreError::Config(_))));
        }
        let redis = BackendConfig::parse("redis://h:1/0", "p:").unwrap();
        assert_eq!(redis, BackendConfig::Redis { url: "redis://h:1/0".into(), key_prefix: "p:".into() });
        assert!(BackendConfig::parse("REDISS://h", "").is_ok());
        assert!(BackendConfig::parse("redis+sentinel://h:26379/m", "").is_ok());
        assert_eq!(BackendConfig::parse("memory", "p:").unwrap(), BackendConfig::Memory);
        let err = BackendConfig::parse("http://:pw@x", "").unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
        // Zero durations are fine in process (nothing retained), not in Redis (keys would vanish).
        let zero = HubConfig { max_age: Duration::ZERO, ..HubConfig::default() };
        assert!(zero.clone().validate().is_ok());
        assert!(HubConfig { backend: redis, ..zero }.validate().is_err());
    }
}
