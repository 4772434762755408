//! HTTP loops over keep-alive HTTP/1.1 connections (hyper's low-level client, no pool): `put`
//! (stream-only array writes, paced or flat out; frame id and send time stamped, see `frames`),
//! `patch` (persisted appends, `PATCH ...?offset=i,0&shape=1,n&extend=true`, as the stock
//! client's `x.patch(frame, offset=(i,), extend=True)` sends them) and `get` (control-plane
//! reads, over TCP or a Unix socket).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::{TcpStream, UnixStream};

use crate::error::{LoadError, LoadResult};
use crate::frames::{noise, stamp};
use crate::pace;
use crate::report::{emit, percentiles, rate};
use crate::target::Target;

/// Most latency samples kept per connection (bounds memory on long flat-out runs).
const MAX_SAMPLES: usize = 2_000_000;
/// A connection gives up after this many consecutive failures.
const MAX_ERRORS: u64 = 50;

/// What each request of a loop sends.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Server base (`http://127.0.0.1:P`); paths are resolved against it.
    pub target: Target,
    /// `GET` paths (cycled) or the one `PUT` path.
    pub paths: Vec<String>,
    /// `Some(body size)` for PUT (or PATCH), with the frame id in the first 8 bytes.
    pub put_size: Option<usize>,
    /// PATCH frame `i` (from 0) at row `i + 1` of a `(rows, size)` array, extending it, instead
    /// of PUT; the body's bytes are noise (incompressible) but for the stamp.
    pub patch_extend: bool,
    /// `Authorization: Apikey KEY`, if given.
    pub api_key: Option<String>,
    /// Concurrent connections.
    pub connections: usize,
    /// Total requests per second over all connections; `None` = flat out.
    pub rate: Option<f64>,
    /// How long to run.
    pub duration: Duration,
    /// Most requests in total (PUT only; 0 = no limit but the duration).
    pub max_requests: u64,
    /// Connect to this Unix socket instead of `target.addr` (same requests and `Host`).
    pub unix: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct ConnStats {
    ok: u64,
    non_2xx: u64,
    errors: u64,
    first_status: Option<u16>,
    latencies_us: Vec<u32>,
    last_error: Option<String>,
}

async fn open(target: &Target, unix: Option<&std::path::Path>) -> Result<SendRequest<Full<Bytes>>, String> {
    if let Some(path) = unix {
        let stream = UnixStream::connect(path).await.map_err(|e| format!("connect {}: {e}", path.display()))?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        return Ok(sender);
    }
    let stream = TcpStream::connect(target.addr).await.map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

fn request(plan: &Plan, path: &str, body: Bytes, method: Method) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path).header(HOST, plan.target.authority.as_str());
    if let Some(key) = &plan.api_key {
        builder = builder.header(AUTHORIZATION, format!("Apikey {key}"));
    }
    if !body.is_empty() {
        builder = builder.header(CONTENT_TYPE, "application/octet-stream");
    }
    builder.body(Full::new(body)).expect("static request parts are valid")
}

/// Sends one request and reads the whole response; returns the status.
async fn exchange(sender: &mut SendRequest<Full<Bytes>>, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body))
}

async fn connection(plan: Arc<Plan>, index: usize, frame_ids: Arc<AtomicU64>, start: Instant) -> ConnStats {
    let mut stats = ConnStats::default();
    let deadline = start + plan.duration;
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut ticker = plan.rate.map(|r| pace::ticker(r, plan.connections, index, start));
    let mut body = vec![0u8; plan.put_size.unwrap_or(0)];
    if plan.patch_extend {
        noise(&mut body, index as u64 + 1);
    }
    let mut consecutive_errors = 0;
    let mut turn = index;
    while Instant::now() < deadline && consecutive_errors < MAX_ERRORS {
        if let Some(ticker) = ticker.as_mut() {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = tokio::time::sleep_until(deadline.into()) => break,
            }
        }
        if sender.is_none() {
            match open(&plan.target, plan.unix.as_deref()).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    stats.errors += 1;
                    consecutive_errors += 1;
                    stats.last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let req = match plan.put_size {
            Some(_) => {
                let id = frame_ids.fetch_add(1, Ordering::Relaxed);
                if plan.max_requests > 0 && id >= plan.max_requests {
                    break;
                }
                stamp(&mut body, id);
                if plan.patch_extend {
                    let path = format!("{}?offset={},0&shape=1,{}&extend=true", plan.paths[0], id + 1, body.len());
                    request(&plan, &path, Bytes::copy_from_slice(&body), Method::PATCH)
                } else {
                    request(&plan, &plan.paths[0], Bytes::copy_from_slice(&body), Method::PUT)
                }
            }
            None => {
                turn += 1;
                request(&plan, &plan.paths[turn % plan.paths.len()], Bytes::new(), Method::GET)
            }
        };
        let t0 = Instant::now();
        let result = exchange(sender.as_mut().expect("opened above"), req).await;
        let micros = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
        match result {
            Ok((status, _)) => {
                consecutive_errors = 0;
                stats.first_status.get_or_insert(status);
                if (200..300).contains(&status) {
                    stats.ok += 1;
                } else {
                    stats.non_2xx += 1;
                }
                if stats.latencies_us.len() < MAX_SAMPLES {
                    stats.latencies_us.push(micros);
                }
            }
            Err(e) => {
                stats.errors += 1;
                consecutive_errors += 1;
                stats.last_error = Some(e);
                sender = None;
            }
        }
    }
    stats
}

