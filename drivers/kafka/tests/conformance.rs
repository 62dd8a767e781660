//! The shared conformance suite against Apache Kafka 4 (KRaft, one node), started by
//! `scripts/test`.
//!
//! Every capability is on but `flow_follows_prefetch` (a group's members own partitions) and
//! `settles_exactly`, which a log cannot give: a commit is a
//! position, not a set of records. With concurrency above 1, records of one partition
//! finish out of order; when a stop gives back records that were fetched but not
//! started, the records after them that did finish lie above the commit point and are
//! read again. (`tests/driver.rs` checks that the commit is exact where it can be: with
//! one lane, a graceful stop commits everything handled.) Attempts are counted by the
//! reader, since Kafka keeps no delivery count; the suite checks that a nacked record
//! comes again with a higher attempt.

mod support;

use std::time::Duration;

use tidewater_conformance::{Capabilities, DriverFixture};
use tidewater_core::Driver;
use tidewater_kafka::{Kafka, KafkaConfig};

async fn fixture() -> DriverFixture<Kafka> {
    let kafka = Kafka::connect(support::config(&support::shared_brokers())).await.expect("connect to the test Kafka");
    DriverFixture::new(
        kafka,
        Capabilities { partitions: 3, settles_exactly: false, flow_follows_prefetch: false, ..Capabilities::default() },
    )
    // librdkafka's least: the session at the broker's 6 s floor, the poll interval above it.
    .busy_after_with(Duration::from_secs(7), || async {
        let config =
            KafkaConfig { session_timeout: Duration::from_secs(6), ..support::config(&support::shared_brokers()) }
                .set("max.poll.interval.ms", "7000");
        Kafka::connect(config).await.expect("connect to the test Kafka").reader()
    })
}

tidewater_conformance::conformance_tests!(
    fixture,
    ignore {
        prefetch_bounds_read_ahead: "a Kafka group's members own partitions: a partition's records wait for its owner"
    }
);
