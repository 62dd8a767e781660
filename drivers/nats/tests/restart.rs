//! A 10,000-message JetStream run survives a kill (SIGKILL) of the current nats-server
//! and its restart on the same port and storage in the middle: every message is processed at least once, and the driver reconnects by
//! itself (the shared scenario in `tidewater_conformance::restart`).

use std::time::Duration;

use tidewater_conformance::restart::{broker_restart_loses_nothing, lagging_consumer_survives_restarts};
use tidewater_core::{Driver, ReadTask};
use tidewater_nats::{JetStream, JetStreamConfig, NatsConfig};
use tidewater_testkit::{NatsRelease, NatsServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing_on_jetstream() {
    let mut server = NatsServer::start(NatsRelease::Current);
    let config = JetStreamConfig { ack_wait: Duration::from_secs(5), ..JetStreamConfig::default() };
    let nats = NatsConfig { request_timeout: Duration::from_secs(2), ..NatsConfig::new(server.url()) };
    let js = JetStream::connect(&nats, config).await.unwrap();
    js.create_stream("restart", &["restart.events"]).await.unwrap();
    let task = ReadTask::new("restart.events").with_group("workers").with_concurrency(4);
    broker_restart_loses_nothing(
        js.writer(),
        js.reader(),
        task,
        || async { tokio::task::block_in_place(|| server.restart()) },
        Duration::from_secs(240),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_consumer_survives_two_restarts_on_jetstream() {
    // A lock, so the restart can be called twice (it needs the broker mutably).
    let server = std::sync::Mutex::new(NatsServer::start(NatsRelease::Current));
    let config = JetStreamConfig { ack_wait: Duration::from_secs(5), ..JetStreamConfig::default() };
    let address = server.lock().unwrap().url();
    let nats = NatsConfig { request_timeout: Duration::from_secs(2), ..NatsConfig::new(address) };
    let js = JetStream::connect(&nats, config).await.unwrap();
    js.create_stream("lagging", &["lagging.events"]).await.unwrap();
    let task = ReadTask::new("lagging.events").with_group("workers").with_concurrency(4);
    lagging_consumer_survives_restarts(
        js.writer(),
        js.reader(),
        task,
        || async { tokio::task::block_in_place(|| server.lock().unwrap().restart()) },
        Duration::from_secs(240),
    )
    .await;
}

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
