//! How much memory a Pulsar reader holds per receiver-queue slot, with a backlog and a
//! handler that does not finish, so the reader fills every slot it has.
//!
//! Run: `cargo bench -p tidewater-pulsar --bench reader_memory` after `scripts/setup`.
//! It starts a private Apache Pulsar standalone, writes a backlog of 1 KiB messages,
//! then measures each receiver-queue size in a process of its own (the resident set
//! size only grows within one): the growth of the resident set from before the
//! subscription until it stops growing, divided by the slots.

use tidewater_core::{Driver, ReadTask};
use tidewater_pulsar::{Pulsar, PulsarConfig};
use tidewater_testkit::bench::{measured_alone, read_ahead_kib, write_backlog};

const TOPIC: &str = "reader-memory";
const BACKLOG: usize = 12_000;
const SIZES: [u32; 2] = [1_000, 10_000];

/// One measurement, in this process: subscribes with `queue` slots and reports KiB.
async fn measure(url: &str, queue: u32) -> u64 {
    let mut config = PulsarConfig::new(url);
    config.receiver_queue = queue;
    let pulsar = Pulsar::connect(config).await.expect("connect");
    read_ahead_kib(pulsar.reader(), ReadTask::new(TOPIC).with_group(format!("memory-{queue}"))).await
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
    write_backlog(&*pulsar.writer(), TOPIC, BACKLOG).await;
    println!("| receiver queue | resident set growth | per slot |");
    println!("|---|---|---|");
    let mut growth = Vec::new();
    for queue in SIZES {
        let kib = measured_alone(&[("TW_MEASURE_URL", broker.url()), ("TW_MEASURE_QUEUE", queue.to_string())]);
        println!("| {queue} | {:.1} MiB | {:.1} KiB |", kib as f64 / 1024.0, kib as f64 / f64::from(queue));
        growth.push(kib);
    }
    let per_slot = (growth[1] as f64 - growth[0] as f64) / f64::from(SIZES[1] - SIZES[0]);
    println!("marginal cost of a slot (1 KiB payloads): {per_slot:.2} KiB");
}
