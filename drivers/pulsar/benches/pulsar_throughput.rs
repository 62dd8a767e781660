//! Pulsar throughput through tidewater against the raw pulsar crate, in one run, 1 KiB
//! messages, batched, on a private Apache Pulsar standalone this bench starts (the test
//! kit's `PulsarStandalone`).
//!
//! Run: `cargo bench -p tidewater-pulsar --bench pulsar_throughput` after `scripts/setup`
//! (which installs Pulsar; `TW_BENCH_MESSAGES` sets the count, default 50,000). Rows:
//! - produce: writes of 1,000 keyed messages, each waiting for its receipts (raw:
//!   `Producer::send_non_blocking` per message, then the receipts; tidewater:
//!   `Writer::write`), both with the driver's producer options (batches of up to 1,000
//!   messages or 128 KiB, 5 ms linger, `block_queue_if_full`);
//! - consume: one topic, filled once through tidewater's writer, read whole in each run
//!   by a new Shared subscription of each side's own from the earliest message, timed
//!   from the first message to the last (raw: a `Consumer` stream loop with an ack per
//!   message; tidewater: a handler, acks by the driver).
//!
//! Each produce figure is the median of 3 runs, each consume figure the median of 9
//! (after a read of each side not counted); which path goes first alternates. Beside the
//! rates, each side's CPU time and allocations a message, in this process (the client
//! and tidewater; the broker is a process of its own), the making of its producer or
//! consumer included. After the table, issue 17's targets for these rows and whether the
//! run met them.

use std::time::{Duration, Instant};

use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::message::proto::command_subscribe::SubType;
use pulsar::{ConsumerOptions, ProducerOptions, TokioExecutor};
use tidewater_core::{Driver, ReadTask};
use tidewater_pulsar::{Pulsar, PulsarConfig};
use tidewater_testkit::bench::{
    consume, measured, messages_from_env, paired, payload, print_targets, produce, Counter, Goal, Ratios, Target,
};

#[global_allocator]
static GLOBAL: tidewater_testkit::bench::Counting = tidewater_testkit::bench::Counting;

const RUNS: usize = 3;
/// Reads of the one consume topic a side, after one not counted.
const CONSUME_RUNS: usize = 9;
const BATCH: usize = 1000;
const NAMESPACE: &str = "persistent://public/default/";

async fn raw_client(url: &str) -> pulsar::Pulsar<TokioExecutor> {
    pulsar::Pulsar::builder(url, TokioExecutor).build().await.unwrap()
}

async fn produce_raw(client: &pulsar::Pulsar<TokioExecutor>, topic: &str, n: usize) -> Duration {
    let options = ProducerOptions {
        batch_size: Some(1000),
        batch_byte_size: Some(128 * 1024),
        batch_timeout: Some(Duration::from_millis(5)),
        block_queue_if_full: true,
        ..Default::default()
    };
    let mut producer =
        client.producer().with_topic(format!("{NAMESPACE}{topic}")).with_options(options).build().await.unwrap();
    let p = payload(1024);
    let started = Instant::now();
    for start in (0..n).step_by(BATCH) {
        let mut receipts = Vec::with_capacity(BATCH);
        for i in start..(start + BATCH).min(n) {
            let message = pulsar::producer::Message {
                payload: p.to_vec(),
                properties: [("tw-id".to_owned(), format!("{topic}-{i}"))].into(),
                partition_key: Some(format!("k{}", i % 64)),
                ..Default::default()
            };
            receipts.push(producer.send_non_blocking(message).await.unwrap());
        }
        for receipt in receipts {
            receipt.await.unwrap();
        }
    }
    let elapsed = started.elapsed();
    producer.close().await.unwrap();
    elapsed
}

async fn consume_raw(client: &pulsar::Pulsar<TokioExecutor>, topic: &str, group: &str, n: usize) -> Duration {
    let mut consumer: pulsar::Consumer<Vec<u8>, TokioExecutor> = client
        .consumer()
        .with_topic(format!("{NAMESPACE}{topic}"))
        .with_subscription(group)
        .with_subscription_type(SubType::Shared)
        .with_batch_size(1000)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .unwrap();
    let counter = Counter::new(n);
    let mut bytes = 0usize;
    for _ in 0..n {
        let message = consumer.next().await.unwrap().unwrap();
        bytes += message.payload.data.len();
        consumer.ack(&message).await.unwrap();
        counter.hit();
    }
    assert_eq!(bytes, n * 1024);
    let elapsed = counter.wait(Duration::from_secs(300)).await;
    consumer.close().await.unwrap();
    elapsed
}

async fn consume_tw(pulsar: &Pulsar, topic: &str, group: &str, n: usize) -> Duration {
    consume(pulsar.reader(), ReadTask::new(topic).with_group(group), n, 1024).await
}

fn main() {
    let n: usize = messages_from_env(50_000);
    let broker = tidewater_testkit::PulsarStandalone::start("");
    let url = broker.url();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let pulsar = Pulsar::connect(PulsarConfig::new(&url)).await.unwrap();
        let raw = raw_client(&url).await;
        println!(
            "Apache Pulsar {} standalone, 1 KiB messages, batched, {n} per run, median of {RUNS} (produce) and {CONSUME_RUNS} (consume)",
            tidewater_testkit::pulsar_version()
        );
        let mut table = Ratios::new("raw pulsar crate", &["produce", "consume"]);
        for run in 0..RUNS {
            let (raw_topic, tw_topic) = (format!("bench-raw-{run}"), format!("bench-tw-{run}"));
            let produced = paired(
                run,
                measured(produce_raw(&raw, &raw_topic, n)),
                measured(produce(pulsar.writer(), &tw_topic, n, BATCH, 1024)),
            );
            table.push_measured(0, n, produced.await);
        }
        // Both sides read one topic, filled once, with subscriptions of their own, as
        // the NATS bench reads JetStream. Each side had read a topic its own producer
        // had just filled, and the row came out 1.06-1.25; on the same data, 0.98-1.09
        // (`BENCHMARKS.md`, session 41).
        let topic = "bench-consume";
        produce(pulsar.writer(), topic, n, BATCH, 1024).await;
        let (raw_group, tw_group) = (format!("raw-{CONSUME_RUNS}"), format!("tw-{CONSUME_RUNS}"));
        paired(CONSUME_RUNS, consume_raw(&raw, topic, &raw_group, n), consume_tw(&pulsar, topic, &tw_group, n)).await;
        for run in 0..CONSUME_RUNS {
            let (raw_group, tw_group) = (format!("raw-{run}"), format!("tw-{run}"));
            let consumed = paired(
                run,
                measured(consume_raw(&raw, topic, &raw_group, n)),
                measured(consume_tw(&pulsar, topic, &tw_group, n)),
            );
            table.push_measured(1, n, consumed.await);
        }
        table.print();
        // Issue 17: every driver row at 0.95 of its raw client.
        print_targets(&[
            Target::new("produce, tidewater over the raw pulsar crate", Goal::AtLeast(0.95), "x", table.ratio(0)),
            Target::new("consume, tidewater over the raw pulsar crate", Goal::AtLeast(0.95), "x", table.ratio(1)),
        ]);
    });
}
