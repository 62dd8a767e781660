//! Retrying a failed handler in place, with exponential backoff and jitter.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use tidewater_core::{Around, Attempts, Delivery, HandlerError, Inner, StopSignal};

/// Retries transient failures inside the handler call, waiting longer each time.
///
/// Only errors that say a retry can help ([`HandlerError::is_transient`]) are retried;
/// permanent ones return at once. Each call after the first gets the delivery with its
/// [`attempt`](Delivery::attempt) one higher, so the handler can tell them apart. When the attempts or the time run out, the last error
/// returns with the attempt count and first failure time recorded, for the dead-letter
/// middleware to write down. A stop of the read task ends the wait between calls: the
/// delivery is let go unprocessed ([`HandlerError::stopping`]) for the broker to deliver
/// again, rather than hold the stop until its deadline.
///
/// **When to use which retry.** This middleware retries while the delivery is held: on a
/// log broker (Kafka, StreamBus) the partition waits, and on any broker the message
/// keeps its place in its key's order. That suits short outages (a few seconds). For
/// longer waits, let the error through and let the broker redeliver: set the task's
/// `nack_delay` (or return [`HandlerError::retry_after`]) and give the dead-letter
/// middleware a `max_deliveries`, so other messages flow meanwhile.
///
/// ```
/// use std::time::Duration;
/// use tidewater_middleware::Retry;
///
/// let retry = Retry::new()
///     .max_attempts(5)
///     .min_delay(Duration::from_millis(50))
///     .max_delay(Duration::from_secs(2))
///     .max_elapsed(Duration::from_secs(10));
/// # let _ = retry;
/// ```
#[derive(Clone, Debug)]
pub struct Retry {
    max_attempts: u32,
    min_delay: Duration,
    max_delay: Duration,
    factor: f32,
    max_elapsed: Option<Duration>,
    jitter: bool,
}

impl Default for Retry {
    fn default() -> Self {
        Self::new()
    }
}

impl Retry {
    /// 3 attempts, 100 ms doubling to at most 10 s, with jitter, no elapsed-time limit.
    pub fn new() -> Self {
        Self {
            max_attempts: 3,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            factor: 2.0,
            max_elapsed: None,
            jitter: true,
        }
    }

    /// Handler calls at most, the first included (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The first delay.
    pub fn min_delay(mut self, delay: Duration) -> Self {
        self.min_delay = delay;
        self
    }

    /// The longest delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// How much each delay grows (default 2).
    pub fn factor(mut self, factor: f32) -> Self {
        self.factor = factor.max(1.0);
        self
    }

    /// The most time spent waiting between attempts, in total.
    pub fn max_elapsed(mut self, limit: Duration) -> Self {
        self.max_elapsed = Some(limit);
        self
    }

    /// Turns jitter off (for tests that check exact delays).
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    fn backoff(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor)
            .with_max_times((self.max_attempts - 1) as usize)
            .with_total_delay(self.max_elapsed);
        if self.jitter {
            builder.with_jitter()
        } else {
            builder
        }
    }
}

impl Around for Retry {
    async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
        match next.run(delivery.clone()).await {
            Ok(()) => Ok(()),
            // Boxed, so that the success path's future does not carry the retries' state
            // (a backoff and a timer) inside it.
            Err(err) => Box::pin(self.retry(delivery, err, &next)).await,
        }
    }
}

impl Retry {
    /// Calls `next` again after `err`, the failure of the first call, for as long as the
    /// backoff allows and the failures say a retry can help.
    async fn retry<N: Inner + ?Sized>(
        &self,
        delivery: Delivery,
        err: HandlerError,
        next: &N,
    ) -> Result<(), HandlerError> {
        let first_failure = SystemTime::now();
        let mut delays = self.backoff().build();
        let mut attempts = 1u32;
        let mut err = err;
        let mut call = delivery;
        let stop = StopSignal::current();
        loop {
            if !err.is_transient() || err.is_stopping() {
                break;
            }
            let Some(delay) = delays.next() else { break };
            tracing::debug!(
                topic = %call.message().stream,
                id = %call.message().id,
                attempt = attempts,
                ?delay,
                error = %err,
                "retrying handler"
            );
            // A stop does not wait out a backoff: the delivery is let go, unprocessed, for
            // the broker to deliver again, where the retries begin anew.
            tokio::select! {
                biased;
                () = stop.stopped() => return Err(HandlerError::stopping()),
                () = tokio::time::sleep(delay) => {}
            }
            attempts += 1;
            // The handler sees which call this is in `Delivery::attempt`.
            call = call.retried();
            match next.run(call.clone()).await {
                Ok(()) => return Ok(()),
                Err(next) => err = next,
            }
        }
        Err(err.with_attempts(Attempts { count: attempts, first_failure }))
    }
}

