//! Engine tests of the Redis backend against a real `redis-server` (started on a free port,
//! no persistence; the Makefile's `system-deps` installs the binary).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::codec::envelope::parse_header;
use crate::codec::Envelope;
use crate::hub::budget::Budget;
use crate::hub::ring::External;
use crate::hub::topic::Topic;
use crate::hub::{BackendConfig, Batch, Close, EntryOptions, Hub, Message, Policy, Start, Subscription};

const H: &[u8] = br#"{"type":"array-data","timestamp":"t"}"#;

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_server() -> Server {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("redis-server not found: run `make system-deps` (installs it)");
    let child = Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, url: format!("redis://127.0.0.1:{port}") }
}

fn config(url: &str) -> HubConfig {
    HubConfig {
        max_bytes: 1 << 30,
        max_age: Duration::from_secs(60),
        seq_ttl: Duration::from_secs(60),
        backend: BackendConfig::Redis { url: url.to_owned(), key_prefix: "test:".into() },
        ..HubConfig::default()
    }
}

async fn connected(config: HubConfig) -> Hub {
    let hub = Hub::new(config).unwrap();
    hub.connect().await.unwrap();
    hub
}

fn message(payload: &[u8]) -> Outgoing {
    Outgoing::new(H, Some(payload), None, None).unwrap()
}

async fn subscribe(hub: &Hub, topic: u64, start: Option<u64>) -> Subscription {
    hub.subscribe(topic, start, Envelope::Msgpack, Policy::default()).await.unwrap()
}

async fn next(sub: &Subscription, max: usize) -> Batch {
    tokio::time::timeout(Duration::from_secs(5), sub.next_batch(max)).await.unwrap()
}

fn marker(seq: u64) -> Arc<Message> {
    Arc::new(Message::end_of_stream(seq, crate::hub::EntryId::ZERO, Instant::now()))
}

