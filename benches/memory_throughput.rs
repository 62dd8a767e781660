//! In-memory publish -> handler throughput and latency for 1 KiB messages, beside a raw
//! `tokio::sync::mpsc` channel carrying the same messages, in one run.
//!
//! Run: `cargo bench --bench memory_throughput` (set `TW_BENCH_MESSAGES` to change the
//! message count, default 200,000; `TW_BENCH_RUNTIME=current_thread` to run both on
//! one thread instead of tokio's multi-threaded runtime with 2 workers). Throughput: one task publishes as fast as it can
//! and the handler counts. Latency: ping-pong, one message in flight at a time, time
//! from before the publish to the handler. Each figure is the median of 5 runs; beside
//! the rates, allocations a message over the throughput run.
//! `TW_BENCH_ONLY=raw` or `TW_BENCH_ONLY=tidewater` measures one side's throughput
//! alone, with only 1,000 ping-pongs, for a profiler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tidewater::memory::MemoryBroker;
use tidewater::{handler_fn, Delivery, Driver, EventRegistry, HandlerError, Message, SubscriberScheduler};
use tidewater_testkit::bench::{allocations, median, messages_from_env, percentile, Counter};
use tokio::sync::mpsc;

#[global_allocator]
static GLOBAL: tidewater_testkit::bench::Counting = tidewater_testkit::bench::Counting;

const RUNS: usize = 5;
const PAYLOAD: usize = 1024;

fn messages(n: usize) -> Vec<Message> {
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    (0..n)
        .map(|i| Message::new("bench", payload.clone()).with_id(i.to_string()).with_key(format!("k{}", i % 64)))
        .collect()
}

/// Messages a second from now until `counter` counted all `n`, with `produce` running,
/// and allocations a message meanwhile.
async fn rate(counter: &Counter, n: u64, produce: impl std::future::Future<Output = ()>) -> (f64, f64) {
    let (start, before) = (Instant::now(), allocations());
    tokio::join!(produce, counter.wait(Duration::from_secs(120)));
    (n as f64 / start.elapsed().as_secs_f64(), (allocations() - before) as f64 / n as f64)
}

/// The rate and allocations a message.
async fn raw_throughput(msgs: Vec<Message>) -> (f64, f64) {
    let n = msgs.len() as u64;
    let (tx, mut rx) = mpsc::channel::<Message>(1024);
    let counter = Counter::new(n as usize);
    let c = Arc::clone(&counter);
    let consumer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            std::hint::black_box(&m);
            c.hit();
        }
    });
    let rate = rate(&counter, n, async {
        for m in msgs {
            tx.send(m).await.unwrap();
        }
    })
    .await;
    drop(tx);
    consumer.await.unwrap();
    rate
}

/// The rate, allocations a message, and the mean number of messages per fetch (small
/// batches mean the reader kept catching up with the publisher and waiting for it).
async fn tidewater_throughput(msgs: Vec<Message>) -> (f64, f64, f64) {
    let n = msgs.len() as u64;
    let broker = MemoryBroker::new();
    let counter = Counter::new(n as usize);
    let c = Arc::clone(&counter);
    let mut s = SubscriberScheduler::new(broker.reader(), EventRegistry::new());
    s.subscribe(
        "bench",
        handler_fn(move |d: Delivery| {
            std::hint::black_box(&d);
            c.hit();
            async { Ok::<_, HandlerError>(()) }
        }),
    )
    .group("bench");
    s.start().await.unwrap();
    let writer = broker.writer();
    let (rate, allocations) = rate(&counter, n, async {
        for m in msgs {
            writer.write_one(m).await.unwrap();
        }
    })
    .await;
    let report = s.shutdown(Duration::from_secs(5)).await;
    let task = &report.tasks[0];
    (rate, allocations, task.fetched as f64 / task.fetches.max(1) as f64)
}

