//! The shared Kafka broker that `scripts/test` starts, and looks at a group's committed
//! offsets and a topic's ends. Private brokers come from `tidewater_testkit::KafkaBroker`.
#![allow(dead_code)]

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tidewater_kafka::{Kafka, KafkaConfig};

/// The bootstrap servers of the Kafka `scripts/test` started. A missing broker fails the
/// test: run the suite with `scripts/test`, which starts it.
pub(crate) fn shared_brokers() -> String {
    tidewater_testkit::shared::kafka_brokers()
}

/// The configuration tests use against `brokers`.
pub(crate) fn config(brokers: &str) -> KafkaConfig {
    KafkaConfig::new(brokers)
}

/// A driver connected as `config` says.
pub(crate) async fn connect(config: KafkaConfig) -> Kafka {
    Kafka::connect(config).await.expect("connect to the test Kafka")
}

/// A driver on the shared broker, configured as tests are.
pub(crate) async fn shared() -> Kafka {
    connect(config(&shared_brokers())).await
}

/// The committed offset of `group` for each of `partitions` partitions of `topic`
/// (`None` where nothing was committed), read by a consumer that joins nothing.
pub(crate) fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer to read committed offsets");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let offsets = {
        // The list that `committed_offsets` returns must be dropped before the consumer,
        // or dropping the consumer blocks forever (brokers.md).
        let got = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
        got.elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .collect()
    };
    drop(consumer);
    offsets
}

/// The end offset (high watermark) of each of `partitions` partitions of `topic`.
pub(crate) fn ends(brokers: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("consumer");
    (0..partitions)
        .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks").1)
        .collect()
}
