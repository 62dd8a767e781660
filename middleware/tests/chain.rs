//! Each middleware at work on the in-memory driver.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tidewater_core::{
    handler_fn, wire, Delivery, Driver, Error, ErrorKind, EventRegistry, HandlerError, Message, MessageId, Publisher,
    Result, SubscriberScheduler, TopicName, Writer,
};
use tidewater_memory::MemoryBroker;
use tidewater_middleware::*;

const WAIT: Duration = Duration::from_secs(10);

fn scheduler(broker: &MemoryBroker) -> SubscriberScheduler {
    SubscriberScheduler::new(broker.reader(), EventRegistry::new())
}

/// A retry of `attempts` calls in all, a millisecond apart, for tests that do not wait.
fn quick_retry(attempts: u32) -> Retry {
    Retry::new().max_attempts(attempts).min_delay(Duration::from_millis(1)).without_jitter()
}

async fn publish(broker: &MemoryBroker, message: Message) {
    Driver::writer(broker).write(vec![message]).await.unwrap();
}

fn counting(calls: &Arc<AtomicU32>, result: fn(u32) -> Result<(), HandlerError>) -> impl tidewater_core::Handler {
    let calls = Arc::clone(calls);
    handler_fn(move |_d: Delivery| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move { result(n) }
    })
}

/// A writer that fails while `failing` is set.
struct FlakyWriter {
    inner: Arc<dyn Writer>,
    failing: Arc<AtomicBool>,
    attempts: Arc<AtomicU32>,
}

#[async_trait]
impl Writer for FlakyWriter {
    fn driver(&self) -> &'static str {
        "flaky"
    }
    async fn write(&self, batch: Vec<Message>) -> Result<()> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::Connection, "DLQ broker unreachable"));
        }
        self.inner.write(batch).await
    }
}

#[tokio::test]
async fn poison_message_lands_in_dlq_with_every_header_and_original_is_settled() {
    let broker = MemoryBroker::new();
    let mut s = scheduler(&broker);
    s.with_middleware(DeadLetter::new(broker.writer()));
    let calls = Arc::new(AtomicU32::new(0));
    s.subscribe("orders", counting(&calls, |_| Err(HandlerError::permanent("order total is negative"))))
        .group("billing");
    s.start().await.unwrap();
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    let created = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let poison = Message::new("orders", "{}").with_id("m-1").with_key("cust-7").with_header("tenant", "acme");
    publish(&broker, poison.with_timestamp(created)).await;

    let dead = broker.wait_published("orders.dlq", 1, WAIT).await.unwrap();
    broker.wait_acked("orders", "billing", 1, WAIT).await.expect("original settled");
    let report = s.shutdown(WAIT).await;
    let d = &dead[0];
    let h = |name| d.headers.get(name).unwrap_or_else(|| panic!("header {name} missing: {:?}", d.headers));
    assert_eq!(d.id, "m-1");
    assert_eq!(d.key_str(), Some("cust-7"));
    assert_eq!(&d.payload[..], b"{}");
    assert_eq!(h("tenant"), "acme");
    assert_eq!(h(dlq_headers::ORIGINAL_TOPIC), "orders");
    assert_eq!(h(dlq_headers::ORIGINAL_KEY), "cust-7");
    assert_eq!(h(dlq_headers::ERROR), "order total is negative");
    assert_eq!(h(dlq_headers::RECOVERY), "permanent");
    assert_eq!(h(dlq_headers::ATTEMPTS), "1");
    assert_eq!(h(dlq_headers::GROUP), "billing");
    let first: u128 = h(dlq_headers::FIRST_FAILURE).parse().unwrap();
    let last: u128 = h(dlq_headers::LAST_FAILURE).parse().unwrap();
    assert!(before <= first && first <= last, "{before} <= {first} <= {last}");
    assert_eq!(h(dlq_headers::ORIGINAL_TIMESTAMP), "1700000000123");
    let stamped = d.timestamp.duration_since(UNIX_EPOCH).unwrap().as_millis();
    assert!(before <= stamped, "stamped when written ({stamped}), not when created, which retention would expire");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a permanent failure is not retried");
    assert_eq!(report.tasks[0].dead_lettered, 1, "{report:?}");
    assert_eq!(report.tasks[0].acked, 0, "a dead letter is not counted as processed: {report:?}");
    assert_eq!(report.tasks[0].nacked, 0);
}

/// Starts `s`, publishes one message to `topic`, and stops `s` once its dead letter is
/// written and the original settled for `group`: the dead letters, and the report.
async fn dead_lettered(
    broker: &MemoryBroker,
    mut s: SubscriberScheduler,
    topic: &str,
    group: &str,
) -> (Vec<Message>, tidewater_core::ShutdownReport) {
    s.start().await.unwrap();
    publish(broker, Message::new(topic, "x").with_id(format!("{topic}-1"))).await;
    let dead = broker.wait_published(&format!("{topic}.dlq"), 1, WAIT).await.unwrap();
    broker.wait_acked(topic, group, 1, WAIT).await.unwrap();
    (dead, s.shutdown(WAIT).await)
}

