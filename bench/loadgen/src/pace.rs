//! What the writers (`put`, `push`) share: one task per connection started together, and the
//! pacing of a total rate spread over the connections.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::time::{Interval, MissedTickBehavior};

/// The ticker of connection `index` of `connections` sharing `rate` per second in total, its
/// ticks offset so that the connections take turns; a late tick is skipped, not made up for.
pub fn ticker(rate: f64, connections: usize, index: usize, start: Instant) -> Interval {
    let period = Duration::from_secs_f64(connections as f64 / rate.max(1e-3));
    let offset = period.mul_f64(index as f64 / connections as f64);
    let mut ticker = tokio::time::interval_at((start + offset).into(), period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticker
}

/// Runs `connection(i)` for every `i` below `connections` as tasks and collects their results
/// (a task that panicked is left out).
pub async fn run_each<T, F>(connections: usize, connection: impl Fn(usize) -> F) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = (0..connections).map(|i| tokio::spawn(connection(i))).collect();
    let mut all = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(result) = task.await {
            all.push(result);
        }
    }
    all
}
