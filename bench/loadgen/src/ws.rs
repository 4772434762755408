//! WebSocket subscribers: `subscribers` (count messages, check sequences; with `--frames`, count
//! frames by their embedded id and measure latency, see `frames`) and `idle` (hold many quiet
//! sockets). Handshakes run with bounded concurrency; every socket stops at a deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http::header::{HeaderValue, AUTHORIZATION};
use serde_json::{json, Map, Value};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::error::{LoadError, LoadResult};
use crate::frames::{monotonic_ns, payload_of, FrameStats, Payload};
use crate::report::{emit, rate};
use crate::target::Target;

/// Settings shared by `subscribers` and `idle`.
#[derive(Debug, Clone)]
pub struct SocketRun {
    /// The stream URL (`ws://127.0.0.1:P/api/v1/stream/single/x?envelope_format=msgpack`).
    pub target: Target,
    /// Sockets to open.
    pub count: usize,
    /// `Authorization: Apikey KEY`, if given.
    pub api_key: Option<String>,
    /// Handshakes in flight at once.
    pub connect_concurrency: usize,
    /// Give up on connecting after this long.
    pub connect_timeout: Duration,
    /// Measure (or hold) for this long after every socket is connected.
    pub duration: Duration,
    /// Stop early once every socket has this many data messages (0 = run for `duration`).
    pub expect: u64,
    /// Bytes of read buffer per socket.
    pub read_buffer: usize,
    /// Count frames by embedded id (and latency) in messages of this form; `None` = by sequence.
    pub frames: Option<Payload>,
    /// Stop once no data message has arrived for this long after the first one (zero = never).
    pub idle_stop: Duration,
}

/// What one socket saw.
#[derive(Debug, Default)]
struct SocketStats {
    messages: u64,
    data: u64,
    bytes: u64,
    /// Sequence numbers skipped (sum of `seq - last - 1` over forward jumps).
    missing: u64,
    gap_events: u64,
    /// Sequences at or below the last one seen (duplicates or reordering).
    duplicates: u64,
    first_seq: Option<u64>,
    last_seq: u64,
    /// When the first and the last data message arrived.
    first_rx: Option<Instant>,
    last_rx: Option<Instant>,
    /// Why the socket ended before the run did (close frame or error), if it did.
    ended: Option<String>,
    connected: bool,
    /// Frame ids and latency (with `--frames`).
    frames: Option<FrameStats>,
}

/// The `sequence` field of a msgpack (binary) or JSON (text) envelope, if it has one.
pub fn sequence_of(frame: &[u8], binary: bool) -> Option<u64> {
    if binary {
        let value = rmpv::decode::read_value_ref(&mut &frame[..]).ok()?;
        let rmpv::ValueRef::Map(entries) = value else { return None };
        entries.iter().find_map(|(k, v)| match (k, v) {
            (rmpv::ValueRef::String(k), rmpv::ValueRef::Integer(n)) if k.as_bytes() == b"sequence" => n.as_u64(),
            _ => None,
        })
    } else {
        let value: Value = serde_json::from_slice(frame).ok()?;
        value.get("sequence")?.as_u64()
    }
}