/// Runs the loop of `plan` and reports requests/s, statuses and latency percentiles.
pub async fn run(plan: Plan, mode: &str) -> LoadResult<()> {
    if plan.connections == 0 || plan.connections > 10_000 {
        return Err(LoadError::Target("--connections must be 1..=10000".into()));
    }
    if plan.paths.is_empty() {
        return Err(LoadError::Target("no path given".into()));
    }
    let plan = Arc::new(plan);
    let frame_ids = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut all =
        pace::run_each(plan.connections, |i| connection(Arc::clone(&plan), i, Arc::clone(&frame_ids), start)).await;
    let elapsed = start.elapsed().as_secs_f64();
    let ok: u64 = all.iter().map(|s| s.ok).sum();
    let mut latencies: Vec<u32> = all.iter_mut().flat_map(|s| std::mem::take(&mut s.latencies_us)).collect();
    let mut out = Map::new();
    out.insert("mode".into(), mode.into());
    out.insert("url".into(), plan.target.url.clone().into());
    if let Some(path) = &plan.unix {
        out.insert("unix".into(), path.display().to_string().into());
    }
    out.insert("paths".into(), json!(plan.paths));
    out.insert("connections".into(), (plan.connections as u64).into());
    out.insert("target_rate".into(), plan.rate.map_or(Value::Null, Value::from));
    out.insert("seconds".into(), elapsed.into());
    out.insert("ok".into(), ok.into());
    out.insert("non_2xx".into(), all.iter().map(|s| s.non_2xx).sum::<u64>().into());
    out.insert("errors".into(), all.iter().map(|s| s.errors).sum::<u64>().into());
    out.insert("req_per_s".into(), rate(ok, elapsed).into());
    if let Some(status) = all.iter().find_map(|s| s.first_status) {
        out.insert("first_status".into(), status.into());
    }
    if let Some(error) = all.iter().find_map(|s| s.last_error.clone()) {
        out.insert("last_error".into(), error.into());
    }
    out.extend(percentiles(&mut latencies));
    emit(out);
    Ok(())
}

/// Creates a writable `uint8` array of `shape`, one chunk along each axis, at `key` (POST
/// /api/v1/metadata/); an already existing node is accepted.
pub async fn create_array(base: &Target, api_key: Option<&str>, key: &str, shape: &[usize]) -> LoadResult<()> {
    let chunks: Vec<[usize; 1]> = shape.iter().map(|n| [*n]).collect();
    let body = json!({
        "id": key, "structure_family": "array", "metadata": {}, "specs": [],
        "data_sources": [{
            "structure_family": "array",
            "structure": {
                "data_type": {"endianness": "not_applicable", "kind": "u", "itemsize": 1, "dt_units": null},
                "chunks": chunks, "shape": shape, "dims": null, "resizable": false,
            },
            "id": null, "mimetype": null, "parameters": {}, "properties": {}, "assets": [],
            "management": "writable",
        }],
    });
    let mut sender = open(base, None).await.map_err(LoadError::Setup)?;
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/metadata/")
        .header(HOST, base.authority.as_str())
        .header(CONTENT_TYPE, "application/json");
    if let Some(key) = api_key {
        builder = builder.header(AUTHORIZATION, format!("Apikey {key}"));
    }
    let req = builder.body(Full::new(Bytes::from(body.to_string()))).map_err(|e| LoadError::Setup(e.to_string()))?;
    let (status, text) = exchange(&mut sender, req).await.map_err(LoadError::Setup)?;
    if (200..300).contains(&status) || status == 409 {
        Ok(())
    } else {
        Err(LoadError::Setup(format!("create {key}: HTTP {status}: {}", String::from_utf8_lossy(&text))))
    }
}
