//! What the StreamBus tests share: a double per test and a driver tuned for tests.
#![allow(dead_code)]

use std::time::Duration;

use tidewater_conformance::{Capabilities, DriverFixture};
use tidewater_streambus::{StreamBus, StreamBusConfig};
use tidewater_streambus_double::{BrokerDouble, Profile};

/// Settings for tests: quick heartbeats and commits, so rebalances and resumes take
/// tenths of a second, not seconds.
pub(crate) fn config(addr: std::net::SocketAddr) -> StreamBusConfig {
    let mut config = StreamBusConfig::new(addr.to_string());
    config.heartbeat_interval = Duration::from_millis(100);
    config.session_timeout = Duration::from_secs(3);
    config.rebalance_timeout = Duration::from_secs(3);
    config.commit_interval = Duration::from_millis(100);
    config.request_timeout = Duration::from_secs(10);
    config
}

pub(crate) async fn connect(double: &BrokerDouble) -> StreamBus {
    StreamBus::connect(config(double.addr())).await.expect("connect to the double")
}

/// A driver on a double of `profile` of its own, for the conformance suite, with what
/// the profile's broker can do.
pub(crate) async fn double_fixture(profile: Profile) -> DriverFixture<StreamBus> {
    let double = BrokerDouble::start(profile).await;
    let capabilities = match profile {
        // A commit is a position: with concurrency above 1, records that finished above
        // one given back at a stop come again (as on Kafka).
        // Members of a group own partitions, as on Kafka.
        Profile::Later => Capabilities {
            partitions: 3,
            settles_exactly: false,
            flow_follows_prefetch: false,
            ..Capabilities::default()
        },
        // v1.0.x has no consumer groups: members of a group cannot share partitions
        // unless each is given its own (StaticPartitions); positions are kept by the
        // driver's offset store, so a group still resumes where it stopped.
        Profile::V1 => Capabilities {
            partitions: 3,
            settles_exactly: false,
            consumer_groups: false,
            // v1.0.x has no transactions at all (brokers.md: no EndTxn).
            transactions: false,
            flow_follows_prefetch: false,
            ..Capabilities::default()
        },
    };
    DriverFixture::new(connect(&double).await, capabilities).keeping(double)
}
