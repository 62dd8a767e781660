//! What the throughput benches share: a counter their handlers hit, the payload, the
//! message count from the environment, and the statistics they print.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How many messages a bench sends: `TW_BENCH_MESSAGES`, else `default`.
pub fn messages_from_env(default: usize) -> usize {
    std::env::var("TW_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A payload of `len` bytes.
pub fn payload(len: usize) -> bytes::Bytes {
    bytes::Bytes::from(vec![7u8; len])
}

/// Messages a second.
pub fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

/// The median of the runs' figures (NaN for none).
pub fn median(mut figures: Vec<f64>) -> f64 {
    if figures.is_empty() {
        return f64::NAN;
    }
    figures.sort_by(f64::total_cmp);
    figures[figures.len() / 2]
}

/// The `p` quantile (0 to 1) of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Counts what handlers saw, remembers when the first arrived, and wakes the bench at
/// the last.
#[derive(Debug)]
pub struct Counter {
    seen: AtomicU64,
    target: u64,
    first: Mutex<Option<Instant>>,
    done: Notify,
}

impl Counter {
    /// A counter that wakes its waiter after `target` hits.
    pub fn new(target: usize) -> Arc<Self> {
        Arc::new(Self { seen: AtomicU64::new(0), target: target as u64, first: Mutex::new(None), done: Notify::new() })
    }

    /// Counts one message.
    pub fn hit(&self) {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 {
            *self.first.lock().unwrap() = Some(Instant::now());
        }
        if n == self.target {
            // notify_one keeps a permit when the waiter is not waiting yet.
            self.done.notify_one();
        }
    }

    /// How many were counted.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Waits for the last message (panics after `limit`); the time since the first.
    pub async fn wait(&self, limit: Duration) -> Duration {
        if self.seen() < self.target {
            let waited = tokio::time::timeout(limit, self.done.notified()).await;
            assert!(waited.is_ok(), "{} of {} messages arrived in {limit:?}", self.seen(), self.target);
        }
        self.first.lock().unwrap().map_or(Duration::ZERO, |first| first.elapsed())
    }
}
