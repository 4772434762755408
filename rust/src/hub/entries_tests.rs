//! Engine tests of entry ids and entry-cursor subscriptions: id assignment, batch atomicity,
//! time cursors, `count`, `latest`, the byte cap, loss counts, retention overrides, closes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests::{message, now, subscribe};
use super::topic::Topic;
use super::*;
use crate::codec::envelope::{parse_header, Draft};

const H: &[u8] = br#"{"type":"array-data","timestamp":"t","mimetype":"application/octet-stream"}"#;

fn header() -> Header {
    parse_header(H).unwrap()
}

fn id(ms: u64, n: u64) -> EntryId {
    EntryId::new(ms, n)
}

fn options(count: usize) -> EntryOptions {
    EntryOptions { count, latest: false, max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES }
}

/// Publishes `payloads` on a topic at wall-clock `ms` with automatic ids.
fn at(topic: &Topic, ms: u64, payloads: &[&[u8]]) -> Vec<EntryId> {
    let specs = vec![IdSpec::Auto; payloads.len()];
    let batch = EntryBatch::new(&header(), payloads, &specs).unwrap();
    let drafts = batch.into_items().into_iter().map(|(_, m)| m.into_draft()).collect();
    topic.publish_batch(drafts, &specs, Instant::now(), ms).unwrap().into_iter().map(|(_, id)| id).collect()
}

fn new_topic() -> Topic {
    let config = HubConfig::default();
    Topic::new(config.retention(), config.seq_ttl, Arc::new(super::budget::Budget::new(usize::MAX)))
}

fn publish_entries(hub: &Hub, topic: u64, payloads: &[&[u8]], specs: &[IdSpec]) -> CoreResult<Vec<EntryId>> {
    now(hub.publish_entries(topic, &header(), payloads, specs))
}

fn subscribe_entries(hub: &Hub, topics: &[u64], starts: &[Start], options: EntryOptions) -> EntrySubscription {
    now(hub.subscribe_entries(topics, starts, options)).unwrap()
}

fn payloads(read: &EntryRead) -> Vec<(usize, Vec<u8>)> {
    read.entries.iter().map(|(i, m)| (*i, m.payload().unwrap().to_vec())).collect()
}

fn ids(read: &EntryRead) -> Vec<EntryId> {
    read.entries.iter().map(|(_, m)| m.entry_id()).collect()
}

fn publish(hub: &Hub, topic: u64, items: &[&str]) -> Vec<EntryId> {
    let payloads: Vec<&[u8]> = items.iter().map(|s| s.as_bytes()).collect();
    publish_entries(hub, topic, &payloads, &vec![IdSpec::Auto; items.len()]).unwrap()
}

#[test]
fn ids_follow_the_clock_within_and_across_batches() {
    let topic = new_topic();
    assert_eq!(at(&topic, 1000, &[b"a", b"b"]), [id(1000, 0), id(1000, 1)]);
    assert_eq!(at(&topic, 1000, &[b"c"]), [id(1000, 2)]);
    // The clock went backwards: ids stay increasing.
    assert_eq!(at(&topic, 900, &[b"d"]), [id(1000, 3)]);
    assert_eq!(at(&topic, 1001, &[b"e"]), [id(1001, 0)]);
    // Tiled publishes get ids too; end-of-stream markers do not.
    topic.close_stream(Instant::now());
    let seq = topic.publish(Draft::new(H, Some(b"x"), None).unwrap(), Instant::now());
    assert_eq!(seq, 7);
    let info = topic.info(Instant::now()).unwrap();
    assert_eq!((info.length, info.entries_added), (6, 6));
    assert!(info.last_id > id(1001, 0));
    assert_eq!(info.first.unwrap().payload().unwrap().as_ref(), b"a");
    assert_eq!(info.last.unwrap().payload().unwrap().as_ref(), b"x");
}

#[test]
fn explicit_ids_and_all_or_nothing_batches() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    let specs = [IdSpec::Explicit(id(5, 0)), IdSpec::AutoSeq(5), IdSpec::Explicit(id(7, 1))];
    assert_eq!(publish_entries(&hub, 1, &[b"a", b"b", b"c"], &specs).unwrap(), [id(5, 0), id(5, 1), id(7, 1)]);
    // The last spec repeats an id: nothing of the batch is published, no sequence is used.
    let bad = [IdSpec::Explicit(id(8, 0)), IdSpec::Explicit(id(7, 1))];
    assert!(matches!(publish_entries(&hub, 1, &[b"d", b"e"], &bad), Err(CoreError::EntryId(_))));
    let bad = [IdSpec::Explicit(id(7, 1))];
    let err = publish_entries(&hub, 1, &[b"d"], &bad).unwrap_err();
    assert_eq!(err, CoreError::EntryId("entry id 7-1 is not greater than the stream's last id 7-1".into()));
    // A bad header is refused before any id is used.
    let reserved = parse_header(br#"{"sequence":1}"#).unwrap();
    assert!(now(hub.publish_entries(1, &reserved, &[b"d"], &[IdSpec::Auto])).is_err());
    assert_eq!(publish_entries(&hub, 1, &[], &[]).unwrap(), []);
    assert_eq!(now(hub.current_sequence(1)), Ok(3));
    assert_eq!(stream_info(&hub, 1).unwrap().entries_added, 3);
    assert_eq!(now(hub.publish(1, message(H, None))), Ok(4));
}

