//! `push`: a writer over WebSocket (`WS /api/v1/stream/push/{path}?persist=false&mode=full`):
//! one binary message per frame (id and send time stamped, see `frames`), at most `window`
//! frames awaiting their JSON ack per connection. ferrotile's ack `{"frames": k, "sequence": n}`
//! acknowledges k messages (cumulative); an ack without `frames` counts as many messages as its
//! `sequence` advanced (at least one). An `{"error": ...}` message ends the run with its detail.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderValue, AUTHORIZATION};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::error::{LoadError, LoadResult};
use crate::frames::{noise, photons, stamp};
use crate::pace;
use crate::report::{emit, percentiles, rate};
use crate::target::Target;

/// Most ack-latency samples kept per connection.
const MAX_SAMPLES: usize = 2_000_000;
/// How long to wait for the outstanding acks after the last frame.
const ACK_GRACE: Duration = Duration::from_secs(5);

/// What a push run sends.
#[derive(Debug, Clone)]
pub struct PushPlan {
    /// The push URL (`ws://127.0.0.1:P/api/v1/stream/push/x?persist=false`).
    pub target: Target,
    /// Bytes per frame.
    pub size: usize,
    /// `Authorization: Apikey KEY`, if given.
    pub api_key: Option<String>,
    /// Concurrent push sockets.
    pub connections: usize,
    /// Frames awaiting their ack per socket.
    pub window: usize,
    /// Frames of pseudo-random bytes (else zeros) after the stamp.
    pub noise: bool,
    /// Frames of uint16 photon counts around this mean instead (see [`photons`]).
    pub photons: Option<f64>,
    /// Total frames per second over all sockets; `None` = flat out.
    pub rate: Option<f64>,
    /// How long to send.
    pub duration: Duration,
    /// Most frames in total (0 = only the duration limits).
    pub max_frames: u64,
}

#[derive(Default)]
struct PushStats {
    sent: u64,
    acked: u64,
    last_ack: Option<Instant>,
    latencies_us: Vec<u32>,
    problem: Option<String>,
}

/// What the ack reader of one socket shares with its sender.
#[derive(Default)]
struct Acks {
    /// Send times of the frames not acknowledged yet, oldest first.
    sent_at: VecDeque<Instant>,
    acked: u64,
    last_ack: Option<Instant>,
    latencies_us: Vec<u32>,
    problem: Option<String>,
}

async fn connection(plan: Arc<PushPlan>, index: usize, ids: Arc<AtomicU64>, start: Instant) -> PushStats {
    let mut stats = PushStats::default();
    let ws = match connect(&plan).await {
        Ok(ws) => ws,
        Err(e) => {
            stats.problem = Some(e);
            return stats;
        }
    };
    let (mut sink, mut source) = ws.split();
    let window = Arc::new(Semaphore::new(plan.window.max(1)));
    let acks = Arc::new(Mutex::new(Acks::default()));
    // Acks: release window slots, time each frame from its send to its ack.
    let reader = {
        let (window, acks) = (Arc::clone(&window), Arc::clone(&acks));
        tokio::spawn(async move {
            let mut last_seq = None::<u64>;
            while let Some(message) = source.next().await {
                let text = match message {
                    Ok(Message::Text(text)) => text,
                    Ok(Message::Close(frame)) => {
                        let why = frame.map_or("close".into(), |f| format!("close {} {}", u16::from(f.code), f.reason));
                        acks.lock().expect("nothing panics under this lock").problem = Some(why);
                        break;
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        acks.lock().expect("nothing panics under this lock").problem = Some(format!("error: {e}"));
                        break;
                    }
                };
                let mut acks = acks.lock().expect("nothing panics under this lock");
                let ack = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
                let Some(seq) = ack.get("sequence").and_then(Value::as_u64) else {
                    let detail = ack.get("error").map_or_else(|| text.to_string(), Value::to_string);
                    acks.problem = Some(format!("not an ack: {}", detail.chars().take(300).collect::<String>()));
                    break;
                };
                // `frames` counts the messages acknowledged so far on this socket (cumulative);
                // servers without it acknowledge by sequence only.
                let count = match ack.get("frames").and_then(Value::as_u64) {
                    Some(frames) => frames.saturating_sub(acks.acked),
                    None => last_seq.map_or(1, |last| seq.saturating_sub(last).max(1)),
                };
                last_seq = Some(seq);
                let now = Instant::now();
                for _ in 0..count {
                    let Some(sent) = acks.sent_at.pop_front() else { break };
                    acks.acked += 1;
                    if acks.latencies_us.len() < MAX_SAMPLES {
                        acks.latencies_us.push(u32::try_from(now.duration_since(sent).as_micros()).unwrap_or(u32::MAX));
                    }
                    window.add_permits(1);
                }
                acks.last_ack = Some(now);
            }
        })
    };
    let deadline = start + plan.duration;
    let mut ticker = plan.rate.map(|r| pace::ticker(r, plan.connections, index, start));
    let mut frame = vec![0u8; plan.size];
    if plan.noise {
        noise(&mut frame, index as u64 + 1);
    } else if let Some(mean) = plan.photons {
        photons(&mut frame, mean, index as u64 + 1);
    }
    while Instant::now() < deadline && !reader.is_finished() {
        if let Some(ticker) = ticker.as_mut() {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = tokio::time::sleep_until(deadline.into()) => break,
            }
        }
        let permit = tokio::select! {
            permit = window.acquire() => permit,
            _ = tokio::time::sleep_until(deadline.into()) => break,
        };
        let Ok(permit) = permit else { break };
        permit.forget(); // given back by the reader when the ack arrives
        let id = ids.fetch_add(1, Ordering::Relaxed);
        if plan.max_frames > 0 && id >= plan.max_frames {
            break;
        }
        stamp(&mut frame, id);
        acks.lock().expect("nothing panics under this lock").sent_at.push_back(Instant::now());
        if let Err(e) = sink.send(Message::Binary(Bytes::copy_from_slice(&frame))).await {
            stats.problem = Some(format!("send: {e}"));
            break;
        }
        stats.sent += 1;
    }
    // Wait for the outstanding acks (bounded), then close.
    let all_back = window.acquire_many(u32::try_from(plan.window.max(1)).unwrap_or(u32::MAX));
    let _ = tokio::time::timeout(ACK_GRACE, all_back).await;
    let _ = sink.send(Message::Close(None)).await;
    reader.abort();
    let mut acks = acks.lock().expect("nothing panics under this lock");
    (stats.acked, stats.last_ack) = (acks.acked, acks.last_ack);
    stats.latencies_us = std::mem::take(&mut acks.latencies_us);
    stats.problem = stats.problem.take().or(acks.problem.take());
    stats
}

