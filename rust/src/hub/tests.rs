//! Engine tests of the in-process hub: sequencing, replay, retention, expiry, close semantics,
//! sharing. (In-process calls complete when first polled: [`now`] runs them.)

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use super::budget::Budget;
use super::topic::Topic;
use super::*;
use crate::codec::envelope::Draft;

const H: &[u8] = br#"{"type":"array-data","timestamp":"t"}"#;

/// The output of an in-process hub call (they complete when first polled).
pub(super) fn now<T>(call: impl Future<Output = T>) -> T {
    call.now_or_never().expect("in-process hub calls complete at once")
}

pub(super) fn hub(config: HubConfig) -> Hub {
    Hub::new(config).unwrap()
}

/// A message with `header` and `payload` (no hint).
pub(super) fn message(header: &[u8], payload: Option<&[u8]>) -> Outgoing {
    Outgoing::new(header, payload, None, None).unwrap()
}

pub(super) fn subscribe(hub: &Hub, topic: u64, start: Option<u64>, envelope: Envelope) -> Subscription {
    now(hub.subscribe(topic, start, envelope, Policy::default())).unwrap()
}

fn publish(hub: &Hub, topic: u64, n: usize) -> Vec<u64> {
    (0..n).map(|_| now(hub.publish(topic, message(H, Some(b"abc")))).unwrap()).collect()
}

fn seqs(batch: &Batch) -> Vec<u64> {
    batch.frames.iter().map(|m| m.sequence()).collect()
}

fn topic(config: &HubConfig) -> Arc<Topic> {
    Arc::new(Topic::new(config.retention(), config.seq_ttl, Arc::new(Budget::new(usize::MAX))))
}

/// A subscription made at `at` on a bare topic (for tests that move the clock).
fn subscribe_at(topic: &Arc<Topic>, start: Option<u64>, at: Instant) -> Subscription {
    let sub = Subscription::register(Arc::clone(topic), 1, Envelope::Msgpack, Policy::default(), None, at);
    sub.start(start, None, at);
    sub
}

fn draft() -> Draft {
    Draft::new(H, Some(b"abc"), None).unwrap()
}

#[test]
fn sequences_start_at_one_and_count_markers() {
    let hub = hub(HubConfig::default());
    assert_eq!(now(hub.current_sequence(7)), Ok(0));
    assert_eq!(publish(&hub, 7, 2), [1, 2]);
    assert_eq!(now(hub.close_stream(7)), Ok(3));
    assert_eq!(now(hub.close_stream(7)), Ok(4));
    assert_eq!(publish(&hub, 7, 1), [5]);
    assert_eq!(publish(&hub, 8, 1), [1]);
    assert_eq!(now(hub.current_sequence(7)), Ok(5));
    // A bad message consumes nothing.
    assert!(Outgoing::new(b"[]", None, None, None).is_err());
    assert!(Outgoing::new(H, Some(b"abc"), Some(("<i8", &[1])), None).is_err());
    assert_eq!(publish(&hub, 7, 1), [6]);
    // A batch: consecutive sequences, the last one returned; an empty one is refused.
    let sub = subscribe(&hub, 7, Some(7), Envelope::Msgpack);
    assert_eq!(now(hub.publish_all(7, (0..3).map(|_| message(H, Some(b"abc"))).collect())), Ok(9));
    assert!(now(hub.publish_all(7, Vec::new())).is_err());
    assert_eq!(seqs(&now(sub.next_batch(10))), [7, 8, 9]);
}

#[test]
fn live_and_replay_starts() {
    let hub = hub(HubConfig::default());
    publish(&hub, 1, 3);
    let live = subscribe(&hub, 1, None, Envelope::Msgpack);
    let from2 = subscribe(&hub, 1, Some(2), Envelope::Msgpack);
    let from0 = subscribe(&hub, 1, Some(0), Envelope::Msgpack);
    let beyond = subscribe(&hub, 1, Some(99), Envelope::Msgpack);
    assert!(live.try_next(10).frames.is_empty());
    publish(&hub, 1, 1);
    assert_eq!(seqs(&live.try_next(10)), [4]);
    assert_eq!(seqs(&from2.try_next(10)), [2, 3, 4]);
    assert_eq!(seqs(&from0.try_next(2)), [1, 2]);
    assert_eq!(seqs(&from0.try_next(10)), [3, 4]);
    assert_eq!(seqs(&beyond.try_next(10)), [4]);
    assert_eq!(from0.last_sequence(), 4);
    assert_eq!(hub.stats().subscribers, 4);
    drop(beyond);
    live.cancel();
    assert_eq!(hub.stats().subscribers, 2);
    assert_eq!(live.try_next(1).close, Some(Close::CANCELLED));
}

