//! How much memory a Pulsar reader holds per receiver-queue slot, with a backlog and a
//! handler that does not finish, so the reader fills every slot it has.
//!
//! Run: `cargo bench -p tidewater-pulsar --bench reader_memory` after `scripts/setup`.
//! It starts a private Apache Pulsar standalone, writes a backlog of 1 KiB messages,
//! then measures each receiver-queue size in a process of its own (the resident set
//! size only grows within one): the growth of the resident set from before the
//! subscription until it stops growing, divided by the slots.

use std::time::{Duration, Instant};

use tidewater_core::{
    handler_fn, Delivery, Driver, EventRegistry, HandlerError, Message, ReadTask, SubscriberScheduler,
};
use tidewater_pulsar::{Pulsar, PulsarConfig};

const TOPIC: &str = "reader-memory";
const BACKLOG: usize = 12_000;
const SIZES: [u32; 2] = [1_000, 10_000];

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of kB")
}

/// One measurement, in this process: subscribes with `queue` slots and reports KiB.
async fn measure(url: &str, queue: u32) -> u64 {
    let mut config = PulsarConfig::new(url);
    config.receiver_queue = queue;
    let pulsar = Pulsar::connect(config).await.expect("connect");
    let mut scheduler = SubscriberScheduler::new(pulsar.reader(), EventRegistry::new());
    let before = rss_kib();
    // Every handler call waits for good: the reader fills its slots and stops.
    let handler = handler_fn(|_d: Delivery| async move {
        std::future::pending::<()>().await;
        Ok::<_, HandlerError>(())
    });
    scheduler.add(ReadTask::new(TOPIC).with_group(format!("memory-{queue}")), std::sync::Arc::new(handler));
    scheduler.start().await.expect("subscribe");
    // Until the resident set has not grown for two seconds (at most a minute).
    let (mut last, mut since) = (rss_kib(), Instant::now());
    let deadline = Instant::now() + Duration::from_secs(60);
    while since.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = rss_kib();
        if now > last + 64 {
            (last, since) = (now, Instant::now());
        }
    }
    last.saturating_sub(before)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let (Ok(url), Ok(queue)) = (std::env::var("TW_MEASURE_URL"), std::env::var("TW_MEASURE_QUEUE")) {
        let queue: u32 = queue.parse().expect("a queue size");
        println!("{}", measure(&url, queue).await);
        std::process::exit(0);
    }
    let broker = tidewater_testkit::PulsarStandalone::start("");
    let pulsar = Pulsar::connect(PulsarConfig::new(broker.url())).await.expect("connect to the private Pulsar");
    let writer = pulsar.writer();
    let payload = bytes::Bytes::from(vec![7u8; 1024]);
    for start in (0..BACKLOG).step_by(1000) {
        let batch = (start..start + 1000)
            .map(|i| Message::new(TOPIC, payload.clone()).with_key(format!("k{}", i % 64)))
            .collect();
        writer.write(batch).await.expect("write the backlog");
    }
    println!("| receiver queue | resident set growth | per slot |");
    println!("|---|---|---|");
    let mut growth = Vec::new();
    for queue in SIZES {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env("TW_MEASURE_URL", broker.url())
            .env("TW_MEASURE_QUEUE", queue.to_string())
            .output()
            .expect("the measuring process runs");
        let kib: u64 =
            String::from_utf8_lossy(&out.stdout).trim().parse().expect("a figure from the measuring process");
        println!("| {queue} | {:.1} MiB | {:.1} KiB |", kib as f64 / 1024.0, kib as f64 / f64::from(queue));
        growth.push(kib);
    }
    let per_slot = (growth[1] as f64 - growth[0] as f64) / f64::from(SIZES[1] - SIZES[0]);
    println!("marginal cost of a slot (1 KiB payloads): {per_slot:.2} KiB");
}