#[test]
fn entry_messages_are_tiled_array_messages() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    let tiled = subscribe(&hub, 1, None, Envelope::Json);
    publish(&hub, 1, &["\x01\x02\x03"]);
    let frame = tiled.try_next(1).frames.remove(0);
    let msgpack = rmpv::decode::read_value(&mut &frame.envelope(Envelope::Msgpack)[..]).unwrap();
    let map: Vec<(String, rmpv::Value)> =
        msgpack.as_map().unwrap().iter().map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone())).collect();
    assert_eq!(map[0], ("type".into(), "array-data".into()));
    assert_eq!(map[1], ("sequence".into(), 1u64.into()));
    assert!(map.contains(&("shape".into(), rmpv::Value::Array(vec![3u64.into()]))));
    assert!(map.contains(&("payload".into(), rmpv::Value::Binary(vec![1, 2, 3]))));
    let json: serde_json::Value = serde_json::from_slice(frame.envelope(Envelope::Json)).unwrap();
    assert_eq!(json["payload"], serde_json::json!([1, 2, 3]));
    assert_eq!(json["shape"], serde_json::json!([3]));
}

#[test]
fn cursors_by_time_count_and_multi_topic_reads() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    let t1 = hub.topics.topic(1).unwrap();
    let t2 = hub.topics.topic(2).unwrap();
    at(&t1, 1000, &[b"a"]);
    at(&t1, 2000, &[b"b", b"c"]);
    at(&t2, 1500, &[b"x"]);
    let starts = [Start::After(id(1500, 0)), Start::Oldest];
    let sub = subscribe_entries(&hub, &[1, 2], &starts, options(1));
    assert_eq!(sub.cursors(), [id(1500, 0), EntryId::ZERO]);
    let read = sub.try_read();
    assert_eq!(payloads(&read), [(0, b"b".to_vec()), (1, b"x".to_vec())]);
    assert_eq!(sub.cursors(), [id(2000, 0), id(1500, 0)]);
    assert_eq!(payloads(&sub.try_read()), [(0, b"c".to_vec())]);
    assert!(sub.try_read().entries.is_empty());
    assert!(!sub.is_ready());
    // `$`: only what comes later; the cursor starts at the last id.
    let new = subscribe_entries(&hub, &[1, 3], &[Start::New, Start::New], options(10));
    assert_eq!(new.cursors(), [id(2000, 1), EntryId::ZERO]);
    at(&t1, 3000, &[b"d", b"e"]);
    assert!(new.is_ready());
    assert_eq!(ids(&new.try_read()), [id(3000, 0), id(3000, 1)]);
    // A time cursor older than retention starts at the oldest retained.
    let old = subscribe_entries(&hub, &[1], &[Start::After(id(1, 0))], options(2));
    assert_eq!(ids(&old.try_read()), [id(1000, 0), id(2000, 0)]);
    assert_eq!(old.missed(), 0);
}

#[test]
fn latest_returns_the_newest_first_and_counts_dropped() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    let sub = subscribe_entries(&hub, &[1], &[Start::New], EntryOptions { latest: true, ..options(2) });
    publish(&hub, 1, &["a", "b", "c", "d", "e"]);
    let read = sub.try_read();
    assert_eq!(payloads(&read), [(0, b"e".to_vec()), (0, b"d".to_vec())]);
    assert_eq!(sub.dropped(), 3);
    assert_eq!(sub.cursors(), [read.entries[0].1.entry_id()]);
    assert!(sub.try_read().entries.is_empty());
    publish(&hub, 1, &["f"]);
    assert_eq!(payloads(&sub.try_read()), [(0, b"f".to_vec())]);
    assert_eq!(sub.dropped(), 3);
}

#[test]
fn byte_cap_skips_to_the_newest_in_order() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    let sub = subscribe_entries(&hub, &[1], &[Start::New], EntryOptions { max_queue_bytes: 300, ..options(2) });
    let big = "x".repeat(100);
    publish(&hub, 1, &[&big, &big, &big, "a", "b"]);
    let read = sub.try_read();
    assert_eq!(payloads(&read), [(0, b"a".to_vec()), (0, b"b".to_vec())]);
    assert_eq!(sub.dropped(), 3);
    // Under the cap, reads go oldest first again.
    publish(&hub, 1, &["c", "d", "e"]);
    assert_eq!(payloads(&sub.try_read()), [(0, b"c".to_vec()), (0, b"d".to_vec())]);
}