#[tokio::test]
async fn failing_dlq_write_leaves_original_unsettled_and_redelivered() {
    let broker = MemoryBroker::new();
    let failing = Arc::new(AtomicBool::new(true));
    let dlq_attempts = Arc::new(AtomicU32::new(0));
    let dlq = Arc::new(FlakyWriter {
        inner: Driver::writer(&broker),
        failing: Arc::clone(&failing),
        attempts: Arc::clone(&dlq_attempts),
    });
    let mut s = scheduler(&broker);
    s.with_middleware(DeadLetter::new(dlq));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let flag = Arc::clone(&failing);
    s.subscribe(
        "orders",
        handler_fn(move |d: Delivery| {
            log.lock().unwrap().push(d.attempt());
            // Once the message came back twice, the DLQ broker recovers.
            if d.attempt() >= 3 {
                flag.store(false, Ordering::SeqCst);
            }
            async { Err::<(), _>(HandlerError::permanent("bad")) }
        }),
    )
    .group("billing")
    .nack_delay(Some(Duration::from_millis(5)));
    let (dead, report) = dead_lettered(&broker, s, "orders", "billing").await;
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3], "redelivered until the DLQ write worked");
    assert_eq!(dlq_attempts.load(Ordering::SeqCst), 3);
    assert_eq!(report.tasks[0].nacked, 2, "the two failed DLQ writes nacked the original");
    assert_eq!(report.tasks[0].dead_lettered, 1);
    assert_eq!(dead[0].headers.get(dlq_headers::ATTEMPTS), Some("3"), "calls over all deliveries");
}

/// The default store is called directly and the others through the trait, so the
/// scenario runs over both.
async fn duplicate_is_processed_once_per_group_and_failures_are_not_committed(dedup: Deduplicate) {
    let broker = MemoryBroker::new();
    let mut s = scheduler(&broker);
    s.with_middleware(dedup);
    let calls = Arc::new(AtomicU32::new(0));
    // The first call fails, so that message must be processed when it comes again.
    s.subscribe("orders", counting(&calls, |n| if n == 1 { Err(HandlerError::transient("db down")) } else { Ok(()) }))
        .group("billing")
        .nack_delay(Some(Duration::from_millis(5)));
    let other = Arc::new(AtomicU32::new(0));
    s.subscribe("orders", counting(&other, |_| Ok(()))).group("shipping");
    s.start().await.unwrap();
    for _ in 0..3 {
        publish(&broker, Message::new("orders", "x").with_id("same-id")).await;
    }
    broker.wait_acked("orders", "billing", 3, WAIT).await.unwrap();
    broker.wait_acked("orders", "shipping", 3, WAIT).await.unwrap();
    s.shutdown(WAIT).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one failed call, then one success; the rest skipped");
    assert_eq!(other.load(Ordering::SeqCst), 1, "the key includes the group: shipping processes it once too");
}

#[tokio::test]
async fn duplicates_are_skipped_with_the_default_store() {
    duplicate_is_processed_once_per_group_and_failures_are_not_committed(Deduplicate::in_memory()).await;
}

#[tokio::test]
async fn duplicates_are_skipped_with_a_store_behind_the_trait() {
    let moka = Deduplicate::new(MokaDedupStorage::default());
    duplicate_is_processed_once_per_group_and_failures_are_not_committed(moka).await;
}

#[tokio::test]
async fn retry_counts_attempts_and_stops_at_the_limit() {
    let broker = MemoryBroker::new();
    let mut s = scheduler(&broker);
    s.with_middleware(DeadLetter::new(broker.writer())).with_middleware(quick_retry(4));
    let calls = Arc::new(AtomicU32::new(0));
    s.subscribe("jobs", counting(&calls, |_| Err(HandlerError::transient("still down")))).group("g");
    let recovered = Arc::new(AtomicU32::new(0));
    s.subscribe("flaky", counting(&recovered, |n| if n < 3 { Err(HandlerError::transient("blip")) } else { Ok(()) }))
        .group("g");
    s.start().await.unwrap();
    publish(&broker, Message::new("jobs", "x").with_id("j-1")).await;
    publish(&broker, Message::new("flaky", "x").with_id("f-1")).await;

    let dead = broker.wait_published("jobs.dlq", 1, WAIT).await.unwrap();
    broker.wait_acked("flaky", "g", 1, WAIT).await.unwrap();
    s.shutdown(WAIT).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4, "4 attempts, then stop");
    assert_eq!(dead[0].headers.get(dlq_headers::ATTEMPTS), Some("4"));
    assert_eq!(dead[0].headers.get(dlq_headers::RECOVERY), Some("transient"));
    assert_eq!(recovered.load(Ordering::SeqCst), 3, "succeeds on the third attempt");
    assert!(broker.published("flaky.dlq").is_empty());
}

