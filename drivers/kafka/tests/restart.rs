//! The broker restarts in the middle of a 10,000-message run: at least once, nothing
//! lost (the shared scenario in `tidewater_conformance::restart`). A private tansu on
//! `sqlite://` storage, which keeps records and committed offsets across the restart.

mod support;

use std::time::Duration;

use support::{PrivateTansu, Storage};
use tidewater_conformance::restart::broker_restart_loses_nothing;
use tidewater_core::{Driver, ReadTask};
use tidewater_kafka::Kafka;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing_on_kafka() {
    let mut broker = PrivateTansu::start(Storage::Sqlite);
    let mut config = support::config(&broker.brokers());
    // Writes in flight during the outage wait for the broker instead of failing.
    config.delivery_timeout = Duration::from_secs(120);
    let kafka = Kafka::connect(config).await.expect("connect to the private tansu");
    kafka.create_topic("restart", 3).await.unwrap();
    let task = ReadTask::new("restart").with_group("restart").with_concurrency(4);
    broker_restart_loses_nothing(
        kafka.writer(),
        kafka.reader(),
        task,
        || async { broker.restart() },
        Duration::from_secs(180),
    )
    .await;
}