#[test]
fn replay_from_before_oldest_counts_missed() {
    let hub = hub(HubConfig { max_count: 2, ..HubConfig::default() });
    publish(&hub, 1, 5);
    let sub = subscribe(&hub, 1, Some(1), Envelope::Msgpack);
    assert_eq!(sub.missed(), 3);
    assert_eq!(seqs(&sub.try_next(10)), [4, 5]);
    let sub0 = subscribe(&hub, 1, Some(0), Envelope::Msgpack);
    assert_eq!((sub0.missed(), seqs(&sub0.try_next(10))), (0, vec![4, 5]));
}

#[test]
fn retention_by_count_and_bytes() {
    let hub = hub(HubConfig { max_count: 3, ..HubConfig::default() });
    publish(&hub, 1, 5);
    let stats = hub.stats();
    assert_eq!((stats.topics, stats.retained_messages), (1, 3));
    let size = draft().size();
    let hub = Hub::new(HubConfig { max_bytes: size * 2, ..HubConfig::default() }).unwrap();
    publish(&hub, 1, 5);
    assert_eq!(hub.stats().retained_bytes, size * 2);
    // A single message larger than max_bytes is still kept.
    let hub = Hub::new(HubConfig { max_bytes: 1, ..HubConfig::default() }).unwrap();
    publish(&hub, 1, 2);
    assert_eq!(hub.stats().retained_messages, 1);
}

#[test]
fn retention_by_age() {
    let t0 = Instant::now();
    let topic = topic(&HubConfig { max_age: Duration::from_secs(10), ..HubConfig::default() });
    topic.publish(draft(), t0);
    topic.publish(draft(), t0 + Duration::from_secs(5));
    assert_eq!(topic.retained(t0 + Duration::from_secs(9)).0, 2);
    assert_eq!(topic.retained(t0 + Duration::from_secs(11)).0, 1);
    let sub = subscribe_at(&topic, Some(0), t0 + Duration::from_secs(11));
    assert_eq!(seqs(&sub.try_next_at(10, t0 + Duration::from_secs(11))), [2]);
    assert_eq!(topic.retained(t0 + Duration::from_secs(16)), (0, 0));
    assert_eq!(topic.current_sequence(t0 + Duration::from_secs(16)), 2);
}

#[test]
fn hub_age_eviction_with_real_clock() {
    let hub = hub(HubConfig { max_age: Duration::from_millis(30), ..HubConfig::default() });
    publish(&hub, 1, 2);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(hub.stats().retained_messages, 0);
    assert_eq!(publish(&hub, 1, 1), [3]);
}

#[test]
fn sequence_restarts_after_expiry() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let config = HubConfig { max_age: s(10), seq_ttl: s(100), ..HubConfig::default() };
    let idle = topic(&config);
    idle.publish(draft(), t0);
    assert_eq!(idle.current_sequence(t0 + s(99)), 1);
    assert_eq!(idle.publish(draft(), t0 + s(99)), 2);
    assert_eq!(idle.publish(draft(), t0 + s(199)), 1);

    let closed = topic(&config);
    closed.publish(draft(), t0);
    closed.close_stream(t0 + s(1));
    assert_eq!(closed.current_sequence(t0 + s(10)), 2);
    assert_eq!(closed.current_sequence(t0 + s(11)), 0);
    assert_eq!(closed.publish(draft(), t0 + s(12)), 1);

    // A publish after the close keeps the sequence going.
    let reopened = topic(&config);
    reopened.close_stream(t0);
    reopened.publish(draft(), t0 + s(5));
    assert_eq!(reopened.publish(draft(), t0 + s(20)), 3);

    // A waiting live subscriber follows the restart.
    let waiting = topic(&config);
    waiting.publish(draft(), t0);
    let sub = subscribe_at(&waiting, None, t0);
    waiting.publish(draft(), t0 + s(200));
    assert_eq!(seqs(&sub.try_next_at(10, t0 + s(200))), [1]);
}