#[tokio::test]
async fn broker_redelivery_then_dlq_with_max_deliveries() {
    let broker = MemoryBroker::new();
    let mut s = scheduler(&broker);
    s.with_middleware(DeadLetter::new(broker.writer()).max_deliveries(3));
    let calls = Arc::new(AtomicU32::new(0));
    s.subscribe("jobs", counting(&calls, |_| Err(HandlerError::transient("down"))))
        .group("g")
        .nack_delay(Some(Duration::from_millis(5)));
    let (dead, report) = dead_lettered(&broker, s, "jobs", "g").await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(report.tasks[0].nacked, 2);
    assert_eq!(dead[0].headers.get(dlq_headers::ATTEMPTS), Some("3"));
}

#[tokio::test]
async fn recover_permanent_dead_letters_a_panic_at_once() {
    let broker = MemoryBroker::new();
    let mut s = scheduler(&broker);
    s.with_middleware(DeadLetter::new(broker.writer()).max_deliveries(5)).with_middleware(Recover::permanent());
    let calls = Arc::new(AtomicU32::new(0));
    s.subscribe("t", counting(&calls, |n| if n == 1 { panic!("boom on the first message") } else { Ok(()) }))
        .group("g");
    s.start().await.unwrap();
    publish(&broker, Message::new("t", "1").with_key("k")).await;
    publish(&broker, Message::new("t", "2").with_key("k")).await;
    broker.wait_acked("t", "g", 2, WAIT).await.unwrap();
    let report = s.shutdown(WAIT).await;
    let dead = broker.published("t.dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].headers.get(dlq_headers::ERROR), Some("handler panicked: boom on the first message"));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the second message was handled by the same worker");
    assert_eq!(report.tasks[0].panicked, 0, "the middleware caught it before the runner had to");
    assert_eq!(report.tasks[0].restarts, 0);
}

#[tokio::test]
async fn timeout_fires() {
    let broker = MemoryBroker::new();
    let mut s = scheduler(&broker);
    s.with_middleware(DeadLetter::new(broker.writer())).with_middleware(Timeout(Duration::from_millis(50)));
    s.subscribe("t", handler_fn(|_d: Delivery| async { std::future::pending::<Result<(), HandlerError>>().await }))
        .group("g");
    s.start().await.unwrap();
    publish(&broker, Message::new("t", "slow")).await;
    let dead = broker.wait_published("t.dlq", 1, WAIT).await.unwrap();
    s.shutdown(WAIT).await;
    assert_eq!(dead[0].headers.get(dlq_headers::ERROR), Some("handler timed out after 50ms"));
}

#[tokio::test]
async fn correlation_id_flows_from_consumed_to_published_messages() {
    let broker = MemoryBroker::new();
    let publisher = Publisher::new(broker.writer(), EventRegistry::new());
    let mut s = scheduler(&broker);
    s.with_middleware(CorrelationId);
    s.subscribe(
        "in",
        handler_fn(move |d: Delivery| {
            let publisher = publisher.clone();
            async move {
                let reply = Message::new("out", d.message().payload.clone());
                publisher.publish_message(reply).await?;
                Ok(())
            }
        }),
    )
    .group("g");
    s.start().await.unwrap();
    publish(&broker, Message::new("in", "a").with_id("first").with_header(wire::CORRELATION_ID, "req-42")).await;
    publish(&broker, Message::new("in", "b").with_id("second")).await;
    let out = broker.wait_published("out", 2, WAIT).await.unwrap();
    s.shutdown(WAIT).await;
    let by_payload = |p: &[u8]| {
        out.iter().find(|m| &m.payload[..] == p).unwrap().headers.get(wire::CORRELATION_ID).map(str::to_owned)
    };
    assert_eq!(by_payload(b"a").as_deref(), Some("req-42"), "carried over from the header");
    assert_eq!(by_payload(b"b").as_deref(), Some("second"), "the consumed message's id starts a chain");
}

#[tokio::test]
async fn redrive_returns_dead_letters_to_their_topic() {
    let broker = MemoryBroker::new();
    let mut s = scheduler(&broker);
    s.subscribe("orders", handler_fn(|_d: Delivery| async { Err::<(), _>(HandlerError::permanent("bug")) }))
        .group("billing")
        .middleware(DeadLetter::new(broker.writer()));
    s.start().await.unwrap();
    let created = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let poison = Message::new("orders", "p").with_id("m-9").with_key("k").with_header("tenant", "acme");
    publish(&broker, poison.with_timestamp(created)).await;
    let dead = broker.wait_published("orders.dlq", 1, WAIT).await.unwrap();
    s.shutdown(WAIT).await;

    let redriven_from = SystemTime::now();

    let mut s = scheduler(&broker);
    s.subscribe("orders.dlq", Redrive::new(broker.writer())).group("redrive");
    s.start().await.unwrap();
    let orders = broker.wait_published("orders", 2, WAIT).await.unwrap();
    s.shutdown(WAIT).await;
    let again = &orders[1];
    assert_eq!(again.id, "m-9");
    assert_eq!(again.key_str(), Some("k"));
    assert_eq!(again.headers.get("tenant"), Some("acme"));
    assert!(dlq_headers::ALL.iter().all(|h| !again.headers.contains(h)), "{:?}", again.headers);
    let failed_at = dead[0].headers.get(dlq_headers::LAST_FAILURE);
    assert!(failed_at.is_some());
    assert_eq!(again.headers.get(dlq_headers::REDRIVEN), failed_at, "which failure it was redriven from");
    assert!(again.timestamp >= redriven_from, "stamped when redriven, not in 2023: {:?}", again.timestamp);
}

