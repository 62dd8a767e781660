//! The brokers `scripts/test` starts once for a whole run (with the `tidewater-brokers`
//! program of this crate) and names in the environment. A missing one fails the test
//! with how to get it: tests never skip themselves.

fn named(variable: &str, what: &str) -> String {
    std::env::var(variable)
        .unwrap_or_else(|_| panic!("{variable} is not set: run the tests with scripts/test, which starts {what}"))
}

/// The shared Kafka's bootstrap servers.
pub fn kafka_brokers() -> String {
    named("TIDEWATER_KAFKA_BROKERS", "Apache Kafka")
}

/// The shared current nats-server's URL.
pub fn nats_url() -> String {
    named("TIDEWATER_NATS_URL", "the current nats-server")
}

/// The shared Debian nats-server's (2.9) URL.
pub fn nats_debian_url() -> String {
    named("TIDEWATER_NATS_DEBIAN_URL", "Debian's nats-server")
}

/// The shared Pulsar's `pulsar://` URL.
pub fn pulsar_url() -> String {
    named("TIDEWATER_PULSAR_URL", "Apache Pulsar standalone")
}

/// The shared Pulsar's admin URL (`http://`).
pub fn pulsar_admin_url() -> String {
    named("TIDEWATER_PULSAR_ADMIN_URL", "Apache Pulsar standalone")
}

/// The shared Pulsar's admin HTTP port.
pub fn pulsar_admin_port() -> u16 {
    let url = pulsar_admin_url();
    url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {url}"))
}
