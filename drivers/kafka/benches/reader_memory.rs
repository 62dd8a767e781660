//! How much memory a Kafka reader holds ahead of its handlers, with a backlog and a
//! handler that does not finish, so the reader fetches all the read-ahead it allows.
//!
//! Run: `cargo bench -p tidewater-kafka --bench reader_memory` after `scripts/setup`. It
//! starts a private Apache Kafka, writes 40,000 messages of 1 KiB to 4 partitions, then
//! measures each case in a process of its own (the resident set size only grows within
//! one): the growth of the resident set from before the subscription until it stops
//! growing. The cases: the driver's default (prefetch 256), a prefetch of 5,000, and
//! librdkafka's own defaults (the queue bounds set back to them on the configuration).

use tidewater_core::{Driver, ReadTask};
use tidewater_kafka::{Kafka, KafkaConfig};
use tidewater_testkit::bench::{measured_alone, read_ahead_kib, write_backlog};

const TOPIC: &str = "reader-memory";
const BACKLOG: usize = 40_000;

/// The cases: a name, the task's prefetch, and whether librdkafka's defaults are set back.
const CASES: [(&str, usize, bool); 3] = [
    ("prefetch 256 (the default)", 256, false),
    ("prefetch 5,000", 5_000, false),
    ("librdkafka's defaults", 256, true),
];

/// One measurement, in this process: case `case` of [`CASES`], in KiB.
async fn measure(brokers: &str, case: usize) -> u64 {
    let (_, prefetch, defaults) = CASES[case];
    let mut config = KafkaConfig::new(brokers);
    if defaults {
        config = config.set("queued.max.messages.kbytes", "65536").set("queued.min.messages", "100000");
    }
    let kafka = Kafka::connect(config).await.expect("connect");
    let mut task = ReadTask::new(TOPIC).with_group(format!("memory-{case}"));
    task.prefetch = prefetch;
    read_ahead_kib(kafka.reader(), task).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let (Ok(brokers), Ok(case)) = (std::env::var("TW_MEASURE_BROKERS"), std::env::var("TW_MEASURE_CASE")) {
        println!("{}", measure(&brokers, case.parse().expect("a case")).await);
        std::process::exit(0);
    }
    let broker = tidewater_testkit::KafkaBroker::start();
    let kafka = Kafka::connect(KafkaConfig::new(broker.brokers())).await.expect("connect to the private Kafka");
    kafka.create_topic(TOPIC, 4).await.expect("create the topic");
    write_backlog(&*kafka.writer(), TOPIC, BACKLOG).await;
    println!(
        "Apache Kafka {}, {BACKLOG} waiting messages of 1 KiB on 4 partitions",
        tidewater_testkit::kafka_version()
    );
    println!("| reader | resident set growth |");
    println!("|---|---|");
    for (case, (name, _, _)) in CASES.iter().enumerate() {
        let kib = measured_alone(&[("TW_MEASURE_BROKERS", broker.brokers()), ("TW_MEASURE_CASE", case.to_string())]);
        println!("| {name} | {:.1} MiB |", kib as f64 / 1024.0);
    }
}
