//! A recording layer around any driver, for tests that wait for outcomes instead of
//! sleeping.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::WaitTimeout;
use crate::delivery::Fate;
use crate::{
    BoxHandler, Delivery, Driver, Handler, HandlerError, Message, ReadContext, ReadTask, Reader, ReadySignal, Result,
    Source, TaskHandler, Writer,
};

/// What became of one delivery: how its handler chain ended, which decides how the
/// runner settles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The handler processed it; it was acked.
    Acked,
    /// It was written to a dead-letter queue and then acked.
    DeadLettered,
    /// It was of an event type the typed handlers do not take, routed to its topic, and
    /// was acked unhandled.
    Skipped,
    /// The handler failed (or panicked); it was nacked and comes again.
    Nacked,
}

/// One delivery and what became of it.
#[derive(Clone, Debug)]
pub struct Handled {
    /// The delivery, with the message, its attempt count and its group.
    pub delivery: Delivery,
    /// What became of it.
    pub outcome: Outcome,
    /// In-place retries made of it (by retry middleware).
    pub retries: u32,
    /// The error: a nacked delivery's, or the one a dead letter carries when it went
    /// through the kit's writer (the bus's default dead letter and a `DeadLetter` on
    /// `bus.writer()` do).
    pub error: Option<String>,
}

/// Records what a service published and what became of every delivery, on any driver,
/// and waits for it.
///
/// Wrap the driver with [`TestKit::wrap`] and build the bus from the result; everything
/// the bus publishes (dead letters included) and every delivery to its handlers is
/// recorded. The waits return as soon as what they wait for is true, so a test needs no
/// sleeps, and fail with a [`WaitTimeout`] after the time given.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {}
/// # async fn demo(broker: impl tidewater_core::Driver) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tidewater_core::testing::{Outcome, TestKit};
/// use tidewater_core::{handler_fn, Bus, Delivery, EventRegistry, HandlerError};
///
/// let kit = TestKit::new();
/// let mut bus = Bus::new(&kit.wrap(broker), EventRegistry::new());
/// bus.subscribe("orders", handler_fn(|d: Delivery| async move {
///     match &d.message().payload[..] {
///         b"bad" => Err(HandlerError::permanent("cannot parse")),
///         _ => Ok(()),
///     }
/// }))
/// .group("billing");
/// bus.start().await?;
/// bus.publisher().publish_bytes("orders", "good", "text/plain").await?;
/// bus.publisher().publish_bytes("orders", "bad", "text/plain").await?;
/// kit.wait_idle(Duration::from_secs(10)).await?;
/// assert_eq!(kit.count("orders", Outcome::Acked), 1);
/// assert_eq!(kit.dead_letters("orders").len(), 1);
/// bus.shutdown(Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct TestKit {
    inner: Arc<KitInner>,
}

#[derive(Default)]
struct KitInner {
    state: Mutex<KitState>,
    changed: Notify,
}

#[derive(Default)]
struct KitState {
    published: Vec<Message>,
    handled: Vec<Handled>,
    running: usize,
    /// (topic, group) of every subscription made through the kit.
    subscriptions: Vec<(String, Option<String>)>,
}

impl KitState {
    /// Whether no handler runs and every message published to a subscribed topic has
    /// been acked or dead-lettered by each group subscribed to it.
    fn idle(&self) -> bool {
        self.running == 0
            && self.subscriptions.iter().all(|(topic, group)| {
                self.published.iter().filter(|m| &m.stream == topic).all(|m| {
                    self.handled.iter().any(|h| {
                        h.outcome != Outcome::Nacked
                            && h.delivery.message().id == m.id
                            && h.delivery.message().stream == *topic
                            && h.delivery.group() == group.as_deref()
                    })
                })
            })
    }
}

impl TestKit {
    /// A kit with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// `driver` with everything written through it and every delivery it reads recorded
    /// here. Build the bus (or scheduler and publisher) from what this returns.
    pub fn wrap<D: Driver>(&self, driver: D) -> Recorded<D> {
        Recorded { driver, kit: self.clone() }
    }

    fn state(&self) -> MutexGuard<'_, KitState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut KitState)) {
        f(&mut self.state());
        self.inner.changed.notify_waiters();
    }

    /// The messages written to `topic`, in order.
    pub fn published(&self, topic: &str) -> Vec<Message> {
        self.state().published.iter().filter(|m| m.stream == topic).cloned().collect()
    }

    /// Every delivery of `topic` that was settled, in order.
    pub fn handled(&self, topic: &str) -> Vec<Handled> {
        self.state().handled.iter().filter(|h| h.delivery.message().stream == topic).cloned().collect()
    }

    /// How many deliveries of `topic` ended with `outcome`.
    pub fn count(&self, topic: &str, outcome: Outcome) -> usize {
        self.state().handled.iter().filter(|h| h.outcome == outcome && h.delivery.message().stream == topic).count()
    }

    /// The in-place retries made of deliveries of `topic`, in all.
    pub fn retries(&self, topic: &str) -> u32 {
        self.state().handled.iter().filter(|h| h.delivery.message().stream == topic).map(|h| h.retries).sum()
    }

    /// The messages of `topic` that were dead-lettered.
    pub fn dead_letters(&self, topic: &str) -> Vec<Message> {
        self.state()
            .handled
            .iter()
            .filter(|h| h.outcome == Outcome::DeadLettered && h.delivery.message().stream == topic)
            .map(|h| h.delivery.message().clone())
            .collect()
    }

    /// Waits until no handler runs and every message published through the kit to a
    /// topic subscribed through it has been acked or dead-lettered by every group
    /// subscribed to that topic. (A subscription that starts at the latest message
    /// never sees what was published before it, and so never lets the kit be idle.)
    pub async fn wait_idle(&self, timeout: Duration) -> Result<(), WaitTimeout> {
        self.wait_until(KitState::idle, timeout).await
    }

    /// Waits until at least `n` deliveries of `topic` ended with `outcome`.
    pub async fn wait_for(
        &self,
        topic: &str,
        outcome: Outcome,
        n: usize,
        timeout: Duration,
    ) -> Result<(), WaitTimeout> {
        let matches = |h: &Handled| h.outcome == outcome && h.delivery.message().stream == topic;
        self.wait_until(|s| s.handled.iter().filter(|h| matches(h)).count() >= n, timeout).await
    }

    /// Waits until at least `n` messages were written to `topic`.
    pub async fn wait_published(&self, topic: &str, n: usize, timeout: Duration) -> Result<Vec<Message>, WaitTimeout> {
        self.wait_until(|s| s.published.iter().filter(|m| m.stream == topic).count() >= n, timeout).await?;
        Ok(self.published(topic))
    }

    async fn wait_until(&self, done: impl Fn(&KitState) -> bool, timeout: Duration) -> Result<(), WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(&self.state()) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(WaitTimeout { waited: timeout, recorded: self.state().handled.len() });
            }
        }
    }
}