async fn connect(plan: &PushPlan) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, String> {
    let stream = TcpStream::connect(plan.target.addr).await.map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut request = plan.target.url.as_str().into_client_request().map_err(|e| e.to_string())?;
    if let Some(key) = &plan.api_key {
        let value = HeaderValue::from_str(&format!("Apikey {key}")).map_err(|e| e.to_string())?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

/// Runs the push loop and reports frames acknowledged per second and ack latency; fails when
/// no socket could be opened (e.g. a server without the route answers the handshake with 404).
pub async fn run(plan: PushPlan) -> LoadResult<()> {
    if plan.connections == 0 || plan.connections > 1000 {
        return Err(LoadError::Target("--connections must be 1..=1000".into()));
    }
    let plan = Arc::new(plan);
    let ids = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut all = pace::run_each(plan.connections, |i| connection(Arc::clone(&plan), i, Arc::clone(&ids), start)).await;
    let (sent, acked) = (all.iter().map(|s| s.sent).sum::<u64>(), all.iter().map(|s| s.acked).sum::<u64>());
    let problem = all.iter().find_map(|s| s.problem.clone());
    if sent == 0 {
        return Err(LoadError::Setup(problem.unwrap_or_else(|| "nothing sent".into())));
    }
    let end = all.iter().filter_map(|s| s.last_ack).max().unwrap_or(start);
    let seconds = end.duration_since(start).as_secs_f64();
    let mut latencies: Vec<u32> = all.iter_mut().flat_map(|s| std::mem::take(&mut s.latencies_us)).collect();
    let mut out = Map::new();
    out.insert("mode".into(), "push".into());
    out.insert("url".into(), plan.target.url.clone().into());
    out.insert("size".into(), (plan.size as u64).into());
    out.insert("connections".into(), (plan.connections as u64).into());
    out.insert("window".into(), (plan.window as u64).into());
    out.insert("target_rate".into(), plan.rate.map_or(Value::Null, Value::from));
    out.insert("sent".into(), sent.into());
    out.insert("ok".into(), acked.into());
    out.insert("unacked".into(), sent.saturating_sub(acked).into());
    out.insert("seconds".into(), seconds.into());
    out.insert("req_per_s".into(), rate(acked, seconds).into());
    out.insert("non_2xx".into(), 0.into());
    if let Some(problem) = problem {
        out.insert("first_problem".into(), problem.into());
    }
    out.extend(percentiles(&mut latencies));
    emit(out);
    Ok(())
}
