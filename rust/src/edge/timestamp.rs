//! Tiled's message timestamps: the naive local time in ISO 8601, as Python's
//! `datetime.now().isoformat()` writes it (microseconds, omitted when zero).

use chrono::{Local, Timelike};

/// Now, e.g. `2026-12-06T23:45:12.123456`.
pub fn now() -> String {
    let now = Local::now().naive_local();
    if now.nanosecond() / 1000 == 0 {
        now.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        now.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_format() {
        let t = super::now();
        assert_eq!(&t[4..5], "-");
        assert_eq!(&t[10..11], "T");
        assert!(t.len() == 19 || t.len() == 26, "{t}");
    }
}
