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

/// Core NATS on a server of its own, for the one restart case its at-most-once
/// semantics allow: readiness that follows the server. It keeps nothing, so there is no
/// topic to make and nothing written during the outage to find again.
struct CoreRestart {
    core: tidewater_nats::NatsCore,
    server: std::sync::Mutex<NatsServer>,
}

#[async_trait::async_trait]
impl tidewater_conformance::restart::RestartFixture for CoreRestart {
    fn driver(&self) -> &dyn tidewater_core::Driver {
        &self.core
    }

    async fn prepare(&self, name: &str) -> tidewater_core::ReadTask {
        tidewater_core::ReadTask::new(name).with_group(name).with_concurrency(4)
    }

    async fn kill(&self) {
        tokio::task::block_in_place(|| tidewater_testkit::Restart::kill(&mut *self.server.lock().unwrap()));
    }

    async fn start(&self) {
        tokio::task::block_in_place(|| tidewater_testkit::Restart::restart(&mut *self.server.lock().unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_health_follows_the_server() {
    let server = NatsServer::start(NatsRelease::Current);
    let nats = NatsConfig { request_timeout: Duration::from_secs(2), ..NatsConfig::new(server.url()) };
    let core = tidewater_nats::NatsCore::connect(&nats).await.unwrap();
    let fixture = CoreRestart { core, server: std::sync::Mutex::new(server) };
    tidewater_conformance::restart::health_follows_the_broker(&fixture).await;
}
