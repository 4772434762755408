//! Which requests the edge serves itself: the data plane's routes, by method and path.

use http::Method;
use percent_encoding::percent_decode_str;

/// Which array write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayRoute {
    /// `PUT /array/full`.
    PutFull,
    /// `PUT /array/block`.
    PutBlock,
    /// `PATCH /array/full`.
    Patch,
}

/// A request's route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `WS /api/v1/stream/single/{path}` (Tiled subscription).
    Subscribe(String),
    /// `WS /api/v1/stream/multi` (many Tiled subscriptions over one socket).
    Multi,
    /// `PUT /api/v1/array/full|block/{path}`, `PATCH /api/v1/array/full/{path}`.
    Array(ArrayRoute, String),
    /// `WS /api/v1/stream/push/{path}` (frames of an array node).
    Push(String),
    /// `WS /data/{sid}/push` (Redis Streamer).
    StreamerPush(String),
    /// `WS /data/{sid}/pull` (Redis Streamer).
    StreamerPull(String),
    /// Anything else: the control plane's.
    Forward,
}

/// The decoded rest of `path` after `prefix` (as Starlette's `{path:path}` gives it), if `path`
/// starts with it and decodes to UTF-8.
fn rest(path: &str, prefix: &str) -> Option<String> {
    let rest = path.strip_prefix(prefix)?;
    percent_decode_str(rest).decode_utf8().ok().map(|s| s.into_owned())
}

/// Classifies a request; `upgrade` says whether it asks for a WebSocket.
pub fn classify(method: &Method, path: &str, upgrade: bool) -> Route {
    if upgrade && method == Method::GET {
        if path == "/api/v1/stream/multi" || path == "/api/v1/stream/multi/" {
            return Route::Multi;
        }
        if let Some(node) = rest(path, "/api/v1/stream/single/") {
            return Route::Subscribe(node);
        }
        if let Some(node) = rest(path, "/api/v1/stream/push/") {
            return Route::Push(node);
        }
        if let Some(tail) = path.strip_prefix("/data/") {
            let (sid, verb) = tail.rsplit_once('/').unwrap_or((tail, ""));
            let sid = percent_decode_str(sid).decode_utf8().ok().map(|s| s.into_owned());
            match (sid, verb) {
                (Some(sid), "push") if !sid.contains('/') => return Route::StreamerPush(sid),
                (Some(sid), "pull") if !sid.contains('/') => return Route::StreamerPull(sid),
                _ => {}
            }
        }
        return Route::Forward;
    }
    let array = if *method == Method::PUT {
        rest(path, "/api/v1/array/full/")
            .map(|p| (ArrayRoute::PutFull, p))
            .or_else(|| rest(path, "/api/v1/array/block/").map(|p| (ArrayRoute::PutBlock, p)))
    } else if *method == Method::PATCH {
        rest(path, "/api/v1/array/full/").map(|p| (ArrayRoute::Patch, p))
    } else {
        None
    };
    match array {
        Some((route, node)) => Route::Array(route, node),
        None => Route::Forward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(classify(&Method::GET, "/api/v1/stream/single/a/b%20c", true), Route::Subscribe("a/b c".into()));
        assert_eq!(classify(&Method::GET, "/api/v1/stream/single/", true), Route::Subscribe(String::new()));
        assert_eq!(classify(&Method::GET, "/api/v1/stream/single/a", false), Route::Forward);
        assert_eq!(classify(&Method::GET, "/graphql", true), Route::Forward);
        assert_eq!(classify(&Method::GET, "/api/v1/stream/multi", true), Route::Multi);
        assert_eq!(classify(&Method::GET, "/api/v1/stream/multi", false), Route::Forward);
        assert_eq!(classify(&Method::GET, "/api/v1/stream/multiple", true), Route::Forward);
        assert_eq!(classify(&Method::GET, "/data/a+b/pull", true), Route::StreamerPull("a+b".into()));
        assert_eq!(classify(&Method::GET, "/data/cam%201/push", true), Route::StreamerPush("cam 1".into()));
        assert_eq!(classify(&Method::GET, "/data/a/b/push", true), Route::Forward);
        assert_eq!(classify(&Method::GET, "/data/a/push", false), Route::Forward);
        assert_eq!(
            classify(&Method::PUT, "/api/v1/array/block/x", false),
            Route::Array(ArrayRoute::PutBlock, "x".into())
        );
        assert_eq!(
            classify(&Method::PATCH, "/api/v1/array/full/x", false),
            Route::Array(ArrayRoute::Patch, "x".into())
        );
        assert_eq!(classify(&Method::PATCH, "/api/v1/array/block/x", false), Route::Forward);
        assert_eq!(classify(&Method::GET, "/api/v1/array/full/x", false), Route::Forward);
        assert_eq!(classify(&Method::PUT, "/api/v1/array/full/%ff", false), Route::Forward);
    }
}