/// A dead-lettered message was not processed, so `Deduplicate` does not remember it, in
/// whichever order the two are chained: outside the dead letter, it once took the dead
/// letter's `Ok` for a success and skipped the redriven message as a duplicate.
#[tokio::test]
async fn a_redriven_message_is_not_a_duplicate_of_its_dead_letter() {
    redriven_after_dedup_outside_the_dead_letter(Deduplicate::in_memory()).await;
    redriven_after_dedup_outside_the_dead_letter(Deduplicate::new(MokaDedupStorage::default())).await;
}

async fn redriven_after_dedup_outside_the_dead_letter(dedup: Deduplicate) {
    let broker = MemoryBroker::new();
    let mut s = scheduler(&broker);
    s.with_middleware(dedup);
    s.with_middleware(DeadLetter::new(broker.writer()));
    let calls = Arc::new(AtomicU32::new(0));
    s.subscribe("orders", counting(&calls, |n| if n == 1 { Err(HandlerError::permanent("bug")) } else { Ok(()) }))
        .group("billing");
    s.start().await.unwrap();
    publish(&broker, Message::new("orders", "p").with_id("m-4")).await;
    broker.wait_published("orders.dlq", 1, WAIT).await.unwrap();

    let mut redrive = scheduler(&broker);
    redrive.subscribe("orders.dlq", Redrive::new(broker.writer())).group("redrive");
    redrive.start().await.unwrap();
    broker.wait_acked("orders", "billing", 2, WAIT).await.expect("the redriven message settled");
    redrive.shutdown(WAIT).await;
    let report = s.shutdown(WAIT).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the redriven message reached the handler");
    assert_eq!(report.tasks[0].acked, 1, "{report:?}");
}

/// Before, a dead letter whose write was refused (here its original topic's name is not
/// valid) failed transiently, so it came back after every nack delay, for good.
#[tokio::test]
async fn a_dead_letter_that_cannot_be_written_back_fails_permanently() {
    use tidewater_core::Handler as _;
    let broker = MemoryBroker::new();
    let dead = Message::new("orders.dlq", "p").with_id("m-1").with_header(dlq_headers::ORIGINAL_TOPIC, "no spaces");
    let stray = Message::new("orders.dlq", "q").with_id("m-2");
    let recorder = tidewater_core::testing::Recorder::new();
    let mut s = scheduler(&broker);
    s.subscribe("orders.dlq", recorder.clone()).group("look");
    s.start().await.unwrap();
    publish(&broker, dead).await;
    publish(&broker, stray).await;
    let deliveries = recorder.wait_for(2, WAIT).await.unwrap();
    s.shutdown(WAIT).await;

    let redrive = Redrive::new(broker.writer());
    for delivery in deliveries.clone() {
        let err = redrive.handle(delivery).await.unwrap_err();
        assert!(!err.is_transient(), "{err}");
    }
    let strict = MemoryBroker::with_config(tidewater_memory::MemoryConfig::default().auto_create(false));
    let gone = Message::new("orders.dlq", "p").with_id("m-3").with_header(dlq_headers::ORIGINAL_TOPIC, "orders");
    let err = Redrive::new(strict.writer()).handle(delivered(gone)).await.unwrap_err();
    assert!(!err.is_transient(), "its topic is gone: {err}");

    // (A valid dead letter: one with an invalid name is refused before any write.)
    let closed = broker.writer();
    closed.close().await.unwrap();
    let valid = Message::new("orders.dlq", "p").with_id("m-4").with_header(dlq_headers::ORIGINAL_TOPIC, "orders");
    let err = Redrive::new(closed).handle(delivered(valid)).await.unwrap_err();
    assert!(err.is_transient(), "a closed writer is the service stopping, no fault of the dead letter: {err}");
}

/// `message` as a broker would hand it out the first time.
fn delivered(message: Message) -> Delivery {
    Delivery::new(message, 1, tidewater_core::Position::Queue { partition: None, sequence: None }, None)
}

/// A writer that refuses every write with one kind of error.
struct Refusing(ErrorKind);

