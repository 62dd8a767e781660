//! The shared restart cases (`tidewater_conformance::restart`) on a private Apache
//! Kafka: killed (SIGKILL) in the middle of a 10,000-message run and started again on
//! the same log directory, and twice under a lagging consumer; at least once, nothing
//! acknowledged lost, duplicates counted and printed.

mod support;

use std::time::Duration;

use tidewater_conformance::restart::ProcessRestart;
use tidewater_kafka::Kafka;
use tidewater_testkit::KafkaBroker;

async fn restartable() -> ProcessRestart<Kafka, KafkaBroker> {
    let broker = KafkaBroker::start();
    let mut config = support::config(&broker.brokers());
    // Writes in flight during the outage wait for the broker instead of failing.
    config.delivery_timeout = Duration::from_secs(120);
    let kafka = Kafka::connect(config).await.expect("connect to the private Kafka");
    ProcessRestart::new(kafka, broker)
}

tidewater_conformance::restart_tests!(restartable);

/// A reader says whether its consumers reach a broker: not while the broker is killed,
/// again once it is back. librdkafka reconnects on its own and tells of it only in its
/// statistics, so before this the Kafka reader could not say, and readiness and the
/// `tidewater_connected` gauge stayed blind to an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_says_when_its_broker_is_gone() {
    use std::sync::Arc;
    use tidewater_core::testing::Recorder;
    use tidewater_core::{Driver, EventRegistry, ReadTask, SubscriberScheduler};
    use tidewater_testkit::Restart;

    let mut broker = KafkaBroker::start();
    let kafka = Kafka::connect(support::config(&broker.brokers())).await.expect("connect to the private Kafka");
    kafka.admin().create_topic("link", 1).await.unwrap();
    let reader = kafka.reader();
    let mut scheduler = SubscriberScheduler::new(Arc::clone(&reader), EventRegistry::new());
    scheduler.add(ReadTask::new("link").with_group("link"), Arc::new(Recorder::new()));
    scheduler.start().await.unwrap();
    // The state changes with no event to wait on: looked at every 100 ms.
    let until = |connected: bool, what: &'static str| {
        let reader = Arc::clone(&reader);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while reader.connected() != Some(connected) {
                assert!(tokio::time::Instant::now() < deadline, "{what}: {:?}", reader.connected());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    until(true, "connected while the broker runs").await;
    tokio::task::block_in_place(|| broker.kill());
    until(false, "not connected once the broker is killed").await;
    tokio::task::block_in_place(|| broker.restart());
    until(true, "connected again once the broker is back").await;
    let stopped = scheduler.shutdown(Duration::from_secs(10)).await;
    assert!(stopped.is_clean(), "{stopped:?}");
}