#[cfg(test)]
mod tests {
    //! Delays on tokio's paused clock: exact, and instant to run.

    use std::sync::{Arc, Mutex};

    use tidewater_core::{handler_fn, Around, Handler, Inner, Message, Middleware, Position};
    use tokio::time::Instant;

    use super::*;

    /// A handler that fails its first `failures` calls with `err`, and the times of its
    /// calls.
    fn failing(failures: usize, err: fn() -> HandlerError) -> (impl Handler, Arc<Mutex<Vec<Instant>>>) {
        let times = Arc::new(Mutex::new(Vec::new()));
        let handler = {
            let times = Arc::clone(&times);
            handler_fn(move |_d: Delivery| {
                let times = Arc::clone(&times);
                async move {
                    let mut times = times.lock().unwrap();
                    times.push(Instant::now());
                    if times.len() <= failures {
                        Err(err())
                    } else {
                        Ok(())
                    }
                }
            })
        };
        (handler, times)
    }

    fn delivery() -> Delivery {
        Delivery::new(Message::new("t", "x"), 1, Position::Queue { partition: None, sequence: None }, None)
    }

    /// Calls `retry` around a handler that fails `failures` times with `err`, and
    /// returns the gaps between its calls, and the outcome.
    async fn calls(
        retry: Retry,
        failures: usize,
        err: fn() -> HandlerError,
    ) -> (Vec<Duration>, Result<(), HandlerError>) {
        let (handler, times) = failing(failures, err);
        let result = retry.wrap(Arc::new(handler)).handle(delivery()).await;
        let times = times.lock().unwrap();
        (times.windows(2).map(|w| w[1].duration_since(w[0])).collect(), result)
    }

    /// Whether each gap is the wanted delay, give or take the timer's millisecond tick.
    fn gaps_are(gaps: &[Duration], want_ms: &[u64]) -> bool {
        gaps.len() == want_ms.len()
            && gaps.iter().zip(want_ms).all(|(gap, ms)| (*ms..=ms + 2).contains(&(gap.as_millis() as u64)))
    }

    fn transient() -> HandlerError {
        HandlerError::transient("try again")
    }

    #[tokio::test(start_paused = true)]
    async fn delays_double_from_the_minimum() {
        let retry = Retry::new().max_attempts(4).min_delay(Duration::from_millis(100)).without_jitter();
        let (after, result) = calls(retry, 3, transient).await;
        assert!(result.is_ok());
        assert!(gaps_are(&after, &[100, 200, 400]), "100, then 200, then 400 ms between calls: {after:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn delays_stop_growing_at_the_maximum() {
        let retry = Retry::new()
            .max_attempts(5)
            .min_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(250))
            .without_jitter();
        let (after, result) = calls(retry, 10, transient).await;
        let err = result.expect_err("every call failed");
        assert_eq!(err.attempts().map(|a| a.count), Some(5));
        assert!(gaps_are(&after, &[100, 200, 250, 250]), "{after:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_not_retried() {
        let retry = Retry::new().max_attempts(5).without_jitter();
        let (after, result) = calls(retry, 10, || HandlerError::permanent("bad input")).await;
        assert!(after.is_empty(), "one call only");
        assert_eq!(result.expect_err("failed").attempts().map(|a| a.count), Some(1));
    }

    /// Counts its calls, and the attempt each call saw.
    #[derive(Clone)]
    struct Seen(Arc<Mutex<Vec<u32>>>);

    impl Around for Seen {
        async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
            self.0.lock().unwrap().push(delivery.attempt());
            next.run(delivery).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn in_a_stack_each_retry_runs_the_layers_below_it_again() {
        let (outer, inner) = (Seen(Arc::default()), Seen(Arc::default()));
        let (handler, calls) = failing(2, transient);
        let retry = Retry::new().max_attempts(3).min_delay(Duration::from_millis(10)).without_jitter();
        let stacked = outer.clone().then(retry).then(inner.clone()).wrapping(handler);
        stacked.handle(delivery()).await.expect("the third call succeeds");
        assert_eq!(*outer.0.lock().unwrap(), [1], "the layer above the retry runs once");
        assert_eq!(*inner.0.lock().unwrap(), [1, 2, 3], "the layer below runs for every call, and sees its attempt");
        assert_eq!(calls.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_keeps_delays_between_the_delay_and_twice_it() {
        let retry = Retry::new().max_attempts(2).min_delay(Duration::from_millis(100));
        let (after, _) = calls(retry, 1, transient).await;
        assert!((100..=200).contains(&after[0].as_millis()), "{after:?}");
    }
}
