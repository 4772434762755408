//! Tiled's message timestamps: the naive local time in ISO 8601, as Python's
//! `datetime.now().isoformat()` writes it (microseconds, omitted when zero).

use std::fmt::Write;

use chrono::{Datelike, Local, Timelike};

/// Now, e.g. `2026-12-06T23:45:12.123456`. Written field by field: this runs once per published
/// frame, and chrono's `format` parses its pattern on every call.
pub fn now() -> String {
    let now = Local::now().naive_local();
    let mut out = String::with_capacity(26);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        now.year(),
        now.month(),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    // A leap second shows as nanoseconds past 1e9 in chrono; Python has no such instant.
    let micros = (now.nanosecond() % 1_000_000_000) / 1000;
    if micros != 0 {
        let _ = write!(out, ".{micros:06}");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_format() {
        let t = super::now();
        assert_eq!(&t[4..5], "-");
        assert_eq!(&t[10..11], "T");
        assert!(t.len() == 19 || t.len() == 26, "{t}");
        let parsed = chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f").unwrap();
        assert!((chrono::Local::now().naive_local() - parsed).num_seconds().abs() < 5);
    }
}
