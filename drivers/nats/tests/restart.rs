//! The shared restart cases (`tidewater_conformance::restart`) on JetStream: the
//! current nats-server killed (SIGKILL) in the middle of a 10,000-message run and
//! started again on the same port and storage, and twice under a lagging consumer;
//! every message is processed at least once, and the driver reconnects by itself. And
//! readiness while the server is away.

use std::time::Duration;

use tidewater_conformance::restart::ProcessRestart;
use tidewater_nats::{JetStream, JetStreamConfig, NatsConfig};
use tidewater_testkit::{NatsRelease, NatsServer, Restart};

async fn restartable() -> ProcessRestart<JetStream, NatsServer> {
    let server = NatsServer::start(NatsRelease::Current);
    let config = JetStreamConfig { ack_wait: Duration::from_secs(5), ..JetStreamConfig::default() };
    let nats = NatsConfig { request_timeout: Duration::from_secs(2), ..NatsConfig::new(server.url()) };
    let js = JetStream::connect(&nats, config).await.unwrap();
    ProcessRestart::new(js, server)
}

tidewater_conformance::restart_tests!(restartable);

/// Readiness follows the broker: true once subscribed, false while the server is away,
/// true again once the client has reconnected; liveness stays true throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_goes_unready_while_the_server_is_away() {
    use tidewater_core::testing::Recorder;
    use tidewater_core::{Bus, EventRegistry};

    let mut server = NatsServer::start(NatsRelease::Current);
    let nats = NatsConfig { request_timeout: Duration::from_secs(2), ..NatsConfig::new(server.url()) };
    let js = JetStream::connect(&nats, JetStreamConfig::default()).await.unwrap();
    js.create_stream("health", &["health.events"]).await.unwrap();
    let mut bus = Bus::new(&js, EventRegistry::new());
    let seen = Recorder::new();
    bus.subscribe("health.events", seen.clone()).group("probe");
    bus.start().await.unwrap();
    let health = until(&bus, |h| h.ready, "ready after start").await;
    assert!(health.live && health.connected == Some(true), "{health:?}");

    tokio::task::block_in_place(|| server.kill());
    let health = until(&bus, |h| !h.ready, "unready with the server gone").await;
    assert!(health.live, "workers run on while the broker is away: {health:?}");

    tokio::task::block_in_place(|| server.restart());
    until(&bus, |h| h.ready, "ready again after the restart").await;
    bus.publisher().publish_bytes("health.events", "after", "text/plain").await.unwrap();
    seen.wait_for(1, Duration::from_secs(60)).await.unwrap();
    let report = bus.shutdown(Duration::from_secs(5)).await.unwrap();
    assert!(report.aborted.is_empty(), "{report:?}");
}

/// Asks `bus` for its health now and then, as a probe would, until `want` holds or a
/// minute has passed.
async fn until(
    bus: &tidewater_core::Bus,
    want: fn(&tidewater_core::Health) -> bool,
    what: &str,
) -> tidewater_core::Health {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let health = bus.health();
        if want(&health) {
            return health;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} within 60 s: {health:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
