//! `soak`: N subscriber slots that keep leaving and joining again. Each slot stays connected
//! for a random 5-30 s, leaves, waits a random 0.2-2 s and rejoins with `start = last + 1` (and
//! `notify_gaps=true`), so nothing may be lost across a leave and anything the server can no
//! longer replay must be announced by a `stream-gap` notice. Per slot it counts frames
//! received, sequences missing (`missing`), sequences announced missing (`told`), duplicates,
//! and the latency of live frames (the writer's CLOCK_MONOTONIC stamp in payload bytes 8..16;
//! frames stamped before the join are replay and not timed). Per minute since `--t0-ns` it
//! prints one JSON line (`{"minute": m, ...}`); at the end one `{"summary": ...}` line. A slot
//! ends once it has the frame whose payload bytes 16..24 are non-zero (the writer's last) or at
//! the deadline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::error::{LoadError, LoadResult};
use crate::frames::monotonic_ns;
use crate::target::Target;
use crate::ws::connect;

const MINUTE_NS: u64 = 60_000_000_000;
/// Highest latency a minute's histogram holds, in microseconds (larger ones are clamped).
const MAX_LATENCY_US: u64 = 600_000_000;

/// What `soak` is told.
#[derive(Debug, Clone)]
pub struct SoakPlan {
    /// The stream URL with its query (`...?envelope_format=msgpack&notify_gaps=true`); a rejoin
    /// appends `&start=N`.
    pub target: Target,
    pub api_key: Option<String>,
    pub slots: usize,
    /// CLOCK_MONOTONIC ns the minutes count from (the driver's start).
    pub t0_ns: u64,
    /// Slots stop joining this long after `t0_ns` (and leave when it passes).
    pub seconds: f64,
    /// Seconds connected per visit: uniform in this range.
    pub stay: (f64, f64),
    /// Seconds away between visits: uniform in this range.
    pub pause: (f64, f64),
    /// A visit ends when no message arrives for this long.
    pub read_timeout: Duration,
    pub seed: u64,
}

/// One minute's figures over every slot.
struct Minute {
    delivered: u64,
    live: u64,
    joins: u64,
    told: u64,
    missing: u64,
    dups: u64,
    epochs: u64,
    ends: BTreeMap<String, u64>,
    latency_us: Histogram<u64>,
}

impl Default for Minute {
    fn default() -> Self {
        Self {
            delivered: 0,
            live: 0,
            joins: 0,
            told: 0,
            missing: 0,
            dups: 0,
            epochs: 0,
            ends: BTreeMap::new(),
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("static bounds are valid"),
        }
    }
}

impl Minute {
    fn to_json(&self, minute: u64) -> Value {
        let quantile = |q: f64| {
            if self.latency_us.is_empty() {
                Value::Null
            } else {
                Value::from(self.latency_us.value_at_quantile(q) as f64 / 1000.0)
            }
        };
        json!({
            "minute": minute + 1, "delivered": self.delivered, "live": self.live,
            "joins": self.joins, "told": self.told, "missing": self.missing, "dups": self.dups,
            "epochs": self.epochs, "ends": self.ends, "p50_ms": quantile(0.5),
            "p99_ms": quantile(0.99), "max_ms": quantile(1.0),
        })
    }
}

/// Minutes since `t0_ns`, shared by the slots (a few thousand locks a second at most).
struct Minutes {
    t0_ns: u64,
    by_minute: Mutex<BTreeMap<u64, Minute>>,
}

impl Minutes {
    fn with<R>(&self, at_ns: u64, f: impl FnOnce(&mut Minute) -> R) -> R {
        let minute = at_ns.saturating_sub(self.t0_ns) / MINUTE_NS;
        let mut map = self.by_minute.lock().unwrap_or_else(PoisonError::into_inner);
        f(map.entry(minute).or_default())
    }

    /// Removes and returns the minutes before `minute`.
    fn take_before(&self, minute: u64) -> Vec<(u64, Minute)> {
        let mut map = self.by_minute.lock().unwrap_or_else(PoisonError::into_inner);
        let later = map.split_off(&minute);
        std::mem::replace(&mut *map, later).into_iter().collect()
    }
}

/// What one slot saw over all its visits.
#[derive(Debug, Default)]
struct SlotStats {
    received: u64,
    /// Sequences skipped (sum of `seq - next` over forward jumps).
    missing: u64,
    /// Sequences announced lost by `stream-gap` notices.
    told: u64,
    dups: u64,
    epochs: u64,
    joins: u64,
    first_seq: Option<u64>,
    /// The next sequence this slot expects (one past the highest received).
    next_seq: Option<u64>,
    final_frame: bool,
}

/// xorshift64*: the visit lengths need no better randomness.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self, (low, high): (f64, f64)) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let unit = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        low + (high - low) * unit
    }
}

/// The fields of a stream message the soak reads.
#[derive(Default)]
struct Envelope<'a> {
    kind: &'a str,
    sequence: Option<u64>,
    count: u64,
    payload: &'a [u8],
}

