//! The shared conformance suite on Apache Pulsar (standalone, started by `scripts/test`),
//! with every capability on: the suite's topics are partitioned topics of 3 partitions,
//! made through the broker's admin API.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use tidewater_conformance::{Capabilities, Fixture};
use tidewater_core::{Admin, Driver, Reader, Writer};
use tidewater_pulsar::Pulsar;

struct PulsarFixture(Pulsar);

#[async_trait]
impl Fixture for PulsarFixture {
    fn capabilities(&self) -> Capabilities {
        // A minute to wait for deliveries, not the default half: under the stress test
        // (ten copies of the suite at once, beside three other JVMs on two cores) the
        // broker once took longer than 30 s to hand a closed consumer's unacked messages
        // to the next one. Only a failing case waits that long.
        Capabilities { partitions: 3, patience: std::time::Duration::from_secs(60), ..Capabilities::default() }
    }

    async fn admin(&self) -> Arc<dyn Admin> {
        self.0.admin()
    }

    async fn writer(&self) -> Arc<dyn Writer> {
        self.0.writer()
    }

    async fn reader(&self) -> Arc<dyn Reader> {
        self.0.reader()
    }
}

async fn fixture() -> PulsarFixture {
    let url = support::shared_url();
    PulsarFixture(Pulsar::connect(support::config(&url)).await.expect("connect to the test Pulsar"))
}

tidewater_conformance::conformance_tests!(fixture);
