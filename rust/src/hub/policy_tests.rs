//! Engine tests of the opt-in policies: gap and epoch notices, the backlog cap with its
//! overflow policies, and the 1012 interrupt.

use std::time::Duration;

use serde_json::Value;

use super::tests::{message, now, subscribe};
use super::*;

const H: &[u8] = br#"{"type":"array-data","timestamp":"t"}"#;

fn publish(hub: &Hub, topic: u64, n: usize, payload: &[u8]) {
    for _ in 0..n {
        now(hub.publish(topic, message(H, Some(payload)))).unwrap();
    }
}

fn subscribe_with(hub: &Hub, topic: u64, start: Option<u64>, envelope: Envelope, policy: Policy) -> Subscription {
    now(hub.subscribe(topic, start, envelope, policy)).unwrap()
}

/// `(type, sequence or missed range)` per frame, from the JSON envelope.
fn frames(batch: &Batch) -> Vec<Value> {
    batch.frames.iter().map(|m| serde_json::from_slice(m.envelope(Envelope::Json)).unwrap()).collect()
}

fn gaps(policy: Policy) -> Policy {
    Policy { notify_gaps: true, ..policy }
}

#[test]
fn replay_from_an_evicted_start_sends_a_gap_notice_only_when_asked() {
    let hub = Hub::new(HubConfig { max_count: 3, ..HubConfig::default() }).unwrap();
    publish(&hub, 1, 5, b"x");
    let silent = subscribe(&hub, 1, Some(1), Envelope::Json);
    let told = subscribe_with(&hub, 1, Some(1), Envelope::Json, gaps(Policy::default()));
    let seqs: Vec<u64> = frames(&silent.try_next(10)).iter().map(|v| v["sequence"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [3, 4, 5]);
    let got = frames(&told.try_next(10));
    assert_eq!(got[0]["type"], "stream-gap");
    assert_eq!((got[0]["missed_from"].as_u64(), got[0]["missed_to"].as_u64()), (Some(1), Some(2)));
    assert_eq!(got[0]["reason"], "expired");
    assert_eq!(got[1]["sequence"], 3);
    assert_eq!(told.missed(), 2);
    // The msgpack envelope of a notice is the same map.
    let mp = subscribe_with(&hub, 1, Some(1), Envelope::Msgpack, gaps(Policy::default()));
    let first = mp.try_next(1).frames[0].envelope(Envelope::Msgpack).clone();
    let v = rmpv::decode::read_value(&mut &first[..]).unwrap();
    assert_eq!(v.as_map().unwrap()[0].1.as_str(), Some("stream-gap"));
}

#[test]
fn sequence_restart_and_start_beyond_head_send_epoch_notices() {
    let config = HubConfig { seq_ttl: Duration::from_millis(30), ..HubConfig::default() };
    let hub = Hub::new(config).unwrap();
    publish(&hub, 1, 3, b"x");
    let sub = subscribe_with(&hub, 1, None, Envelope::Json, gaps(Policy::default()));
    let plain = subscribe(&hub, 1, None, Envelope::Json);
    std::thread::sleep(Duration::from_millis(60));
    publish(&hub, 1, 1, b"y");
    let got = frames(&sub.try_next(10));
    assert_eq!(got[0]["type"], "stream-epoch");
    assert_eq!(got[0]["last_sequence"], 3);
    assert_eq!(got[1]["sequence"], 1);
    assert_eq!(frames(&plain.try_next(10))[0]["sequence"], 1);
    // A client resuming at 50 on a stream now at 1: history lost.
    let resumed = subscribe_with(&hub, 1, Some(50), Envelope::Json, gaps(Policy::default()));
    let got = frames(&resumed.try_next(10));
    assert_eq!(got.len(), 1);
    assert_eq!((got[0]["type"].as_str(), got[0]["current_sequence"].as_u64()), (Some("stream-epoch"), Some(1)));
    assert!(subscribe(&hub, 1, Some(50), Envelope::Json).try_next(10).frames.is_empty());
}

#[test]
fn backlog_over_the_cap_closes_with_the_dropped_count() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    let policy = Policy { max_queue_bytes: 1000, ..Policy::default() };
    let slow = subscribe_with(&hub, 1, None, Envelope::Msgpack, policy);
    let fast = subscribe_with(&hub, 1, None, Envelope::Msgpack, policy);
    for _ in 0..10 {
        publish(&hub, 1, 1, &[0; 200]);
        assert_eq!(fast.try_next(10).frames.len(), 1);
    }
    assert!(slow.backlog_bytes() > 2000);
    assert_eq!(fast.backlog_bytes(), 0);
    let batch = slow.try_next(10);
    assert!(batch.frames.is_empty());
    let close = batch.close.unwrap();
    assert_eq!(close.code, 1008);
    assert!(close.reason.contains("dropped 10 messages"), "{}", close.reason);
    assert!(close.reason.len() <= 123);
    assert_eq!(slow.dropped(), 10);
    // A single message above the cap is still delivered.
    let big = subscribe_with(&hub, 1, None, Envelope::Msgpack, policy);
    publish(&hub, 1, 1, &[0; 5000]);
    assert_eq!(big.try_next(10).frames.len(), 1);
}

