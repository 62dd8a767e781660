//! Circuit breaker: holding deliveries while what the handler calls is down.

use std::pin::pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tidewater_core::{Around, Delivery, HandlerError, Inner, StopSignal};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Stops calling the handler while what it depends on is down, and holds the deliveries
/// meanwhile, rather than spend their attempts and dead-letter them.
///
/// Without a breaker, an outage of a database or an API the handler calls turns into a
/// failure for every message: each is retried, redelivered and in the end dead-lettered,
/// so the topic drains into its dead-letter topic and waits there for a redrive. With
/// one, a run of transient failures ([`failures`](Self::failures) in a row, 5 by
/// default) opens the circuit. While it is open, no handler call is made: each delivery
/// waits in the breaker, unsettled, and the reader fetches no more than its lanes and
/// prefetch hold, so consumption pauses. After [`open_for`](Self::open_for) one delivery
/// goes through as a trial. If it succeeds, the circuit closes and the held deliveries
/// go on; if it fails, the circuit opens again for twice as long, up to
/// [`max_open_for`](Self::max_open_for). The trial's own failure goes on out as any
/// failure does, so a message that fails for reasons of its own cannot hold the circuit
/// open by being tried again and again.
///
/// The failures that opened the circuit and those of failed trials are failures like
/// any other: a [`Bus`](tidewater_core::Bus)'s own dead letter gives them back to the
/// broker, to come again; behind a [`DeadLetter`](crate::DeadLetter) that dead-letters
/// transient failures ([`DeadLetter::new`](crate::DeadLetter::new) alone takes the first
/// one), those few messages are dead-lettered, where without a breaker the whole
/// backlog would be.
///
/// Holding is safe on every broker for as long as an outage lasts: JetStream's reader
/// tells the server the held messages are in progress, a Kafka reader's consumer keeps
/// its place in the group while it fetches nothing, and StreamBus's heartbeats run
/// apart from its fetches. On Pulsar, a `PulsarConfig::ack_timeout` (none by default)
/// redelivers a message held longer than that to another consumer.
///
/// Only transient failures count: a permanent one says the message is bad, not the
/// dependency. A success resets the count. Clones share one circuit, so one breaker put
/// on several subscriptions guards the dependency they share. A stop (shutdown) lets
/// held deliveries go at once, unprocessed ([`HandlerError::stopping`]): the runner
/// leaves them unsettled, to be delivered again, and the stop does not wait out its
/// grace period for a dependency that is down.
///
/// Put it inside [`DeadLetter`](crate::DeadLetter) and [`Deduplicate`](crate::Deduplicate)
/// and outside [`Retry`](crate::Retry): a message's retries ride out a short blip, and the
/// breaker counts the messages that failed after theirs.
///
/// ```
/// use std::time::Duration;
/// use tidewater_core::Around;
/// use tidewater_middleware::{CircuitBreaker, Retry};
///
/// # fn demo(bus: &mut tidewater_core::Bus) {
/// let payments_api = CircuitBreaker::new("payments-api")
///     .failures(5)
///     .open_for(Duration::from_secs(5))
///     .max_open_for(Duration::from_secs(60));
/// bus.with_middleware(payments_api.clone().then(Retry::new().max_attempts(3)));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

/// Where a [`CircuitBreaker`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls wait until the time for a trial comes.
    Open,
    /// One trial call is running, or is about to; the others wait for its outcome.
    HalfOpen,
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    failures: u32,
    open_for: Duration,
    max_open_for: Duration,
}

#[derive(Debug)]
struct Shared {
    name: Arc<str>,
    settings: Settings,
    /// The state in the low two bits, and above them a generation that every change of
    /// state raises: a call's outcome counts only in the generation it was let through
    /// in, so a call that began before the circuit opened cannot close it. One word, so
    /// that a closed circuit's calls read it once and take no lock.
    status: AtomicU64,
    /// Transient failures in a row while closed.
    failures: AtomicU32,
    /// Times a closed circuit opened.
    opened: AtomicU64,
    /// Calls waiting for the circuit.
    held: AtomicUsize,
    /// What only changes of state touch.
    circuit: Mutex<Circuit>,
    /// Wakes the held calls when the state changes.
    changed: Notify,
}

