//! The broker restarts in the middle of a 10,000-message run: at least once, nothing
//! lost. A private pulsar-lite (same storage across the restart) behind a proxy of its
//! own, which stays up while the broker goes away and comes back.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{PrivatePulsar, Proxy};
use tidewater_core::testing::Recorder;
use tidewater_core::{Driver, EventRegistry, Message, ReadTask, SubscriberScheduler};
use tidewater_pulsar::Pulsar;

const TOTAL: usize = 10_000;
const BATCH: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing() {
    let mut broker = PrivatePulsar::start("");
    let proxy = Proxy::start(broker.addr());
    let pulsar = Pulsar::connect(support::config(&proxy.url())).await.expect("connect to the private pulsar-lite");
    let topic = "restart";

    let received = Recorder::new();
    let mut scheduler = SubscriberScheduler::new(pulsar.reader(), EventRegistry::new());
    scheduler.add(ReadTask::new(topic).with_group("restart").with_concurrency(4), Arc::new(received.clone()));
    scheduler.start().await.unwrap();

    let written = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let writer = pulsar.writer();
    let producer = {
        let (written, retries) = (Arc::clone(&written), Arc::clone(&retries));
        tokio::spawn(async move {
            for start in (0..TOTAL).step_by(BATCH) {
                let batch: Vec<Message> = (start..start + BATCH)
                    .map(|i| {
                        Message::new(topic, format!("payload {i}"))
                            .with_id(format!("m{i}"))
                            .with_key(format!("k{}", i % 32))
                    })
                    .collect();
                // As a service would: a write that failed for a reason a retry can fix
                // is written again (at least once).
                loop {
                    match writer.write(batch.clone()).await {
                        Ok(()) => break,
                        Err(err) if err.is_retryable() => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(err) => panic!("write failed for good: {err}"),
                    }
                }
                written.fetch_add(BATCH, Ordering::Relaxed);
            }
        })
    };

    received.wait_for(TOTAL / 3, Duration::from_secs(120)).await.expect("a third consumed before the restart");
    broker.restart();
    println!("restarted the broker after {} written, {} received", written.load(Ordering::Relaxed), received.len());

    producer.await.expect("producer task");
    let expected: HashSet<String> = (0..TOTAL).map(|i| format!("m{i}")).collect();
    received
        .wait_until(
            |seen| {
                let ids: HashSet<&str> = seen.iter().map(|d| d.message().id.as_str()).collect();
                expected.iter().all(|id| ids.contains(id.as_str()))
            },
            Duration::from_secs(180),
        )
        .await
        .unwrap_or_else(|e| {
            let ids: HashSet<String> = received.deliveries().iter().map(|d| d.message().id.clone()).collect();
            panic!("{e}: {} of {TOTAL} distinct messages arrived", ids.len())
        });
    let report = scheduler.shutdown(Duration::from_secs(10)).await;
    let deliveries = received.len();
    println!(
        "broker restart: {TOTAL} messages, {deliveries} deliveries ({} duplicates), {} write retries, reader restarts {}",
        deliveries - TOTAL,
        retries.load(Ordering::Relaxed),
        report.tasks[0].restarts
    );
    assert!(report.is_clean(), "{report:?}");
}
