//! The low-level read side: read tasks, the reader trait, and what drivers feed the runner.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{Extensions, Incoming, Result, StopSignal, TaskHandler};

/// Where a consumer group with no stored position starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// At the oldest retained message. The default: a new group misses nothing that the
    /// broker still holds.
    #[default]
    Earliest,
    /// After the newest message: only messages published from now on.
    Latest,
}

/// What a reader should read and how.
#[derive(Clone, Debug)]
pub struct ReadTask {
    /// The topic or subject.
    pub topic: String,
    /// The consumer group. Members of one group share the messages; each group gets
    /// every message. `None` gives the subscription a private group of its own.
    pub group: Option<String>,
    /// How many handler calls may run at once. Messages with the same key are always
    /// handled one after another, in order.
    pub concurrency: usize,
    /// Where a group with no stored position starts.
    pub start: StartFrom,
    /// How long a failed delivery waits before it is redelivered the first time, unless
    /// the handler's error asks for its own delay. The wait doubles with each further
    /// delivery of the message, up to [`ReadTask::MAX_NACK_DELAY`], so that a message
    /// that keeps failing never makes a tight loop. `None` redelivers at once, every time.
    pub nack_delay: Option<Duration>,
    /// How many messages a reader may fetch ahead of the handlers: fetched, and not yet
    /// taken up by a handler (with concurrency `n`, up to `n` more are being handled).
    ///
    /// Where the broker shares a group's messages as each member asks (JetStream's pull
    /// requests), a member whose handlers are slow or stuck holds no more than that of
    /// them, and the other members get the rest. Kafka's client queue is sized from it
    /// (8 KiB a message, at least 2 MiB), and a StreamBus reader's fetches (8 KiB a
    /// record, at most its `fetch_max_bytes`; it holds one at a time). Pulsar's flow
    /// permits are not: the broker dispatches batched entries whole, and permits below
    /// a producer's batch stall it, so they stay at the driver's receiver queue a
    /// partition. Core NATS has no flow control: the server sends every message as it
    /// is published, and the client buffers what the handlers have not taken.
    ///
    /// However large, a reader hands its handlers at most [`MOST_A_FETCH`] deliveries
    /// at a time: a larger prefetch holds more ahead, in the broker's client.
    pub prefetch: usize,
    /// Typed options for a particular driver.
    pub options: Extensions,
}

impl ReadTask {
    /// The longest wait before a redelivery that the growing nack delay reaches.
    pub const MAX_NACK_DELAY: Duration = Duration::from_secs(30);

    /// What a driver whose client fetches by size (Kafka, StreamBus) lets a reader hold
    /// ahead of its handlers, per message of its [`prefetch`](ReadTask::prefetch): room for
    /// messages of up to 8 KiB, so that one of the 1 KiB payloads most services send
    /// takes an eighth of it.
    pub const BYTES_A_PREFETCHED_MESSAGE: usize = 8 * 1024;

    /// The wait before the redelivery of a message that failed on its `deliveries`-th
    /// delivery: the nack delay, doubled for each delivery after the first, at most
    /// [`ReadTask::MAX_NACK_DELAY`] (or the nack delay itself, if that is longer).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tidewater_core::ReadTask;
    ///
    /// let task = ReadTask::new("orders");
    /// assert_eq!(task.redelivery_delay(1), Some(Duration::from_millis(100)));
    /// assert_eq!(task.redelivery_delay(4), Some(Duration::from_millis(800)));
    /// assert_eq!(task.redelivery_delay(40), Some(ReadTask::MAX_NACK_DELAY));
    /// ```
    pub fn redelivery_delay(&self, deliveries: u32) -> Option<Duration> {
        let base = self.nack_delay?;
        let doublings = deliveries.saturating_sub(1).min(20);
        Some(base.saturating_mul(1 << doublings).min(Self::MAX_NACK_DELAY.max(base)))
    }

    /// A task reading `topic` with the defaults: private group, concurrency 1, earliest,
    /// 100 ms nack delay, prefetch 256.
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            group: None,
            concurrency: 1,
            start: StartFrom::Earliest,
            nack_delay: Some(Duration::from_millis(100)),
            prefetch: 256,
            options: Extensions::new(),
        }
    }

    /// Sets the consumer group.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Sets the concurrency (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Sets the start position.
    pub fn with_start(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// Sets how many messages may be fetched ahead of the handlers (at least 1); see
    /// [`ReadTask::prefetch`].
    pub fn with_prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }
}

/// What a read task counts: each is the [`TaskReport`] field of the same name.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Count {
    Fetches,
    Fetched,
    Delivered,
    Acked,
    DeadLettered,
    Skipped,
    Nacked,
    Failed,
    Retried,
    Panicked,
    Abandoned,
    SettleErrors,
    Restarts,
}

