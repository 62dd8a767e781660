//! Rate limit: at most so many handler calls a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidewater_core::{Around, Delivery, HandlerError, Inner, StopSignal};
use tokio::time::Instant;

/// Spaces handler calls so that they start no faster than a rate, for a handler that
/// calls an API with a quota or a store that should not be flooded when a backlog is
/// read.
///
/// A call over the rate waits its turn; nothing is refused, and calls start in the
/// order they asked. Up to [`burst`](Self::burst) calls (1 by default) may start at
/// once after a quiet spell. Clones share one budget, so one limit put on several
/// subscriptions holds for them together. It counts calls, not messages: put it inside
/// [`Retry`](crate::Retry) to count each retry as the call it is.
///
/// A call waits while holding its delivery, so the reader fetches no more than the
/// task's lanes and prefetch hold: a rate under what the broker brings in slows
/// consumption to it, and the rest of the backlog stays on the broker. A stop lets the
/// waiting deliveries go, unprocessed ([`HandlerError::stopping`]), to be delivered
/// again, rather than wait for their turns.
///
/// ```
/// use std::time::Duration;
/// use tidewater_middleware::RateLimit;
///
/// let geocoder = RateLimit::per_second(50).burst(10);
/// let nightly = RateLimit::new(1_000, Duration::from_secs(3600));
/// # let _ = (geocoder, nightly);
/// ```
#[derive(Clone, Debug)]
pub struct RateLimit {
    pace: Arc<Pace>,
}

#[derive(Debug)]
struct Pace {
    /// The time between two calls at the rate, in nanoseconds.
    interval: u64,
    /// How far ahead of its slot a call may start: the burst's other calls' slots.
    tolerance: u64,
    /// What the times count from.
    origin: Instant,
    /// The slot after the last one handed out, in nanoseconds from `origin` (the
    /// "theoretical arrival time" of the generic cell rate algorithm): a call takes the
    /// later of it and now, and moves it on by one interval.
    next: AtomicU64,
}

impl RateLimit {
    /// At most `calls` calls in each `per` (at least one call; a zero `per` sets no
    /// limit).
    pub fn new(calls: u32, per: Duration) -> Self {
        let interval = per.as_nanos() / u128::from(calls.max(1));
        Self::with(u64::try_from(interval).unwrap_or(u64::MAX), 1)
    }

    /// At most `calls` calls a second.
    pub fn per_second(calls: u32) -> Self {
        Self::new(calls, Duration::from_secs(1))
    }

    /// Lets up to `calls` calls start at once after a quiet spell (at least 1). A new
    /// budget: set it before the limit is cloned onto subscriptions.
    pub fn burst(self, calls: u32) -> Self {
        Self::with(self.pace.interval, calls)
    }

    fn with(interval: u64, burst: u32) -> Self {
        let tolerance = interval.saturating_mul(u64::from(burst.max(1)) - 1);
        Self { pace: Arc::new(Pace { interval, tolerance, origin: Instant::now(), next: AtomicU64::new(0) }) }
    }
}

impl Pace {
    /// Takes the next slot and says when its call may start, or `None` for now.
    fn take(&self) -> Option<Instant> {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let slot = next.max(now);
            match self.next.compare_exchange_weak(
                next,
                slot.saturating_add(self.interval),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let start = slot.saturating_sub(self.tolerance);
                    // A slot past what an `Instant` holds (a rate of one call in centuries)
                    // waits a year, then asks again.
                    let at = |start| {
                        self.origin
                            .checked_add(Duration::from_nanos(start))
                            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 86_400))
                    };
                    return (start > now).then(|| at(start));
                }
                Err(current) => next = current,
            }
        }
    }
}

impl Around for RateLimit {
    async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
        if let Some(start) = self.pace.take() {
            // Boxed, so that calls within the rate do not carry a timer.
            if !Box::pin(wait_turn(start)).await {
                return Err(HandlerError::stopping());
            }
        }
        next.run(delivery).await
    }
}

/// Waits until `start`; false if the read task is asked to stop first, so that a stop
/// does not wait for a slot far off.
async fn wait_turn(start: Instant) -> bool {
    let stop = StopSignal::current();
    tokio::select! {
        biased;
        () = tokio::time::sleep_until(start) => true,
        () = stop.stopped() => false,
    }
}

#[cfg(test)]
mod tests {
    //! On tokio's paused clock: the waits are exact, and instant to run.

    use std::sync::Mutex;

    use tidewater_core::{handler_fn, Handler, Message, Position};

    use super::*;

    /// `limit` around a handler that notes when it is called, in milliseconds from `start`.
    fn limited(limit: &RateLimit, start: Instant) -> (Arc<impl Handler>, Arc<Mutex<Vec<u128>>>) {
        let calls: Arc<Mutex<Vec<u128>>> = Arc::default();
        let seen = Arc::clone(&calls);
        let handler = handler_fn(move |_: Delivery| {
            seen.lock().unwrap().push(start.elapsed().as_millis());
            async { Ok::<_, HandlerError>(()) }
        });
        (Arc::new(limit.clone().wrapping(handler)), calls)
    }

    fn delivery() -> Delivery {
        Delivery::new(Message::new("t", "x"), 1, Position::Queue { partition: None, sequence: None }, None)
    }

    /// Makes `n` calls at once, each on a task of its own, and waits for them all.
    async fn at_once(handler: &Arc<impl Handler>, n: usize) {
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let handler = Arc::clone(handler);
                tokio::spawn(async move { handler.handle(delivery()).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_at_once_start_one_interval_apart() {
        let (handler, calls) = limited(&RateLimit::per_second(4), Instant::now());
        at_once(&handler, 5).await;
        assert_eq!(*calls.lock().unwrap(), [0, 250, 500, 750, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_starts_at_once_after_a_quiet_spell_then_the_rate_holds() {
        let start = Instant::now();
        let (handler, calls) = limited(&RateLimit::new(10, Duration::from_secs(1)).burst(3), start);
        at_once(&handler, 5).await;
        tokio::time::sleep_until(start + Duration::from_secs(10)).await;
        at_once(&handler, 4).await;
        assert_eq!(*calls.lock().unwrap(), [0, 0, 0, 100, 200, 10_000, 10_000, 10_000, 10_100]);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_within_the_rate_do_not_wait() {
        let start = Instant::now();
        let (handler, calls) = limited(&RateLimit::per_second(2), start);
        for i in 0..3 {
            tokio::time::sleep_until(start + Duration::from_secs(i)).await;
            handler.handle(delivery()).await.unwrap();
        }
        assert_eq!(*calls.lock().unwrap(), [0, 1000, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_budget() {
        let limit = RateLimit::per_second(2);
        let start = Instant::now();
        let (orders, order_calls) = limited(&limit, start);
        let (refunds, refund_calls) = limited(&limit, start);
        tokio::join!(at_once(&orders, 2), at_once(&refunds, 2));
        let mut all: Vec<u128> =
            order_calls.lock().unwrap().iter().chain(refund_calls.lock().unwrap().iter()).copied().collect();
        all.sort();
        assert_eq!(all, [0, 500, 1000, 1500]);
    }
}
