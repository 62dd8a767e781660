//! Kafka throughput through tidewater against raw rdkafka, in one run, 1 KiB messages,
//! on an Apache Kafka 4 broker of the bench's own (the test kit's `KafkaBroker`).
//!
//! Run: `cargo bench -p tidewater-kafka --bench kafka_throughput` (`TW_BENCH_MESSAGES`
//! sets the count, default 50,000). Rows:
//! - produce: batches of 1,000 keyed messages, each waiting for its acknowledgements
//!   (raw: `FutureProducer::send_result` per message, then the delivery futures;
//!   tidewater: `Writer::write`), both with the driver's producer settings;
//! - consume: the 3-partition topic tidewater's writer filled in the produce row, read
//!   by each side with a new consumer group, timed from the first record to the last, so
//!   group set-up is left out (raw: a `StreamConsumer::recv` loop with auto-commit;
//!   tidewater: a handler, with its commits of processed offsets);
//! - consume, against raw reading what a message carries: the same, but the raw loop
//!   also copies each record's payload and key out of librdkafka's buffer and reads its
//!   headers (librdkafka parses them on first access) into owned values, as anything
//!   that keeps a record past the next poll must: the part of tidewater's cost that is
//!   reading the record rather than the layer (each side reads the topic again, with a
//!   group of its own).
//!
//! Beside each rate, what a message cost the process on each side: CPU time (the broker's
//! JVM is a process of its own, so not counted) and allocations through Rust's allocator
//! (librdkafka's own are not counted), over the whole of each side's call, so a consumer's
//! group join and close are in them, where the consume rate runs from the first record
//! to the last. On two cores shared with the broker the rates swing with what the JVM
//! does; the client's CPU time a message moves less.
//!
//! After the table, issue 17's targets for these rows and whether the run met them.
//!
//! `TW_BENCH_ONLY=raw`, `=raw-owned` or `=tidewater` runs the consume row for one side
//! alone (`raw` reading the payload's length only, `raw-owned` owning what it reads),
//! and `TW_BENCH_ONLY=produce-raw` or `=produce-tidewater` the produce row, each without
//! warm-up: for callgrind, which counts instructions rather than time.
//!
//! Each figure is the median of 3 runs, after untimed rounds of both sides (a fifth of
//! the messages each) until the broker's JIT compiler threads use at most a tenth of a core
//! through a round (at most 10 rounds): a broker just started spends its first tens of
//! seconds compiling its own hot paths (the JIT threads took over a third of the
//! machine's CPU through a cold run), which the clients on the same two cores then
//! compete with. The header says how many rounds it took and what the JIT used last.

mod support;

use std::time::{Duration, Instant};

use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use support::{consume_raw, length_only, owned, produce_raw, ReadRecord, BATCH};
use tidewater_core::{Driver, ReadTask};
use tidewater_kafka::{Kafka, KafkaConfig};
use tidewater_testkit::bench::{
    consume, measured, messages_from_env, paired, print_targets, produce, rate, Goal, Ratios, Target,
};

#[global_allocator]
static GLOBAL: tidewater_testkit::bench::Counting = tidewater_testkit::bench::Counting;

const RUNS: usize = 3;

async fn consume_tw(kafka: &Kafka, topic: &str, group: &str, n: usize) -> Duration {
    consume(kafka.reader(), ReadTask::new(topic).with_group(group), n, 1024).await
}

/// How much of a core the broker's JIT compiler may use through a warm-up round for the
/// timed runs to start. A broker just started compiles its hot paths as load reaches
/// them: its JIT threads took 35-50% of the machine's samples through the first 20 s of
/// a run, on the two cores the clients use too.
const QUIET: f64 = 0.10;
/// The most warm-up rounds before timing, quiet or not.
const WARM_ROUNDS: usize = 10;

