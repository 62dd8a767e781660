//! The broker-restart scenario every network driver runs against a broker of its own.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewater_core::testing::Recorder;
use tidewater_core::{
    handler_fn, Delivery, Driver, EventRegistry, HandlerError, Health, Message, MessageId, ReadTask,
    SubscriberScheduler,
};

/// Messages in a restart run.
pub const TOTAL: usize = 10_000;
const BATCH: usize = 100;
/// How long a write may still take once the broker is back: a write in flight across the
/// restart ends within this, with success or an error. A client whose receipts each time
/// out from their first poll, waited for one after the other, took a timeout a message
/// (200 s for a JetStream batch of 100 with a 2 s timeout).
pub const WRITE_AFTER_RESTART: Duration = Duration::from_secs(60);

/// What a restart run saw.
#[derive(Clone, Debug)]
pub struct RestartReport {
    /// Deliveries, duplicates included.
    pub deliveries: usize,
    /// Writes that failed with a retryable error and were written again.
    pub write_retries: usize,
    /// How often the scheduler restarted the reader.
    pub reader_restarts: u64,
}

/// Writes [`TOTAL`] keyed messages in writes of 100 to the topic `fixture` prepares, while
/// its read task reads them; once a third has arrived, restarts the broker (on the same
/// storage) while writing goes on. A write that fails with a retryable error is written
/// again, as a service would (at least once). Then waits up to the fixture's patience
/// for every message to arrive at least once, stops the reader, and panics if one is
/// missing, the reader did not stop cleanly, or a write went on for longer than
/// [`WRITE_AFTER_RESTART`] once the broker was back.
pub async fn broker_restart_loses_nothing(fixture: &dyn RestartFixture) -> RestartReport {
    let task = fixture.prepare("restart").await;
    let (writer, reader, patience) = (fixture.driver().writer(), fixture.driver().reader(), fixture.patience());
    let topic = task.topic.clone();
    let received = Recorder::new();
    let mut scheduler = SubscriberScheduler::new(reader, EventRegistry::new());
    scheduler.add(task, Arc::new(received.clone()));
    scheduler.start().await.expect("subscribe before the run");

    let written = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (written, retries, topic) = (Arc::clone(&written), Arc::clone(&retries), topic.clone());
        tokio::spawn(async move {
            // When each write began and ended.
            let mut writes = Vec::new();
            for start in (0..TOTAL).step_by(BATCH) {
                let batch = keyed(&topic, start..start + BATCH);
                loop {
                    let began = Instant::now();
                    let outcome = writer.write(batch.clone()).await;
                    writes.push((began, Instant::now()));
                    match outcome {
                        Ok(()) => break,
                        Err(err) if err.is_retryable() => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            // A back-off before writing again, not a wait for an event.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(err) => panic!("write failed for good: {err}"),
                    }
                }
                written.fetch_add(BATCH, Ordering::Relaxed);
            }
            writes
        })
    };

    received.wait_for(TOTAL / 3, patience).await.expect("a third consumed before the restart");
    println!("restarting the broker after {} written, {} received", written.load(Ordering::Relaxed), received.len());
    fixture.restart().await;
    let back = Instant::now();

    let writes = producer.await.expect("the writing task");
    let longest = writes.iter().map(|&(began, ended)| ended.saturating_duration_since(began.max(back))).max();
    let longest = longest.unwrap_or_default();
    assert!(
        longest <= WRITE_AFTER_RESTART,
        "a write went on for {longest:?} after the broker was back, more than {WRITE_AFTER_RESTART:?}"
    );
    let report = finish(&received, scheduler, TOTAL, patience, retries.load(Ordering::Relaxed)).await;
    println!(
        "broker restart: {TOTAL} messages, {} deliveries ({} duplicates), {} write retries, {} reader restarts, \
         the longest write {longest:?} after the broker was back",
        report.deliveries,
        report.deliveries - TOTAL,
        report.write_retries,
        report.reader_restarts
    );
    fixture.after_run("restart").await;
    report
}

/// Messages `m{i}` for `i` in `range`, keyed over 32 keys.
fn keyed(topic: &str, range: std::ops::Range<usize>) -> Vec<Message> {
    range
        .map(|i| Message::new(topic, format!("payload {i}")).with_id(format!("m{i}")).with_key(format!("k{}", i % 32)))
        .collect()
}