/// Opens one WebSocket to `target` (its URL as is), with `Authorization: Apikey KEY` if given.
pub async fn connect(
    target: &Target,
    api_key: Option<&str>,
    read_buffer: usize,
) -> Result<WebSocketStream<TcpStream>, String> {
    let stream = TcpStream::connect(target.addr).await.map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut request = target.url.as_str().into_client_request().map_err(|e| e.to_string())?;
    if let Some(key) = api_key {
        let value = HeaderValue::from_str(&format!("Apikey {key}")).map_err(|e| e.to_string())?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_message_size(None)
        .max_frame_size(None);
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

struct Shared {
    connected: AtomicU64,
    failed: AtomicU64,
    done: AtomicU64,
    last_connect: LastInstant,
    /// When the latest data message arrived on any socket (zero: none yet).
    last_data: LastInstant,
}

/// The latest of several instants, as nanoseconds since a base (lock-free).
struct LastInstant {
    base: Instant,
    nanos: AtomicU64,
}

impl LastInstant {
    fn new(base: Instant) -> Self {
        Self { base, nanos: AtomicU64::new(0) }
    }

    fn mark(&self) {
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_max(now, Ordering::Relaxed);
    }

    fn get(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

async fn socket(
    run: Arc<SocketRun>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> SocketStats {
    let mut stats = SocketStats::default();
    let ws = {
        let Ok(_permit) = gate.acquire().await else { return stats };
        let attempt = tokio::select! {
            ws = connect(&run.target, run.api_key.as_deref(), run.read_buffer) => ws,
            _ = stop.changed() => Err("stopped before connecting".to_owned()),
        };
        match attempt {
            Ok(ws) => ws,
            Err(e) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                stats.ended = Some(e);
                return stats;
            }
        }
    };
    stats.connected = true;
    shared.last_connect.mark();
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let (_sink, mut source) = ws.split();
    loop {
        let next = tokio::select! {
            next = source.next() => next,
            _ = stop.changed() => break,
        };
        let (frame, binary) = match next {
            Some(Ok(Message::Binary(b))) => (b, true),
            Some(Ok(Message::Text(t))) => (bytes::Bytes::from(t), false),
            Some(Ok(Message::Close(frame))) => {
                stats.ended = Some(format!("close {:?}", frame.map(|f| (u16::from(f.code), f.reason.to_string()))));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                stats.ended = Some(format!("error: {e}"));
                break;
            }
            None => {
                stats.ended = Some("eof".to_owned());
                break;
            }
        };
        stats.messages += 1;
        stats.bytes += frame.len() as u64;
        let is_data = match run.frames {
            Some(kind) => match payload_of(&frame, kind) {
                Some(payload) => {
                    stats.frames.get_or_insert_with(FrameStats::default).record(payload, monotonic_ns());
                    true
                }
                None => false,
            },
            None => false,
        };
        let seq = if run.frames == Some(Payload::Raw) { None } else { sequence_of(&frame, binary) };
        if is_data || seq.is_some() {
            // The delivery window spans data messages only (not the schema sent on connect).
            let now = Instant::now();
            stats.first_rx.get_or_insert(now);
            stats.last_rx = Some(now);
            shared.last_data.mark();
            stats.data += 1;
            if run.expect > 0 && stats.data == run.expect {
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(seq) = seq {
            match stats.first_seq {
                None => stats.first_seq = Some(seq),
                Some(_) if seq > stats.last_seq + 1 => {
                    stats.missing += seq - stats.last_seq - 1;
                    stats.gap_events += 1;
                }
                Some(_) if seq <= stats.last_seq => stats.duplicates += 1,
                Some(_) => {}
            }
            stats.last_seq = stats.last_seq.max(seq);
        }
    }
    stats
}

/// Opens `run.count` sockets, prints `READY` on stderr once all have connected (or failed), then
/// reads for `run.duration` (or until every socket has `run.expect` data messages) and reports.
pub async fn run_sockets(run: SocketRun, mode: &str) -> LoadResult<()> {
    if run.count == 0 || run.count > 200_000 {
        return Err(LoadError::Target("--count must be 1..=200000".into()));
    }
    let run = Arc::new(run);
    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        connected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        done: AtomicU64::new(0),
        last_connect: LastInstant::new(t0),
        last_data: LastInstant::new(t0),
    });
    let gate = Arc::new(Semaphore::new(run.connect_concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = (0..run.count)
        .map(|_| tokio::spawn(socket(Arc::clone(&run), Arc::clone(&shared), Arc::clone(&gate), stop_rx.clone())))
        .collect();
    let total = run.count as u64;
    let connect_deadline = t0 + run.connect_timeout;
    while shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < total
        && Instant::now() < connect_deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let connected = shared.connected.load(Ordering::Relaxed);
    let connect_secs = shared.last_connect.get().as_secs_f64();
    eprintln!("READY connected={connected} failed={} in {connect_secs:.3}s", shared.failed.load(Ordering::Relaxed));
    let window_start = Instant::now();
    let deadline = window_start + run.duration;
    while Instant::now() < deadline {
        if run.expect > 0 && connected > 0 && shared.done.load(Ordering::Relaxed) >= connected {
            break;
        }
        let last_data = shared.last_data.get();
        if !run.idle_stop.is_zero() && !last_data.is_zero() && t0.elapsed() > last_data + run.idle_stop {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let window = window_start.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let mut all = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(stats) = task.await {
            all.push(stats);
        }
    }
    emit(summarize(mode, &run, &all, connected, connect_secs, window));
    Ok(())
}

fn summarize(
    mode: &str,
    run: &SocketRun,
    all: &[SocketStats],
    connected: u64,
    connect_secs: f64,
    window: f64,
) -> Map<String, Value> {
    let sum = |f: fn(&SocketStats) -> u64| all.iter().map(f).sum::<u64>();
    let (messages, data, bytes) = (sum(|s| s.messages), sum(|s| s.data), sum(|s| s.bytes));
    let first = all.iter().filter_map(|s| s.first_rx).min();
    let last = all.iter().filter_map(|s| s.last_rx).max();
    let active = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let ended_early: Vec<&String> = all.iter().filter(|s| s.connected).filter_map(|s| s.ended.as_ref()).collect();
    let failures: Vec<&String> = all.iter().filter(|s| !s.connected).filter_map(|s| s.ended.as_ref()).collect();
    let data_per_socket: Vec<u64> = all.iter().filter(|s| s.connected).map(|s| s.data).collect();
    let mut out = Map::new();
    out.insert("mode".into(), mode.into());
    out.insert("url".into(), run.target.url.clone().into());
    out.insert("sockets".into(), (run.count as u64).into());
    out.insert("connected".into(), connected.into());
    out.insert("connect_failed".into(), (failures.len() as u64).into());
    out.insert("connect_seconds".into(), connect_secs.into());
    out.insert("connects_per_s".into(), rate(connected, connect_secs).into());
    out.insert("window_seconds".into(), window.into());
    out.insert("messages".into(), messages.into());
    out.insert("data_messages".into(), data.into());
    out.insert("bytes".into(), bytes.into());
    out.insert("active_seconds".into(), active.into());
    out.insert("msgs_per_s".into(), rate(data, active).into());
    out.insert("bytes_per_s".into(), rate(bytes, active).into());
    out.insert("missing".into(), sum(|s| s.missing).into());
    out.insert("gap_events".into(), sum(|s| s.gap_events).into());
    out.insert("duplicates".into(), sum(|s| s.duplicates).into());
    out.insert("min_data_per_socket".into(), data_per_socket.iter().min().copied().unwrap_or(0).into());
    out.insert("max_data_per_socket".into(), data_per_socket.iter().max().copied().unwrap_or(0).into());
    out.insert("ended_early".into(), (ended_early.len() as u64).into());
    if let Some(reason) = ended_early.first().or(failures.first()) {
        out.insert("first_problem".into(), (*reason).clone().into());
    }
    if run.frames.is_some() {
        out.extend(frame_summary(all));
    }
    out
}

/// Frame figures summed over the sockets: unique frames, duplicates, holes, fewest unique on
/// one socket, and latency percentiles (`lat_p50_ms`, ...) over every frame of every socket.
fn frame_summary(all: &[SocketStats]) -> Map<String, Value> {
    let stats: Vec<&FrameStats> = all.iter().filter(|s| s.connected).filter_map(|s| s.frames.as_ref()).collect();
    let mut latency = FrameStats::default().latency_us;
    for s in &stats {
        latency.add(&s.latency_us).expect("histograms of the same bounds");
    }
    let fewest = if stats.len() < all.iter().filter(|s| s.connected).count() {
        0 // a connected socket got no frame at all
    } else {
        stats.iter().map(|s| s.unique).min().unwrap_or(0)
    };
    let mut out = Map::new();
    out.insert("frames_unique".into(), stats.iter().map(|s| s.unique).sum::<u64>().into());
    out.insert("frame_dups".into(), stats.iter().map(|s| s.dups).sum::<u64>().into());
    out.insert("frame_holes".into(), stats.iter().map(|s| s.holes()).sum::<u64>().into());
    out.insert("min_unique_per_socket".into(), fewest.into());
    out.insert("max_frame_id".into(), stats.iter().filter_map(|s| s.max_id).max().map_or(Value::Null, Value::from));
    for (name, q) in [("lat_p50_ms", 0.5), ("lat_p99_ms", 0.99), ("lat_p999_ms", 0.999), ("lat_max_ms", 1.0)] {
        let value =
            if latency.is_empty() { Value::Null } else { Value::from(latency.value_at_quantile(q) as f64 / 1000.0) };
        out.insert(name.into(), value);
    }
    out.insert("lat_samples".into(), latency.len().into());
    out.insert("lat_slowest".into(), slowest_frames(&stats).into());
    out
}

/// The slowest frames over all sockets, slowest first: each frame's id, its worst latency
/// (ms) and on how many sockets it was among that socket's slowest. A frame late on every
/// socket points at the server or the writer; one late on a few, at those sockets.
fn slowest_frames(stats: &[&FrameStats]) -> Vec<Value> {
    let mut by_id: std::collections::BTreeMap<u64, (u64, u64)> = std::collections::BTreeMap::new();
    for &(micros, id) in stats.iter().flat_map(|s| s.slowest.iter()) {
        let entry = by_id.entry(id).or_insert((0, 0));
        *entry = (entry.0.max(micros), entry.1 + 1);
    }
    let mut frames: Vec<(u64, u64, u64)> = by_id.into_iter().map(|(id, (micros, n))| (micros, id, n)).collect();
    frames.sort_unstable_by(|a, b| b.cmp(a));
    frames
        .into_iter()
        .take(crate::frames::SLOWEST)
        .map(|(micros, id, sockets)| json!({"id": id, "ms": micros as f64 / 1000.0, "sockets": sockets}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sequence_from_both_envelopes() {
        let buf = crate::frames::packed(vec![
            ("type", "array-data".into()),
            ("sequence", 42.into()),
            ("payload", vec![1u8, 2, 3].into()),
        ]);
        assert_eq!(sequence_of(&buf, true), Some(42));
        assert_eq!(sequence_of(br#"{"type":"x","sequence":7}"#, false), Some(7));
        assert_eq!(sequence_of(br#"{"type":"array-schema"}"#, false), None);
        assert_eq!(sequence_of(b"\xc1", true), None);
    }
}