fn main() {
    let n: usize = messages_from_env(50_000);
    let broker = tidewater_testkit::KafkaBroker::start();
    let brokers = broker.brokers();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let config = KafkaConfig::new(&brokers);
        let kafka = Kafka::connect(config.clone()).await.unwrap();
        let raw: FutureProducer = {
            // The producer settings the driver uses, so only the layer differs.
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", &brokers)
                .set("linger.ms", "5")
                .set("enable.idempotence", "true")
                .set("partitioner", "murmur2_random");
            c.create().unwrap()
        };
        println!(
            "Apache Kafka {} (KRaft, one node), 1 KiB messages, {n} per run, median of {RUNS}",
            tidewater_testkit::kafka_version()
        );
        // TW_BENCH_ONLY=raw, =raw-owned or =tidewater consumes for one side alone, with
        // no warm-up, for callgrind: each reads records the raw producer wrote, so what
        // else the process ran is the same for all. =produce-raw or =produce-tidewater
        // produces for one side alone, to an empty topic.
        if let Ok(only) = std::env::var("TW_BENCH_ONLY") {
            let topic = format!("bench-only-{only}");
            kafka.create_topic(&topic, 3).await.unwrap();
            let (row, side) = match only.strip_prefix("produce-") {
                Some(side) => ("produce", side),
                None => ("consume", only.as_str()),
            };
            let (elapsed, cost) = match (row, side) {
                ("produce", "raw") => measured(produce_raw(&raw, &topic, n)).await,
                ("produce", "tidewater") => measured(produce(kafka.writer(), &topic, n, BATCH, 1024)).await,
                ("consume", "raw" | "raw-owned" | "tidewater") => {
                    produce_raw(&raw, &topic, n).await;
                    match side {
                        "raw" => measured(consume_raw(&brokers, &topic, "bench-only", n, length_only)).await,
                        "raw-owned" => measured(consume_raw(&brokers, &topic, "bench-only", n, owned)).await,
                        _ => measured(consume_tw(&kafka, &topic, "bench-only", n)).await,
                    }
                }
                _ => panic!(
                    "TW_BENCH_ONLY is raw, raw-owned, tidewater, produce-raw or produce-tidewater, not {only:?}"
                ),
            };
            println!(
                "{row}, {side} alone: {:.0} msg/s, {:.2} CPU µs a record",
                rate(n, elapsed),
                cost.cpu.as_secs_f64() * 1e6 / n as f64
            );
            return;
        }
        // Warm-up: the same round, smaller, not counted, until the broker has compiled
        // what the rounds run (see `QUIET`).
        let warm = (n / 5).max(1000);
        let pid = broker.pid().expect("the broker runs");
        let (mut rounds, mut busy) = (0, 1.0);
        while rounds < WARM_ROUNDS && busy > QUIET {
            let (jit, started) = (tidewater_testkit::bench::jit_cpu(pid), Instant::now());
            let (raw_topic, tw_topic) = (format!("bench-warm-raw-{rounds}"), format!("bench-warm-tw-{rounds}"));
            kafka.create_topic(&raw_topic, 3).await.unwrap();
            produce_raw(&raw, &raw_topic, warm).await;
            consume_raw(&brokers, &raw_topic, "bench-warm", warm, length_only).await;
            kafka.create_topic(&tw_topic, 3).await.unwrap();
            produce(kafka.writer(), &tw_topic, warm, BATCH, 1024).await;
            consume_tw(&kafka, &tw_topic, "bench-warm", warm).await;
            let compiled = tidewater_testkit::bench::jit_cpu(pid).saturating_sub(jit);
            busy = compiled.as_secs_f64() / started.elapsed().as_secs_f64();
            rounds += 1;
        }
        println!(
            "{rounds} warm-up rounds of {warm} messages; the broker's JIT compiler used {:.0}% of a core through the last",
            busy * 100.0
        );
        let mut table =
            Ratios::new("raw rdkafka", &["produce", "consume", "consume, raw reading what a message carries"]);
        for run in 0..RUNS {
            let (raw_topic, tw_topic) = (format!("bench-raw-{run}"), format!("bench-tw-{run}"));
            kafka.create_topic(&raw_topic, 3).await.unwrap();
            kafka.create_topic(&tw_topic, 3).await.unwrap();
            let produced = paired(
                run,
                measured(produce_raw(&raw, &raw_topic, n)),
                measured(produce(kafka.writer(), &tw_topic, n, BATCH, 1024)),
            );
            table.push_measured(0, n, produced.await);
            // Both sides read the same records, those tidewater wrote, as the Pulsar and
            // JetStream benches do. Each consume row reads the topic again, in groups of
            // its own.
            for (row, read, group) in [(1, length_only as ReadRecord, "group"), (2, owned, "group-owned")] {
                let group = format!("bench-{group}-{run}");
                let consumed = paired(
                    run,
                    measured(consume_raw(&brokers, &tw_topic, &group, n, read)),
                    measured(consume_tw(&kafka, &tw_topic, &group, n)),
                );
                table.push_measured(row, n, consumed.await);
            }
        }
        table.print();
        // Issue 17: every driver row at 0.95 of its raw client. The third row is a
        // reference for the second, with no target of its own.
        print_targets(&[
            Target::new("produce, tidewater over raw rdkafka", Goal::AtLeast(0.95), "x", table.ratio(0)),
            Target::new("consume, tidewater over raw rdkafka", Goal::AtLeast(0.95), "x", table.ratio(1)),
        ]);
    });
}
