//! The crate's single error type, `CoreError`, and the `CoreResult<T>` alias used by the engine.

use thiserror::Error;

/// Every error the engine can return. Converted to a Python exception only in `py/errors.rs`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A stream message could not be encoded (bad header JSON, bad array hint, byte count mismatch).
    #[error("invalid message: {0}")]
    Envelope(String),
    /// The envelope name is neither `msgpack` nor `json`.
    #[error("unknown envelope format {0:?} (expected \"msgpack\" or \"json\")")]
    UnknownEnvelope(String),
    /// The hub has been shut down; no more publish or subscribe.
    #[error("hub is shut down")]
    ShutDown,
    /// A configuration value is out of range.
    #[error("invalid hub configuration: {0}")]
    Config(String),
    /// An entry id or cursor is malformed, or not greater than the stream's last id; nothing of
    /// the batch was published.
    #[error("{0}")]
    EntryId(String),
    /// The Redis backend is unreachable (or not connected yet); nothing was applied.
    #[error("stream backend unavailable: {0}")]
    Unavailable(String),
    /// The edge cannot listen on its address (port in use, bad host).
    #[error("{0}")]
    Listen(String),
    /// A zarr array's layout is not one the engine's writer handles (the control plane's
    /// writer stores it).
    #[error("zarr layout not handled by the engine: {0}")]
    StoreUnsupported(String),
    /// Reading or writing array storage failed.
    #[error("{0}")]
    Storage(String),
    /// The disk (or quota) holding array storage is full.
    #[error("{0}")]
    StorageFull(String),
}

/// Result alias used throughout the engine.
pub type CoreResult<T> = Result<T, CoreError>;

impl CoreError {
    /// Shorthand for [`CoreError::Envelope`].
    pub(crate) fn envelope(msg: impl Into<String>) -> Self {
        Self::Envelope(msg.into())
    }
}
