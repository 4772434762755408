//! `dispatch`: which requests the edge serves itself and which go to the control plane.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response};
use hyper::body::Incoming;

use super::arrays::{self, Served};
use super::respond::Body;
use super::route::{classify, Route};
use super::shared::Shared;
use super::stats::route_label;
use super::{access, multi, push, streamer, subscribe, ws};

/// Serves one request: natively for the data plane's routes, else forwarded.
pub async fn dispatch(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let route = classify(request.method(), request.uri().path(), ws::is_upgrade(&request));
    Ok(match route {
        Route::Forward => forward(&shared, request, peer).await,
        Route::Subscribe(path) => subscribe::handle(shared, request, path, peer).await,
        Route::Multi => multi::handle(shared, request, peer).await,
        Route::Push(path) => push::handle(shared, request, path).await,
        Route::StreamerPush(sid) => streamer::push::handle(shared, request, sid).await,
        Route::StreamerPull(sid) => streamer::pull::handle(shared, request, sid).await,
        Route::Array(route, path) => {
            let started = Instant::now();
            let method = request.method().as_str().to_owned();
            let uri_path = request.uri().path().to_owned();
            match arrays::serve(Arc::clone(&shared), request, route, path).await {
                Served::Forward(request) => forward(&shared, *request, peer).await,
                Served::Answer(mut response) => {
                    if response.status().is_client_error() || response.status().is_server_error() {
                        // A refusal may go out before the body was read (a wrong Content-Length, a
                        // node that is not there): hyper then closes the connection, and a client
                        // that sent its next request on it would find it gone. Saying so makes
                        // the client open a new one.
                        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                    let seconds = started.elapsed().as_secs_f64();
                    let status = response.status().as_u16();
                    shared.stats.request(&method, route_label(&uri_path), status, seconds);
                    if shared.config.access_log {
                        access::write(&access::Line {
                            client: peer.ip(),
                            method: &method,
                            path: &uri_path,
                            status: Some(status),
                            seconds,
                            bytes: None,
                            last_sequence: None,
                        });
                    }
                    response
                }
            }
        }
    })
}

/// Longest wait of a forwarded request for the catalog to record growth (longer only when the
/// catalog cannot write; the control plane then answers what it can).
const SETTLE_WAIT: Duration = Duration::from_secs(2);

/// Forwards `request` to the control plane once the catalog holds every array growth
/// acknowledged before it arrived (so what it answers covers every acknowledged write).
async fn forward(shared: &Shared, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let _ = tokio::time::timeout(SETTLE_WAIT, shared.unrecorded.settled()).await;
    shared.upstream.forward(request, peer).await
}
