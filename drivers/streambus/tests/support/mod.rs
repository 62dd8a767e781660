//! What the StreamBus tests share: a double per test and a driver tuned for tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidewater_conformance::{Capabilities, Fixture};
use tidewater_core::{Admin, Driver, Reader, Writer};
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

/// A double and a driver connected to it, for the conformance suite.
pub(crate) struct DoubleFixture {
    pub double: BrokerDouble,
    pub bus: StreamBus,
}

impl DoubleFixture {
    pub(crate) async fn start(profile: Profile) -> Self {
        let double = BrokerDouble::start(profile).await;
        let bus = connect(&double).await;
        Self { double, bus }
    }
}

#[async_trait]
impl Fixture for DoubleFixture {
    fn capabilities(&self) -> Capabilities {
        match self.double.config().profile {
            // A commit is a position: with concurrency above 1, records that finished
            // above one given back at a stop come again (as on Kafka).
            Profile::Later => Capabilities { partitions: 3, settles_exactly: false, ..Capabilities::default() },
            // v1.0.x has no consumer groups: members of a group cannot share partitions
            // unless each is given its own (StaticPartitions); positions are kept by the
            // driver's offset store, so a group still resumes where it stopped.
            Profile::V1 => Capabilities {
                partitions: 3,
                settles_exactly: false,
                consumer_groups: false,
                // v1.0.x has no transactions at all (brokers.md: no EndTxn).
                transactions: false,
                ..Capabilities::default()
            },
        }
    }

    async fn admin(&self) -> Arc<dyn Admin> {
        self.bus.admin()
    }

    async fn writer(&self) -> Arc<dyn Writer> {
        self.bus.writer()
    }

    async fn reader(&self) -> Arc<dyn Reader> {
        self.bus.reader()
    }

    async fn transactions(&self, id: &str) -> tidewater_core::Result<Arc<dyn tidewater_core::Transactions>> {
        self.bus.transactions(id)
    }
}
