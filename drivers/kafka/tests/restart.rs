//! The broker is killed (SIGKILL) in the middle of a 10,000-message run and started
//! again on the same log directory: at least once, nothing acknowledged lost, duplicates
//! counted and printed (the shared scenario in `tidewater_conformance::restart`). A
//! private Apache Kafka of the test's own.

mod support;

use std::time::Duration;

use tidewater_conformance::restart::{broker_restart_loses_nothing, lagging_consumer_survives_restarts};
use tidewater_core::{Driver, ReadTask};
use tidewater_kafka::Kafka;
use tidewater_testkit::KafkaBroker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing_on_kafka() {
    let mut broker = KafkaBroker::start();
    let mut config = support::config(&broker.brokers());
    // Writes in flight during the outage wait for the broker instead of failing.
    config.delivery_timeout = Duration::from_secs(120);
    let kafka = Kafka::connect(config).await.expect("connect to the private Kafka");
    kafka.create_topic("restart", 3).await.unwrap();
    let task = ReadTask::new("restart").with_group("restart").with_concurrency(4);
    broker_restart_loses_nothing(
        kafka.writer(),
        kafka.reader(),
        task,
        // The restart blocks while the JVM starts; the writer and reader go on meanwhile
        // on the runtime's other thread.
        || async { tokio::task::block_in_place(|| broker.restart()) },
        Duration::from_secs(180),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_consumer_survives_two_restarts_on_kafka() {
    // A lock, so the restart can be called twice (it needs the broker mutably).
    let broker = std::sync::Mutex::new(KafkaBroker::start());
    let address = broker.lock().unwrap().brokers();
    let kafka = Kafka::connect(support::config(&address)).await.expect("connect to the private Kafka");
    kafka.create_topic("lagging", 3).await.unwrap();
    let task = ReadTask::new("lagging").with_group("lagging").with_concurrency(4);
    lagging_consumer_survives_restarts(
        kafka.writer(),
        kafka.reader(),
        task,
        || async { tokio::task::block_in_place(|| broker.lock().unwrap().restart()) },
        Duration::from_secs(180),
    )
    .await;
}