/// Waits up to `patience` until every one of `m0`..`m{total-1}` arrived at least once
/// (panicking with how many did), then stops the scheduler, which must stop cleanly.
async fn finish(
    received: &Recorder,
    mut scheduler: SubscriberScheduler,
    total: usize,
    patience: Duration,
    write_retries: usize,
) -> RestartReport {
    let expected: HashSet<MessageId> = (0..total).map(|i| MessageId::from(format!("m{i}"))).collect();
    received
        .wait_until(
            |seen| {
                let ids: HashSet<&str> = seen.iter().map(|d| d.message().id.as_str()).collect();
                expected.iter().all(|id| ids.contains(id.as_str()))
            },
            patience,
        )
        .await
        .unwrap_or_else(|e| {
            let ids: HashSet<MessageId> = received.deliveries().iter().map(|d| d.message().id.clone()).collect();
            panic!("{e}: {} of {total} distinct messages arrived", ids.len())
        });
    let stopped = scheduler.shutdown(Duration::from_secs(10)).await;
    assert!(stopped.is_clean(), "{stopped:?}");
    RestartReport { deliveries: received.len(), write_retries, reader_restarts: stopped.tasks[0].restarts }
}

/// Messages in a lagging run: all written before the restart.
pub const LAGGING_TOTAL: usize = 8_000;
/// How long the lagging run's handler works on each message.
pub const LAGGING_WORK: Duration = Duration::from_millis(10);

/// A consumer that lags behind: [`LAGGING_TOTAL`] keyed messages are written at once,
/// while a handler that takes [`LAGGING_WORK`] a message (with the task's concurrency)
/// works through them. Once a quarter is handled, with the rest still waiting in the
/// broker or fetched ahead, the fixture kills the broker and starts it again; once half
/// is, again. Every acknowledged message must then be handled at least once within the
/// fixture's patience: a reader whose consumer gave up during an outage has to be restarted, not
/// left waiting. The reader restarts are counted and printed.
pub async fn lagging_consumer_survives_restarts(fixture: &dyn RestartFixture) -> RestartReport {
    let task = fixture.prepare("lagging").await;
    let (writer, reader, patience) = (fixture.driver().writer(), fixture.driver().reader(), fixture.patience());
    let topic = task.topic.clone();
    let received = Recorder::new();
    let handler = {
        let received = received.clone();
        handler_fn(move |d: Delivery| {
            let received = received.clone();
            async move {
                // The work itself: the consumer is meant to fall behind.
                tokio::time::sleep(LAGGING_WORK).await;
                received.record(d);
                Ok::<_, HandlerError>(())
            }
        })
    };
    let mut scheduler = SubscriberScheduler::new(reader, EventRegistry::new());
    scheduler.add(task, Arc::new(handler));
    scheduler.start().await.expect("subscribe before the run");
    for start in (0..LAGGING_TOTAL).step_by(BATCH) {
        writer.write(keyed(&topic, start..start + BATCH)).await.expect("write before the restart");
    }
    for share in [4, 2] {
        received.wait_for(LAGGING_TOTAL / share, patience).await.expect("progress before a restart");
        println!("restarting the broker with {} of {LAGGING_TOTAL} handled", received.len());
        fixture.restart().await;
    }
    let report = finish(&received, scheduler, LAGGING_TOTAL, patience, 0).await;
    println!(
        "lagging consumer through two broker restarts: {LAGGING_TOTAL} messages, {} handled ({} duplicates), {} reader restarts",
        report.deliveries,
        report.deliveries - LAGGING_TOTAL,
        report.reader_restarts
    );
    report
}

/// Readiness follows the broker, for a reader with nothing to read: a subscribed reader
/// is ready and says it is connected; once the broker is killed, it says it is not
/// connected and is no longer ready, while its worker stays live; once the broker is
/// back, it is connected and ready again, and a message written then is handled.
///
/// Every network driver's reader can tell whether it reaches its broker
/// ([`Reader::connected`](tidewater_core::Reader::connected)). One that could not stayed
/// ready through an outage wherever its client reconnects on its own, and a readiness
/// probe or the `tidewater_connected` gauge saw nothing.
pub async fn health_follows_the_broker(fixture: &dyn RestartFixture) {
    let task = fixture.prepare("health").await;
    let (topic, patience) = (task.topic.clone(), fixture.patience());
    let seen = Recorder::new();
    let mut scheduler = SubscriberScheduler::new(fixture.driver().reader(), EventRegistry::new());
    scheduler.add(task, Arc::new(seen.clone()));
    scheduler.start().await.expect("subscribe");

    let health =
        health_until(&scheduler, |h| h.ready && h.connected == Some(true), "ready and connected", patience).await;
    assert!(health.live, "{health:?}");

    fixture.kill().await;
    let killed = tokio::time::Instant::now();
    let health =
        health_until(&scheduler, |h| !h.ready && h.connected == Some(false), "unready with the broker gone", patience)
            .await;
    assert!(health.live, "the workers run on while the broker is away: {health:?}");
    let unready_after = killed.elapsed();

    fixture.start().await;
    let started = tokio::time::Instant::now();
    health_until(&scheduler, |h| h.ready && h.connected == Some(true), "ready again once the broker is back", patience)
        .await;
    println!(
        "health: unready {unready_after:.1?} after the kill, ready again {:.1?} after the broker was",
        started.elapsed()
    );
    let writer = fixture.driver().writer();
    let deadline = tokio::time::Instant::now() + patience;
    let message = Message::new(&topic, "after the restart").with_id("after");
    loop {
        match writer.write_one(message.clone()).await {
            Ok(()) => break,
            // The writer's client may still be reconnecting.
            Err(err) if err.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(err) => panic!("write after the restart: {err}"),
        }
    }
    seen.wait_for(1, patience).await.expect("the message written after the restart is handled");
    assert!(seen.deliveries().iter().any(|d| d.message().id.as_str() == "after"));
    let stopped = scheduler.shutdown(Duration::from_secs(10)).await;
    assert!(stopped.is_clean(), "{stopped:?}");
}