#[derive(Debug)]
struct Circuit {
    /// When the open circuit lets a trial through.
    trial_at: Instant,
    /// How long it stays open this time.
    open_for: Duration,
    /// Whether a trial call is out.
    trying: bool,
}

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;

/// What a call was let through under: the generation, and whether it is the trial. A
/// trial that ends without an outcome (its future dropped, say at the shutdown
/// deadline) hands the trial on.
struct Pass<'a> {
    shared: &'a Shared,
    generation: u64,
    trial: bool,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.trial {
            self.shared.trial_abandoned(self.generation);
        }
    }
}

/// Counts a call as held while it waits, however its wait ends.
struct Held<'a>(&'a AtomicUsize);

impl<'a> Held<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CircuitBreaker {
    /// A closed breaker named `name` (for its log lines): opens after 5 transient
    /// failures in a row, tries again after 5 s, then after twice as long each time a
    /// trial fails, up to 60 s.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        let settings =
            Settings { failures: 5, open_for: Duration::from_secs(5), max_open_for: Duration::from_secs(60) };
        Self { shared: Arc::new(Shared::new(name.into(), settings)) }
    }

    /// Transient failures in a row that open the circuit (at least 1).
    pub fn failures(self, failures: u32) -> Self {
        self.configured(|s| s.failures = failures.max(1))
    }

    /// How long the circuit stays open before its first trial.
    pub fn open_for(self, wait: Duration) -> Self {
        self.configured(|s| s.open_for = wait)
    }

    /// The longest the circuit stays open between trials; the wait doubles up to it.
    pub fn max_open_for(self, wait: Duration) -> Self {
        self.configured(|s| s.max_open_for = wait)
    }

    /// The breaker's state now.
    pub fn state(&self) -> CircuitState {
        match self.shared.status.load(Ordering::Acquire) & 3 {
            CLOSED => CircuitState::Closed,
            OPEN => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    /// The name it was given, as its log lines say it.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// How many times the circuit opened after being closed (a failed trial, which
    /// opens it again, is not counted).
    pub fn times_opened(&self) -> u64 {
        self.shared.opened.load(Ordering::Relaxed)
    }

    /// How many calls wait for the circuit now: the deliveries it holds.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::Relaxed)
    }

    /// A new circuit with changed settings: settings are given before the breaker is
    /// cloned onto subscriptions, and a closed circuit has nothing else to carry over.
    fn configured(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.shared.settings;
        change(&mut settings);
        settings.max_open_for = settings.max_open_for.max(settings.open_for);
        Self { shared: Arc::new(Shared::new(Arc::clone(&self.shared.name), settings)) }
    }
}

impl Around for CircuitBreaker {
    async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
        let shared = &*self.shared;
        let status = shared.status.load(Ordering::Acquire);
        let pass = if status & 3 == CLOSED {
            Pass { shared, generation: status >> 2, trial: false }
        } else {
            // Boxed, so that a closed circuit's calls do not carry the wait's state.
            match Box::pin(shared.wait_for_pass()).await {
                Some(pass) => pass,
                None => return Err(HandlerError::stopping()),
            }
        };
        let outcome = next.run(delivery).await;
        shared.record(pass, &outcome);
        outcome
    }
}

