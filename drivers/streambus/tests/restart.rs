//! The broker double (later profile, log kept) restarts in the middle of a
//! 10,000-message run: at least once, nothing lost (the shared scenario in
//! `tidewater_conformance::restart`), and the group reader rejoins by itself (a restarted
//! broker has forgotten its group members).

mod support;

use std::sync::Arc;
use std::time::Duration;

use tidewater_conformance::restart::{broker_restart_loses_nothing, lagging_consumer_survives_restarts};
use tidewater_core::{Driver, ReadTask};
use tidewater_streambus::StreamBus;
use tidewater_streambus_double::{BrokerDouble, Profile};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing_on_streambus() {
    let double = BrokerDouble::start(Profile::Later).await;
    let bus = StreamBus::connect(support::config(double.addr())).await.unwrap();
    bus.create_topic("restart", 3).await.unwrap();
    let task = ReadTask::new("restart").with_group("restart").with_concurrency(4);
    let mut restarted = None;
    let slot = &mut restarted;
    let restart = move || async move {
        let (addr, config, storage) = double.stop().await;
        // The broker stays away for a while, as a real restart does.
        tokio::time::sleep(Duration::from_millis(500)).await;
        *slot = Some(BrokerDouble::restart(addr, config, storage).await);
    };
    broker_restart_loses_nothing(bus.writer(), bus.reader(), task, restart, Duration::from_secs(240)).await;
    let double = restarted.expect("the double was restarted");
    let (generation, members) = double.group("restart.restart").expect("the group exists again");
    assert!(
        generation >= 1 && members.is_empty(),
        "the reader rejoined, then left at shutdown: {generation} {members:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_consumer_survives_two_restarts_on_streambus() {
    let double = BrokerDouble::start(Profile::Later).await;
    let bus = StreamBus::connect(support::config(double.addr())).await.unwrap();
    bus.create_topic("lagging", 3).await.unwrap();
    let task = ReadTask::new("lagging").with_group("lagging").with_concurrency(4);
    let current = Arc::new(tokio::sync::Mutex::new(Some(double)));
    let restart = || {
        let current = Arc::clone(&current);
        async move {
            let mut slot = current.lock().await;
            let (addr, config, storage) = slot.take().expect("a running double").stop().await;
            // The broker stays away for a while, as a real restart does.
            tokio::time::sleep(Duration::from_millis(500)).await;
            *slot = Some(BrokerDouble::restart(addr, config, storage).await);
        }
    };
    lagging_consumer_survives_restarts(bus.writer(), bus.reader(), task, restart, Duration::from_secs(240)).await;
}
