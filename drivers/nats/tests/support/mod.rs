//! The test servers. The conformance suite and the restart test run on the current
//! nats-server, the driver's own tests on Debian's 2.9, so the driver is proven on both;
//! `scripts/test` starts a shared server of each, and tests that need one of their own
//! start it through the test kit.
#![allow(dead_code)]

pub(crate) use tidewater_testkit::{NatsRelease, NatsServer};

/// The release the driver's own tests (`tests/driver.rs`) run on.
pub(crate) const DRIVER_RELEASE: NatsRelease = NatsRelease::Debian;

/// The URL of the shared current nats-server.
pub(crate) fn shared_url() -> String {
    tidewater_testkit::shared::nats_url()
}

/// The URL of the shared server of [`DRIVER_RELEASE`].
pub(crate) fn driver_url() -> String {
    tidewater_testkit::shared::nats_debian_url()
}

/// A server of [`DRIVER_RELEASE`] of a test's own, with JetStream and `extra` arguments.
pub(crate) fn private_server(extra: &[&str]) -> NatsServer {
    NatsServer::start_with(DRIVER_RELEASE, true, extra)
}

/// A server of [`DRIVER_RELEASE`] of a test's own without JetStream (which operator mode
/// would need a system account for), with `extra` arguments.
pub(crate) fn private_core_server(extra: &[&str]) -> NatsServer {
    NatsServer::start_with(DRIVER_RELEASE, false, extra)
}
