//! NATS throughput through tidewater against raw async-nats, in one run, 1 KiB messages,
//! on a current nats-server this bench starts (the test kit's, at `NATS_SERVER_VERSION`).
//!
//! Run: `cargo bench -p tidewater-nats --bench nats_throughput` (`TW_BENCH_MESSAGES`
//! sets the count, default 50,000). Rows:
//! - core publish: one publish call per message, then a flush; tidewater with its
//!   defaults, raw sending the same two headers (the id and the content type);
//! - core publish with no headers: raw publishing the payload alone, as the issue that
//!   set the target put it, and tidewater configured to send no more
//!   (`without_message_ids` and `with_implied_content_type`);
//! - core end to end: publish and receive in one subscriber (raw: a subscription loop;
//!   tidewater: a handler), both sides with the headers of the first row;
//! - JetStream publish: batches of 100, each waiting for its acknowledgements;
//! - JetStream consume: one stream filled once, then read whole in each run by a durable
//!   pull consumer of each side's own, with explicit acks (raw: `consumer.messages()`
//!   with an ack per message; tidewater: a handler).
//!
//! Tidewater publishes as a service does: a `Publisher` with its default ids, each made
//! on the clock (`publish_bytes`; `publish_messages` for JetStream's batches). Raw is a
//! client with async-nats's default options, written as someone who knows async-nats
//! would write it: each subject made once and shared, the header names async-nats's
//! constants, a UUIDv7 id made on the clock for each message (with tidewater's id
//! factory, so both sides pay the same for it).
//!
//! Beside the rates, each side's CPU time and allocations a message, in this process (the
//! client and tidewater; the server is a process of its own), a subscription's making
//! included. After the table, issue 17's targets for these rows and whether the run met
//! them.
//!
//! Each JetStream publish figure is the median of 3 runs, each consume figure the median
//! of 9 (after a read of each side not counted); each core figure the median of 31 runs
//! of a fifth as many messages; raw and tidewater take turns at going first.
//! `TW_BENCH_CORE_ONLY=1` runs the core rows alone, `TW_BENCH_JS_ONLY=1` the JetStream
//! rows alone. `TW_BENCH_ONLY=raw` or
//! `TW_BENCH_ONLY=tidewater` runs core end to end for one side alone and prints its rate:
//! run both, one after the other, to compare the sides without either's runs following
//! the other's in one process. `TW_BENCH_ONLY=raw-plain` and `=tidewater-bare` do the same
//! for core publish with no headers, for a profiler such as callgrind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use tidewater_core::{
    handler_fn, Delivery, Driver, EventRegistry, HandlerError, IdFactory, Message, Publisher, SubscriberScheduler,
    UuidV7Ids,
};
use tidewater_nats::{JetStream, JetStreamConfig, NatsConfig, NatsCore};
use tidewater_testkit::bench::{
    measured, median, messages_from_env, paired, payload, print_targets, rate, Counter, Goal, Ratios, Target,
};

#[global_allocator]
static GLOBAL: tidewater_testkit::bench::Counting = tidewater_testkit::bench::Counting;

const RUNS: usize = 3;
/// Reads of the one consume stream a side, after one not counted.
const CONSUME_RUNS: usize = 9;
const CORE_RUNS: usize = 31;
const BATCH: usize = 100;

/// The content type both sides send: what a service publishing bytes names.
const BYTES: &str = "application/octet-stream";

/// As a header name made once, as for async-nats's own constants.
const CONTENT_TYPE: async_nats::HeaderName = async_nats::HeaderName::from_static("Content-Type");

/// The headers raw sends with each message: a new UUIDv7 id and the content type, as
/// tidewater does by default.
fn raw_headers() -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(async_nats::header::NATS_MESSAGE_ID, String::from(UuidV7Ids.next_id()));
    h.insert(CONTENT_TYPE, BYTES);
    h
}

/// Publishes `n` messages with a raw client, one call each with the headers tidewater
/// sends by default, then flushes.
async fn publish_raw(client: &async_nats::Client, subject: &str, n: usize) {
    let p = payload(1024);
    let subject = async_nats::Subject::from(subject);
    for _ in 0..n {
        client.publish_with_headers(subject.clone(), raw_headers(), p.clone()).await.unwrap();
    }
    client.flush().await.unwrap();
}