fn envelope(message: &[u8]) -> Option<Envelope<'_>> {
    let rmpv::ValueRef::Map(entries) = rmpv::decode::read_value_ref(&mut &message[..]).ok()? else {
        return None;
    };
    let mut out = Envelope::default();
    for (key, value) in entries {
        let rmpv::ValueRef::String(key) = key else { continue };
        match (key.as_bytes(), value) {
            (b"type", rmpv::ValueRef::String(kind)) => out.kind = kind.into_str().unwrap_or_default(),
            (b"sequence", rmpv::ValueRef::Integer(n)) => out.sequence = n.as_u64(),
            (b"count", rmpv::ValueRef::Integer(n)) => out.count = n.as_u64().unwrap_or(0),
            (b"payload", rmpv::ValueRef::Binary(bytes)) => out.payload = bytes,
            _ => {}
        }
    }
    Some(out)
}

/// `close CODE: reason`, its numbers replaced by `N` so that visits closed for the same reason
/// are counted together (e.g. `subscriber too slow: N bytes queued > max_queue_bytes=N; ...`).
fn close_reason(code: u16, reason: &str) -> String {
    let mut out = format!("close {code}");
    if !reason.is_empty() {
        out.push_str(": ");
        let mut in_number = false;
        for c in reason.chars().take(120) {
            if c.is_ascii_digit() {
                if !in_number {
                    out.push('N');
                }
                in_number = true;
            } else {
                out.push(c);
                in_number = false;
            }
        }
    }
    out
}