#[test]
fn live_close_after_earlier_messages() {
    let hub = hub(HubConfig::default());
    let sub = subscribe(&hub, 1, None, Envelope::Msgpack);
    publish(&hub, 1, 2);
    now(hub.close_stream(1)).unwrap();
    publish(&hub, 1, 1);
    let batch = sub.try_next(10);
    assert_eq!((seqs(&batch), batch.close), (vec![1, 2], Some(Close::PRODUCER_ENDED)));
    let again = sub.try_next(10);
    assert_eq!((again.frames.len(), again.close), (0, Some(Close::PRODUCER_ENDED)));
}

#[test]
fn replay_close_sends_rest_of_range_first() {
    let hub = hub(HubConfig::default());
    publish(&hub, 1, 1);
    now(hub.close_stream(1)).unwrap(); // 2
    publish(&hub, 1, 2); // 3, 4
    let sub = subscribe(&hub, 1, Some(1), Envelope::Msgpack);
    publish(&hub, 1, 1); // 5: live, after the replay range
    let first = sub.try_next(2);
    assert_eq!((seqs(&first), first.close), (vec![1, 3], None));
    let rest = sub.try_next(10);
    assert_eq!((seqs(&rest), rest.close), (vec![4], Some(Close::PRODUCER_ENDED)));
    // A marker at the very end of the replay range also closes.
    now(hub.close_stream(2)).unwrap();
    let sub = subscribe(&hub, 2, Some(0), Envelope::Msgpack);
    assert_eq!(sub.try_next(10).close, Some(Close::PRODUCER_ENDED));
}

#[test]
fn fell_behind_closes_1008_after_preceding_frames() {
    let hub = hub(HubConfig { max_count: 3, ..HubConfig::default() });
    let sub = subscribe(&hub, 1, None, Envelope::Msgpack);
    publish(&hub, 1, 2);
    assert_eq!(seqs(&sub.try_next(1)), [1]);
    publish(&hub, 1, 4); // ring keeps 4..6; 2 and 3 are gone
    let batch = sub.try_next(10);
    assert!(batch.frames.is_empty());
    let close = batch.close.unwrap();
    assert_eq!(close.code, 1008);
    assert_eq!(close.reason, "subscriber fell behind: sequences 2..3 are no longer retained");
    assert_eq!(sub.missed(), 2);
    assert_eq!(sub.last_sequence(), 1);
}