#[async_trait]
impl Writer for Refusing {
    fn driver(&self) -> &'static str {
        "refusing"
    }
    async fn write(&self, _batch: Vec<Message>) -> Result<()> {
        Err(Error::new(self.0, "refused"))
    }
}

/// A refusal that is the writer's or the broker's (not authorized, misconfigured, the
/// broker away) would refuse every dead letter alike: each stays where it is, rather
/// than moving on to the dead-letter topic's own dead letters, as an outbox relay keeps
/// its rows.
#[tokio::test]
async fn a_dead_letter_refused_for_the_writers_sake_fails_transiently() {
    use tidewater_core::Handler as _;
    let dead = Message::new("orders.dlq", "p").with_id("m-1").with_header(dlq_headers::ORIGINAL_TOPIC, "orders");
    let delivery = delivered(dead);
    for kind in [
        ErrorKind::BrokerPermanent,
        ErrorKind::Config,
        ErrorKind::Unsupported,
        ErrorKind::Connection,
        ErrorKind::Timeout,
        ErrorKind::Closed,
    ] {
        let err = Redrive::new(Arc::new(Refusing(kind))).handle(delivery.clone()).await.unwrap_err();
        assert!(err.is_transient(), "{kind:?}: {err}");
    }
    for kind in [ErrorKind::TooLarge, ErrorKind::InvalidName, ErrorKind::InvalidInput, ErrorKind::UnknownTopic] {
        let err = Redrive::new(Arc::new(Refusing(kind))).handle(delivery.clone()).await.unwrap_err();
        assert!(!err.is_transient(), "{kind:?}: {err}");
    }
}

#[tokio::test]
async fn interceptors_and_metrics_see_every_send_and_handle() {
    #[derive(Default)]
    struct Seen {
        acked: Mutex<Vec<(MessageId, TopicName)>>,
        sent: AtomicU32,
        handled: Mutex<Vec<Outcome>>,
    }
    struct Hook(Arc<Seen>);
    impl PublishInterceptor for Hook {
        fn on_send(&self, m: &mut Message) {
            m.headers.insert("service", "billing");
        }
        fn on_acknowledgement(&self, sent: &[(MessageId, TopicName)], result: std::result::Result<(), &Error>) {
            assert!(result.is_ok());
            self.0.acked.lock().unwrap().extend_from_slice(sent);
        }
    }
    impl MetricsCollector for Hook {
        fn sent(&self, _t: &str, n: usize, _b: usize, _l: Duration, e: Option<&Error>) {
            assert!(e.is_none());
            self.0.sent.fetch_add(n as u32, Ordering::SeqCst);
        }
        fn handled(&self, _t: &str, _l: Duration, outcome: Outcome) {
            self.0.handled.lock().unwrap().push(outcome);
        }
    }
    let seen = Arc::new(Seen::default());
    let broker = MemoryBroker::new();
    let writer =
        InstrumentedWriter::new(broker.writer()).interceptor(Hook(Arc::clone(&seen))).metrics(Hook(Arc::clone(&seen)));
    let mut s = scheduler(&broker);
    s.with_middleware(Metrics::new(Hook(Arc::clone(&seen))));
    s.subscribe(
        "t",
        handler_fn(|d: Delivery| async move {
            if d.message().id == "bad" {
                Err(HandlerError::permanent("no"))
            } else {
                Ok(())
            }
        }),
    )
    .group("g")
    .middleware(DeadLetter::new(broker.writer()));
    s.start().await.unwrap();
    writer.write(vec![Message::new("t", "1").with_id("good"), Message::new("t", "2").with_id("bad")]).await.unwrap();
    broker.wait_acked("t", "g", 2, WAIT).await.unwrap();
    s.shutdown(WAIT).await;
    assert!(broker.published("t").iter().all(|m| m.headers.get("service") == Some("billing")));
    assert_eq!(*seen.acked.lock().unwrap(), vec![("good".into(), "t".into()), ("bad".into(), "t".into())]);
    assert_eq!(seen.sent.load(Ordering::SeqCst), 2);
    // Metrics is outside the task's DeadLetter, which settles the bad message: both are Ok there.
    assert_eq!(*seen.handled.lock().unwrap(), vec![Outcome::Ok, Outcome::Ok]);
}

#[tokio::test]
async fn a_panic_is_one_failed_attempt_that_retry_and_dead_letter_see() {
    let broker = MemoryBroker::new();
    let mut s = scheduler(&broker);
    s.with_middleware(DeadLetter::new(broker.writer())).with_middleware(quick_retry(3));
    let calls = Arc::new(AtomicU32::new(0));
    s.subscribe("t", counting(&calls, |n| panic!("boom {n}"))).group("g");
    s.start().await.unwrap();
    publish(&broker, Message::new("t", "1").with_id("p-1")).await;
    let dead = broker.wait_published("t.dlq", 1, WAIT).await.unwrap();
    broker.wait_acked("t", "g", 1, WAIT).await.unwrap();
    let report = s.shutdown(WAIT).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "Retry saw each panic as a failed attempt");
    assert_eq!(dead[0].headers.get(dlq_headers::ERROR), Some("handler panicked: boom 3"));
    assert_eq!(dead[0].headers.get(dlq_headers::ATTEMPTS), Some("3"));
    assert_eq!(dead[0].headers.get(dlq_headers::RECOVERY), Some("transient"));
    assert_eq!((report.tasks[0].dead_lettered, report.tasks[0].nacked), (1, 0), "{report:?}");
}

