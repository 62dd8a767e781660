//! The shared Apache Pulsar standalone that `scripts/test` starts. Tests that need a
//! broker of their own (restart, TLS and token authentication) start it through
//! `tidewater_testkit::PulsarStandalone`.
#![allow(dead_code)]

use tidewater_pulsar::{Pulsar, PulsarConfig};

/// The shared broker's `pulsar://` URL. A missing broker fails the test: run the suite
/// with `scripts/test`, which starts it.
pub(crate) fn shared_url() -> String {
    tidewater_testkit::shared::pulsar_url()
}

/// Makes `topic` a partitioned topic of `partitions` on the shared broker.
pub(crate) fn create_partitioned_topic(topic: &str, partitions: u32) {
    tidewater_testkit::create_partitioned_topic(tidewater_testkit::shared::pulsar_admin_port(), topic, partitions);
}

/// The configuration tests use against `url`.
pub(crate) fn config(url: &str) -> PulsarConfig {
    PulsarConfig::new(url).admin_url(tidewater_testkit::shared::pulsar_admin_url())
}

/// A driver connected as `config` says.
pub(crate) async fn connect(config: PulsarConfig) -> Pulsar {
    Pulsar::connect(config).await.expect("connect to the test Pulsar")
}

/// A driver on the shared broker, configured as tests are.
pub(crate) async fn shared() -> Pulsar {
    connect(config(&shared_url())).await
}
