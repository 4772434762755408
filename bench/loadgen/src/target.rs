//! Target URLs: parsing and the loopback-only rule (a load generator must never be pointed at
//! someone else's machine).

use std::net::{IpAddr, SocketAddr};

use http::Uri;

use crate::error::{LoadError, LoadResult};

/// A parsed loopback target: socket address, `Host` header value and the URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `host:port` for the `Host` header.
    pub authority: String,
    /// The URL as given.
    pub url: String,
}

/// Parses `url` (`http://`, `ws://`), refusing any host that is not a loopback address.
pub fn parse(url: &str) -> LoadResult<Target> {
    let uri: Uri = url.parse().map_err(|e| LoadError::Target(format!("{url}: {e}")))?;
    let scheme = uri.scheme_str().unwrap_or("");
    if !matches!(scheme, "http" | "ws") {
        return Err(LoadError::Target(format!("{url}: only http:// and ws:// (loopback) are supported")));
    }
    let host = uri.host().ok_or_else(|| LoadError::Target(format!("{url}: no host")))?;
    let ip: IpAddr = match host.trim_start_matches('[').trim_end_matches(']') {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        other => other.parse().map_err(|_| LoadError::Target(format!("{url}: host must be a loopback IP")))?,
    };
    if !ip.is_loopback() {
        return Err(LoadError::Target(format!("{url}: refusing non-loopback host {ip}")));
    }
    let port = uri.port_u16().unwrap_or(80);
    Ok(Target { addr: SocketAddr::new(ip, port), authority: format!("{host}:{port}"), url: url.to_owned() })
}

/// Resolves `path` against the scheme and authority of `base` (e.g. a PUT URL from a server URL).
pub fn join(base: &Target, path: &str) -> Target {
    let scheme = if base.url.starts_with("ws") { "ws" } else { "http" };
    Target { addr: base.addr, authority: base.authority.clone(), url: format!("{scheme}://{}{path}", base.authority) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        assert!(parse("http://127.0.0.1:8000/api/v1/").is_ok());
        assert!(parse("ws://localhost:9/x?y=1").is_ok());
        assert!(parse("http://[::1]:80/").is_ok());
        assert!(parse("http://10.0.0.1:8000/").is_err());
        assert!(parse("http://example.com/").is_err());
        assert!(parse("https://127.0.0.1/").is_err());
        let t = parse("ws://127.0.0.1:5/a/b?c=d").unwrap();
        assert_eq!(t.addr.port(), 5);
    }
}