#[test]
fn latest_skips_to_the_newest_and_reports_the_skip() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    let latest = Policy { max_queue_bytes: 1000, on_overflow: Overflow::Latest, notify_gaps: false };
    let quiet = subscribe_with(&hub, 1, None, Envelope::Json, latest);
    let told = subscribe_with(&hub, 1, None, Envelope::Json, gaps(latest));
    publish(&hub, 1, 10, &[0; 200]);
    let got = frames(&quiet.try_next(64));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["sequence"], 10);
    assert_eq!(quiet.dropped(), 9);
    let got = frames(&told.try_next(64));
    assert_eq!(got[0]["type"], "stream-gap");
    assert_eq!((got[0]["missed_from"].as_u64(), got[0]["missed_to"].as_u64()), (Some(1), Some(9)));
    assert_eq!(got[0]["reason"], "overflow");
    assert_eq!(got[1]["sequence"], 10);
    assert!(quiet.try_next(10).close.is_none());
}

#[test]
fn latest_after_the_stream_closed_keeps_the_last_frame_and_the_end() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    let latest = Policy { max_queue_bytes: 1000, on_overflow: Overflow::Latest, notify_gaps: false };
    let sub = subscribe_with(&hub, 1, None, Envelope::Json, gaps(latest));
    publish(&hub, 1, 10, &[0; 200]);
    now(hub.close_stream(1)).unwrap();
    let batch = sub.try_next(64);
    let got = frames(&batch);
    assert_eq!(got[0]["type"], "stream-gap");
    assert_eq!((got[0]["missed_from"].as_u64(), got[0]["missed_to"].as_u64()), (Some(1), Some(9)));
    assert_eq!(got[1]["sequence"], 10);
    assert_eq!(got.len(), 2);
    assert_eq!(sub.dropped(), 9);
    assert_eq!(batch.close.unwrap().code, 1000);
}

#[test]
fn latest_also_recovers_from_eviction_instead_of_closing() {
    let hub = Hub::new(HubConfig { max_count: 3, ..HubConfig::default() }).unwrap();
    let latest = Policy { on_overflow: Overflow::Latest, ..Policy::default() };
    let sub = subscribe_with(&hub, 1, None, Envelope::Json, gaps(latest));
    let closing = subscribe(&hub, 1, None, Envelope::Json);
    publish(&hub, 1, 6, b"x");
    let got = frames(&sub.try_next(10));
    assert_eq!(got[0]["reason"], "expired");
    assert_eq!(got[1]["sequence"], 6);
    assert_eq!((sub.missed(), sub.dropped()), (3, 5));
    assert_eq!(closing.try_next(10).close.unwrap().code, 1008);
}

#[test]
fn replay_is_not_limited_by_the_cap() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    publish(&hub, 1, 10, &[0; 200]);
    let policy = Policy { max_queue_bytes: 300, ..Policy::default() };
    let sub = subscribe_with(&hub, 1, Some(1), Envelope::Msgpack, policy);
    assert_eq!(sub.backlog_bytes(), 0);
    assert_eq!(sub.try_next(64).frames.len(), 10);
}

#[test]
fn interrupt_closes_current_subscribers_with_1012_and_keeps_the_topic() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    publish(&hub, 1, 2, b"x");
    let a = subscribe(&hub, 1, None, Envelope::Msgpack);
    let other = subscribe(&hub, 2, None, Envelope::Msgpack);
    hub.interrupt(Some(1));
    assert!(a.is_ready());
    assert_eq!(a.try_next(10).close, Some(Close::LIVE_LOST));
    assert!(other.try_next(10).close.is_none());
    let resumed = subscribe(&hub, 1, Some(2), Envelope::Msgpack);
    assert_eq!(resumed.try_next(10).frames.len(), 1);
    hub.interrupt(None);
    assert_eq!(other.try_next(10).close.unwrap().code, 1012);
    assert_eq!(resumed.try_next(10).close.unwrap().code, 1012);
    publish(&hub, 1, 1, b"x");
    assert_eq!(now(hub.current_sequence(1)), Ok(3));
}
