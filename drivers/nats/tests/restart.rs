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