#[test]
fn evicted_entries_count_as_missed() {
    let hub = Hub::new(HubConfig { max_count: 3, ..HubConfig::default() }).unwrap();
    let sub = subscribe_entries(&hub, &[1], &[Start::New], options(1));
    publish(&hub, 1, &["a"]);
    assert_eq!(payloads(&sub.try_read()), [(0, b"a".to_vec())]);
    publish(&hub, 1, &["b", "c", "d", "e", "f"]);
    assert_eq!(payloads(&sub.try_read()), [(0, b"d".to_vec())]);
    assert_eq!(sub.missed(), 2);
    // A cursor at an evicted id, with nothing evicted after it, misses nothing.
    let info = stream_info(&hub, 1).unwrap();
    assert_eq!((info.length, info.entries_added), (3, 6));
    let resume = subscribe_entries(&hub, &[1], &[Start::After(info.max_deleted)], options(5));
    assert_eq!(resume.try_read().entries.len(), 3);
    assert_eq!(resume.missed(), 0);
}

#[test]
fn retention_override_applies_at_once_and_to_later_publishes() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    let ids = publish(&hub, 1, &["a", "b", "c", "d"]);
    now(hub.set_retention(1, RetentionOverride { max_count: Some(2), ..RetentionOverride::default() })).unwrap();
    let info = stream_info(&hub, 1).unwrap();
    assert_eq!((info.length, info.entries_added, info.max_deleted), (2, 4, ids[1]));
    assert_eq!(info.first.unwrap().entry_id(), ids[2]);
    publish(&hub, 1, &["e"]);
    assert_eq!(stream_info(&hub, 1).unwrap().length, 2);
    assert_eq!(hub.stats().retained_messages, 2);
    // Back to the hub's limits; other topics never changed.
    now(hub.set_retention(1, RetentionOverride::default())).unwrap();
    publish(&hub, 1, &["f"]);
    assert_eq!(stream_info(&hub, 1).unwrap().length, 3);
    assert!(
        now(hub.set_retention(1, RetentionOverride { max_count: Some(0), ..RetentionOverride::default() })).is_err()
    );
    let aged = RetentionOverride { max_age: Some(Duration::ZERO), ..RetentionOverride::default() };
    now(hub.set_retention(1, aged)).unwrap();
    let info = stream_info(&hub, 1).unwrap();
    assert_eq!((info.length, info.entries_added, info.max_deleted), (0, 6, info.last_id));
    assert!(info.first.is_none() && info.last.is_none());
    assert!(stream_info(&hub, 99).is_none());
}

#[test]
fn markers_are_skipped_and_closes_end_reads() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    let sub = subscribe_entries(&hub, &[1, 2], &[Start::New, Start::New], options(10));
    publish(&hub, 1, &["a"]);
    now(hub.close_stream(1)).unwrap();
    publish(&hub, 1, &["b"]);
    let read = sub.try_read();
    assert_eq!((payloads(&read), read.close), (vec![(0, b"a".to_vec()), (0, b"b".to_vec())], None));
    publish(&hub, 1, &["c"]);
    hub.drop_topic(2);
    let read = sub.try_read();
    assert_eq!((payloads(&read), read.close), (vec![(0, b"c".to_vec())], Some(Close::NODE_DELETED)));
    assert_eq!(sub.try_read().close, Some(Close::NODE_DELETED));

    let sub = subscribe_entries(&hub, &[1], &[Start::New], options(10));
    hub.interrupt(Some(1));
    assert_eq!(sub.try_read().close, Some(Close::LIVE_LOST));
    let sub = subscribe_entries(&hub, &[1], &[Start::New], options(10));
    assert_eq!(hub.stats().subscribers, 3);
    sub.cancel();
    assert_eq!(sub.try_read().close, Some(Close::CANCELLED));
    assert_eq!(hub.stats().subscribers, 2);
    let sub = subscribe_entries(&hub, &[1], &[Start::New], options(10));
    hub.shutdown();
    assert_eq!(sub.try_read().close, Some(Close::SHUTTING_DOWN));
}

#[test]
fn bad_subscriptions_are_refused() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    assert!(now(hub.subscribe_entries(&[], &[], options(1))).is_err());
    assert!(now(hub.subscribe_entries(&[1], &[], options(1))).is_err());
    assert!(now(hub.subscribe_entries(&[1], &[Start::New], options(0))).is_err());
    assert_eq!(hub.stats().topics, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_end_on_publish_or_time_out_on_silence() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    let sub = Arc::new(subscribe_entries(&hub, &[1, 2], &[Start::New, Start::New], options(1)));
    let silent = tokio::time::timeout(Duration::from_millis(30), sub.next_read()).await;
    assert!(silent.is_err());
    let waiter = tokio::spawn({
        let sub = Arc::clone(&sub);
        async move { sub.next_read().await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    publish(&hub, 2, &["z"]);
    let read = waiter.await.unwrap();
    assert_eq!(payloads(&read), [(1, b"z".to_vec())]);
    let waiter = tokio::spawn({
        let sub = Arc::clone(&sub);
        async move { sub.next_read().await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    sub.cancel();
    assert_eq!(waiter.await.unwrap().close, Some(Close::CANCELLED));
}

fn stream_info(hub: &Hub, topic: u64) -> Option<StreamInfo> {
    now(hub.stream_info(topic)).unwrap()
}
