//! The shared conformance suite on JetStream, against a real nats-server: every
//! capability on.

mod support;

use std::time::Duration;

use tidewater_conformance::{Capabilities, DriverFixture};
use tidewater_core::Driver;
use tidewater_nats::{JetStream, JetStreamConfig, NatsConfig};

async fn fixture() -> DriverFixture<JetStream> {
    let js = JetStream::connect(&NatsConfig::new(support::shared_url()), JetStreamConfig::default())
        .await
        .expect("connect to the test nats-server");
    // JetStream streams are not partitioned; order is per subject.
    // JetStream's atomic batch publish (nats-server 2.12 and later) is not wired, and it
    // has no consumed positions to commit with a batch: the driver answers Unsupported.
    DriverFixture::new(js, Capabilities { partitions: 1, transactions: false, ..Capabilities::default() })
        // The server redelivers what is not acknowledged within the ack wait.
        .busy_after_with(Duration::from_secs(1), || async {
            let config = JetStreamConfig { ack_wait: Duration::from_secs(1), ..JetStreamConfig::default() };
            let js = JetStream::connect(&NatsConfig::new(support::shared_url()), config).await;
            js.expect("connect to the test nats-server").reader()
        })
}

tidewater_conformance::conformance_tests!(fixture);
