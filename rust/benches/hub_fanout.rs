//! Micro-benchmarks of the hub, without Python: publish + msgpack encode at 1 KiB / 256 KiB /
//! 8 MiB, fan-out of one message to 1 / 32 / 1,000 cursor subscribers, and the JSON envelope's
//! transcoding of an array payload. Run with `cargo bench -p ferrotile-core --bench hub_fanout`.

use std::future::Future;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::FutureExt;

use _core::codec::envelope::Draft;
use _core::codec::Envelope;
use _core::hub::{Hub, HubConfig, Outgoing, Policy};

/// The output of an in-process hub call (they complete when first polled).
fn now<T>(call: impl Future<Output = T>) -> T {
    call.now_or_never().expect("in-process hub calls complete at once")
}

const HEADER: &[u8] = br#"{"type":"array-data","timestamp":"2026-11-23T00:00:00Z","shape":[1]}"#;
const KIB: usize = 1024;

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Publish = validate the header, write the msgpack envelope (one payload copy), assign the
/// sequence and retain it (through `Hub::publish`, as the edge calls it). Retention is capped so the 8 MiB case does not hold gigabytes.
fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_encode");
    for size in [KIB, 256 * KIB, 8192 * KIB] {
        let hub = Hub::new(HubConfig { max_count: 64, ..HubConfig::default() }).unwrap();
        let data = payload(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, data| {
            b.iter(|| {
                let message = Outgoing::new(HEADER, Some(black_box(data)), Some(("|u1", &[data.len()])), None).unwrap();
                now(hub.publish(1, message)).unwrap()
            });
        });
    }
    group.finish();
}

/// One 1 KiB message published, then read by every subscriber's cursor (`try_next`). Bytes are
/// the payload bytes delivered (payload x subscribers).
fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_1KiB");
    let data = payload(KIB);
    for subscribers in [1usize, 32, 1000] {
        let hub = Hub::new(HubConfig { max_count: 64, ..HubConfig::default() }).unwrap();
        let subs: Vec<_> = (0..subscribers)
            .map(|_| now(hub.subscribe(1, None, Envelope::Msgpack, Policy::default())).unwrap())
            .collect();
        group.throughput(Throughput::Bytes((KIB * subscribers) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(subscribers), &subs, |b, subs| {
            b.iter(|| {
                now(hub.publish(1, Outgoing::new(HEADER, Some(&data), None, None).unwrap())).unwrap();
                for sub in subs {
                    let batch = sub.try_next(16);
                    debug_assert_eq!(batch.frames.len(), 1);
                    black_box(batch);
                }
            });
        });
    }
    group.finish();
}

/// The JSON envelope of a float64 array payload (binary -> JSON numbers), built from scratch
/// each time (in the hub it is built once per message, on the first JSON subscriber's demand).
fn json_envelope(c: &mut Criterion) {
    let mut group = c.benchmark_group("json_envelope_f8");
    for size in [KIB, 256 * KIB] {
        let values: Vec<u8> = (0..size / 8).flat_map(|i| (i as f64 * 0.37).to_le_bytes()).collect();
        let encoded = Draft::new(HEADER, Some(&values), Some(("<f8", vec![size / 8]))).unwrap().finish(1);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &encoded, |b, encoded| {
            b.iter(|| black_box(encoded.json.encode()));
        });
    }
    group.finish();
}

criterion_group!(benches, publish, fanout, json_envelope);
criterion_main!(benches);
