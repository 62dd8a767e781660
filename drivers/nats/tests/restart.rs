//! A 10,000-message JetStream run survives a nats-server restart in the middle: every
//! message is processed at least once, and the driver reconnects by itself.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::PrivateServer;
use tidewater_core::testing::Recorder;
use tidewater_core::{Driver, EventRegistry, Message, SubscriberScheduler};
use tidewater_nats::{JetStream, JetStreamConfig, NatsConfig};

const TOTAL: usize = 10_000;
const BATCH: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_run_loses_nothing() {
    let mut server = PrivateServer::start();
    let config = JetStreamConfig { ack_wait: Duration::from_secs(5), ..JetStreamConfig::default() };
    let nats = NatsConfig { request_timeout: Duration::from_secs(2), ..NatsConfig::new(server.url()) };
    let js = JetStream::connect(&nats, config).await.unwrap();
    js.create_stream("restart", &["restart.events"]).await.unwrap();

    let seen = Recorder::new();
    let mut sub = SubscriberScheduler::new(js.reader(), EventRegistry::new());
    sub.subscribe("restart.events", seen.clone()).group("workers").concurrency(4);
    sub.start().await.unwrap();

    let writer = js.writer();
    let (go_on, halfway) = tokio::sync::oneshot::channel::<()>();
    let publisher = tokio::spawn(async move {
        let mut retries = 0;
        let mut halfway = Some(halfway);
        for chunk in 0..TOTAL / BATCH {
            if chunk == TOTAL / BATCH / 2 {
                // The second half is published while the server restarts.
                halfway.take().unwrap().await.unwrap();
            }
            let batch: Vec<Message> = (chunk * BATCH..(chunk + 1) * BATCH)
                .map(|i| {
                    Message::new("restart.events", format!("{i}"))
                        .with_id(format!("m-{i}"))
                        .with_key(format!("k{}", i % 32))
                })
                .collect();
            // At-least-once publishing: a batch that was not acknowledged is sent again;
            // Nats-Msg-Id lets the server drop what it already stored.
            while let Err(err) = writer.write(batch.clone()).await {
                assert!(err.is_retryable() || err.kind() == tidewater_core::ErrorKind::UnknownTopic, "{err}");
                retries += 1;
                assert!(retries < 2_000, "the server never came back: {err}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        retries
    });

    seen.wait_for(3_000, Duration::from_secs(60)).await.expect("3,000 processed before the restart");
    go_on.send(()).unwrap();
    // Kill it and start it again on the same port and storage.
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let retries = publisher.await.unwrap();

    let expected: HashSet<String> = (0..TOTAL).map(|i| format!("m-{i}")).collect();
    let all = seen
        .wait_until(
            |d| {
                let got: HashSet<&str> = d.iter().map(|d| d.message().id.as_str()).collect();
                expected.iter().all(|id| got.contains(id.as_str()))
            },
            Duration::from_secs(120),
        )
        .await
        .unwrap_or_else(|e| panic!("messages lost across the restart: {e}"));
    let report = sub.shutdown(Duration::from_secs(10)).await;
    let distinct: HashSet<&str> = all.iter().map(|d| d.message().id.as_str()).collect();
    println!(
        "restart: {TOTAL} messages, {} deliveries ({} duplicates), {retries} publish retries, {} reader restarts",
        all.len(),
        all.len() - distinct.len(),
        report.tasks[0].restarts
    );
    assert_eq!(distinct.len(), TOTAL);
    drop(server);
}
