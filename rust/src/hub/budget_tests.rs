//! Engine tests of the process-wide memory budget: the oldest messages of any topic go first,
//! each topic keeps its newest, subscribers behind an evicted message are handled as after any
//! eviction and told "evicted" when they asked, and every way a ring lets go of bytes gives
//! them back to the budget.

use serde_json::Value;

use super::tests::{message, now, subscribe};
use super::*;

const H: &[u8] = br#"{"type":"array-data","timestamp":"t"}"#;

/// Envelope bytes of one test message.
fn size() -> usize {
    message(H, Some(&[0; 100])).size()
}

/// A hub whose budget holds exactly `n` test messages.
fn hub_of(n: usize) -> Hub {
    super::tests::hub(HubConfig { max_total_bytes: n * size(), ..HubConfig::default() })
}

fn publish(hub: &Hub, topic: u64, n: usize) {
    for _ in 0..n {
        now(hub.publish(topic, message(H, Some(&[0; 100])))).unwrap();
    }
}

fn json(batch: &Batch) -> Vec<Value> {
    batch.frames.iter().map(|m| serde_json::from_slice(m.envelope(Envelope::Json)).unwrap()).collect()
}

/// `(topic, sequences)` retained, through a replay from 0 of each topic.
fn retained(hub: &Hub, topic: u64) -> Vec<u64> {
    subscribe(hub, topic, Some(0), Envelope::Msgpack).try_next(1000).frames.iter().map(|m| m.sequence()).collect()
}

#[test]
fn the_oldest_messages_of_any_topic_go_first_and_each_topic_keeps_its_newest() {
    let hub = hub_of(10);
    publish(&hub, 1, 8);
    publish(&hub, 2, 8);
    // Over 10 at 11: evicted down to 15/16 of the budget (9 messages), oldest first: topic 1's.
    let stats = hub.stats();
    assert!(stats.retained_bytes <= 10 * size(), "{stats:?}");
    assert_eq!((stats.evicted_messages, stats.evicted_bytes), (6, 6 * size() as u64));
    assert_eq!(retained(&hub, 1), [7, 8]);
    assert_eq!(retained(&hub, 2), (1..=8).collect::<Vec<_>>());
    // Topic 1 keeps its newest; then topic 2's oldest go.
    publish(&hub, 2, 3);
    assert_eq!(retained(&hub, 1), [8]);
    assert_eq!(retained(&hub, 2), (4..=11).collect::<Vec<_>>());
    assert_eq!(hub.topics().budget().retained(), hub.stats().retained_bytes);
    // Many topics of one message each may stay over the budget: their newest are kept.
    for topic in 10..30 {
        publish(&hub, topic, 1);
    }
    assert_eq!(hub.stats().retained_messages, 20 + 2);
    assert!(hub.stats().retained_bytes > 10 * size());
}

#[test]
fn subscribers_behind_an_evicted_message_are_told_evicted() {
    let hub = hub_of(10);
    let gaps = |policy: Policy| Policy { notify_gaps: true, ..policy };
    let latest = now(hub.subscribe(
        1,
        None,
        Envelope::Json,
        gaps(Policy { on_overflow: Overflow::Latest, ..Policy::default() }),
    ));
    let latest = latest.unwrap();
    let closing = subscribe(&hub, 1, None, Envelope::Json);
    publish(&hub, 1, 4);
    publish(&hub, 2, 8);
    // Topic 1 lost 1..=2 to the budget; `latest` skips to the newest (3 is dropped, not lost).
    let got = json(&latest.try_next(10));
    assert_eq!((got[0]["type"].as_str(), got[0]["reason"].as_str()), (Some("stream-gap"), Some("evicted")));
    assert_eq!((got[0]["missed_from"].as_u64(), got[0]["missed_to"].as_u64()), (Some(1), Some(3)));
    assert_eq!(got[1]["sequence"], 4);
    let close = closing.try_next(10).close.unwrap();
    assert_eq!(close, Close::fell_behind(1, 2));
    assert_eq!((closing.missed(), latest.missed(), latest.dropped()), (2, 2, 3));
    // A replay from an evicted start says so too; one past a count eviction says "expired".
    let replay = now(hub.subscribe(1, Some(1), Envelope::Json, gaps(Policy::default()))).unwrap();
    assert_eq!(json(&replay.try_next(10))[0]["reason"], "evicted");
    let counted = super::tests::hub(HubConfig { max_count: 2, ..HubConfig::default() });
    publish(&counted, 1, 4);
    let replay = now(counted.subscribe(1, Some(1), Envelope::Json, gaps(Policy::default()))).unwrap();
    assert_eq!(json(&replay.try_next(10))[0]["reason"], "expired");
}

#[test]
fn bytes_go_back_to_the_budget_however_a_ring_lets_go() {
    let hub = hub_of(1000);
    publish(&hub, 1, 5);
    publish(&hub, 2, 5);
    let budget = || hub.topics().budget().retained();
    assert_eq!(budget(), 10 * size());
    now(hub.set_retention(1, RetentionOverride { max_count: Some(2), ..RetentionOverride::default() })).unwrap();
    assert_eq!(budget(), 7 * size());
    hub.drop_topic(1);
    assert_eq!(budget(), 5 * size());
    let aged = RetentionOverride { max_age: Some(std::time::Duration::ZERO), ..RetentionOverride::default() };
    now(hub.set_retention(2, aged)).unwrap();
    assert_eq!(budget(), 0);
    publish(&hub, 3, 2);
    hub.shutdown();
    assert_eq!((budget(), hub.stats().evicted_messages), (0, 0));
}
