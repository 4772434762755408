//! The crate's single error type, `LoadError`, and the `LoadResult<T>` alias.

use thiserror::Error;

/// Everything that can stop a load run before it reports.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The target URL is malformed or not a loopback address.
    #[error("bad target: {0}")]
    Target(String),
    /// A setup request (e.g. creating the array) failed.
    #[error("setup failed: {0}")]
    Setup(String),
    /// An I/O error outside the measured loops.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result alias used throughout the load generator.
pub type LoadResult<T> = Result<T, LoadError>;