impl Shared {
    fn new(name: Arc<str>, settings: Settings) -> Self {
        Self {
            name,
            settings,
            status: AtomicU64::new(CLOSED),
            failures: AtomicU32::new(0),
            opened: AtomicU64::new(0),
            held: AtomicUsize::new(0),
            circuit: Mutex::new(Circuit { trial_at: Instant::now(), open_for: settings.open_for, trying: false }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Circuit> {
        // Nothing panics while holding it; a poisoned lock still holds a whole state.
        self.circuit.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets a new state in a new generation; called with the lock held.
    fn set(&self, state: u64) -> u64 {
        let generation = (self.status.load(Ordering::Relaxed) >> 2) + 1;
        self.status.store(generation << 2 | state, Ordering::Release);
        generation
    }

    /// Waits until the circuit lets this call through: closed, or open past its wait
    /// with no trial out, which makes this call the trial. `None` once the read task is
    /// asked to stop: a held delivery is let go rather than hold the stop.
    async fn wait_for_pass(&self) -> Option<Pass<'_>> {
        let _held = Held::new(&self.held);
        let stop = StopSignal::current();
        let mut stopped = pin!(stop.stopped());
        loop {
            // Registered before the state is read, so a change between the two still
            // wakes this call.
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            let trial_at = {
                let mut circuit = self.lock();
                let status = self.status.load(Ordering::Acquire);
                match status & 3 {
                    CLOSED => return Some(Pass { shared: self, generation: status >> 2, trial: false }),
                    OPEN if Instant::now() < circuit.trial_at => Some(circuit.trial_at),
                    OPEN => {
                        circuit.trying = true;
                        let generation = self.set(HALF_OPEN);
                        return Some(Pass { shared: self, generation, trial: true });
                    }
                    _ if !circuit.trying => {
                        circuit.trying = true;
                        return Some(Pass { shared: self, generation: status >> 2, trial: true });
                    }
                    _ => None,
                }
            };
            let trial = async {
                match trial_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = stopped.as_mut() => return None,
                () = changed => {}
                () = trial => {}
            }
        }
    }

    /// Counts a call's outcome towards the state of its generation.
    fn record(&self, mut pass: Pass<'_>, outcome: &Result<(), HandlerError>) {
        let trial = std::mem::take(&mut pass.trial);
        match outcome {
            Ok(()) if trial => self.close(pass.generation),
            Ok(()) => {
                // Read first: a closed circuit's successes then write nothing shared.
                if self.failures.load(Ordering::Relaxed) != 0 && self.is_current(pass.generation) {
                    self.failures.store(0, Ordering::Relaxed);
                }
            }
            // A permanent failure says nothing of the dependency, nor does a delivery let
            // go at a stop: another call tries.
            Err(err) if !err.is_transient() || err.is_stopping() => {
                if trial {
                    self.trial_abandoned(pass.generation);
                }
            }
            Err(err) if trial => self.reopen(pass.generation, err),
            Err(err) => {
                if self.is_current(pass.generation) {
                    let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                    if failures >= self.settings.failures {
                        self.open(pass.generation, failures, err);
                    }
                }
            }
        }
    }

    fn is_current(&self, generation: u64) -> bool {
        self.status.load(Ordering::Acquire) >> 2 == generation
    }

    /// The lock, if the circuit is still in `generation`: a change of state that an older
    /// call's outcome asks for would undo a newer one. (Every change of state begins a
    /// generation, so the state is still the one the call was let through in.)
    fn lock_current(&self, generation: u64) -> Option<MutexGuard<'_, Circuit>> {
        let circuit = self.lock();
        self.is_current(generation).then_some(circuit)
    }

    fn open(&self, generation: u64, failures: u32, err: &HandlerError) {
        // None: opened by another call's failure already.
        let Some(mut circuit) = self.lock_current(generation) else { return };
        circuit.open_for = self.settings.open_for;
        circuit.trial_at = Instant::now() + circuit.open_for;
        self.set(OPEN);
        self.opened.fetch_add(1, Ordering::Relaxed);
        drop(circuit);
        tracing::warn!(
            breaker = %self.name,
            failures,
            open_for = ?self.settings.open_for,
            error = %err,
            "circuit opened: holding deliveries until a trial call succeeds"
        );
    }

    fn reopen(&self, generation: u64, err: &HandlerError) {
        let Some(mut circuit) = self.lock_current(generation) else { return };
        circuit.trying = false;
        circuit.open_for = (circuit.open_for * 2).min(self.settings.max_open_for);
        circuit.trial_at = Instant::now() + circuit.open_for;
        let open_for = circuit.open_for;
        self.set(OPEN);
        drop(circuit);
        self.changed.notify_waiters();
        tracing::warn!(breaker = %self.name, ?open_for, error = %err, "circuit still open: the trial call failed");
    }

    fn close(&self, generation: u64) {
        let Some(mut circuit) = self.lock_current(generation) else { return };
        circuit.trying = false;
        self.failures.store(0, Ordering::Relaxed);
        self.set(CLOSED);
        drop(circuit);
        self.changed.notify_waiters();
        tracing::info!(breaker = %self.name, "circuit closed: the trial call succeeded");
    }

    /// A trial that told nothing: the next held call becomes the trial.
    fn trial_abandoned(&self, generation: u64) {
        let Some(mut circuit) = self.lock_current(generation) else { return };
        circuit.trying = false;
        drop(circuit);
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    //! On tokio's paused clock: the waits are exact, and instant to run.

    use std::sync::Mutex;

    use tidewater_core::{handler_fn, Handler, Message, Position};

    use super::*;

    /// Calls made through the breaker: when, and with which payload.
    type Calls = Arc<Mutex<Vec<(Duration, &'static str)>>>;

    /// The breaker around a handler that acts on its payload: `ok` succeeds, `fail`
    /// fails transiently, `bad` permanently, `slow` succeeds after 2 s, `hang` never
    /// returns. Times count from `start`.
    fn guarded(breaker: &CircuitBreaker, start: Instant) -> (Arc<impl Handler>, Calls) {
        let calls: Calls = Arc::default();
        let seen = Arc::clone(&calls);
        let handler = handler_fn(move |d: Delivery| {
            let payload: &'static str = match &d.message().payload[..] {
                b"ok" => "ok",
                b"fail" => "fail",
                b"bad" => "bad",
                b"slow" => "slow",
                _ => "hang",
            };
            seen.lock().unwrap().push((start.elapsed(), payload));
            async move {
                match payload {
                    "ok" => Ok(()),
                    "fail" => Err(HandlerError::transient("the payments API answered 503")),
                    "bad" => Err(HandlerError::permanent("no such customer")),
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        Ok(())
                    }
                    _ => std::future::pending().await,
                }
            }
        });
        (Arc::new(breaker.clone().wrapping(handler)), calls)
    }

    fn delivery(payload: &'static str) -> Delivery {
        Delivery::new(Message::new("t", payload), 1, Position::Queue { partition: None, sequence: None }, None)
    }

    fn secs(calls: &Calls) -> Vec<(f64, &'static str)> {
        calls.lock().unwrap().iter().map(|(at, payload)| (at.as_secs_f64(), *payload)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_open_it_and_the_next_call_waits_for_its_trial() {
        let breaker = CircuitBreaker::new("api").failures(3).open_for(Duration::from_secs(1));
        let (handler, calls) = guarded(&breaker, Instant::now());
        for _ in 0..2 {
            assert!(handler.handle(delivery("fail")).await.is_err());
        }
        assert_eq!(breaker.state(), CircuitState::Closed, "two failures of three");
        assert!(handler.handle(delivery("fail")).await.is_err());
        assert_eq!(breaker.state(), CircuitState::Open);
        handler.handle(delivery("ok")).await.expect("the trial succeeds");
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(secs(&calls), [(0.0, "fail"), (0.0, "fail"), (0.0, "fail"), (1.0, "ok")]);
    }

    #[tokio::test(start_paused = true)]
    async fn each_failed_trial_doubles_the_wait_up_to_the_longest() {
        let breaker = CircuitBreaker::new("api")
            .failures(1)
            .open_for(Duration::from_secs(1))
            .max_open_for(Duration::from_secs(3));
        let (handler, calls) = guarded(&breaker, Instant::now());
        for _ in 0..5 {
            assert!(handler.handle(delivery("fail")).await.is_err(), "a trial's failure goes on out");
        }
        let at: Vec<f64> = secs(&calls).iter().map(|(at, _)| *at).collect();
        assert_eq!(at, [0.0, 1.0, 3.0, 6.0, 9.0]);
        assert_eq!(breaker.times_opened(), 1, "a failed trial opens it again, and is not counted");
        assert_eq!(breaker.state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn held_calls_wait_for_one_trial_then_go_on_together() {
        let breaker = CircuitBreaker::new("api").failures(1).open_for(Duration::from_secs(1));
        let (handler, calls) = guarded(&breaker, Instant::now());
        assert!(handler.handle(delivery("fail")).await.is_err());
        let held: Vec<_> = (0..4)
            .map(|_| {
                let handler = Arc::clone(&handler);
                tokio::spawn(async move { handler.handle(delivery("slow")).await })
            })
            .collect();
        while breaker.held() < 4 {
            tokio::task::yield_now().await;
        }
        assert_eq!(breaker.state(), CircuitState::Open);
        for call in held {
            call.await.unwrap().expect("each held call runs once the circuit closes");
        }
        assert_eq!((breaker.held(), breaker.times_opened()), (0, 1));
        // The trial at 1 s takes 2 s; the other three start when it has succeeded.
        assert_eq!(secs(&calls), [(0.0, "fail"), (1.0, "slow"), (3.0, "slow"), (3.0, "slow"), (3.0, "slow")]);
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_neither_count_nor_reset_the_count_and_a_success_resets_it() {
        let breaker = CircuitBreaker::new("api").failures(2);
        let (handler, _) = guarded(&breaker, Instant::now());
        for payload in ["fail", "ok", "fail", "bad", "bad"] {
            let _ = handler.handle(delivery(payload)).await;
            assert_eq!(breaker.state(), CircuitState::Closed, "after {payload}");
        }
        let _ = handler.handle(delivery("fail")).await;
        assert_eq!(breaker.state(), CircuitState::Open, "two transient failures in a row");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trial_that_fails_for_its_own_message_hands_the_trial_on() {
        let breaker = CircuitBreaker::new("api").failures(1).open_for(Duration::from_secs(1));
        let (handler, calls) = guarded(&breaker, Instant::now());
        assert!(handler.handle(delivery("fail")).await.is_err());
        let err = handler.handle(delivery("bad")).await.expect_err("a bad message fails");
        assert!(!err.is_transient());
        assert_eq!(breaker.state(), CircuitState::HalfOpen, "a bad message tells nothing of the API");
        handler.handle(delivery("ok")).await.expect("the next call is the trial, at once");
        assert_eq!(secs(&calls), [(0.0, "fail"), (1.0, "bad"), (1.0, "ok")]);
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trial_dropped_unfinished_hands_the_trial_on() {
        let breaker = CircuitBreaker::new("api").failures(1).open_for(Duration::from_secs(1));
        let (handler, calls) = guarded(&breaker, Instant::now());
        assert!(handler.handle(delivery("fail")).await.is_err());
        let hung = tokio::time::timeout(Duration::from_secs(2), handler.handle(delivery("hang"))).await;
        assert!(hung.is_err(), "the trial, begun at 1 s, never returns, and is dropped at 2 s");
        let next = tokio::time::timeout(Duration::from_secs(60), handler.handle(delivery("ok"))).await;
        next.expect("not held for good by the dropped trial").expect("the next call is the trial, at once");
        assert_eq!(secs(&calls), [(0.0, "fail"), (1.0, "hang"), (2.0, "ok")]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_begun_before_the_circuit_opened_does_not_close_it() {
        let breaker = CircuitBreaker::new("api").failures(1).open_for(Duration::from_secs(5));
        let (handler, _) = guarded(&breaker, Instant::now());
        let early = {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move { handler.handle(delivery("slow")).await })
        };
        tokio::task::yield_now().await;
        assert!(handler.handle(delivery("fail")).await.is_err());
        early.await.unwrap().expect("the slow call succeeds at 2 s");
        assert_eq!(breaker.state(), CircuitState::Open, "its success is from before the outage");
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_circuit_and_settings_make_a_new_one() {
        let breaker = CircuitBreaker::new("api").failures(1);
        let copy = breaker.clone();
        let (handler, _) = guarded(&copy, Instant::now());
        assert!(handler.handle(delivery("fail")).await.is_err());
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(breaker.clone().failures(3).state(), CircuitState::Closed);
    }
}
