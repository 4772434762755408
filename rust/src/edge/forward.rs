//! `Upstream`: forwards every request the edge does not serve itself to the Python control
//! plane (Granian on a private Unix socket) over a keep-alive pool, streaming bodies both ways,
//! WebSocket upgrades included (the two upgraded connections are then spliced).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, HOST, UPGRADE};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixStream;

use super::respond::{self, Body};

/// The client side of one connection to the control plane's Unix socket.
pub struct UnixIo(TokioIo<UnixStream>);

impl Connection for UnixIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for UnixIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UnixIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

/// Connects to the Unix socket whatever the request's URI says.
#[derive(Clone)]
pub struct UnixConnector {
    path: Arc<PathBuf>,
}

impl tower_service::Service<Uri> for UnixConnector {
    type Response = UnixIo;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<UnixIo>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = Arc::clone(&self.path);
        Box::pin(async move { Ok(UnixIo(TokioIo::new(UnixStream::connect(path.as_path()).await?))) })
    }
}

/// A client's request body on its way to the control plane, noting whether reading it failed
/// (a malformed chunked body, a client gone mid-upload): that is the client's fault, a 400, not
/// a 502.
pub struct WatchedBody {
    inner: Incoming,
    failed: Arc<AtomicBool>,
}

impl http_body::Body for WatchedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.failed.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The forwarding client of one edge.
pub struct Upstream {
    client: Client<UnixConnector, WatchedBody>,
}

/// The URI every forwarded request carries: the pool needs an authority; the connector ignores it.
const AUTHORITY: &str = "control-plane";

impl Upstream {
    /// A pool of keep-alive connections to `path`.
    pub fn new(path: PathBuf) -> Self {
        let connector = UnixConnector { path: Arc::new(path) };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .set_host(false)
            .build(connector);
        Self { client }
    }

    /// Sends `request` to the control plane and streams its answer back. The client's address
    /// is appended to `X-Forwarded-For`; an upgrade (WebSocket) the control plane accepts is
    /// spliced to the client's connection.
    pub async fn forward(&self, mut request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let upgrade = request.headers().contains_key(UPGRADE).then(|| hyper::upgrade::on(&mut request));
        let path = request.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let uri = Uri::builder().scheme("http").authority(AUTHORITY).path_and_query(path).build();
        match uri {
            Ok(uri) => *request.uri_mut() = uri,
            Err(_) => return respond::error(StatusCode::BAD_REQUEST, "Malformed request target"),
        }
        let headers = request.headers_mut();
        if !headers.contains_key(HOST) {
            headers.insert(HOST, HeaderValue::from_static("localhost"));
        }
        append_forwarded_for(headers, peer);
        let failed = Arc::new(AtomicBool::new(false));
        let request = request.map(|inner| WatchedBody { inner, failed: Arc::clone(&failed) });
        let mut response = match self.client.request(request).await {
            Ok(response) => response,
            Err(_) if failed.load(Ordering::Acquire) => {
                return respond::error(StatusCode::BAD_REQUEST, "The request body could not be read");
            }
            Err(e) => {
                let detail = format!("The control plane did not answer: {e}");
                return respond::error(StatusCode::BAD_GATEWAY, &detail);
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_side) = upgrade {
                let upstream_side = hyper::upgrade::on(&mut response);
                tokio::spawn(splice(client_side, upstream_side));
            }
        }
        response.map(Either::Right)
    }
}

fn append_forwarded_for(headers: &mut http::HeaderMap, peer: SocketAddr) {
    const XFF: &str = "x-forwarded-for";
    let ip = peer.ip().to_string();
    let value = match headers.get(XFF).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing}, {ip}"),
        _ => ip,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(XFF, value);
    }
}

/// Copies bytes both ways between an upgraded client connection and the control plane's.
async fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) else { return };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    // Either side closing ends both: nothing to report to anyone.
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
