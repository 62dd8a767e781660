//! Per-message cost of the full middleware chain on the success path, against the
//! same handler with no chain, in one run.
//!
//! Run: `cargo bench -p tidewater-middleware --bench chain_cost`. Calls the handler
//! directly (no broker), so the difference is the chain alone. Each message has its own
//! default id (a UUIDv7), so deduplication checks and commits a new key every time, as in
//! production. A run commits 200,000 ids into stores of the default 100,000, so
//! forgetting old ids is part of the cost, as in a long-running service. The moka rows
//! put moka's store in place of the default one. The stacked row joins the same layers
//! with `Around::then`, so that they run as one future instead of one boxed future each;
//! the last rows put that stack
//! around the handler with `Around::wrapping` and call it through its own type, as the
//! runner calls a handler subscribed without a middleware list, against the same handler
//! called the same way. Allocations are counted in the timed calls and given a message.
//!
//! After the table, issue 17's target for the full chain and whether the run met it.
//!
//! `TW_CHAIN_ONLY=<text>` runs only the rows whose name holds the text (and the rows
//! they are measured against), for a profiler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use tidewater_core::{apply_chain, handler_fn, Around, BoxHandler, Delivery, Handler, HandlerError, Middleware};
use tidewater_memory::MemoryBroker;
use tidewater_middleware::*;
use tidewater_testkit::bench::{deliveries, print_targets, Goal, Target};

#[global_allocator]
static GLOBAL: tidewater_testkit::bench::Counting = tidewater_testkit::bench::Counting;

const N: usize = 200_000;
const RUNS: usize = 5;
/// Deliveries are made this many at a time, untimed, as a fetch brings them, so the
/// chain works on memory as warm as in a consumer rather than on 200,000 cold ones.
const BATCH: usize = 1000;

/// Calls `handler` with N new deliveries; returns the time spent in the calls and the
/// allocations they made.
async fn time<H: Handler>(handler: &H) -> (Duration, u64) {
    let (mut spent, mut allocations) = (Duration::ZERO, 0);
    for from in (0..N).step_by(BATCH) {
        let batch = deliveries(from, BATCH);
        let (start, before) = (Instant::now(), tidewater_testkit::bench::allocations());
        for d in batch {
            handler.handle(d).await.unwrap();
        }
        spent += start.elapsed();
        allocations += tidewater_testkit::bench::allocations() - before;
    }
    (spent, allocations)
}

/// A row: its name, the row it is measured against, and what times it.
struct Row {
    name: String,
    base: usize,
    time: Box<dyn Fn() -> LocalBoxFuture<'static, (Duration, u64)>>,
}