#[tokio::test]
async fn the_handler_sees_its_attempt_on_every_in_place_retry() {
    let broker = MemoryBroker::new();
    let mut s = scheduler(&broker);
    s.with_middleware(quick_retry(4));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    s.subscribe(
        "t",
        handler_fn(move |d: Delivery| {
            log.lock().unwrap().push((d.attempt(), d.deliveries()));
            let result = if d.attempt() < 3 { Err(HandlerError::transient("not yet")) } else { Ok(()) };
            async move { result }
        }),
    )
    .group("g");
    s.start().await.unwrap();
    publish(&broker, Message::new("t", "1")).await;
    broker.wait_acked("t", "g", 1, WAIT).await.unwrap();
    s.shutdown(WAIT).await;
    assert_eq!(*seen.lock().unwrap(), vec![(1, 1), (2, 1), (3, 1)], "attempt counts calls; deliveries the broker's");
}

#[tokio::test]
async fn a_dead_letter_too_large_for_the_broker_goes_without_its_payload() {
    let broker = MemoryBroker::with_config(tidewater_memory::MemoryConfig::default().max_message_bytes(2_000));
    let mut s = scheduler(&broker);
    s.with_middleware(DeadLetter::new(broker.writer()));
    let calls = Arc::new(AtomicU32::new(0));
    s.subscribe("t", counting(&calls, |_| Err(HandlerError::permanent("cannot parse")))).group("g");
    s.start().await.unwrap();
    // Fits alone; with the dead-letter headers it does not.
    let message = Message::new("t", vec![b'x'; 1_800]).with_id("big-1");
    assert!(message.encoded_len() <= 2_000);
    publish(&broker, message).await;
    let dead = broker.wait_published("t.dlq", 1, WAIT).await.unwrap();
    broker.wait_acked("t", "g", 1, WAIT).await.unwrap();
    let report = s.shutdown(WAIT).await;
    assert_eq!(dead[0].id, "big-1");
    assert!(dead[0].payload.is_empty());
    assert_eq!(dead[0].headers.get(dlq_headers::PAYLOAD_DROPPED), Some("1800"));
    assert!(dead[0].headers.get(dlq_headers::ORIGINAL_POSITION).unwrap().starts_with("partition "));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one call, then out of the stream");
    assert_eq!(report.tasks[0].dead_lettered, 1);

    // Written back, it would be an empty message under the original's id: before, a
    // redrive did just that.
    use tidewater_core::Handler as _;
    let err = Redrive::new(broker.writer()).handle(delivered(dead[0].clone())).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("was written without its payload of 1800 bytes"), "{err}");
    assert_eq!(broker.published("t").len(), 1, "nothing written back");
}

/// An error that quotes a whole response body made a dead letter larger than the broker
/// takes even without its payload; its message then came back after every nack delay,
/// for good. The error header keeps the error's beginning.
#[tokio::test]
async fn a_long_error_is_cut_in_its_dead_letter() {
    let broker = MemoryBroker::with_config(tidewater_memory::MemoryConfig::default().max_message_bytes(64 * 1024));
    let mut s = scheduler(&broker);
    s.with_middleware(DeadLetter::new(broker.writer()));
    let page = format!("gateway said: {}", "<p>é</p>".repeat(100_000));
    let error = page.clone();
    s.subscribe(
        "t",
        handler_fn(move |_d: Delivery| {
            let err = HandlerError::permanent(error.clone());
            async move { Err::<(), _>(err) }
        }),
    )
    .group("g");
    s.start().await.unwrap();
    publish(&broker, Message::new("t", "p").with_id("m-1")).await;
    let dead = broker.wait_published("t.dlq", 1, WAIT).await.unwrap();
    broker.wait_acked("t", "g", 1, WAIT).await.unwrap();
    s.shutdown(WAIT).await;
    let said = dead[0].headers.get(dlq_headers::ERROR).unwrap();
    let (kept, note) = said.split_once("... (").unwrap();
    assert!(
        kept.len() <= DeadLetter::ERROR_MAX_BYTES && kept.len() > DeadLetter::ERROR_MAX_BYTES - 4,
        "{}",
        kept.len()
    );
    assert!(page.starts_with(kept));
    assert_eq!(note, format!("{} bytes more)", page.len() - kept.len()));
    assert_eq!(dead[0].payload, "p", "the payload kept");
}

