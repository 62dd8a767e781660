//! Produce and consume throughput and produce latency against the broker double (later
//! profile), in one run, with the default writer (a write goes at once when its
//! partition has nothing in flight; writes behind a request share the next) and with a
//! 2 ms linger on top. 1 KiB values.
//!
//! `cargo bench -p tidewater-streambus --bench streambus_throughput`
//! (`TW_BENCH_N` sets the message count, 20,000 by default.)
//!
//! The double is in-process and keeps everything in memory, so these figures are the
//! driver's and the double's costs together on loopback, not a StreamBus broker's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewater_core::testing::Recorder;
use tidewater_core::{Driver, EventRegistry, Message, ReadTask, SubscriberScheduler, Writer};
use tidewater_streambus::{StreamBus, StreamBusConfig};
use tidewater_streambus_double::{BrokerDouble, DoubleConfig, Profile};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn connect(double: &BrokerDouble, linger: Duration) -> StreamBus {
    let mut config = StreamBusConfig::new(double.addr().to_string());
    config.linger = linger;
    StreamBus::connect(config).await.expect("connect")
}

/// `writers` tasks each write `n / writers` single-message writes, awaiting each.
async fn produce(writer: Arc<dyn Writer>, topic: &str, n: usize, writers: usize) -> (f64, Duration, Duration) {
    let payload = bytes::Bytes::from(vec![b'x'; 1024]);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (writer, payload, topic) = (Arc::clone(&writer), payload.clone(), topic.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(n / writers);
                for i in 0..n / writers {
                    let m = Message::new(&topic, payload.clone())
                        .with_id(format!("{w}-{i}"))
                        .with_key(format!("k{}", i % 64));
                    let t = Instant::now();
                    writer.write_one(m).await.expect("write");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_unstable();
    (rate, percentile(&all, 0.5), percentile(&all, 0.99))
}

/// One write of `n` messages in batches of 1,000 per call.
async fn produce_batches(writer: Arc<dyn Writer>, topic: &str, n: usize) -> f64 {
    let payload = bytes::Bytes::from(vec![b'x'; 1024]);
    let started = Instant::now();
    for start in (0..n).step_by(1000) {
        let batch = (start..(start + 1000).min(n))
            .map(|i| Message::new(topic, payload.clone()).with_id(format!("b{i}")).with_key(format!("k{}", i % 64)))
            .collect();
        writer.write(batch).await.expect("write");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn consume(bus: &StreamBus, topic: &str, n: usize) -> f64 {
    let recorder = Recorder::new();
    let mut scheduler = SubscriberScheduler::new(bus.reader(), EventRegistry::new());
    scheduler.add(ReadTask::new(topic), Arc::new(recorder.clone()));
    let started = Instant::now();
    scheduler.start().await.unwrap();
    recorder.wait_for(n, Duration::from_secs(300)).await.expect("consume everything");
    let rate = n as f64 / started.elapsed().as_secs_f64();
    scheduler.shutdown(Duration::from_secs(5)).await;
    rate
}

fn main() {
    let n: usize = std::env::var("TW_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let mut config = DoubleConfig::new(Profile::Later);
        config.idle_fault = None;
        let double = BrokerDouble::start_with(config).await;
        let plain = connect(&double, StreamBusConfig::new("").linger).await;
        let lingering = connect(&double, Duration::from_millis(2)).await;
        for (topic, bus) in [("plain", &plain), ("lingering", &lingering), ("bulk", &lingering)] {
            bus.create_topic(topic, 3).await.unwrap();
        }
        println!("StreamBus driver against the in-process double (later profile), {n} messages of 1 KiB\n");
        println!("| path | writers | msg/s | p50 | p99 |");
        println!("|---|---|---|---|---|");
        let (rate, p50, p99) = produce(plain.writer(), "plain", n, 1).await;
        println!("| produce, default (linger 0) | 1 | {rate:.0} | {p50:.1?} | {p99:.1?} |");
        let (rate, p50, p99) = produce(plain.writer(), "plain", n, 32).await;
        println!("| produce, default (linger 0) | 32 | {rate:.0} | {p50:.1?} | {p99:.1?} |");
        let (rate, p50, p99) = produce(lingering.writer(), "lingering", n, 32).await;
        println!("| produce, linger 2 ms | 32 | {rate:.0} | {p50:.1?} | {p99:.1?} |");
        let (rate, p50, p99) = produce(plain.writer(), "plain", n, 400).await;
        println!("| produce, default (linger 0) | 400 | {rate:.0} | {p50:.1?} | {p99:.1?} |");
        let (rate, p50, p99) = produce(lingering.writer(), "lingering", n, 400).await;
        println!("| produce, linger 2 ms | 400 | {rate:.0} | {p50:.1?} | {p99:.1?} |");
        let rate = produce_batches(lingering.writer(), "bulk", n).await;
        println!("| produce, writes of 1,000 | 1 | {rate:.0} | - | - |");
        let rate = consume(&lingering, "plain", 3 * n).await;
        println!("| consume (fetch 1 MiB) | 1 reader | {rate:.0} | - | - |");
    });
}
