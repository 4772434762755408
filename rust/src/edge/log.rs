//! Warnings the edge writes to stderr, in the control plane's log format (one line, one write).

use std::io::Write;

/// Writes `WARNING ferrotile.edge: message`.
pub fn warn(message: &str) {
    let line = format!("WARNING ferrotile.edge: {message}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
