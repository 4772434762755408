//! API-key authentication, as the control plane does it (Tiled's single-user mode): the key
//! from `Authorization: Apikey KEY`, the `api_key` query parameter or the `tiled_api_key`
//! cookie, compared in constant time; `public` lets anonymous clients read.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use super::query::Query;

/// The cookie a browser keeps the key in (set by the control plane on `?api_key=`).
pub const COOKIE_NAME: &str = "tiled_api_key";

/// What a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// Nothing.
    None,
    /// The server's key.
    Valid,
    /// Something else.
    Invalid,
}

/// What the request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Subscribe, pull, read.
    Read,
    /// Write, push.
    Write,
}

/// A refusal: status and detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// 401.
    pub status: StatusCode,
    /// Tiled's wording.
    pub detail: &'static str,
}

const INVALID: Denied = Denied { status: StatusCode::UNAUTHORIZED, detail: "Invalid API key" };
/// Tiled 0.2.20's answer (400, this detail, trailing space included) to an `Authorization`
/// header whose scheme is neither `Apikey` nor `Bearer`.
const BAD_SCHEME: Denied = Denied {
    status: StatusCode::BAD_REQUEST,
    detail: "Authorization header must include the authorization type followed by a space and then the secret, as in 'Bearer SECRET' or 'Apikey SECRET'. ",
};
const NOT_ENOUGH: Denied = Denied {
    status: StatusCode::UNAUTHORIZED,
    detail: "Not enough permissions. Provide an API key (header 'Authorization: Apikey <key>' or query parameter ?api_key=<key>).",
};

/// Whether `candidate` is the key (constant time in the key's content).
pub fn key_matches(candidate: &[u8], api_key: &str) -> bool {
    bool::from(candidate.ct_eq(api_key.as_bytes()))
}

/// Classifies an `Authorization` header as Tiled 0.2.20 does: an unknown scheme is a 400 (not
/// a credential at all), `Apikey` without a key counts as nothing, `Bearer` tokens do not exist
/// in single-user mode (so they never match).
pub fn from_header(headers: &HeaderMap, api_key: &str) -> Result<Credentials, Denied> {
    let Some(value) = headers.get(AUTHORIZATION) else { return Ok(Credentials::None) };
    let value = value.as_bytes();
    if value.is_empty() {
        return Ok(Credentials::None);
    }
    let (scheme, key) = match value.iter().position(|b| *b == b' ') {
        Some(space) => (&value[..space], value[space + 1..].trim_ascii()),
        None => (value, &b""[..]),
    };
    let apikey = scheme.eq_ignore_ascii_case(b"apikey");
    if !apikey && !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(BAD_SCHEME);
    }
    Ok(match (apikey, key) {
        (true, b"") => Credentials::None,
        (true, key) if key_matches(key, api_key) => Credentials::Valid,
        _ => Credentials::Invalid,
    })
}

/// Classifies an HTTP request's credentials: the header, then `?api_key=`, then the cookie.
pub fn credentials(headers: &HeaderMap, query: &Query, api_key: &str) -> Result<Credentials, Denied> {
    let found = from_header(headers, api_key)?;
    if found != Credentials::None {
        return Ok(found);
    }
    let candidate = query.get("api_key").map(str::as_bytes).or_else(|| cookie(headers, COOKIE_NAME));
    Ok(match candidate {
        Some(candidate) if key_matches(candidate, api_key) => Credentials::Valid,
        Some(_) => Credentials::Invalid,
        None => Credentials::None,
    })
}

/// The credentials of an HTTP request, checked for `access`.
pub fn check(headers: &HeaderMap, query: &Query, api_key: &str, access: Access, public: bool) -> Result<(), Denied> {
    authorize(credentials(headers, query, api_key)?, access, public)
}

/// Refuses unless `credentials` grant `access`.
pub fn authorize(credentials: Credentials, access: Access, public: bool) -> Result<(), Denied> {
    match credentials {
        Credentials::Valid => Ok(()),
        Credentials::Invalid => Err(INVALID),
        Credentials::None if public && access == Access::Read => Ok(()),
        Credentials::None => Err(NOT_ENOUGH),
    }
}

/// The value of cookie `name`, if the request sent it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get_all(COOKIE).iter().flat_map(|value| value.as_bytes().split(|b| *b == b';')).find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|b| *b == b'=')?;
        (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn header_query_cookie() {
        let none = Query::default();
        let credentials = |h: &HeaderMap, q: &Query, k: &str| super::credentials(h, q, k).unwrap();
        assert_eq!(credentials(&headers(&[("authorization", "Apikey s3")]), &none, "s3"), Credentials::Valid);
        assert_eq!(credentials(&headers(&[("authorization", "apikey  s3 ")]), &none, "s3"), Credentials::Valid);
        assert_eq!(credentials(&headers(&[("authorization", "Apikey s4")]), &none, "s3"), Credentials::Invalid);
        assert_eq!(credentials(&headers(&[("authorization", "Bearer s3")]), &none, "s3"), Credentials::Invalid);
        assert_eq!(super::credentials(&headers(&[("authorization", "Basic s3")]), &none, "s3"), Err(BAD_SCHEME));
        assert_eq!(credentials(&headers(&[("authorization", "Apikey")]), &none, "s3"), Credentials::None);
        assert_eq!(credentials(&headers(&[]), &none, "s3"), Credentials::None);
        let query = Query::parse(Some("api_key=s3"));
        assert_eq!(credentials(&headers(&[]), &query, "s3"), Credentials::Valid);
        let cookies = headers(&[("cookie", "a=b; tiled_api_key=s3"), ("cookie", "c=d")]);
        assert_eq!(credentials(&cookies, &none, "s3"), Credentials::Valid);
        let wrong = headers(&[("cookie", "tiled_api_key=nope")]);
        assert_eq!(credentials(&wrong, &none, "s3"), Credentials::Invalid);
        // The header wins over a right key elsewhere.
        assert_eq!(credentials(&headers(&[("authorization", "Apikey x")]), &query, "s3"), Credentials::Invalid);
    }

    #[test]
    fn access() {
        assert!(authorize(Credentials::Valid, Access::Write, false).is_ok());
        assert!(authorize(Credentials::None, Access::Read, true).is_ok());
        assert_eq!(authorize(Credentials::None, Access::Write, true), Err(NOT_ENOUGH));
        assert_eq!(authorize(Credentials::Invalid, Access::Read, true), Err(INVALID));
        assert_eq!(authorize(Credentials::None, Access::Read, false), Err(NOT_ENOUGH));
    }
}
