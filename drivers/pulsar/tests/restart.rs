//! The broker restarts in the middle of a 10,000-message run: at least once, nothing
//! lost (the shared scenario in `tidewater_conformance::restart`). A private pulsar-lite
//! (same storage across the restart) behind a proxy of its own, which stays up while the
//! broker goes away and comes back.

mod support;

use std::time::Duration;

use support::{PrivatePulsar, Proxy};
use tidewater_conformance::restart::broker_restart_loses_nothing;
use tidewater_core::{Driver, ReadTask};
use tidewater_pulsar::Pulsar;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing_on_pulsar() {
    let mut broker = PrivatePulsar::start("");
    let proxy = Proxy::start(broker.addr());
    let pulsar = Pulsar::connect(support::config(&proxy.url())).await.expect("connect to the private pulsar-lite");
    let task = ReadTask::new("restart").with_group("restart").with_concurrency(4);
    broker_restart_loses_nothing(
        pulsar.writer(),
        pulsar.reader(),
        task,
        || async { broker.restart() },
        Duration::from_secs(180),
    )
    .await;
}
