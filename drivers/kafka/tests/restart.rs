//! The shared restart cases (`tidewater_conformance::restart`) on a private Apache
//! Kafka: killed (SIGKILL) in the middle of a 10,000-message run and started again on
//! the same log directory, and twice under a lagging consumer; at least once, nothing
//! acknowledged lost, duplicates counted and printed. And readiness while the broker is
//! away: librdkafka reconnects by itself and tells of it only in its statistics.

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
