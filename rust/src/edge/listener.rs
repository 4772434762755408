//! Binding the public socket (optionally shared by the server's processes with `SO_REUSEPORT`)
//! and the accept loop that hands each connection to hyper.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::config::EdgeConfig;
use super::dispatch::dispatch;
use super::shared::Shared;
use crate::error::{CoreError, CoreResult};

/// Pending connections the kernel queues before `accept`.
const BACKLOG: i32 = 4096;

/// Binds `config.host:config.port` (a std listener, so errors surface before anything runs).
pub fn bind(config: &EdgeConfig) -> CoreResult<std::net::TcpListener> {
    let host = if config.host == "localhost" { "127.0.0.1" } else { config.host.as_str() };
    let address = (host, config.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| CoreError::Listen(format!("cannot resolve {}", config.host)))?;
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None).map_err(listen_error(address))?;
    socket.set_reuse_address(true).map_err(listen_error(address))?;
    if config.reuse_port {
        socket.set_reuse_port(true).map_err(listen_error(address))?;
    }
    socket.set_nonblocking(true).map_err(listen_error(address))?;
    socket.bind(&address.into()).map_err(listen_error(address))?;
    socket.listen(BACKLOG).map_err(listen_error(address))?;
    Ok(socket.into())
}

fn listen_error(address: SocketAddr) -> impl Fn(std::io::Error) -> CoreError {
    move |e| match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            CoreError::Listen(format!("Port {} on {} is already in use", address.port(), address.ip()))
        }
        _ => CoreError::Listen(format!("Cannot listen on {address}: {e}")),
    }
}

/// Accepts connections until `stop` turns true; each connection is served on its own task.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(serve_connection(stream, peer, Arc::clone(&shared), stop.clone()));
                }
                // Out of file descriptors or a connection reset before accept: keep serving the
                // others, after a breath so a persistent error does not spin.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            },
            _ = stop.changed() => return,
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    let service_shared = Arc::clone(&shared);
    let service = service_fn(move |request| dispatch(Arc::clone(&service_shared), request, peer));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_timeout)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        // A malformed request or a peer that went away ends only this connection.
        _ = connection.as_mut() => {}
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