#[test]
fn mirror_inserts_rebase_dedupe_and_restart() {
    let config = HubConfig::default();
    let topic = Topic::new(config.retention(), config.seq_ttl, Arc::new(Budget::new(usize::MAX)));
    let now = Instant::now();
    // Joined mid-way: the mirror starts at the first sequence it sees.
    assert_eq!(topic.insert_external(marker(40), now), External::Appended);
    assert_eq!(topic.insert_external(marker(41), now), External::Appended);
    assert_eq!(topic.insert_external(marker(41), now), External::Duplicate);
    assert_eq!(topic.insert_external(marker(44), now), External::Gap { expected: 42 });
    assert_eq!(topic.bounds(now), (40, 41, false));
    // The remote counter restarted.
    assert_eq!(topic.insert_external(marker(1), now), External::Appended);
    assert_eq!(topic.bounds(now), (1, 1, false));
    topic.rebase(10);
    assert_eq!(topic.insert_external(marker(10), now), External::Appended);
    assert_eq!(topic.current_sequence(now), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_share_sequences_and_replay() {
    let server = redis_server();
    let a = connected(config(&server.url)).await;
    let b = connected(config(&server.url)).await;
    assert!(a.is_shared() && a.is_connected());
    let live = subscribe(&b, 7, None).await;
    for i in 1..=300u64 {
        let hub = if i % 2 == 0 { &a } else { &b };
        assert_eq!(hub.publish(7, message(b"abc")).await.unwrap(), i);
    }
    // A writer's batch: one round trip, consecutive sequences, the last one returned.
    assert_eq!(a.publish_all(7, (0..50).map(|_| message(b"abc")).collect()).await.unwrap(), 350);
    assert!(a.publish_all(7, Vec::new()).await.is_err());
    let mut got = Vec::new();
    while got.len() < 350 {
        got.extend(next(&live, 64).await.frames.iter().map(|m| m.sequence()));
    }
    assert_eq!(got, (1..=350).collect::<Vec<_>>());
    // A fresh process replays everything from Redis, then continues live.
    let c = connected(config(&server.url)).await;
    let replay = subscribe(&c, 7, Some(0)).await;
    assert_eq!(a.close_stream(7).await.unwrap(), 351);
    let mut got = Vec::new();
    let close = loop {
        let batch = next(&replay, 1000).await;
        got.extend(batch.frames.iter().map(|m| m.sequence()));
        if let Some(close) = batch.close {
            break close;
        }
    };
    assert_eq!(got, (1..=350).collect::<Vec<_>>());
    assert_eq!(close, Close::PRODUCER_ENDED);
    assert_eq!(c.current_sequence(7).await.unwrap(), 351);
    assert!(c.stats().backend.received >= 1);
    for hub in [a, b, c] {
        hub.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_cap_trims_the_stream() {
    let server = redis_server();
    let hub = connected(HubConfig { max_count: 5, ..config(&server.url) }).await;
    for _ in 0..20 {
        hub.publish(1, Outgoing::new(H, None, None, None).unwrap()).await.unwrap();
    }
    let sub = subscribe(&hub, 1, Some(1)).await;
    let batch = next(&sub, 100).await;
    assert_eq!(batch.frames.iter().map(|m| m.sequence()).collect::<Vec<_>>(), (16..=20).collect::<Vec<_>>());
    assert_eq!(sub.missed(), 15);
    hub.shutdown();
}

#[tokio::test]
async fn unreachable_redis_is_unavailable() {
    let hub = Hub::new(config("redis://127.0.0.1:1")).unwrap();
    assert!(matches!(hub.connect().await, Err(CoreError::Unavailable(_))));
    assert!(matches!(hub.publish(1, message(b"")).await, Err(CoreError::Unavailable(_))));
    // Subscribing while disconnected gives a subscription that closes with 1012 at once.
    let sub = subscribe(&hub, 1, None).await;
    assert_eq!(sub.try_next(1).close, Some(Close::LIVE_LOST));
    assert!(!hub.stats().connected);
    let bad = HubConfig {
        backend: BackendConfig::Redis { url: "http://x".into(), key_prefix: String::new() },
        ..HubConfig::default()
    };
    assert!(matches!(Hub::new(bad), Err(CoreError::Config(_))));
    assert_eq!(redact("redis://:pw@h:1/0"), "redis://***@h:1/0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_ids_are_assigned_in_redis_for_every_process() {
    use crate::hub::IdSpec;

    let server = redis_server();
    let a = connected(config(&server.url)).await;
    let b = connected(config(&server.url)).await;
    let options = EntryOptions { count: 10, latest: false, max_queue_bytes: usize::MAX };
    let sub = b.subscribe_entries(&[3], &[Start::New], options).await.unwrap();
    let header = parse_header(H).unwrap();
    let specs = [IdSpec::Explicit(EntryId::new(50, 1)), IdSpec::AutoSeq(50), IdSpec::Auto];
    let ids = a.publish_entries(3, &header, &[b"x", b"yy", b"zzz"], &specs).await.unwrap();
    assert_eq!(ids[..2], [EntryId::new(50, 1), EntryId::new(50, 2)]);
    assert!(ids[2] > EntryId::new(50, 2));
    // Refused by the script: nothing of the batch is written, no sequence is used.
    let refused = [IdSpec::Auto, IdSpec::Explicit(ids[2])];
    let err = b.publish_entries(3, &header, &[b"p", b"q"], &refused).await.unwrap_err();
    assert!(matches!(&err, CoreError::EntryId(m) if m.contains("is not greater than the stream's last id")), "{err}");
    assert_eq!(a.current_sequence(3).await.unwrap(), 3);
    // A Tiled publish gets the next id; an end-of-stream marker none.
    assert_eq!(a.close_stream(3).await.unwrap(), 4);
    assert_eq!(b.publish(3, message(b"t")).await.unwrap(), 5);
    let mut got = Vec::new();
    while got.len() < 4 {
        let read = tokio::time::timeout(Duration::from_secs(5), sub.next_read()).await.unwrap();
        got.extend(read.entries.iter().map(|(_, m)| (m.entry_id(), m.payload().unwrap().to_vec())));
    }
    assert_eq!(got[..3], [(ids[0], b"x".to_vec()), (ids[1], b"yy".to_vec()), (ids[2], b"zzz".to_vec())]);
    assert!(got[3].0 > ids[2] && got[3].1 == b"t");
    let info = a.stream_info(3).await.unwrap().unwrap();
    assert_eq!((info.length, info.entries_added, info.last_id, info.max_deleted), (5, 4, got[3].0, EntryId::ZERO));
    assert_eq!(info.first.unwrap().entry_id(), ids[0]);
    for hub in [a, b] {
        hub.shutdown();
    }
}

/// Issue 19 item 4: a subscriber without `start` never gets a message published before its
/// subscription was made, even when that message reaches this process's mirror only after the
/// subscription registered (seen with 8 MiB frames and 2 workers). Here the late arrival is
/// made deterministic: B's reader ignored the message (B followed nothing then), and it is
/// inserted into B's mirror by hand after B subscribed, as the reader would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_subscriber_skips_what_was_published_before_it() {
    let server = redis_server();
    let a = connected(config(&server.url)).await;
    let b = connected(config(&server.url)).await;
    assert_eq!(a.publish(9, message(b"before")).await.unwrap(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.stats().backend.received == 0 {
        assert!(Instant::now() < deadline, "B's reader never saw the publish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sub = subscribe(&b, 9, None).await;
    let told = b.subscribe(9, Some(5), Envelope::Msgpack, Policy { notify_gaps: true, ..Policy::default() });
    let told = told.await.unwrap();
    let late = b.replay().unwrap().range(9, 1, 10).await.unwrap().messages.remove(0);
    assert_eq!(late.sequence(), 1);
    let mirror = b.topics().existing(9).unwrap();
    assert_eq!(mirror.insert_external(late, Instant::now()), External::Appended);
    assert!(sub.try_next(10).frames.is_empty(), "delivered a message published before subscribing");
    assert_eq!(a.publish(9, message(b"after")).await.unwrap(), 2);
    assert_eq!(next(&sub, 10).await.frames.iter().map(|m| m.sequence()).collect::<Vec<_>>(), [2]);
    // Resuming beyond the head is live too: an epoch notice, then only what comes later.
    let frames = next(&told, 10).await.frames;
    let notice: serde_json::Value = serde_json::from_slice(frames[0].envelope(Envelope::Json)).unwrap();
    assert_eq!((notice["type"].as_str(), notice["current_sequence"].as_u64()), (Some("stream-epoch"), Some(1)));
    let rest: Vec<u64> = frames[1..].iter().map(|m| m.sequence()).collect();
    let rest = if rest.is_empty() { next(&told, 10).await.frames.iter().map(|m| m.sequence()).collect() } else { rest };
    assert_eq!(rest, [2]);
    for hub in [a, b] {
        hub.shutdown();
    }
}

/// Records of `KEYED_MIN` bytes or more go to Redis as upload keys renamed by the script (never
/// Lua strings): live, replayed and trimmed exactly like inline ones, their keys deleted as
/// they leave the retained window, no upload key left behind (also after a refused batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_records_live_in_their_own_keys() {
    use crate::hub::IdSpec;

    let server = redis_server();
    let a = connected(HubConfig { max_count: 4, ..config(&server.url) }).await;
    let b = connected(HubConfig { max_count: 4, ..config(&server.url) }).await;
    let live = subscribe(&b, 9, None).await;
    let payload = |i: u64| -> Vec<u8> {
        let size = match i % 3 {
            0 => 100,
            1 => keys::KEYED_MIN + 1000 * i as usize,
            _ => 2 * keys::PART_MAX + 1000 * i as usize, // three parts
        };
        (0..size).map(|j| (j as u64 * 31 + i) as u8).collect()
    };
    // One at a time: a record 4 events old is gone, even if a reader has not fetched it yet.
    let mut got = Vec::new();
    let read = |got: &mut Vec<(u64, Vec<u8>)>, frames: &[Arc<Message>]| {
        got.extend(frames.iter().map(|m| (m.sequence(), m.payload().unwrap().to_vec())));
    };
    for i in 1..=5u64 {
        assert_eq!(a.publish(9, message(&payload(i))).await.unwrap(), i);
        read(&mut got, &next(&live, 16).await.frames);
    }
    let batch: Vec<Outgoing> = (6..=9).map(|i| message(&payload(i))).collect();
    assert_eq!(b.publish_all(9, batch).await.unwrap(), 9);
    while got.len() < 9 {
        read(&mut got, &next(&live, 16).await.frames);
    }
    assert_eq!(got, (1..=9).map(|i| (i, payload(i))).collect::<Vec<_>>());
    // A fresh process replays what is retained (the last 4), records read from their keys.
    let c = connected(HubConfig { max_count: 4, ..config(&server.url) }).await;
    let replay = subscribe(&c, 9, Some(1)).await;
    let frames = next(&replay, 16).await.frames;
    let replayed: Vec<_> = frames.iter().map(|m| (m.sequence(), m.payload().unwrap().to_vec())).collect();
    assert_eq!(replayed, (6..=9).map(|i| (i, payload(i))).collect::<Vec<_>>());
    let info = c.stream_info(9).await.unwrap().unwrap();
    assert_eq!(info.last.unwrap().payload().unwrap().to_vec(), payload(9));
    // A refused batch leaves no upload behind.
    let header = parse_header(H).unwrap();
    let refused = [IdSpec::Explicit(EntryId::new(1, 0))];
    let big = payload(11); // three parts
    assert!(matches!(a.publish_entries(9, &header, &[&big[..]], &refused).await, Err(CoreError::EntryId(_))));
    let mut conn = redis::Client::open(server.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut kept: Vec<String> = redis::cmd("KEYS").arg("test:record:9:*").query_async(&mut conn).await.unwrap();
    kept.sort();
    // 3, 6 and 9 are inline; 1, 2, 4 and 5 fell out of the window (6..=9): deleted.
    assert_eq!(kept, ["test:record:9:7:1", "test:record:9:8:1", "test:record:9:8:2", "test:record:9:8:3"]);
    let uploads: Vec<String> = redis::cmd("KEYS").arg("test:upload:*").query_async(&mut conn).await.unwrap();
    assert!(uploads.is_empty(), "{uploads:?}");
    for hub in [a, b, c] {
        hub.shutdown();
    }
}

/// A process that publishes large records to a node it follows gives them to its mirror from
/// memory (not read back with `MGET`); another process reads them from Redis; both deliver the
/// bytes published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_large_records_are_not_read_back() {
    let server = redis_server();
    let (a, b) = (connected(config(&server.url)).await, connected(config(&server.url)).await);
    let (mine, theirs) = (subscribe(&a, 5, None).await, subscribe(&b, 5, None).await);
    let payload =
        |i: u64| -> Vec<u8> { (0..keys::PART_MAX + 4096 * i as usize).map(|j| (j as u64 ^ i) as u8).collect() };
    for i in 1..=3 {
        assert_eq!(a.publish(5, message(&payload(i))).await.unwrap(), i);
    }
    for sub in [&mine, &theirs] {
        let mut got = Vec::new();
        while got.len() < 3 {
            got.extend(next(sub, 16).await.frames.iter().map(|m| (m.sequence(), m.payload().unwrap().to_vec())));
        }
        assert_eq!(got, (1..=3).map(|i| (i, payload(i))).collect::<Vec<_>>());
    }
    let mut conn = redis::Client::open(server.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let stats: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.unwrap();
    let mgets = stats.lines().find_map(|l| l.strip_prefix("cmdstat_mget:calls=")).map(|l| l.split(',').next().unwrap());
    assert_eq!(mgets, Some("3"), "one MGET per record, by the other process only:\n{stats}");
    for hub in [a, b] {
        hub.shutdown();
    }
}
