//! `Query`: a request's query string, parsed once, with the typed getters the data plane's
//! routes use. Every refusal names the parameter and says what it must be, as the control plane
//! does; integers never overflow into a 500.

use std::str::FromStr;

use http::StatusCode;

pub use crate::text::py_repr;

/// A parameter that is present but unusable: the status and detail to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParameter {
    /// 400 or 422, as the control plane answers the same parameter.
    pub status: StatusCode,
    /// What is wrong, naming the parameter.
    pub detail: String,
}

impl BadParameter {
    fn new(status: StatusCode, detail: String) -> Self {
        Self { status, detail }
    }
}

/// The decoded `name=value` pairs of a query string (first occurrence wins).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `a=1&b=x%20y` (no leading `?`); a missing query is empty.
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        Self { pairs }
    }

    /// A lookup over `pairs` (e.g. the fields of a WebSocket control message), with the same
    /// typed getters and refusals as a query string.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }

    /// The raw value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `true|1|yes|on` / `false|0|no|off` (any case), else `default`; 422 for anything else
    /// (the control plane's `query_bool`).
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, BadParameter> {
        let Some(raw) = self.get(name) else { return Ok(default) };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(BadParameter::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Query parameter {} must be true or false, not {}", py_repr(name), py_repr(raw)),
            )),
        }
    }

    /// An integer of type `T` at least `minimum`, or `None` when absent; `status` for anything
    /// else (not a number, out of `T`'s range, below the minimum).
    pub fn integer<T>(&self, name: &str, minimum: T, status: StatusCode) -> Result<Option<T>, BadParameter>
    where
        T: FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        let Some(raw) = self.get(name) else { return Ok(None) };
        let value = raw.trim().parse::<T>().map_err(|_| {
            let kind = if raw.trim().parse::<i128>().is_ok() { "an integer in range" } else { "an integer" };
            BadParameter::new(status, format!("{name} must be {kind}, not {}", py_repr(raw)))
        })?;
        if value < minimum {
            return Err(BadParameter::new(status, format!("{name} must be >= {minimum}")));
        }
        Ok(Some(value))
    }

    /// Comma-separated non-negative integers (`offset=0,10`; `""` and `"scalar"` are the empty
    /// list, a 0-d array), or `None` when absent; 422 otherwise (the control plane's
    /// `parse_int_tuple`).
    pub fn indices(&self, name: &str) -> Result<Option<Vec<u64>>, BadParameter> {
        let Some(raw) = self.get(name) else { return Ok(None) };
        let text: String = raw.chars().filter(|c| *c != ' ').collect();
        if text.is_empty() || text == "scalar" {
            return Ok(Some(Vec::new()));
        }
        let bad = || {
            BadParameter::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Invalid {name} parameter {}: expected comma-separated non-negative integers", py_repr(raw)),
            )
        };
        let parts = text.split(',').map(|part| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<u64>().map_err(|_| bad())
        });
        parts.collect::<Result<Vec<_>, _>>().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_integers() {
        let q = Query::parse(Some("persist=No&start=12&big=18446744073709551616&neg=-1&x=a%20b&x=second"));
        assert_eq!(q.flag("persist", true), Ok(false));
        assert_eq!(q.flag("absent", true), Ok(true));
        assert_eq!(q.get("x"), Some("a b"));
        assert_eq!(q.integer::<u64>("start", 0, StatusCode::BAD_REQUEST), Ok(Some(12)));
        let big = q.integer::<u64>("big", 0, StatusCode::BAD_REQUEST).unwrap_err();
        assert_eq!(big.status, StatusCode::BAD_REQUEST);
        assert!(big.detail.contains("in range"), "{}", big.detail);
        let neg = q.integer::<i64>("neg", 0, StatusCode::BAD_REQUEST).unwrap_err();
        assert_eq!(neg.detail, "neg must be >= 0");
        assert!(Query::parse(Some("persist=maybe")).flag("persist", true).is_err());
        assert_eq!(py_repr("maybe"), "'maybe'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a\nb'\""), "'a\\nb\\'\"'");
    }

    #[test]
    fn indices() {
        let q = Query::parse(Some("offset=3,%200&shape=&bad=1,-2&s=scalar"));
        assert_eq!(q.indices("offset"), Ok(Some(vec![3, 0])));
        assert_eq!(q.indices("shape"), Ok(Some(vec![])));
        assert_eq!(q.indices("none"), Ok(None));
        assert_eq!(q.indices("s"), Ok(Some(vec![])));
        assert_eq!(q.indices("bad").unwrap_err().status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