/// A driver whose writers and readers record into a [`TestKit`].
pub struct Recorded<D> {
    driver: D,
    kit: TestKit,
}

impl<D> Recorded<D> {
    /// The driver inside, for what only it can do.
    pub fn driver(&self) -> &D {
        &self.driver
    }
}

impl<D: Driver> Driver for Recorded<D> {
    fn writer(&self) -> Arc<dyn Writer> {
        Arc::new(RecordingWriter { inner: self.driver.writer(), kit: self.kit.clone() })
    }

    fn reader(&self) -> Arc<dyn Reader> {
        Arc::new(RecordingReader { inner: self.driver.reader(), kit: self.kit.clone() })
    }
}

struct RecordingWriter {
    inner: Arc<dyn Writer>,
    kit: TestKit,
}

#[async_trait]
impl Writer for RecordingWriter {
    fn driver(&self) -> &'static str {
        self.inner.driver()
    }

    async fn write(&self, batch: Vec<Message>) -> Result<()> {
        self.inner.write(batch.clone()).await?;
        self.kit.update(|s| s.published.extend(batch));
        Ok(())
    }

    async fn write_one(&self, message: Message) -> Result<()> {
        self.inner.write_one(message.clone()).await?;
        self.kit.update(|s| s.published.push(message));
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

struct RecordingReader {
    inner: Arc<dyn Reader>,
    kit: TestKit,
}

#[async_trait]
impl Reader for RecordingReader {
    fn driver(&self) -> &'static str {
        self.inner.driver()
    }

    async fn open(&self, task: &ReadTask, ready: &ReadySignal) -> Result<Box<dyn Source>> {
        self.inner.open(task, ready).await
    }

    /// Wraps the handler, then lets the inner reader run it as it would.
    async fn read(&self, task: ReadTask, handler: TaskHandler, mut ctx: ReadContext) -> Result<()> {
        let subscription = (task.topic.clone(), task.group.clone());
        // The runner applies the scheduler's default dead letter after the chain; the kit
        // records outermost, so it puts that dead letter into the chain, where it sees it.
        // A panic becomes an error inside the kit, so the kit records it too.
        let handler: BoxHandler = Arc::new(crate::handler::CatchPanic(handler.boxed()));
        let handler = match ctx.dead_letter.take() {
            Some(dead_letter) => crate::Middleware::wrap(&dead_letter, handler),
            None => handler,
        };
        self.kit.update(|s| {
            if !s.subscriptions.contains(&subscription) {
                s.subscriptions.push(subscription);
            }
        });
        let handler = TaskHandler::new(RecordingHandler { inner: handler, kit: self.kit.clone() });
        self.inner.read(task, handler, ctx).await
    }
}

/// Outermost around the whole chain, so it sees what the runner settles.
struct RecordingHandler {
    inner: BoxHandler,
    kit: TestKit,
}

impl Handler for RecordingHandler {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        self.kit.update(|s| s.running += 1);
        // Counted down even if the call is dropped at a shutdown deadline.
        let running = Running(&self.kit);
        let result = self.inner.handle(delivery.clone()).await;
        drop(running);
        let (outcome, error) = match &result {
            Ok(()) => match delivery.fate() {
                Fate::Processed => (Outcome::Acked, None),
                Fate::DeadLettered => (Outcome::DeadLettered, None),
                Fate::Skipped => (Outcome::Skipped, None),
            },
            Err(err) => (Outcome::Nacked, Some(err.to_string())),
        };
        let retries = delivery.retries();
        self.kit.update(|s| {
            // A dead letter's error went with it, in its headers, through the writer
            // the kit records.
            let error = error.or_else(|| {
                (outcome == Outcome::DeadLettered)
                    .then(|| {
                        s.published
                            .iter()
                            .rev()
                            .find(|m| m.id == delivery.message().id)
                            .and_then(|m| m.headers.get(crate::dead_letter::headers::ERROR).map(str::to_owned))
                    })
                    .flatten()
            });
            s.handled.push(Handled { delivery, outcome, retries, error });
        });
        result
    }
}

struct Running<'a>(&'a TestKit);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.update(|s| s.running -= 1);
    }
}