impl Row {
    fn new<H: Handler>(name: impl Into<String>, base: usize, handler: H) -> Self {
        let handler = Arc::new(handler);
        let time = Box::new(move || {
            let handler = Arc::clone(&handler);
            Box::pin(async move { time(&*handler).await }) as LocalBoxFuture<'static, _>
        });
        Self { name: name.into(), base, time }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let broker = MemoryBroker::new();
        let mut rows = rows(&broker);
        if let Ok(only) = std::env::var("TW_CHAIN_ONLY") {
            let keep: Vec<bool> = (0..rows.len())
                .map(|i| rows[i].name.contains(&only) || rows.iter().any(|r| r.base == i && r.name.contains(&only)))
                .collect();
            let mut kept = keep.iter();
            rows.retain(|_| *kept.next().unwrap());
            // Bases move with the rows kept before them.
            let moved: Vec<usize> = (0..keep.len()).map(|i| keep[..i].iter().filter(|k| **k).count()).collect();
            for row in &mut rows {
                row.base = moved[row.base];
            }
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
        let mut allocations = vec![0u64; rows.len()];
        for _ in 0..RUNS {
            for (i, row) in rows.iter().enumerate() {
                let (spent, allocated) = (row.time)().await;
                times[i].push(spent.as_nanos() as f64 / N as f64);
                allocations[i] += allocated;
            }
        }
        let med = |v: &Vec<f64>| {
            let mut v = v.clone();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        println!("middleware cost, success path, {N} calls per run, median of {RUNS}");
        println!("| chain                          | ns/message | added ns | allocations/message | added |");
        println!("|--------------------------------|------------|----------|---------------------|-------|");
        let per_message = |i: usize| allocations[i] as f64 / (RUNS * N) as f64;
        let added = |i: usize| (med(&times[i]) - med(&times[rows[i].base]), per_message(i) - per_message(rows[i].base));
        for (i, row) in rows.iter().enumerate() {
            let (t, a) = (med(&times[i]), per_message(i));
            let (added, added_allocations) = added(i);
            println!("| {:<30} | {t:>10.1} | {added:>8.1} | {a:>19.2} | {added_allocations:>5.2} |", row.name);
        }
        // Issue 17: the full chain, Deduplicate included, at most 150 ns and no allocation
        // a message: the stack a service subscribes as one handler.
        if let Some(full) = rows.iter().position(|r| r.name == "full chain, stacked, typed") {
            let (ns, allocations) = added(full);
            print_targets(&[
                Target::new("full chain with Deduplicate, added to its handler", Goal::AtMost(150.0), " ns", ns),
                Target::new("the same, allocations added a message", Goal::AtMost(0.0), "", allocations),
            ]);
        }
    });
}

/// Every row: each layer alone and the chains, as a list and around a typed handler.
fn rows(broker: &MemoryBroker) -> Vec<Row> {
    let counted = || {
        handler_fn(|d: Delivery| async move {
            std::hint::black_box(&d);
            Ok::<_, HandlerError>(())
        })
    };
    let bare: BoxHandler = Arc::new(counted());
    let layers: Vec<(&str, Arc<dyn Middleware>)> = vec![
        ("Trace", Arc::new(Trace)),
        ("CorrelationId", Arc::new(CorrelationId)),
        ("DeadLetter", Arc::new(DeadLetter::new(broker.writer()))),
        ("Deduplicate (in memory)", Arc::new(Deduplicate::in_memory())),
        ("Retry", Arc::new(Retry::new())),
        ("Timeout", Arc::new(Timeout(Duration::from_secs(30)))),
        ("Recover", Arc::new(Recover::new())),
    ];
    let full: Vec<Arc<dyn Middleware>> = layers.iter().map(|(_, m)| Arc::clone(m)).collect();
    let mut rows = vec![
        Row::new("none (handler called directly)", 0, Arc::clone(&bare)),
        Row::new("empty chain", 0, apply_chain(Arc::clone(&bare), &[])),
    ];
    for (name, m) in &layers {
        rows.push(Row::new(format!("{name} alone"), 0, apply_chain(Arc::clone(&bare), std::slice::from_ref(m))));
    }
    rows.push(Row::new("full chain, all of the above", 0, apply_chain(Arc::clone(&bare), &full)));
    let stacked = Trace
        .then(CorrelationId)
        .then(DeadLetter::new(broker.writer()))
        .then(Deduplicate::in_memory())
        .then(Retry::new())
        .then(Timeout(Duration::from_secs(30)))
        .then(Recover::new());
    rows.push(Row::new("full chain, stacked with then", 0, stacked.clone().wrap(Arc::clone(&bare))));
    let moka: Arc<dyn Middleware> = Arc::new(Deduplicate::new(MokaDedupStorage::default()));
    rows.push(Row::new("Deduplicate (moka) alone", 0, apply_chain(Arc::clone(&bare), std::slice::from_ref(&moka))));
    let with_moka: Vec<Arc<dyn Middleware>> = layers
        .iter()
        .map(|(name, m)| if name.starts_with("Deduplicate") { Arc::clone(&moka) } else { Arc::clone(m) })
        .collect();
    rows.push(Row::new("full chain, moka dedup", 0, apply_chain(Arc::clone(&bare), &with_moka)));
    // Layers a service adds for what its handler calls: a closed breaker, and a rate
    // limit of a call a nanosecond, which the bench never reaches.
    let breaker: Arc<dyn Middleware> = Arc::new(CircuitBreaker::new("bench"));
    rows.push(Row::new(
        "CircuitBreaker (closed) alone",
        0,
        apply_chain(Arc::clone(&bare), std::slice::from_ref(&breaker)),
    ));
    let rate: Arc<dyn Middleware> = Arc::new(RateLimit::per_second(1_000_000_000));
    rows.push(Row::new(
        "RateLimit (not reached) alone",
        0,
        apply_chain(Arc::clone(&bare), std::slice::from_ref(&rate)),
    ));
    let typed = rows.len();
    rows.push(Row::new("none, typed handler", typed, counted()));
    rows.push(Row::new("Deduplicate (in memory), typed", typed, Deduplicate::in_memory().wrapping(counted())));
    // The same with a store a tenth the size: what the default's 100,000 ids cost is
    // mostly memory (cache misses), which a smaller window saves.
    let small = Deduplicate::new(InMemoryDedupStorage::new(10_000, Duration::from_secs(3600)));
    rows.push(Row::new("Deduplicate (10k ids), typed", typed, small.wrapping(counted())));
    rows.push(Row::new("full chain, stacked, typed", typed, stacked.wrapping(counted())));
    let no_dedup = Trace
        .then(CorrelationId)
        .then(DeadLetter::new(broker.writer()))
        .then(Retry::new())
        .then(Timeout(Duration::from_secs(30)))
        .then(Recover::new());
    rows.push(Row::new("full chain but dedup, typed", typed, no_dedup.wrapping(counted())));
    let guards = CircuitBreaker::new("bench").then(RateLimit::per_second(1_000_000_000));
    rows.push(Row::new("Breaker + RateLimit, typed", typed, guards.wrapping(counted())));
    rows
}