/// Asks `scheduler` for its health every 50 ms, as a probe would (the state changes with
/// no event to wait on), until `want` holds; panics with the last answer after
/// `patience`.
async fn health_until(
    scheduler: &SubscriberScheduler,
    want: fn(&Health) -> bool,
    what: &str,
    patience: Duration,
) -> Health {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let health = scheduler.health();
        if want(&health) {
            return health;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} within {patience:?}: {health:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A driver on a broker of the test's own, which the restart cases kill and start
/// again: what a driver's tests give [`restart_tests!`](crate::restart_tests) so that
/// every driver runs the same restart cases.
#[async_trait::async_trait]
pub trait RestartFixture: Send + Sync + 'static {
    /// The driver, connected to the broker.
    fn driver(&self) -> &dyn Driver;

    /// Makes what the case named `name` reads ready on the broker and returns the read
    /// task: a group, concurrency 4. The default creates the topic, three partitions
    /// where the broker has them, through the driver's [`Admin`](tidewater_core::Admin).
    async fn prepare(&self, name: &str) -> ReadTask {
        let admin = self.driver().admin();
        admin.create_topic(name, 3).await.unwrap_or_else(|e| panic!("create the topic {name:?}: {e}"));
        ReadTask::new(name).with_group(name).with_concurrency(4)
    }

    /// Stops the broker as a crash would (SIGKILL where it is a process of its own);
    /// [`RestartFixture::start`] starts it again.
    async fn kill(&self);

    /// Starts the broker [`RestartFixture::kill`] stopped, on the same data and address,
    /// and returns once it is ready.
    async fn start(&self);

    /// Kills the broker and starts it again. The default calls the two in turn.
    async fn restart(&self) {
        self.kill().await;
        self.start().await;
    }

    /// How long a case waits for every message. Default 240 s: a JVM broker under the
    /// whole test run can take minutes to come back.
    fn patience(&self) -> Duration {
        Duration::from_secs(240)
    }

    /// Checks what the broker saw, after the first case's run (default: nothing).
    async fn after_run(&self, name: &str) {
        let _ = name;
    }
}

/// The fixture of a driver whose broker is a process the test kit started: a restart
/// kills it (SIGKILL) and starts it again on the same ports and data.
pub struct ProcessRestart<D, P> {
    driver: D,
    process: std::sync::Mutex<P>,
}

impl<D, P> ProcessRestart<D, P> {
    /// `driver`, connected to the broker `process`.
    pub fn new(driver: D, process: P) -> Self {
        Self { driver, process: std::sync::Mutex::new(process) }
    }
}

#[async_trait::async_trait]
impl<D, P> RestartFixture for ProcessRestart<D, P>
where
    D: Driver + Send + Sync + 'static,
    P: tidewater_testkit::Restart,
{
    fn driver(&self) -> &dyn Driver {
        &self.driver
    }

    async fn kill(&self) {
        tokio::task::block_in_place(|| self.process.lock().unwrap().kill());
    }

    /// Blocks this thread while the broker starts (a JVM takes seconds); the writer and
    /// reader go on meanwhile on the runtime's other thread.
    async fn start(&self) {
        tokio::task::block_in_place(|| self.process.lock().unwrap().restart());
    }
}

/// The restart cases as tests, on the [`RestartFixture`] that `$make().await`
/// gives (a broker of the test's own each time):
///
/// ```text
/// async fn restartable() -> ProcessRestart<Kafka, KafkaBroker> {
///     let broker = KafkaBroker::start();
///     let kafka = Kafka::connect(KafkaConfig::new(broker.brokers())).await.unwrap();
///     ProcessRestart::new(kafka, broker)
/// }
/// tidewater_conformance::restart_tests!(restartable);
/// ```
#[macro_export]
macro_rules! restart_tests {
    ($make:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn broker_restart_loses_nothing() {
            let fixture = $make().await;
            $crate::restart::broker_restart_loses_nothing(&fixture).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_lagging_consumer_survives_two_restarts() {
            let fixture = $make().await;
            $crate::restart::lagging_consumer_survives_restarts(&fixture).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn health_follows_the_broker() {
            let fixture = $make().await;
            $crate::restart::health_follows_the_broker(&fixture).await;
        }
    };
}
