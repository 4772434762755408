//! `ferrotile-relay`: the floor of the bench. The least a Rust server can do for the data plane:
//! `PUT /api/v1/array/full/{x}` and every message of `WS /api/v1/stream/push/{x}` go as they are
//! (no envelope, no checks) into a tokio broadcast of `Bytes`, which every
//! `WS /api/v1/stream/single/{x}` subscriber sends as one binary message. Push messages are
//! acknowledged with `{"frames": K, "sequence": N}` (ferrotile's ack, one per message; K counts
//! the socket's messages so far).
//! `GET /healthz` and `POST /api/v1/metadata/` answer 200 so the bench clients run unchanged.
//! Usage: `ferrotile-relay [PORT [THREADS]]` (binds 127.0.0.1; one tokio thread unless told).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, header, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, Message};
use tokio_tungstenite::WebSocketStream;

/// Messages a subscriber may fall behind before it skips ahead (like a full queue dropping).
const BACKLOG: usize = 256;
type Topics = Arc<Mutex<HashMap<String, Arc<(broadcast::Sender<Bytes>, AtomicU64)>>>>;

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

async fn handle(topics: Topics, mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_owned();
    let (route, key) = path.rsplit_once('/').unwrap_or_default();
    let topic = || {
        let mut topics = topics.lock().expect("nothing panics under this lock");
        let new = || Arc::new((broadcast::channel(BACKLOG).0, AtomicU64::new(0)));
        Arc::clone(topics.entry(key.to_owned()).or_insert_with(new))
    };
    let ws_key = req.headers().get(header::SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes()));
    match (route, ws_key) {
        ("/api/v1/array/full", None) if req.method() == hyper::Method::PUT => {
            let (body, topic) = (req.into_body().collect().await?.to_bytes(), topic());
            topic.1.fetch_add(1, Relaxed);
            let _ = topic.0.send(body); // no subscriber is not an error
            Ok(reply(StatusCode::OK, "null"))
        }
        ("/api/v1/stream/single" | "/api/v1/stream/push", Some(accept)) => {
            let push = route.ends_with("push");
            let (upgrade, topic) = (hyper::upgrade::on(&mut req), topic());
            tokio::spawn(async move {
                let Ok(io) = upgrade.await else { return };
                // Reads of 4 KiB, not 128 KiB, per socket: an idle subscriber costs little memory.
                let config = WebSocketConfig::default().read_buffer_size(4096).max_message_size(None);
                let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config)).await;
                if push {
                    let mut frames = 0u64;
                    while let Some(Ok(Message::Binary(frame))) = ws.next().await {
                        let sequence = topic.1.fetch_add(1, Relaxed) + 1;
                        let _ = topic.0.send(frame);
                        frames += 1;
                        if ws
                            .send(Message::text(format!("{{\"frames\": {frames}, \"sequence\": {sequence}}}")))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    return;
                }
                let (mut sink, mut source) = ws.split();
                let mut rx = topic.0.subscribe();
                loop {
                    let frame = tokio::select! {
                        frame = rx.recv() => frame,
                        message = source.next() => match message {
                            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                            _ => return, // closed: subscribers send nothing else
                        },
                    };
                    match frame {
                        Ok(frame) => {
                            if sink.send(Message::Binary(frame)).await.is_err() {
                                return;
                            }
                        }
                        Err(RecvError::Lagged(_)) => {} // skipped: the subscriber sees the id gap
                        Err(RecvError::Closed) => return,
                    }
                }
            });
            let mut response = reply(StatusCode::SWITCHING_PROTOCOLS, "");
            let headers = response.headers_mut();
            headers.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
            headers.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept.parse().expect("base64 is a valid header"));
            Ok(response)
        }
        _ if path == "/healthz" || (path == "/api/v1/metadata/" && req.method() == hyper::Method::POST) => {
            Ok(reply(StatusCode::OK, "{}"))
        }
        _ => Ok(reply(StatusCode::NOT_FOUND, "{\"detail\": \"not a relay route\"}")),
    }
}

fn main() -> std::io::Result<()> {
    let arg = |n: usize, default: usize| std::env::args().nth(n).map_or(Ok(default), |a| a.parse());
    let (port, threads) = (arg(1, 8000).map_err(std::io::Error::other)?, arg(2, 1).map_err(std::io::Error::other)?);
    let runtime = match threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()?,
    };
    runtime.block_on(serve(u16::try_from(port).map_err(std::io::Error::other)?))
}

async fn serve(port: u16) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let topics = Topics::default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors (thousands of sockets): wait for some to close, keep serving.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        stream.set_nodelay(true)?;
        let topics = Arc::clone(&topics);
        let service = service_fn(move |req| handle(Arc::clone(&topics), req));
        tokio::spawn(
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades(),
        );
    }
}
