//! Result helpers: latency percentiles, rates and the JSON line every subcommand prints.

use serde_json::{Map, Value};

/// Percentiles (in milliseconds) of latencies given in microseconds; sorts `samples`.
pub fn percentiles(samples: &mut [u32]) -> Map<String, Value> {
    samples.sort_unstable();
    let mut out = Map::new();
    for (name, q) in [("p50_ms", 0.50), ("p90_ms", 0.90), ("p99_ms", 0.99), ("p999_ms", 0.999), ("max_ms", 1.0)] {
        let value = if samples.is_empty() {
            Value::Null
        } else {
            let index = ((samples.len() - 1) as f64 * q).round() as usize;
            Value::from(f64::from(samples[index]) / 1000.0)
        };
        out.insert(name.to_owned(), value);
    }
    out
}

/// `count / seconds`, 0 for an empty interval.
pub fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Prints the result as one JSON line on stdout (for drivers) and a readable form on stderr.
pub fn emit(result: Map<String, Value>) {
    for (key, value) in &result {
        eprintln!("  {key:<22} {value}");
    }
    println!("{}", Value::Object(result));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_picks() {
        let mut samples: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        let p = percentiles(&mut samples);
        assert_eq!(p["p50_ms"], Value::from(51.0));
        assert_eq!(p["max_ms"], Value::from(100.0));
        assert_eq!(percentiles(&mut [])["p99_ms"], Value::Null);
    }
}
