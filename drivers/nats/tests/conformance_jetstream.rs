//! The shared conformance suite on JetStream, against a real nats-server: every
//! capability on.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use tidewater_conformance::{Capabilities, Fixture};
use tidewater_core::{Admin, Driver, Reader, Writer};
use tidewater_nats::{JetStream, JetStreamConfig, NatsConfig};

struct Js(JetStream);

#[async_trait]
impl Fixture for Js {
    fn capabilities(&self) -> Capabilities {
        // JetStream streams are not partitioned; order is per subject.
        Capabilities { partitions: 1, ..Capabilities::default() }
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

async fn fixture() -> Js {
    let js = JetStream::connect(&NatsConfig::new(support::shared_url()), JetStreamConfig::default())
        .await
        .expect("connect to the test nats-server");
    Js(js)
}

tidewater_conformance::conformance_tests!(fixture);
