//! The shared restart cases (`tidewater_conformance::restart`) on JetStream: the
//! current nats-server killed (SIGKILL) in the middle of a 10,000-message run and
//! started again on the same port and storage, and twice under a lagging consumer;
//! every message is processed at least once, and the driver reconnects by itself. And
//! readiness while the server is away, on JetStream and on core NATS.

use std::time::Duration;

use tidewater_conformance::restart::ProcessRestart;
use tidewater_nats::{JetStream, JetStreamConfig, NatsConfig};
use tidewater_testkit::{NatsRelease, NatsServer};

async fn restartable() -> ProcessRestart<JetStream, NatsServer> {
    let server = NatsServer::start(NatsRelease::Current);
    let config = JetStreamConfig { ack_wait: Duration::from_secs(5), ..JetStreamConfig::default() };
    let nats = NatsConfig { request_timeout: Duration::from_secs(2), ..NatsConfig::new(server.url()) };
    let js = JetStream::connect(&nats, config).await.unwrap();
    ProcessRestart::new(js, server)
}

tidewater_conformance::restart_tests!(restartable);

/// Readiness that follows the server, on core NATS: the one restart case its at-most-once
/// semantics allow (it keeps nothing written during the outage to find again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_health_follows_the_server() {
    let server = NatsServer::start(NatsRelease::Current);
    let nats = NatsConfig { request_timeout: Duration::from_secs(2), ..NatsConfig::new(server.url()) };
    let core = tidewater_nats::NatsCore::connect(&nats).await.unwrap();
    tidewater_conformance::restart::health_follows_the_broker(&ProcessRestart::new(core, server)).await;
}