#[tokio::test]
async fn a_dead_letter_queue_that_can_never_be_written_slows_redelivery_and_loses_nothing() {
    // The DLQ topic does not exist and may not be created: every DLQ write fails for good.
    let broker = MemoryBroker::with_config(tidewater_memory::MemoryConfig::default().auto_create(false));
    broker.create_topic("t", 1).unwrap();
    let mut s = scheduler(&broker);
    s.with_middleware(DeadLetter::new(broker.writer()));
    let calls = Arc::new(AtomicU32::new(0));
    s.subscribe("t", counting(&calls, |_| Err(HandlerError::permanent("cannot parse"))))
        .group("g")
        .nack_delay(Some(Duration::from_millis(50)));
    s.start().await.unwrap();
    publish(&broker, Message::new("t", "x").with_id("m-1")).await;
    let started = tokio::time::Instant::now();
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < WAIT, "the message never came");
        tokio::task::yield_now().await;
    }
    // 50, 100, 200, 400, 800 ms: 5 calls in about 0.75 s, 6 by 1.55 s; 31 without growth.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let report = s.shutdown(WAIT).await;
    let n = calls.load(Ordering::SeqCst);
    assert!((2..=6).contains(&n), "{n} calls in 1.5 s");
    assert_eq!(report.tasks[0].dead_lettered, 0);
    assert_eq!(report.tasks[0].acked, 0);
    assert!(broker.published("t.dlq").is_empty());
    // Still there for a handler that can take it.
    let mut s = scheduler(&broker);
    s.subscribe("t", counting(&Arc::new(AtomicU32::new(0)), |_| Ok(()))).group("g");
    s.start().await.unwrap();
    broker.wait_acked("t", "g", 1, WAIT).await.expect("the message was kept");
    s.shutdown(WAIT).await;
}

/// An outage of what the handler calls: behind a circuit breaker, the handler is called
/// for the few messages that opened it and one trial at a time, rather than for every
/// message; nothing is dead-lettered (the failures it saw are redelivered, as a `Bus`'s
/// own dead letter leaves transient failures), and everything held goes on when it is
/// back.
#[tokio::test]
async fn a_circuit_breaker_holds_messages_through_an_outage() {
    let broker = MemoryBroker::new();
    broker.create_topic("orders", 1).unwrap();
    let breaker = CircuitBreaker::new("payments-api")
        .failures(2)
        .open_for(Duration::from_millis(20))
        .max_open_for(Duration::from_millis(160));
    let down = Arc::new(AtomicBool::new(true));
    let failed_ids = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let handled = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let (down, failed_ids, handled) = (Arc::clone(&down), Arc::clone(&failed_ids), Arc::clone(&handled));
        handler_fn(move |d: Delivery| {
            let id = d.message().id.to_string();
            let result = if down.load(Ordering::SeqCst) {
                failed_ids.lock().unwrap().insert(id);
                Err(HandlerError::transient("payments API unreachable"))
            } else {
                handled.lock().unwrap().push(id);
                Ok(())
            };
            async move { result }
        })
    };
    let mut s = scheduler(&broker);
    s.with_middleware(DeadLetter::new(broker.writer()).permanent_only())
        .with_middleware(breaker.clone())
        .with_middleware(quick_retry(2));
    s.subscribe("orders", handler).group("billing").nack_delay(Some(Duration::from_millis(5)));
    s.start().await.unwrap();
    let batch: Vec<Message> = (0..20).map(|i| Message::new("orders", "{}").with_id(format!("o-{i:02}"))).collect();
    Driver::writer(&broker).write(batch).await.unwrap();

    // The outage lasts 300 ms: without the breaker, every message fails in it (each in
    // about 2 ms), and is redelivered to fail again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_ne!(breaker.state(), CircuitState::Closed, "the outage holds the circuit open");
    down.store(false, Ordering::SeqCst);
    broker.wait_acked("orders", "billing", 20, WAIT).await.expect("every held message goes on");
    let report = s.shutdown(WAIT).await;

    let failed = failed_ids.lock().unwrap().len();
    // Two opened it; trials came at about 20, 60, 140 and 300 ms, and each tries one.
    assert!((2..=7).contains(&failed), "{failed} of 20 messages reached the handler in the outage");
    let mut handled = handled.lock().unwrap().clone();
    handled.sort();
    handled.dedup();
    assert_eq!(handled.len(), 20, "each message handled once the API is back");
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(report.tasks[0].dead_lettered, 0);
    assert!(broker.published("orders.dlq").is_empty());
}