async fn raw_latency(msgs: Vec<Message>) -> Vec<Duration> {
    let (tx, mut rx) = mpsc::channel::<(Instant, Message)>(1024);
    let (back_tx, mut back_rx) = mpsc::channel::<Duration>(1);
    tokio::spawn(async move {
        while let Some((sent, m)) = rx.recv().await {
            std::hint::black_box(&m);
            back_tx.send(sent.elapsed()).await.unwrap();
        }
    });
    let mut out = Vec::with_capacity(msgs.len());
    for m in msgs {
        tx.send((Instant::now(), m)).await.unwrap();
        out.push(back_rx.recv().await.unwrap());
    }
    out
}

async fn tidewater_latency(msgs: Vec<Message>) -> Vec<Duration> {
    let broker = MemoryBroker::new();
    let (back_tx, mut back_rx) = mpsc::channel::<Instant>(1);
    let mut s = SubscriberScheduler::new(broker.reader(), EventRegistry::new());
    s.subscribe(
        "bench",
        handler_fn(move |d: Delivery| {
            std::hint::black_box(&d);
            let back = back_tx.clone();
            async move {
                back.send(Instant::now()).await.unwrap();
                Ok::<_, HandlerError>(())
            }
        }),
    )
    .group("bench");
    s.start().await.unwrap();
    let writer = broker.writer();
    let mut out = Vec::with_capacity(msgs.len());
    for m in msgs {
        let sent = Instant::now();
        writer.write(vec![m]).await.unwrap();
        out.push(back_rx.recv().await.unwrap() - sent);
    }
    s.shutdown(Duration::from_secs(5)).await;
    out
}

fn main() {
    let n: usize = messages_from_env(200_000);
    let rt = if std::env::var("TW_BENCH_RUNTIME").as_deref() == Ok("current_thread") {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    };
    rt.block_on(async {
        // TW_BENCH_ONLY=raw or =tidewater runs one side alone, for a profiler; the ratio
        // is then meaningless.
        let only = std::env::var("TW_BENCH_ONLY").unwrap_or_default();
        let (mut raw, mut tw, mut batch) = (Vec::new(), Vec::new(), Vec::new());
        let (mut raw_allocations, mut tw_allocations) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let (rate, allocations) =
                if only == "tidewater" { (f64::NAN, f64::NAN) } else { raw_throughput(messages(n)).await };
            raw.push(rate);
            raw_allocations.push(allocations);
            let (rate, allocations, mean_batch) =
                if only == "raw" { (f64::NAN, f64::NAN, f64::NAN) } else { tidewater_throughput(messages(n)).await };
            tw.push(rate);
            tw_allocations.push(allocations);
            batch.push(mean_batch);
        }
        let (raw, tw) = (median(raw), median(tw));
        // A profiling run (TW_BENCH_ONLY) keeps the latency runs short, so their sleeps
        // and wake-ups do not crowd the throughput run's profile.
        let ping = if only.is_empty() { (n / 10).max(1000) } else { 1000 };
        let mut raw_lat = raw_latency(messages(ping)).await;
        let mut tw_lat = tidewater_latency(messages(ping)).await;
        raw_lat.sort();
        tw_lat.sort();
        println!("in-memory publish -> handler, {PAYLOAD}-byte messages, {n} messages per run, median of {RUNS}; latency over {ping} ping-pongs");
        println!("| path                  | msg/s      | allocations/msg | p50 latency | p99 latency |");
        println!("|-----------------------|------------|-----------------|-------------|-------------|");
        for (path, rate, allocations, latencies) in
            [("raw tokio mpsc", raw, raw_allocations, &raw_lat), ("tidewater memory", tw, tw_allocations, &tw_lat)]
        {
            println!(
                "| {path:<21} | {rate:>10.0} | {:>15.2} | {:>11.1?} | {:>11.1?} |",
                median(allocations),
                percentile(latencies, 0.5),
                percentile(latencies, 0.99)
            );
        }
        println!("tidewater / raw throughput: {:.2}", tw / raw);
        println!("tidewater messages per fetch (mean, median run): {:.1}", median(batch));
    });
}
