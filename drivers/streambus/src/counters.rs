//! Counters of what the driver sent and fetched, and the produce interceptor hook.

use std::sync::atomic::{AtomicU64, Ordering};

use tidewater_core::Error;

/// Live counters of one [`StreamBus`](crate::StreamBus) and everything made from it.
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) fetches: AtomicU64,
    pub(crate) fetched: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Records the broker acknowledged.
    pub sent: u64,
    /// Records whose produce failed (after retries).
    pub failed: u64,
    /// Produce requests acknowledged.
    pub batches: u64,
    /// Key and value bytes acknowledged.
    pub bytes: u64,
    /// Fetch requests answered.
    pub fetches: u64,
    /// Records fetched.
    pub fetched: u64,
}

impl Counters {
    /// The counters now.
    pub fn snapshot(&self) -> CounterSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            sent: get(&self.sent),
            failed: get(&self.failed),
            batches: get(&self.batches),
            bytes: get(&self.bytes),
            fetches: get(&self.fetches),
            fetched: get(&self.fetched),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// One produce request, as interceptors see it.
#[derive(Clone, Copy, Debug)]
pub struct ProduceInfo<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: u32,
    /// Records in the request.
    pub records: usize,
    /// Key and value bytes in the request.
    pub bytes: usize,
}

/// Called around every produce request the driver sends (batched or not). For
/// per-message hooks across drivers, use the middleware crate's publish interceptors;
/// this one sees the driver's batches.
pub trait ProduceInterceptor: Send + Sync {
    /// Before the request is sent.
    fn on_send(&self, info: &ProduceInfo<'_>) {
        let _ = info;
    }

    /// After the broker answered, with the base offset, or after the last retry failed.
    fn on_acknowledgement(&self, info: &ProduceInfo<'_>, outcome: Result<i64, &Error>) {
        let _ = (info, outcome);
    }
}