/// Publishes `n` messages through a tidewater publisher, one call each, then flushes.
async fn publish_tw(publisher: &Publisher, subject: &str, n: usize) {
    let p = payload(1024);
    for _ in 0..n {
        publisher.publish_bytes(subject, p.clone(), BYTES).await.unwrap();
    }
    publisher.flush().await.unwrap();
}

fn publisher(driver: &impl Driver) -> Publisher {
    Publisher::new(driver.writer(), EventRegistry::new())
}

async fn core_publish_raw(client: &async_nats::Client, n: usize, run: usize) -> Duration {
    let subject = format!("bench.core.pub.raw.{run}");
    let started = Instant::now();
    publish_raw(client, &subject, n).await;
    started.elapsed()
}

/// Core publish without headers: the payload alone, as a client with no ids sends it.
async fn core_publish_plain(client: &async_nats::Client, n: usize, run: usize) -> Duration {
    let subject = async_nats::Subject::from(format!("bench.core.pub.plain.{run}"));
    let p = payload(1024);
    let started = Instant::now();
    for _ in 0..n {
        client.publish(subject.clone(), p.clone()).await.unwrap();
    }
    client.flush().await.unwrap();
    started.elapsed()
}

/// `publisher` is on a `NatsCore` with its defaults, or with headers left out.
async fn core_publish_tw(publisher: &Publisher, n: usize, run: usize) -> Duration {
    let subject = format!("bench.core.pub.tw.{run}");
    let started = Instant::now();
    publish_tw(publisher, &subject, n).await;
    started.elapsed()
}

async fn core_e2e_raw(client: &async_nats::Client, n: usize, run: usize) -> Duration {
    let subject = format!("bench.core.e2e.raw.{run}");
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();
    let counter = Counter::new(n);
    let c = Arc::clone(&counter);
    let reader = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            std::hint::black_box(&m);
            c.hit();
        }
    });
    let started = Instant::now();
    publish_raw(client, &subject, n).await;
    counter.wait(Duration::from_secs(120)).await;
    let elapsed = started.elapsed();
    reader.abort();
    elapsed
}

async fn core_e2e_tw(core: &NatsCore, n: usize, run: usize) -> Duration {
    let subject = format!("bench.core.e2e.tw.{run}");
    let counter = Counter::new(n);
    let c = Arc::clone(&counter);
    let mut s = SubscriberScheduler::new(core.reader(), EventRegistry::new());
    s.subscribe(
        subject.clone(),
        handler_fn(move |d: Delivery| {
            std::hint::black_box(&d);
            c.hit();
            async { Ok::<_, HandlerError>(()) }
        }),
    );
    s.start().await.unwrap();
    let publisher = publisher(core);
    let started = Instant::now();
    publish_tw(&publisher, &subject, n).await;
    counter.wait(Duration::from_secs(120)).await;
    let elapsed = started.elapsed();
    s.shutdown(Duration::from_secs(5)).await;
    elapsed
}

