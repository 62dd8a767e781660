//! `Bus::run_until_stopped`: SIGTERM ends the run with a drain, not the process. A test
//! binary of its own, since the signal goes to the whole process.

use std::time::Duration;

use tidewater::memory::MemoryBroker;
use tidewater::testing::Recorder;
use tidewater::{Bus, EventRegistry};

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_returns_the_report() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new());
    let seen = Recorder::new();
    bus.subscribe("jobs", seen.clone()).group("workers");
    let publisher = bus.publisher().clone();
    let running = tokio::spawn(async move { bus.run_until_stopped(Duration::from_secs(5)).await });

    // Once a message was handled the bus is running, and listening for the signal.
    publisher.publish_bytes("jobs", "1", "text/plain").await.unwrap();
    seen.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());

    let report = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the run ends after SIGTERM")
        .unwrap()
        .expect("a clean shutdown");
    assert_eq!(report.acked(), 1, "{report:?}");
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn run_until_a_stop_of_your_own() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new());
    let seen = Recorder::new();
    bus.subscribe("jobs", seen.clone()).group("workers");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let publisher = bus.publisher().clone();
    let running =
        tokio::spawn(
            async move { bus.run_until(async move { stopped.await.unwrap_or(()) }, Duration::from_secs(5)).await },
        );
    publisher.publish_bytes("jobs", "1", "text/plain").await.unwrap();
    seen.wait_for(1, Duration::from_secs(10)).await.unwrap();
    stop.send(()).unwrap();
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.acked(), 1);
}