/// Counters of one read task, live while it runs.
#[derive(Debug, Default)]
pub struct TaskStats {
    counts: [AtomicU64; Count::Restarts as usize + 1],
}

impl TaskStats {
    /// A snapshot of the counters for `topic` and `group`.
    pub fn report(&self, topic: &str, group: Option<&str>) -> TaskReport {
        let [fetches, fetched, delivered, acked, dead_lettered, skipped, nacked, failed, retried, panicked, abandoned, settle_errors, restarts] =
            self.counts.each_ref().map(|c| c.load(Ordering::Relaxed));
        TaskReport {
            topic: topic.to_owned(),
            group: group.map(str::to_owned),
            fetches,
            fetched,
            delivered,
            acked,
            dead_lettered,
            skipped,
            nacked,
            failed,
            retried,
            panicked,
            abandoned,
            settle_errors,
            restarts,
        }
    }

    /// Adds `n` to `count`.
    pub(crate) fn add(&self, count: Count, n: u64) {
        self.counts[count as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// The count of `count` now.
    pub(crate) fn get(&self, count: Count) -> u64 {
        self.counts[count as usize].load(Ordering::Relaxed)
    }
}

/// What one read task did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskReport {
    /// The topic.
    pub topic: String,
    /// The consumer group.
    pub group: Option<String>,
    /// Batches fetched from the broker.
    pub fetches: u64,
    /// Deliveries fetched from the broker (some may be given back unhandled at a stop).
    pub fetched: u64,
    /// Deliveries handed to the handler.
    pub delivered: u64,
    /// Deliveries the handler processed and that were settled as done.
    pub acked: u64,
    /// Deliveries written to a dead-letter queue and then settled, so that they do not
    /// come again here (not counted in `acked`).
    pub dead_lettered: u64,
    /// Deliveries passed over and settled as not for this task's typed handlers: of an
    /// event type they do not take that the registry routes to the topic (not counted in
    /// `acked`).
    pub skipped: u64,
    /// Deliveries settled for redelivery.
    pub nacked: u64,
    /// Deliveries whose handler chain failed with an error and that were not
    /// dead-lettered (so they come again); a failure the chain or the default dead
    /// letter took off the broker counts in `dead_lettered` instead.
    pub failed: u64,
    /// Calls made again in place by retry middleware (not counted in `delivered`, which
    /// counts what the broker handed out).
    pub retried: u64,
    /// Handler calls that panicked.
    pub panicked: u64,
    /// Handler calls still running at the shutdown deadline, left unsettled so the broker
    /// delivers them again.
    pub abandoned: u64,
    /// Settlements the broker did not take (the message will come again).
    pub settle_errors: u64,
    /// How often the reader was restarted after an error.
    pub restarts: u64,
}

/// Tells the scheduler that a reader is subscribed, so that `start` can return once
/// messages published from then on will be received.
#[derive(Clone, Debug)]
pub struct ReadySignal(Arc<watch::Sender<bool>>);

impl ReadySignal {
    /// A new signal and a receiver that sees it.
    pub fn new() -> (Self, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (Self(Arc::new(tx)), rx)
    }

    /// Marks the reader ready.
    pub fn ready(&self) {
        self.0.send_replace(true);
    }

    /// Marks the reader not subscribed (the scheduler does when a reader fails, until its
    /// restart subscribes again).
    pub fn unready(&self) {
        self.0.send_replace(false);
    }

    /// Whether the reader said it is ready.
    pub fn is_ready(&self) -> bool {
        *self.0.borrow()
    }
}

/// What a reader gets besides its task and handler.
#[derive(Clone, Debug)]
pub struct ReadContext {
    /// When to stop.
    pub stop: StopSignal,
    /// Whether to take anything new from the broker now.
    pub pause: crate::PauseSwitch,
    /// To call once subscribed.
    pub ready: ReadySignal,
    /// Counters to update.
    pub stats: Arc<TaskStats>,
    /// Where the runner sends a failed delivery that no middleware of the handler's chain
    /// dead-lettered: the scheduler's default dead letter, if it has one. The runner calls
    /// it only on failure, so it costs the success path nothing.
    pub dead_letter: Option<crate::DeadLetter>,
    /// Set for a batch task: [`run_source`](crate::run_source) then hands deliveries to
    /// its batch handler, and the handler the reader was given is not called.
    pub batch: Option<crate::BatchSpec>,
}

impl ReadContext {
    /// A context that never stops and whose readiness nobody awaits, for running a
    /// reader by hand.
    pub fn detached() -> Self {
        Self {
            stop: StopSignal::never(),
            pause: crate::PauseSwitch::new(),
            ready: ReadySignal::new().0,
            stats: Arc::new(TaskStats::default()),
            dead_letter: None,
            batch: None,
        }
    }
}

/// Reads messages from a broker and runs a handler on them. Object-safe: a bus holds an
/// `Arc<dyn Reader>`.
#[async_trait]
pub trait Reader: Send + Sync {
    /// The driver's name, for errors and logs.
    fn driver(&self) -> &'static str;

