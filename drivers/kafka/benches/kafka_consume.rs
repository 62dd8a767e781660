//! Kafka consumption alone, on one warm broker: the raw loop, raw owning what it reads,
//! and tidewater, taking turns over many rounds at one pre-filled topic, 1 KiB records.
//!
//! Run: `cargo bench -p tidewater-kafka --bench kafka_consume`. `TW_BENCH_MESSAGES` sets
//! the topic's records (default 200,000), `TW_BENCH_ROUNDS` the rounds (default 5), and
//! `TW_BENCH_PREFETCH` tidewater's prefetch (default 256, the default of a read task).
//!
//! Where `kafka_throughput` writes a topic in each run and reads it there, this
//! bench writes one topic, warms the broker up (until its JIT compiler is quiet), then
//! reads the whole topic in each round with a new group a side, in a rotating order, so
//! that the broker serves every read from the same warm page cache. Each round prints
//! each side's rate and the CPU time the process used a record; the end, the medians
//! and, from each round's own, tidewater's ratio to each raw side. For what a record
//! costs each side and how the prefetch moves it, not for issue 17's target, which
//! `kafka_throughput` prints.

mod support;

use std::time::Instant;

use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use support::{consume_raw, length_only, owned, produce_raw};
use tidewater_core::{Driver, ReadTask};
use tidewater_kafka::{Kafka, KafkaConfig};
use tidewater_testkit::bench::{consume, count_from_env, measured, median, messages_from_env, rate, Cost};

#[global_allocator]
static GLOBAL: tidewater_testkit::bench::Counting = tidewater_testkit::bench::Counting;

/// The sides, in the order of the first round.
const SIDES: [&str; 3] = ["raw", "raw owning what it reads", "tidewater"];
/// How much of a core the broker's JIT compiler may use through a warm-up read.
const QUIET: f64 = 0.10;
/// The most warm-up reads.
const WARM_ROUNDS: usize = 10;

fn main() {
    let n = messages_from_env(200_000);
    let rounds = count_from_env("TW_BENCH_ROUNDS", 5).max(1);
    let prefetch = count_from_env("TW_BENCH_PREFETCH", ReadTask::new("t").prefetch);
    let broker = tidewater_testkit::KafkaBroker::start();
    let brokers = broker.brokers();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let kafka = Kafka::connect(KafkaConfig::new(&brokers)).await.unwrap();
        let producer: FutureProducer =
            ClientConfig::new().set("bootstrap.servers", &brokers).set("linger.ms", "5").create().unwrap();
        let topic = "bench-consume";
        kafka.create_topic(topic, 3).await.unwrap();
        produce_raw(&producer, topic, n).await;
        println!(
            "Apache Kafka {}, {n} records of 1 KiB in 3 partitions, {rounds} rounds, tidewater's prefetch {prefetch}",
            tidewater_testkit::kafka_version()
        );

        let read = |side: usize, group: String| {
            let (kafka, brokers) = (kafka.clone(), brokers.clone());
            async move {
                match side {
                    0 => measured(consume_raw(&brokers, topic, &group, n, length_only)).await,
                    1 => measured(consume_raw(&brokers, topic, &group, n, owned)).await,
                    _ => {
                        let task = ReadTask::new(topic).with_group(group).with_prefetch(prefetch);
                        measured(consume(kafka.reader(), task, n, 1024)).await
                    }
                }
            }
        };

        let pid = broker.pid().expect("the broker runs");
        let (mut warm, mut busy) = (0, 1.0);
        while warm < WARM_ROUNDS && busy > QUIET {
            let (jit, started) = (tidewater_testkit::bench::jit_cpu(pid), Instant::now());
            for side in 0..SIDES.len() {
                read(side, format!("warm-{warm}-{side}")).await;
            }
            busy = tidewater_testkit::bench::jit_cpu(pid).saturating_sub(jit).as_secs_f64()
                / started.elapsed().as_secs_f64();
            warm += 1;
        }
        println!(
            "{warm} warm-up rounds; the broker's JIT compiler used {:.0}% of a core through the last",
            busy * 100.0
        );

        // Per side: each round's rate and CPU µs a record.
        let mut figures: Vec<Vec<(f64, f64)>> = vec![Vec::new(); SIDES.len()];
        for round in 0..rounds {
            for turn in 0..SIDES.len() {
                let side = (turn + round) % SIDES.len();
                let (elapsed, cost): (_, Cost) = read(side, format!("round-{round}-{side}")).await;
                let figure = (rate(n, elapsed), cost.cpu.as_secs_f64() * 1e6 / n as f64);
                println!(
                    "round {round}: {:<26} {:>9.0} msg/s {:>5.2} CPU µs a record",
                    SIDES[side], figure.0, figure.1
                );
                figures[side].push(figure);
            }
        }

        println!("\nmedians over {rounds} rounds:");
        for (side, runs) in figures.iter().enumerate() {
            let rates = median(runs.iter().map(|f| f.0).collect());
            let cpu = median(runs.iter().map(|f| f.1).collect());
            println!("  {:<26} {rates:>9.0} msg/s {cpu:>5.2} CPU µs a record", SIDES[side]);
        }
        for side in 0..2 {
            let ratios: Vec<f64> = figures[2].iter().zip(&figures[side]).map(|(t, r)| t.0 / r.0).collect();
            let (low, high) = ratios.iter().fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
            println!(
                "tidewater over {}: {:.2} ({low:.2}-{high:.2}), the median of the rounds' own",
                SIDES[side],
                median(ratios)
            );
        }
    });
}