async fn js_publish_raw(ctx: &jetstream::Context, n: usize, run: usize) -> Duration {
    let subject = format!("bench.js.pub.raw.{run}");
    ctx.get_or_create_stream(jetstream::stream::Config {
        name: format!("bench_js_pub_raw_{run}"),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .unwrap();
    let p = payload(1024);
    let subject = async_nats::Subject::from(subject);
    let started = Instant::now();
    for _ in 0..n / BATCH {
        let mut acks = Vec::with_capacity(BATCH);
        for _ in 0..BATCH {
            acks.push(ctx.publish_with_headers(subject.clone(), raw_headers(), p.clone()).await.unwrap());
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    started.elapsed()
}

async fn js_publish_tw(js: &JetStream, n: usize, run: usize) -> Duration {
    let subject = format!("bench.js.pub.tw.{run}");
    js.create_stream(&format!("bench_js_pub_tw_{run}"), &[subject.as_str()]).await.unwrap();
    let publisher = publisher(js);
    let started = Instant::now();
    publish_batches(&publisher, &subject, n).await;
    started.elapsed()
}

/// Publishes `n` messages through a tidewater publisher in acknowledged batches of 100,
/// each message made as a service would make it.
async fn publish_batches(publisher: &Publisher, subject: &str, n: usize) {
    let p = payload(1024);
    for _ in 0..n / BATCH {
        let batch = (0..BATCH).map(|_| Message::new(subject, p.clone()).with_content_type(BYTES)).collect();
        publisher.publish_messages(batch).await.unwrap();
    }
}

async fn fill(js: &JetStream, subject: &str, stream: &str, n: usize) {
    js.create_stream(stream, &[subject]).await.unwrap();
    publish_batches(&publisher(js), subject, n).await;
}

/// Reads the whole of `stream` with a new durable consumer, acking each message.
async fn js_consume_raw(js: &JetStream, stream: &str, n: usize, run: usize) -> Duration {
    let name = format!("raw-{run}");
    let consumer: jetstream::consumer::PullConsumer = js
        .context()
        .get_stream(stream)
        .await
        .unwrap()
        .get_or_create_consumer(
            &name,
            jetstream::consumer::pull::Config { durable_name: Some(name.clone()), ..Default::default() },
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut messages = consumer.messages().await.unwrap();
    for _ in 0..n {
        let m = messages.next().await.unwrap().unwrap();
        std::hint::black_box(&m);
        m.ack().await.unwrap();
    }
    started.elapsed()
}

/// Reads the whole of the stream behind `subject` in a new group, through a handler.
async fn js_consume_tw(js: &JetStream, subject: &str, n: usize, run: usize) -> Duration {
    let counter = Counter::new(n);
    let c = Arc::clone(&counter);
    let mut s = SubscriberScheduler::new(js.reader(), EventRegistry::new());
    s.subscribe(
        subject,
        handler_fn(move |d: Delivery| {
            std::hint::black_box(&d);
            c.hit();
            async { Ok::<_, HandlerError>(()) }
        }),
    )
    .group(format!("tw-{run}"));
    let started = Instant::now();
    s.start().await.unwrap();
    counter.wait(Duration::from_secs(120)).await;
    let elapsed = started.elapsed();
    s.shutdown(Duration::from_secs(5)).await;
    elapsed
}

fn main() {
    let n: usize = messages_from_env(50_000);
    let n = n / BATCH * BATCH;
    let server = tidewater_testkit::NatsServer::start(tidewater_testkit::NatsRelease::Current);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let config = NatsConfig::new(server.url());
        // Raw async-nats as it comes, with its default options, which check the subject
        // of each publish. Tidewater's client leaves that check out, having made its
        // own (see `NatsConfig::connect`); the rest of its options do not touch the
        // publish path.
        let raw = async_nats::connect(server.url()).await.unwrap();
        let ctx = jetstream::new(raw.clone());
        let core = NatsCore::connect(&config).await.unwrap();
        let core_publisher = publisher(&core);
        // Sends what raw's plain publishes send: the payload alone.
        let bare = publisher(&core.clone().without_message_ids().with_implied_content_type(BYTES));
        let js = JetStream::connect(&config, JetStreamConfig::default()).await.unwrap();
        // Messages per core run: a fifth of a JetStream run's.
        let core_n = (n / 5).max(1);
        // TW_BENCH_ONLY runs one row for one side alone, so that neither side's runs
        // follow the other's in this process.
        if let Ok(only) = std::env::var("TW_BENCH_ONLY") {
            let mut rates = Vec::with_capacity(CORE_RUNS);
            for run in 0..CORE_RUNS {
                let elapsed = match only.as_str() {
                    "raw" => core_e2e_raw(&raw, core_n, run).await,
                    "tidewater" => core_e2e_tw(&core, core_n, run).await,
                    "raw-plain" => core_publish_plain(&raw, core_n, run).await,
                    "tidewater-bare" => core_publish_tw(&bare, core_n, run).await,
                    other => panic!("TW_BENCH_ONLY is raw, tidewater, raw-plain or tidewater-bare, not {other:?}"),
                };
                rates.push(rate(core_n, elapsed));
            }
            let row = if only.contains('-') { "core publish with no headers" } else { "core end to end" };
            println!("{row}, {only} alone: {:.0} msg/s (median of {CORE_RUNS} runs)", median(rates));
            return;
        }
        let mut table = Ratios::new(
            "raw async-nats",
            &[
                "core publish",
                "core end to end",
                "core publish with no headers",
                "JetStream publish (acked, batches of 100)",
                "JetStream consume (pull, explicit ack)",
            ],
        );
        // Core NATS swings widely from run to run on two shared cores (the client's
        // connection task, the server and the publisher compete for them), so its rows
        // take more, shorter runs, with raw and tidewater taking turns at going first.
        // TW_BENCH_JS_ONLY=1 skips the core rows, for profiling JetStream.
        let core_runs = if std::env::var_os("TW_BENCH_JS_ONLY").is_some() { 0 } else { CORE_RUNS };
        for run in 0..core_runs {
            let published = paired(
                run,
                measured(core_publish_raw(&raw, core_n, run)),
                measured(core_publish_tw(&core_publisher, core_n, run)),
            );
            table.push_measured(0, core_n, published.await);
            let both =
                paired(run, measured(core_e2e_raw(&raw, core_n, run)), measured(core_e2e_tw(&core, core_n, run)));
            table.push_measured(1, core_n, both.await);
            let bare_published = paired(
                run,
                measured(core_publish_plain(&raw, core_n, run)),
                measured(core_publish_tw(&bare, core_n, run)),
            );
            table.push_measured(2, core_n, bare_published.await);
        }
        // TW_BENCH_CORE_ONLY=1 skips the JetStream rows, for profiling core NATS.
        let js_runs = if std::env::var_os("TW_BENCH_CORE_ONLY").is_some() { 0 } else { RUNS };
        for run in 0..js_runs {
            let published = paired(run, measured(js_publish_raw(&ctx, n, run)), measured(js_publish_tw(&js, n, run)));
            table.push_measured(3, n, published.await);
        }
        // Both sides read one stream, filled once, with consumers of their own. With a
        // stream filled for each read, just before it, the row came out anywhere from
        // 0.75 to 1.24 from one run of the bench to the next; this way, 0.98-1.13
        // (`BENCHMARKS.md`, session 41).
        let consume_runs = if js_runs > 0 { CONSUME_RUNS } else { 0 };
        let (subject, stream) = ("bench.js.con", "bench_js_con");
        if consume_runs > 0 {
            fill(&js, subject, stream, n).await;
            paired(consume_runs, js_consume_raw(&js, stream, n, consume_runs), js_consume_tw(&js, subject, n, consume_runs))
                .await;
        }
        for run in 0..consume_runs {
            let consumed =
                paired(run, measured(js_consume_raw(&js, stream, n, run)), measured(js_consume_tw(&js, subject, n, run)));
            table.push_measured(4, n, consumed.await);
        }
        println!(
            "NATS, 1 KiB messages, nats-server {} on this machine; core: {core_n} per run, median of {core_runs}; JetStream: {n} per run, median of {js_runs} (publish) and {consume_runs} (consume)",
            tidewater_testkit::install::version("NATS_SERVER_VERSION")
        );
        table.print();
        // Issue 17: core publish at 0.9 of plain async-nats (no headers), which tidewater
        // matches when set to send none, every other row at 0.95 of raw. The first row,
        // both sides with the headers, has no target of its own: against the third it
        // says what the headers cost.
        let mut targets = Vec::new();
        if core_runs > 0 {
            targets.push(Target::new(
                "core publish with no headers, tidewater over raw",
                Goal::AtLeast(0.9),
                "x",
                table.ratio(2),
            ));
            targets.push(Target::new("core end to end, tidewater over raw", Goal::AtLeast(0.95), "x", table.ratio(1)));
        }
        if js_runs > 0 {
            targets.push(Target::new("JetStream publish, tidewater over raw", Goal::AtLeast(0.95), "x", table.ratio(3)));
            targets.push(Target::new("JetStream consume, tidewater over raw", Goal::AtLeast(0.95), "x", table.ratio(4)));
        }
        print_targets(&targets);
    });
    drop(server);
}
