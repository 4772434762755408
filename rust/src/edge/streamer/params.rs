//! Pure parsing of the Redis Streamer routes' inputs, as the control plane parses them for the
//! REST routes (`python/ferrotile/streamer/params.py`): query flags, integers and numbers, `a+b`
//! stream lists, cursors, and the push header that splits one binary message into entries.
//! Every refusal is a message fit for the client.

use std::ops::Range;

use serde_json::Value;

use super::super::query::{py_repr, Query};

/// A parameter, header or payload the client sent is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(message: String) -> Result<T, InputError> {
    Err(InputError(message))
}

/// `1|true|yes|on` / `0|false|no|off` (any case); absent or empty: `default`.
pub fn flag(query: &Query, name: &str, default: bool) -> Result<bool, InputError> {
    let Some(raw) = query.get(name).filter(|r| !r.is_empty()) else { return Ok(default) };
    match raw.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => err(format!("{name} must be true or false, not {}", py_repr(raw))),
    }
}

/// The largest integer a parameter may be (what a signed 64-bit integer holds).
const MAX_INT64: i128 = i64::MAX as i128;

/// An integer from `minimum` to 2^63-1 (optional sign, ASCII digits); absent, empty or `none`:
/// `default`.
pub fn integer(query: &Query, name: &str, default: Option<u64>, minimum: u64) -> Result<Option<u64>, InputError> {
    let Some(raw) = query.get(name).filter(|r| !r.is_empty() && !r.eq_ignore_ascii_case("none")) else {
        return Ok(default);
    };
    let text = raw.trim();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let syntax = !digits.is_empty() && digits.len() <= 31 && digits.bytes().all(|b| b.is_ascii_digit());
    let value = syntax.then(|| text.parse::<i128>().ok()).flatten().filter(|v| v.unsigned_abs() <= 10u128.pow(30));
    let Some(value) = value else {
        return err(format!("{name} must be an integer, not {}", py_repr(raw)));
    };
    if value < i128::from(minimum) {
        return err(format!("{name} must be at least {minimum}, not {value}"));
    }
    if value > MAX_INT64 {
        return err(format!("{name} must be at most {MAX_INT64}, not {value}"));
    }
    Ok(u64::try_from(value).ok())
}

/// A number at least `minimum`; absent or empty: `default`.
pub fn number(query: &Query, name: &str, default: f64, minimum: f64) -> Result<f64, InputError> {
    let Some(raw) = query.get(name).filter(|r| !r.is_empty()) else { return Ok(default) };
    let Ok(value) = raw.trim().parse::<f64>() else {
        return err(format!("{name} must be a number, not {}", py_repr(raw)));
    };
    if value.is_nan() || value < minimum {
        return err(format!("{name} must be at least {minimum:?}, not {raw}"));
    }
    Ok(value)
}

/// `a+b+c` -> `["a", "b", "c"]`.
pub fn stream_ids(raw: &str) -> Result<Vec<String>, InputError> {
    let ids: Vec<String> = raw.split('+').map(str::to_owned).collect();
    if ids.iter().any(String::is_empty) {
        return err(format!("empty stream id in {}", py_repr(raw)));
    }
    let mut seen = std::collections::HashSet::new();
    if !ids.iter().all(|id| seen.insert(id)) {
        return err(format!("stream {} names a stream twice", py_repr(raw)));
    }
    Ok(ids)
}

fn is_cursor(raw: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_digit());
    match raw {
        "$" | "-" | "0" => true,
        _ => match raw.split_once('-') {
            Some((ms, n)) => digits(ms) && digits(n),
            None => digits(raw),
        },
    }
}

/// One cursor per stream (`$`, `0`, `-`, `<ms>[-<n>]`), or `c1+c2` with one each.
pub fn cursors(raw: &str, count: usize) -> Result<Vec<String>, InputError> {
    let mut parts: Vec<String> = raw.split('+').map(str::to_owned).collect();
    if parts.len() == 1 {
        parts = vec![parts[0].clone(); count];
    }
    if parts.len() != count {
        return err(format!("{} cursors given for {count} streams", parts.len()));
    }
    for part in &parts {
        if !is_cursor(part) {
            return err(format!(
                "last_entry_id must be '$', '0', '-' or an entry id '<ms>-<n>', not {}",
                py_repr(part)
            ));
        }
    }
    Ok(parts)
}

/// One entry of a push: its stream, an explicit id (`None`: assigned) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stream id.
    pub sid: String,
    /// The id asked for, if any.
    pub entry_id: Option<String>,
    /// Its bytes in the binary message.
    pub range: Range<usize>,
}

fn offset(value: &Value) -> Result<usize, InputError> {
    value
        .as_u64()
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| InputError(format!("offsets must be non-negative integers, not {value}")))
}