/// A backlog read through a rate limit goes at the limit's pace, not the broker's.
#[tokio::test]
async fn a_rate_limit_paces_a_backlog() {
    let broker = MemoryBroker::new();
    let calls = Arc::new(AtomicU32::new(0));
    let mut s = scheduler(&broker);
    s.with_middleware(RateLimit::per_second(50));
    s.subscribe("orders", counting(&calls, |_| Ok(()))).group("billing").concurrency(4);
    let batch: Vec<Message> = (0..11).map(|i| Message::new("orders", "{}").with_key(format!("k-{i}"))).collect();
    Driver::writer(&broker).write(batch).await.unwrap();
    let started = std::time::Instant::now();
    s.start().await.unwrap();
    broker.wait_acked("orders", "billing", 11, WAIT).await.unwrap();
    let took = started.elapsed();
    s.shutdown(WAIT).await;
    // Ten intervals of 20 ms between the first call and the eleventh, on four lanes.
    assert!(took >= Duration::from_millis(200), "11 calls at 50 a second took {took:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 11);
}

/// Reads `orders` in `billing` with `handler`, behind the middleware `chain` adds, until
/// `waiting` says that a middleware holds a delivery, then stops with a grace period of
/// 30 s. What is held is let go at once: the stop takes a fraction of its grace period,
/// nothing is dead-lettered for it, and the group's next reader gets every message.
async fn stop_while_held(
    chain: impl FnOnce(&MemoryBroker, &mut SubscriberScheduler),
    handler: impl tidewater_core::Handler,
    messages: usize,
    waiting: impl Fn() -> bool,
) -> tidewater_core::TaskReport {
    let broker = MemoryBroker::new();
    broker.create_topic("orders", 1).unwrap();
    let mut s = scheduler(&broker);
    chain(&broker, &mut s);
    s.subscribe("orders", handler).group("billing").concurrency(2).nack_delay(Some(Duration::from_millis(5)));
    s.start().await.unwrap();
    let batch: Vec<Message> = (0..messages)
        .map(|i| Message::new("orders", "{}").with_id(format!("o-{i}")).with_key(format!("k-{i}")))
        .collect();
    Driver::writer(&broker).write(batch).await.unwrap();
    let started = tokio::time::Instant::now();
    while !waiting() {
        assert!(started.elapsed() < WAIT, "the middleware never held a delivery");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stopping = std::time::Instant::now();
    let mut report = s.shutdown(Duration::from_secs(30)).await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "the stop waited {took:?} for a held delivery");
    let task = report.tasks.remove(0);
    assert_eq!(task.dead_lettered, 0, "{task:?}");
    assert!(broker.published("orders.dlq").is_empty());

    let mut s = scheduler(&broker);
    s.subscribe("orders", counting(&Arc::new(AtomicU32::new(0)), |_| Ok(()))).group("billing");
    s.start().await.unwrap();
    broker.wait_acked("orders", "billing", messages as u64, WAIT).await.expect("what was let go comes again");
    s.shutdown(WAIT).await;
    task
}

/// A handler that fails transiently, counting its calls.
fn failing(calls: &Arc<AtomicU32>) -> impl tidewater_core::Handler {
    counting(calls, |_| Err(HandlerError::transient("payments API unreachable")))
}

#[tokio::test]
async fn a_stop_lets_deliveries_held_by_an_open_circuit_go() {
    let breaker = CircuitBreaker::new("payments-api").failures(1).open_for(Duration::from_secs(3600));
    let watched = breaker.clone();
    let calls = Arc::new(AtomicU32::new(0));
    // The first failure opens the circuit and is nacked; then both messages are held.
    let chain = |broker: &MemoryBroker, s: &mut SubscriberScheduler| {
        s.with_middleware(DeadLetter::new(broker.writer()).permanent_only()).with_middleware(breaker);
    };
    let task = stop_while_held(chain, failing(&calls), 2, move || watched.held() == 2).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "an open circuit calls nothing");
    assert_eq!((task.abandoned, task.nacked), (2, 1), "{task:?}");
}

#[tokio::test]
async fn a_stop_ends_a_retry_s_backoff() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    // Behind a dead letter that takes the first transient failure it sees.
    let chain = |broker: &MemoryBroker, s: &mut SubscriberScheduler| {
        s.with_middleware(DeadLetter::new(broker.writer()))
            .with_middleware(Retry::new().max_attempts(5).min_delay(Duration::from_secs(3600)).without_jitter());
    };
    let task = stop_while_held(chain, failing(&calls), 1, move || counted.load(Ordering::SeqCst) == 1).await;
    assert_eq!((task.abandoned, task.nacked, task.retried), (1, 0, 0), "{task:?}");
}

#[tokio::test]
async fn a_stop_lets_deliveries_waiting_on_a_rate_limit_go() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let chain = |broker: &MemoryBroker, s: &mut SubscriberScheduler| {
        s.with_middleware(DeadLetter::new(broker.writer()))
            .with_middleware(RateLimit::new(1, Duration::from_secs(3600)));
    };
    // Two lanes: the first call takes the hour's one slot, the second waits for the next.
    let task =
        stop_while_held(chain, counting(&calls, |_| Ok(())), 2, move || counted.load(Ordering::SeqCst) == 1).await;
    assert_eq!(task.acked + task.abandoned, 2, "{task:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