#[test]
fn encodings_are_shared_and_json_is_encoded_once() {
    let hub = hub(HubConfig::default());
    let a = subscribe(&hub, 1, None, Envelope::Msgpack);
    let b = subscribe(&hub, 1, None, Envelope::Msgpack);
    let j1 = subscribe(&hub, 1, None, Envelope::Json);
    let j2 = subscribe(&hub, 1, None, Envelope::Json);
    let payload: Vec<u8> = [1i64, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
    now(hub.publish(1, Outgoing::new(H, Some(&payload), Some(("<i8", &[3])), None).unwrap())).unwrap();
    let (ma, mb) = (a.try_next(1).frames.remove(0), b.try_next(1).frames.remove(0));
    assert!(Arc::ptr_eq(&ma, &mb));
    assert!(!ma.json_encoded());
    let (x, y) = (j1.try_next(1).frames.remove(0), j2.try_next(1).frames.remove(0));
    assert!(Arc::ptr_eq(&x, &ma) && Arc::ptr_eq(&x, &y) && x.json_encoded());
    assert_eq!(x.envelope(Envelope::Json).as_ptr(), y.envelope(Envelope::Json).as_ptr());
    let json: serde_json::Value = serde_json::from_slice(x.envelope(Envelope::Json)).unwrap();
    assert_eq!(json["payload"], serde_json::json!([1, 2, 3]));
    assert_eq!(json["sequence"], 1);
}

#[test]
fn drop_topic_and_shutdown_close_1001() {
    let hub = hub(HubConfig::default());
    let sub = subscribe(&hub, 1, None, Envelope::Msgpack);
    let other = subscribe(&hub, 2, None, Envelope::Msgpack);
    hub.drop_topic(1);
    assert_eq!(sub.try_next(1).close, Some(Close::NODE_DELETED));
    assert_eq!(now(hub.current_sequence(1)), Ok(0));
    hub.shutdown();
    assert_eq!(other.try_next(1).close, Some(Close::SHUTTING_DOWN));
    assert_eq!(now(hub.publish(2, message(H, None))), Err(CoreError::ShutDown));
    assert!(matches!(now(hub.subscribe(2, None, Envelope::Json, Policy::default())), Err(CoreError::ShutDown)));
    assert_eq!(now(hub.close_stream(2)), Err(CoreError::ShutDown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_batch_wakes_on_publish_close_and_cancel() {
    let hub = Arc::new(hub(HubConfig::default()));
    let sub = Arc::new(subscribe(&hub, 1, None, Envelope::Msgpack));
    let waiter = tokio::spawn({
        let sub = Arc::clone(&sub);
        async move { sub.next_batch(64).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    hub.publish(1, message(H, None)).await.unwrap();
    assert_eq!(seqs(&waiter.await.unwrap()), [1]);

    let waiter = tokio::spawn({
        let sub = Arc::clone(&sub);
        async move { sub.next_batch(64).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    sub.cancel();
    assert_eq!(waiter.await.unwrap().close, Some(Close::CANCELLED));

    let sub = Arc::new(subscribe(&hub, 1, None, Envelope::Msgpack));
    let waiter = tokio::spawn({
        let sub = Arc::clone(&sub);
        async move { sub.next_batch(64).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    now(hub.close_stream(1)).unwrap();
    assert_eq!(waiter.await.unwrap().close, Some(Close::PRODUCER_ENDED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_publishes_race_with_waiters() {
    let hub = Arc::new(hub(HubConfig::default()));
    let subs: Vec<_> = (0..8).map(|_| Arc::new(subscribe(&hub, 1, None, Envelope::Msgpack))).collect();
    let readers: Vec<_> = subs
        .iter()
        .map(|sub| {
            let sub = Arc::clone(sub);
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = sub.next_batch(7).await;
                    got.extend(seqs(&batch));
                    if batch.close.is_some() {
                        return got;
                    }
                }
            })
        })
        .collect();
    let producer = {
        let hub = hub.clone();
        tokio::task::spawn_blocking(move || {
            publish(&hub, 1, 1000);
            now(hub.close_stream(1)).unwrap();
        })
    };
    producer.await.unwrap();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), (1..=1000).collect::<Vec<u64>>());
    }
}

#[test]
fn a_mirror_cursor_skips_what_the_remote_head_covers_even_if_it_arrives_later() {
    let topic = topic(&HubConfig::default());
    let now = Instant::now();
    let marker = |seq| Arc::new(Message::end_of_stream(seq, EntryId::ZERO, now));
    let data = |seq| {
        let encoded = draft().finish(seq);
        Arc::new(Message::data(seq, EntryId::new(seq, 0), now, encoded.msgpack, encoded.json))
    };
    // Registered on an empty mirror; the remote stream's head was 5 by then.
    let live = Subscription::register(Arc::clone(&topic), 1, Envelope::Msgpack, Policy::default(), None, now);
    live.start(None, Some(5), now);
    // Sequence 5 reaches the mirror late (joining the remote stream mid-way), then 6.
    topic.insert_external(data(5), now);
    assert!(live.try_next(10).frames.is_empty());
    topic.insert_external(data(6), now);
    assert_eq!(seqs(&live.try_next(10)), [6]);
    // A later restart of the remote stream is followed from 1.
    topic.insert_external(data(1), now);
    assert_eq!(seqs(&live.try_next(10)), [1]);
    topic.insert_external(marker(2), now);
    assert_eq!(live.try_next(10).close, Some(Close::PRODUCER_ENDED));
}
