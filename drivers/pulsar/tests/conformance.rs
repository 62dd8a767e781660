//! The shared conformance suite on Pulsar, against a real pulsar-lite (through the test
//! proxy that adds the checksums pulsar-lite leaves out; see `support/proxy.rs`).
//!
//! Every capability is on except `partitions`: the suite's topics are created by the
//! broker on first use, unpartitioned (pulsar-lite makes partitioned topics only through
//! its `default_partitions` setting and has no admin API to create one). Partitioned
//! topics are tested in `driver.rs` on a pulsar-lite of their own.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use tidewater_conformance::{Capabilities, Fixture};
use tidewater_core::{Driver, Reader, Result, Writer};
use tidewater_pulsar::Pulsar;

struct PulsarFixture(Pulsar);

#[async_trait]
impl Fixture for PulsarFixture {
    fn capabilities(&self) -> Capabilities {
        Capabilities { partitions: 1, ..Capabilities::default() }
    }

    async fn create_topic(&self, _topic: &str, _partitions: u32) -> Result<()> {
        Ok(())
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
    PulsarFixture(Pulsar::connect(support::config(&url)).await.expect("connect to the test pulsar-lite"))
}

tidewater_conformance::conformance_tests!(fixture);