    /// Whether the connection to the broker is up right now, where the driver can tell
    /// without asking the broker; `None` where it cannot (its readers then fail, and so
    /// turn unready, when the broker goes away). Readiness probes read it through
    /// [`Bus::health`](crate::Bus::health).
    fn connected(&self) -> Option<bool> {
        None
    }

    /// Subscribes as `task` says and hands back the subscription's deliveries; core runs
    /// the handlers over them ([`Reader::read`]). Returns once subscribed: messages
    /// published from then on reach the source. A driver that is subscribed only later
    /// (a log consumer waiting for its partitions) keeps a clone of `ready`, calls it
    /// then, and returns a source whose [`Source::announces_ready`] is true; for every
    /// other source, core marks the reader ready as soon as this returns.
    async fn open(&self, task: &ReadTask, ready: &ReadySignal) -> Result<Box<dyn Source>>;

    /// Subscribes ([`Reader::open`]), marks the reader ready, then delivers messages to
    /// `handler` until `ctx.stop` fires, settling each by the handler's result, and closes
    /// the source ([`run_source`](crate::run_source)). Returns an error when the
    /// subscription breaks. The scheduler restarts a reader that returned before a stop,
    /// with an error or without: only a stop ends a subscription.
    ///
    /// Drivers implement [`Reader::open`] and leave this as it is, so the loop, the
    /// readiness and the shutdown are the same on every broker; a wrapper (a recording
    /// test kit) overrides it to change the handler and calls the inner reader's.
    async fn read(&self, task: ReadTask, handler: TaskHandler, ctx: ReadContext) -> Result<()> {
        let mut source = self.open(&task, &ctx.ready).await?;
        if !source.announces_ready() {
            ctx.ready.ready();
        }
        handler.run(source.as_mut(), &task, &ctx).await
    }
}

/// The most deliveries a [`Source`] hands out in one [`Source::next_batch`], however
/// large the `max` it is given: what is left waits in the broker client's buffer for the
/// next call.
///
/// A batch's deliveries are all made before its first handler runs, so a batch of a
/// thousand, which a reader with a large prefetch took when catching up, outgrew the
/// caches: a Kafka reader with a prefetch of 8,192 read at 0.76-0.84M records a second
/// and 1.55-1.95 CPU µs a record, and at 0.88-0.93M and 1.40-1.60 µs with this bound
/// (`BENCHMARKS.md`, session 40). The runner still passes the prefetch as `max`, since
/// a source may size the broker's flow by it (JetStream's pull requests); the bound is
/// on what a call hands out. Sources that read whole fetches (StreamBus) keep the
/// records and make deliveries only of what they hand out.
pub const MOST_A_FETCH: usize = 256;

/// A driver's stream of deliveries, run by [`run_source`](crate::run_source).
#[async_trait]
pub trait Source: Send {
    /// Appends up to `max` deliveries to `batch`, and no more than [`MOST_A_FETCH`],
    /// waiting until at least one is there, and returns how many it appended; 0 means
    /// the source has ended (the broker closed). The runner passes the same `batch` every
    /// time, emptied, so a source allocates no vector per fetch (the shape of tokio's
    /// `recv_many`).
    ///
    /// Must be cancel-safe: a future dropped before it completes loses no delivery. What
    /// it appended before being dropped stays in `batch`, and the runner releases it.
    async fn next_batch(&mut self, batch: &mut Vec<Incoming>, max: usize) -> Result<usize>;

    /// [`Source::next_batch`] as a poll, for a source that can wait by registering the
    /// waker of `cx`: `None` (the default) says it cannot, and the runner awaits
    /// `next_batch` instead. A source that polls spares the runner a boxed future per
    /// fetch, which a reader that keeps up with its publisher pays per message. Must
    /// be cancel-safe in the same way: what it appended stays in `batch`.
    fn poll_next_batch(
        &mut self,
        cx: &mut std::task::Context<'_>,
        batch: &mut Vec<Incoming>,
        max: usize,
    ) -> Option<std::task::Poll<Result<usize>>> {
        let _ = (cx, batch, max);
        None
    }

    /// Ends the subscription, after the runner settled what it could.
    async fn close(&mut self) -> Result<()>;

    /// Whether the source calls the reader's [`ReadySignal`] itself, later than
    /// [`Reader::open`] returns (a Kafka consumer is subscribed only once the group gave
    /// it partitions). The default is false: core marks the reader ready at the open.
    fn announces_ready(&self) -> bool {
        false
    }
}