fn word(payload: &[u8], index: usize) -> u64 {
    payload.get(index * 8..index * 8 + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

impl SlotStats {
    /// Counts one data frame.
    fn record(&mut self, seq: u64, minute: &mut Minute) {
        minute.delivered += 1;
        match self.next_seq {
            None => self.first_seq = Some(seq),
            Some(next) if seq > next => {
                self.missing += seq - next;
                minute.missing += seq - next;
            }
            Some(next) if seq < next => {
                self.dups += 1;
                minute.dups += 1;
                return;
            }
            Some(_) => {}
        }
        self.received += 1;
        self.next_seq = Some(self.next_seq.map_or(seq + 1, |next| next.max(seq + 1)));
    }

    fn to_json(&self) -> Value {
        json!({
            "received": self.received, "missing": self.missing, "told": self.told,
            "silent": self.missing.saturating_sub(self.told), "dups": self.dups,
            "epochs": self.epochs, "joins": self.joins, "first_seq": self.first_seq,
            "last_seq": self.next_seq.map(|n| n - 1), "final": self.final_frame,
        })
    }
}

/// One visit: join (at `start` if given), read until `leave_ns`, the final frame or the end.
async fn visit(plan: &SoakPlan, minutes: &Minutes, stats: &mut SlotStats, leave_ns: u64) -> String {
    let joined_ns = monotonic_ns();
    stats.joins += 1;
    minutes.with(joined_ns, |m| m.joins += 1);
    let mut target = plan.target.clone();
    if let Some(next) = stats.next_seq {
        target.url = format!("{}&start={next}", target.url);
    }
    let connecting = connect(&target, plan.api_key.as_deref(), 1 << 20);
    let mut ws = match tokio::time::timeout(Duration::from_secs(20), connecting).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return e,
        Err(_) => return "connect timeout".to_owned(),
    };
    let end = loop {
        let now = monotonic_ns();
        if now >= leave_ns {
            break "left".to_owned();
        }
        let wait = plan.read_timeout.min(Duration::from_nanos(leave_ns - now));
        let next = match tokio::time::timeout(wait, ws.next()).await {
            Ok(next) => next,
            Err(_) if monotonic_ns() >= leave_ns => break "left".to_owned(),
            Err(_) => break "read timeout".to_owned(),
        };
        let frame = match next {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(frame))) => {
                break frame.map_or_else(|| "close 1005".to_owned(), |f| close_reason(u16::from(f.code), &f.reason));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => break format!("error: {e}"),
            None => break "eof".to_owned(),
        };
        let received_ns = monotonic_ns();
        let Some(message) = envelope(&frame) else { continue };
        match message.kind {
            "stream-gap" => {
                stats.told += message.count;
                minutes.with(received_ns, |m| m.told += message.count);
            }
            "stream-epoch" => {
                stats.epochs += 1;
                minutes.with(received_ns, |m| m.epochs += 1);
            }
            _ => {
                let Some(seq) = message.sequence.filter(|_| !message.payload.is_empty()) else { continue };
                let stamp = word(message.payload, 1);
                let last = word(message.payload, 2) != 0;
                minutes.with(received_ns, |m| {
                    stats.record(seq, m);
                    if stamp >= joined_ns {
                        m.live += 1;
                        let _ =
                            m.latency_us.record((received_ns.saturating_sub(stamp) / 1000).clamp(1, MAX_LATENCY_US));
                    }
                });
                if last {
                    stats.final_frame = true;
                    break "final".to_owned();
                }
            }
        }
    };
    if end == "left" || end == "final" {
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
    end
}

async fn slot(plan: Arc<SoakPlan>, minutes: Arc<Minutes>, index: u64) -> SlotStats {
    let mut rng = Rng((plan.seed ^ (index + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
    let end_ns = plan.t0_ns + (plan.seconds * 1e9) as u64;
    let mut stats = SlotStats::default();
    while !stats.final_frame && monotonic_ns() < end_ns {
        let leave_ns = (monotonic_ns() + (rng.uniform(plan.stay) * 1e9) as u64).min(end_ns);
        let end = visit(&plan, &minutes, &mut stats, leave_ns).await;
        minutes.with(monotonic_ns(), |m| *m.ends.entry(end).or_default() += 1);
        if !stats.final_frame {
            tokio::time::sleep(Duration::from_secs_f64(rng.uniform(plan.pause))).await;
        }
    }
    stats
}

/// Runs the slots, printing each minute's line once the minute is over, then the summary.
pub async fn run(plan: SoakPlan) -> LoadResult<()> {
    if plan.slots == 0 || plan.slots > 10_000 {
        return Err(LoadError::Target("--slots must be 1..=10000".into()));
    }
    let plan = Arc::new(plan);
    let minutes = Arc::new(Minutes { t0_ns: plan.t0_ns, by_minute: Mutex::new(BTreeMap::new()) });
    let tasks: Vec<_> =
        (0..plan.slots as u64).map(|i| tokio::spawn(slot(Arc::clone(&plan), Arc::clone(&minutes), i))).collect();
    let all_done = async {
        let mut slots = Vec::with_capacity(tasks.len());
        for task in tasks {
            slots.push(task.await.unwrap_or_default());
        }
        slots
    };
    tokio::pin!(all_done);
    let mut printed = 0u64;
    let slots = loop {
        let next_ns = plan.t0_ns + (printed + 1) * MINUTE_NS + 1_000_000_000; // a second of grace
        let wait = Duration::from_nanos(next_ns.saturating_sub(monotonic_ns()));
        tokio::select! {
            slots = &mut all_done => break slots,
            () = tokio::time::sleep(wait) => {
                for (minute, figures) in minutes.take_before(printed + 1) {
                    println!("{}", figures.to_json(minute));
                }
                printed += 1;
            }
        }
    };
    for (minute, figures) in minutes.take_before(u64::MAX) {
        println!("{}", figures.to_json(minute));
    }
    let mut summary = Map::new();
    let sum = |f: fn(&SlotStats) -> u64| slots.iter().map(f).sum::<u64>();
    summary.insert("received".into(), sum(|s| s.received).into());
    summary.insert("missing".into(), sum(|s| s.missing).into());
    summary.insert("told".into(), sum(|s| s.told).into());
    summary.insert("silent".into(), sum(|s| s.missing.saturating_sub(s.told)).into());
    summary.insert("dups".into(), sum(|s| s.dups).into());
    summary.insert("epochs".into(), sum(|s| s.epochs).into());
    summary.insert("joins".into(), sum(|s| s.joins).into());
    summary.insert("missed_final".into(), slots.iter().filter(|s| !s.final_frame).count().into());
    summary.insert("slots".into(), slots.iter().map(SlotStats::to_json).collect::<Vec<_>>().into());
    println!("{}", json!({ "summary": summary }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::packed;

    #[test]
    fn counts_missing_and_duplicates_across_visits() {
        let mut stats = SlotStats::default();
        let mut minute = Minute::default();
        for seq in [5, 6, 7, 7, 10, 11, 9] {
            stats.record(seq, &mut minute);
        }
        assert_eq!((stats.received, stats.missing, stats.dups), (5, 2, 2));
        assert_eq!((stats.first_seq, stats.next_seq), (Some(5), Some(12)));
        assert_eq!((minute.delivered, minute.missing, minute.dups), (7, 2, 2));
    }

    #[test]
    fn reads_the_envelope() {
        let mut payload = vec![0u8; 24];
        payload[8..16].copy_from_slice(&77u64.to_le_bytes());
        payload[16] = 1;
        let buf = packed(vec![("type", "array-data".into()), ("sequence", 42.into()), ("payload", payload.into())]);
        let message = envelope(&buf).unwrap();
        assert_eq!((message.kind, message.sequence), ("array-data", Some(42)));
        assert_eq!((word(message.payload, 1), word(message.payload, 2)), (77, 1));
        let gap = packed(vec![("type", "stream-gap".into()), ("count", 9.into())]);
        let notice = envelope(&gap).unwrap();
        assert_eq!((notice.kind, notice.count, notice.sequence), ("stream-gap", 9, None));
    }

    #[test]
    fn close_reasons_group_without_their_numbers() {
        assert_eq!(
            close_reason(1008, "too slow: 123 bytes > max=64; dropped 7"),
            "close 1008: too slow: N bytes > max=N; dropped N"
        );
        assert_eq!(close_reason(1000, ""), "close 1000");
    }

    #[test]
    fn uniform_stays_in_range() {
        let mut rng = Rng(7);
        assert!((0..1000).map(|_| rng.uniform((5.0, 30.0))).all(|x| (5.0..30.0).contains(&x)));
    }
}