/// The entries a push header describes in a binary message of `size` bytes: `[end, ...]` with
/// the streams of the URL, `[[sid, end], ...]` or `[[sid, entry_id, end], ...]`. Offsets are
/// end indices, unless the first is 0 (then start indices); they must not decrease and must
/// cover the message exactly.
pub fn split_header(header: &str, url_ids: &[String], size: usize) -> Result<Vec<Entry>, InputError> {
    let items: Value = serde_json::from_str(header).map_err(|e| InputError(format!("the header is not JSON: {e}")))?;
    let Some(items) = items.as_array().filter(|items| !items.is_empty()) else {
        return err("the header must be a non-empty JSON list".into());
    };
    let (sids, ids, offsets): (Vec<String>, Vec<Option<String>>, Vec<usize>) = if items
        .iter()
        .all(|item| !item.is_array())
    {
        let offsets = items.iter().map(offset).collect::<Result<Vec<_>, _>>()?;
        let sids = match url_ids {
            [one] => vec![one.clone(); offsets.len()],
            many if many.len() == offsets.len() => many.to_vec(),
            many => {
                return err(format!("the header has {} offsets for {} streams in the URL", offsets.len(), many.len()))
            }
        };
        (sids, vec![None; offsets.len()], offsets)
    } else {
        let mut parsed = (Vec::new(), Vec::new(), Vec::new());
        for item in items {
            let parts = item.as_array().filter(|p| p.len() == 2 || p.len() == 3).ok_or_else(|| {
                InputError(format!("header items must all be [sid, offset] or [sid, entry_id, offset], not {item}"))
            })?;
            let sid = parts[0]
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| InputError(format!("stream ids must be non-empty strings, not {}", parts[0])))?;
            let id = match (parts.len(), parts.get(1)) {
                (3, Some(Value::Null)) | (2, _) => None,
                (3, Some(Value::String(id))) => Some(id.clone()),
                (_, other) => {
                    return err(format!("entry ids must be strings or null, not {}", other.unwrap_or(&Value::Null)))
                }
            };
            parsed.0.push(sid.to_owned());
            parsed.1.push(id);
            parsed.2.push(offset(&parts[parts.len() - 1])?);
        }
        parsed
    };
    // End indices, unless the first offset is 0: then start indices.
    let mut bounds = Vec::with_capacity(offsets.len() + 1);
    if offsets[0] == 0 {
        bounds.extend_from_slice(&offsets);
        bounds.push(size);
    } else {
        bounds.push(0);
        bounds.extend_from_slice(&offsets);
    }
    if bounds.windows(2).any(|w| w[1] < w[0]) {
        return err(format!("offsets must not decrease: {offsets:?}"));
    }
    if bounds[bounds.len() - 1] != size {
        return err(format!(
            "the header's offsets cover {} bytes but the binary message has {size}",
            bounds[bounds.len() - 1]
        ));
    }
    Ok(sids
        .into_iter()
        .zip(ids)
        .zip(bounds.windows(2))
        .map(|((sid, entry_id), w)| Entry { sid, entry_id, range: w[0]..w[1] })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn header_forms() {
        let entries = split_header("[3, 5]", &ids(&["a"]), 5).unwrap();
        assert_eq!(entries.iter().map(|e| e.range.clone()).collect::<Vec<_>>(), vec![0..3, 3..5]);
        let entries = split_header("[0, 3]", &ids(&["a", "b"]), 5).unwrap();
        assert_eq!((entries[1].sid.as_str(), entries[1].range.clone()), ("b", 3..5));
        let entries = split_header(r#"[["x", "5-1", 2], ["y", null, 4]]"#, &ids(&["a"]), 4).unwrap();
        assert_eq!(entries[0].entry_id.as_deref(), Some("5-1"));
        assert_eq!(entries[1].entry_id, None);
        for (bad, size) in [("[5, 3]", 5), ("[3]", 5), ("[]", 0), ("{}", 0), ("[-1]", 0), ("[[\"\", 1]]", 1), ("x", 1)]
        {
            assert!(split_header(bad, &ids(&["a"]), size).is_err(), "{bad}");
        }
        assert!(split_header("[1, 2, 3]", &ids(&["a", "b"]), 3).is_err());
    }

    #[test]
    fn query_values() {
        let q = Query::parse(Some("count=3&block=none&big=99999999999999999999&neg=-2&fps=2.5&nan=nan&ack=YES"));
        assert_eq!(integer(&q, "count", Some(1), 1), Ok(Some(3)));
        assert_eq!(integer(&q, "block", Some(5000), 0), Ok(Some(5000)));
        assert!(integer(&q, "big", None, 0).is_err());
        assert!(integer(&q, "neg", None, 0).is_err());
        assert_eq!(number(&q, "fps", 0.0, 0.0), Ok(2.5));
        assert!(number(&q, "nan", 0.0, 0.0).is_err());
        assert_eq!(number(&q, "neg", 0.0, 0.0).unwrap_err().0, "neg must be at least 0.0, not -2");
        assert_eq!(flag(&q, "ack", false), Ok(true));
        assert_eq!(cursors("$", 2).unwrap(), ids(&["$", "$"]));
        assert!(cursors("1-2+3", 3).is_err());
        assert!(cursors("abc", 1).is_err());
        assert_eq!(stream_ids("a+b").unwrap(), ids(&["a", "b"]));
        assert!(stream_ids("a++b").is_err() && stream_ids("a+a").is_err());
    }
}
