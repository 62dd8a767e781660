//! The broker is killed (SIGKILL) in the middle of a 10,000-message run and started
//! again on the same data: at least once, nothing acknowledged lost (the shared scenario
//! in `tidewater_conformance::restart`). A private Apache Pulsar standalone.

use std::time::Duration;

use tidewater_conformance::restart::{broker_restart_loses_nothing, lagging_consumer_survives_restarts};
use tidewater_core::{Driver, ReadTask};
use tidewater_pulsar::{Pulsar, PulsarConfig};
use tidewater_testkit::PulsarStandalone;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing_on_pulsar() {
    let mut broker = PulsarStandalone::start("");
    let config = PulsarConfig::new(broker.url()).admin_url(broker.admin_url());
    let pulsar = Pulsar::connect(config).await.expect("connect to the private Pulsar");
    let task = ReadTask::new("restart").with_group("restart").with_concurrency(4);
    broker_restart_loses_nothing(
        pulsar.writer(),
        pulsar.reader(),
        task,
        // The restart blocks while the JVM starts; the writer and reader go on meanwhile
        // on the runtime's other thread.
        || async { tokio::task::block_in_place(|| broker.restart()) },
        Duration::from_secs(240),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_consumer_survives_two_restarts_on_pulsar() {
    // The driver's warnings (a stuck consumer, a reader restart) go to the test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "tidewater=info,warn".into()),
        )
        .with_test_writer()
        .try_init();
    // A lock, so the restart can be called twice (it needs the broker mutably).
    let broker = std::sync::Mutex::new(PulsarStandalone::start(""));
    let config = {
        let broker = broker.lock().unwrap();
        PulsarConfig::new(broker.url()).admin_url(broker.admin_url())
    };
    let pulsar = Pulsar::connect(config).await.expect("connect to the private Pulsar");
    let task = ReadTask::new("lagging").with_group("lagging").with_concurrency(4);
    lagging_consumer_survives_restarts(
        pulsar.writer(),
        pulsar.reader(),
        task,
        || async { tokio::task::block_in_place(|| broker.lock().unwrap().restart()) },
        Duration::from_secs(240),
    )
    .await;
}
