//! Publish to handler return, as a service calls it, in one process: tidewater's `Bus` and
//! `Publisher` on the memory driver (default ids and codec), RustStream 0.7.7's memory
//! broker with a `#[subscriber]`, and a raw tokio channel, in the same run, paired and in
//! alternating order. Prints messages per second, nanoseconds and allocations per message
//! (medians over the rounds), and the ratios: for each round, a path's rate over its
//! RustStream counterpart's and over raw's in that round, the median of those and their
//! range, since the machine's pace drifts from one stretch of a run to the next.
//!
//! ```sh
//! cargo run --release --manifest-path bench/Cargo.toml            # 200,000 messages, 5 rounds
//! cargo run --release --manifest-path bench/Cargo.toml -- 50000 3 10000  # and 10,000 paced
//! ```
//!
//! After each table, issue 17's targets for it and whether the run met them.
//!
//! `TW_BENCH_ONLY=<row, from 0>` runs one row alone, for a profiler; `TW_BENCH_ONLY=5,6`
//! runs those rows, by turns as in a whole run, in the latency run too unless its third
//! argument is 0 (`TW_BENCH_ONLY=0,2,6 ... 5000 1 40000` compares two rows' latency with
//! raw's, without the rest).
//!
//! Then latency: each path but the batch one again at a fixed 10k msg/s (20,000 messages
//! unless the third argument says otherwise; 0 skips it), in ten slices with the paths
//! taking turns, each message's time from just before its publish to its handler's first
//! line (after the decode, for the paths that decode), p50 and p99 of them all. Beside
//! them, the p50 of the publish call alone (from the same start to its return, the copy
//! of the payload included): how much of the latency the publishing side spends in line,
//! the wake-up of the handler's thread included. Last, the p50 over raw's taken slice by
//! slice (each slice's p50 less raw's in the same turn, the median of those), which the
//! machine's slow stretches move less than the difference of the whole run's p50s.
//!
//! Each RustStream path publishes as its tidewater counterpart does: bytes to the subscriber
//! that decodes orders, the order itself (`publisher.message(&order)`, RustStream's default
//! JSON codec) for the typed publish, bytes to a counting subscriber for the counting rows.
//!
//! Every path carries the same 1 KiB JSON order and ends in a handler that decodes it and
//! counts down a latch, but for the raw channel and the counting rows (RustStream's raw
//! `&Frame` and a tidewater `handler_fn` on the `Delivery`), which only read the order's id
//! from the front of its JSON and count: they are compared with each other, and with the
//! raw channel in the latency run like for like. The last pair counts the same way on four
//! lanes by key (tidewater's `.concurrency(4)`, RustStream's `workers(4, by_key)`), where
//! each delivery goes from the reading task to a lane's. The clock runs from the first publish
//! to the last handler's return. Setup (building and starting the service) is outside it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tidewater_testkit::bench::{median, print_targets, Goal, Target};
use tokio::sync::Notify;

#[global_allocator]
static GLOBAL: tidewater_testkit::bench::Counting = tidewater_testkit::bench::Counting;

#[derive(Debug, Serialize, Deserialize, ruststream::Outgoing)]
pub struct Order {
    id: u64,
    quantity: u32,
    note: String,
}

impl tidewater::Event for Order {
    const TYPE: &'static str = "order";
}

fn order(id: u64) -> Order {
    Order { id, quantity: 37, note: "x".repeat(990) }
}

/// The id at the start of an order's JSON (`{"id":N,...`), read without decoding the
/// rest: how the paths that only count tell their messages apart in a latency run.
fn id_in(json: &[u8]) -> u64 {
    json.iter().skip(br#"{"id":"#.len()).take_while(|b| b.is_ascii_digit()).fold(0, |n, b| n * 10 + u64::from(b - b'0'))
}

/// Counts deliveries down and wakes the waiter at zero; in a paced run, also when each
/// message was sent and when its handler saw it.
#[derive(Clone)]
pub struct Latch {
    left: Arc<(AtomicUsize, Notify)>,
    stamps: Arc<Stamps>,
}

/// Nanoseconds since `base`, per message index (the order id): empty in a flood run.
struct Stamps {
    base: Instant,
    sent: Vec<AtomicU64>,
    /// When the publish call returned, the message then on its way.
    returned: Vec<AtomicU64>,
    seen: Vec<AtomicU64>,
}

impl Latch {
    fn new(load: Load) -> Self {
        let n = if load.is_paced() { load.messages() } else { 0 };
        let stamps = || (0..n).map(|_| AtomicU64::new(0)).collect();
        Self {
            left: Arc::default(),
            stamps: Arc::new(Stamps { base: Instant::now(), sent: stamps(), returned: stamps(), seen: stamps() }),
        }
    }

    fn expect(&self, n: usize) {
        self.left.0.store(n, Ordering::SeqCst);
    }

    fn stamp(&self, slots: &[AtomicU64], id: u64) {
        if let Some(slot) = slots.get(id as usize) {
            slot.store(self.stamps.base.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    }

    /// A handler saw message `id`.
    fn arrived(&self, id: u64) {
        self.stamp(&self.stamps.seen, id);
        if self.left.0.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.left.1.notify_one();
        }
    }

    async fn drained(&self) {
        while self.left.0.load(Ordering::Acquire) > 0 {
            let notified = self.left.1.notified();
            if self.left.0.load(Ordering::Acquire) == 0 {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(10), notified).await;
        }
    }

    /// Send to handler, per message, in nanoseconds.
    fn latencies(&self) -> Vec<u64> {
        Self::between(&self.stamps.sent, &self.stamps.seen)
    }

    /// The publish call, per message, in nanoseconds.
    fn publish_times(&self) -> Vec<u64> {
        Self::between(&self.stamps.sent, &self.stamps.returned)
    }

    fn between(from: &[AtomicU64], to: &[AtomicU64]) -> Vec<u64> {
        from.iter().zip(to).map(|(a, b)| b.load(Ordering::Relaxed) - a.load(Ordering::Relaxed)).collect()
    }
}

/// How a run publishes: as fast as it can, or one message every `every`.
#[derive(Clone, Copy)]
enum Load {
    Flood(usize),
    Paced { n: usize, every: Duration },
}

impl Load {
    fn messages(self) -> usize {
        match self {
            Load::Flood(n) | Load::Paced { n, .. } => n,
        }
    }

    fn is_paced(self) -> bool {
        matches!(self, Load::Paced { .. })
    }
}

/// One run: elapsed time, allocations, and (paced) each message's latency and publish
/// call.
struct Sample {
    elapsed: Duration,
    allocations: u64,
    latencies: Vec<u64>,
    publish_times: Vec<u64>,
}

/// Publishes message `i` with `send(i)` as `load` says, then waits for the handlers.
async fn drive(latch: &Latch, load: Load, send: impl AsyncFn(usize)) -> Sample {
    let n = load.messages();
    latch.expect(n);
    let before = tidewater_testkit::bench::allocations();
    let start = Instant::now();
    for i in 0..n {
        if let Load::Paced { every, .. } = load {
            let due = start + every * i as u32;
            wait_until(due).await;
            latch.stamp(&latch.stamps.sent, i as u64);
        }
        send(i).await;
        if load.is_paced() {
            latch.stamp(&latch.stamps.returned, i as u64);
        }
    }
    latch.drained().await;
    Sample {
        elapsed: start.elapsed(),
        allocations: tidewater_testkit::bench::allocations() - before,
        latencies: latch.latencies(),
        publish_times: latch.publish_times(),
    }
}

/// Waits until `due`, to the microsecond: asleep for most of the wait, then a yielding
/// spin for the last stretch, as tokio's timers tick by the millisecond and a thread's
/// sleep ends up to about 50 µs late (the kernel's timer slack).
///
/// The sleep blocks the thread, which is the one `Runtime::block_on` runs the load on,
/// not a worker: the tasks under test keep both workers. A spin for the whole wait kept
/// that thread busy, and with a worker busy too, the VM's host took a core away for
/// 100 ms every few seconds (two spinning threads alone see it; one does not): the
/// consumer stopped while the load went on, which put p99s of 60-100 ms on whichever
/// path's slice it hit.
async fn wait_until(due: Instant) {
    const SPIN: Duration = Duration::from_micros(70);
    if let Some(sleep) = due.checked_duration_since(Instant::now()).and_then(|left| left.checked_sub(SPIN)) {
        std::thread::sleep(sleep);
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// What the paths publish: order `i` of a paced run (an id per message, so its
/// handler's time can be matched), or order 1 over and over in a flood.
struct Orders {
    events: Vec<Order>,
    bodies: Vec<Bytes>,
}

impl Orders {
    fn for_load(load: Load) -> Self {
        let n = if load.is_paced() { load.messages() } else { 1 };
        let events: Vec<Order> = (0..n as u64).map(|i| order(if n == 1 { 1 } else { i })).collect();
        let bodies = events.iter().map(|e| Bytes::from(serde_json::to_vec(e).unwrap())).collect();
        Self { events, bodies }
    }

    fn body(&self, i: usize) -> &Bytes {
        &self.bodies[i % self.bodies.len()]
    }

    fn event(&self, i: usize) -> &Order {
        &self.events[i % self.events.len()]
    }
}

// ---- raw tokio mpsc ------------------------------------------------------------------

async fn raw_mpsc(load: Load, orders: &Orders) -> Sample {
    let latch = Latch::new(load);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
    let counter = latch.clone();
    let consumer = tokio::spawn(async move {
        while let Some(payload) = rx.recv().await {
            counter.arrived(id_in(&payload));
        }
    });
    let sample = drive(&latch, load, async |i| {
        tx.send(Bytes::copy_from_slice(orders.body(i))).await.unwrap();
    })
    .await;
    drop(tx);
    consumer.await.unwrap();
    sample
}

// ---- tidewater -------------------------------------------------------------------------

async fn tidewater_handle(order: Order, tidewater::State(latch): tidewater::State<Latch>) -> tidewater::HandlerResult {
    std::hint::black_box(order.quantity);
    latch.arrived(order.id);
    Ok(())
}

/// `typed`: `publisher.publish(&event)`; else `publish_bytes` of the JSON.
async fn tidewater(load: Load, orders: &Orders, typed: bool) -> Sample {
    let latch = Latch::new(load);
    let broker = tidewater::memory::MemoryBroker::new();
    let mut bus = tidewater::Bus::new(&broker, tidewater::EventRegistry::new().route::<Order>("orders"));
    bus.with_state(latch.clone());
    bus.subscribe_event(tidewater_handle).group("bench");
    bus.start().await.unwrap();
    let publisher = bus.publisher().clone();
    let sample = drive(&latch, load, async |i| {
        if typed {
            publisher.publish(orders.event(i)).await.unwrap();
        } else {
            let body = Bytes::copy_from_slice(orders.body(i));
            publisher.publish_bytes("orders", body, "application/json").await.unwrap();
        }
    })
    .await;
    bus.shutdown(Duration::from_secs(10)).await.unwrap();
    sample
}

/// `publish_bytes`, consumed by a batch handler of up to 100 deliveries.
async fn tidewater_batches(load: Load, orders: &Orders) -> Sample {
    let latch = Latch::new(load);
    let broker = tidewater::memory::MemoryBroker::new();
    let mut bus = tidewater::Bus::new(&broker, tidewater::EventRegistry::new());
    let counter = latch.clone();
    let handler = tidewater::batch_handler_fn(move |batch: Vec<tidewater::Delivery>| {
        let counter = counter.clone();
        async move {
            for delivery in &batch {
                let order: Order = serde_json::from_slice(&delivery.message().payload).unwrap();
                counter.arrived(order.id);
            }
            Ok::<_, tidewater::BatchError>(())
        }
    });
    bus.subscribe_batch("orders", 100, Duration::from_millis(1), handler).group("bench");
    publish_bytes_through(bus, "orders", &latch, load, orders).await
}

/// Starts `bus`, publishes the orders' bytes to `topic` with `publish_bytes` as `load`
/// says, waits for the handlers, and shuts the bus down.
async fn publish_bytes_through(
    mut bus: tidewater::Bus,
    topic: &str,
    latch: &Latch,
    load: Load,
    orders: &Orders,
) -> Sample {
    bus.start().await.unwrap();
    let publisher = bus.publisher().clone();
    let sample = drive(latch, load, async |i| {
        let body = Bytes::copy_from_slice(orders.body(i));
        publisher.publish_bytes(topic, body, "application/json").await.unwrap();
    })
    .await;
    bus.shutdown(Duration::from_secs(10)).await.unwrap();
    sample
}

/// `publish_bytes`, consumed by a plain handler that counts: the shape of the measurement
/// the issue began with, and RustStream's raw row's counterpart.
async fn tidewater_counting(load: Load, orders: &Orders, lanes: usize) -> Sample {
    let latch = Latch::new(load);
    let broker = tidewater::memory::MemoryBroker::new();
    let mut bus = tidewater::Bus::new(&broker, tidewater::EventRegistry::new());
    let counter = latch.clone();
    let handler = tidewater::handler_fn(move |delivery: tidewater::Delivery| {
        counter.arrived(id_in(&delivery.message().payload));
        async { Ok::<_, tidewater::HandlerError>(()) }
    });
    bus.subscribe("frames", handler).group("bench").concurrency(lanes);
    publish_bytes_through(bus, "frames", &latch, load, orders).await
}

// ---- RustStream ------------------------------------------------------------------------

mod peer {
    use ruststream::memory::prelude::*;

    use super::{Latch, Order};

    /// The payload as it came: RustStream's raw form, no codec.
    #[derive(ruststream::Deserialized)]
    pub struct Frame<'a>(pub &'a [u8]);

    #[subscriber("frames")]
    pub async fn tally(frame: &Frame<'_>, ctx: &mut Context<'_, (), Latch>) -> HandlerOutcome {
        ctx.state().arrived(super::id_in(frame.0));
        HandlerOutcome::ack()
    }

    /// The same, on four workers as lanes by key.
    #[subscriber("lanes", workers(4, by_key))]
    pub async fn tally_on_lanes(frame: &Frame<'_>, ctx: &mut Context<'_, (), Latch>) -> HandlerOutcome {
        ctx.state().arrived(super::id_in(frame.0));
        HandlerOutcome::ack()
    }

    #[subscriber("orders")]
    pub async fn consume(order: &Order, ctx: &mut Context<'_, (), Latch>) -> HandlerOutcome {
        std::hint::black_box(order.quantity);
        ctx.state().arrived(order.id);
        HandlerOutcome::ack()
    }
}

/// What a RustStream path publishes, and which subscriber takes it.
#[derive(Clone, Copy, PartialEq)]
enum Peer {
    /// The order's JSON as bytes, to the subscriber that decodes orders.
    Bytes,
    /// The order itself, `publisher.message(&order)`, encoded by RustStream's default
    /// codec (JSON), to the same subscriber.
    Typed,
    /// The order's JSON as bytes, to the frames subscriber that counts.
    Frames,
    /// The same, to the subscriber that counts on four lanes.
    Lanes,
}

async fn ruststream(load: Load, orders: &Orders, peer: Peer) -> Sample {
    use ruststream::memory::prelude::*;

    let latch = Latch::new(load);
    let broker = MemoryBroker::new();
    let state = latch.clone();
    let app = RustStream::new(AppInfo::new("bench", "0.0.0"))
        .on_startup(async move |()| Ok::<_, std::convert::Infallible>(state))
        .with_broker(broker.clone(), |b| {
            if peer == Peer::Frames {
                b.include(peer::tally);
            } else if peer == Peer::Lanes {
                b.include(peer::tally_on_lanes);
            } else {
                b.include(peer::consume);
            }
        });
    let running = app.start().await.expect("the peer service starts");
    let publisher = broker.publisher();
    let topic = match peer {
        Peer::Frames => "frames",
        Peer::Lanes => "lanes",
        Peer::Bytes | Peer::Typed => "orders",
    };
    let sample = drive(&latch, load, async |i| {
        if peer == Peer::Typed {
            publisher.message(orders.event(i)).to(topic).publish().await.unwrap();
        } else {
            let payload = Bytes::copy_from_slice(orders.body(i));
            publisher.publish(ruststream::OutgoingMessage::new(topic, &payload[..]), None).await.unwrap();
        }
    })
    .await;
    running.shutdown().await.expect("the peer service shuts down");
    sample
}

// ---- the run ---------------------------------------------------------------------------

const PATHS: [&str; 10] = [
    "raw tokio mpsc of Bytes",
    "RustStream 0.7.7 memory, #[subscriber] &Order",
    "tidewater memory, publish_bytes -> fn(Order)",
    "tidewater memory, publish(&Order) -> fn(Order)",
    "tidewater memory, publish_bytes -> batches of up to 100",
    "RustStream 0.7.7 memory, raw &Frame that counts",
    "tidewater memory, publish_bytes -> handler_fn(Delivery) that counts",
    "RustStream 0.7.7 memory, message(&Order) -> #[subscriber] &Order",
    "RustStream 0.7.7 memory, raw &Frame that counts, workers(4, by_key)",
    "tidewater memory, publish_bytes -> handler_fn(Delivery) that counts, concurrency(4)",
];

/// The RustStream path a path is compared with: the typed publish with RustStream's typed
/// publish, the counting rows with its counting row, the rest with its byte publish to
/// the subscriber that decodes.
fn peer_of(path: usize) -> usize {
    match path {
        3 | 7 => 7,
        5 | 6 => 5,
        8 | 9 => 8,
        _ => 1,
    }
}

/// A latency run's messages come in this many slices per path, the paths taking turns
/// slice by slice: the machine's noise comes in bursts of seconds, which whole runs of
/// two seconds a path caught on one path and not another (RustStream's counting row came
/// out 1.5 µs under raw in one run and 2.3 µs over in the next).
const LATENCY_SLICES: usize = 10;

/// The part of each latency slice left out at its start (1/20: its first 5%), where the
/// service just started runs on cold caches, alike for every path.
const SLICE_WARM_PART: usize = 20;

/// The paths a latency run times: all but the batch path, whose linger is its point.
const LATENCY_PATHS: [usize; 9] = [0, 1, 2, 3, 5, 6, 7, 8, 9];

async fn run(path: usize, load: Load, orders: &Orders) -> Sample {
    match path {
        0 => raw_mpsc(load, orders).await,
        1 => ruststream(load, orders, Peer::Bytes).await,
        2 => tidewater(load, orders, false).await,
        3 => tidewater(load, orders, true).await,
        4 => tidewater_batches(load, orders).await,
        5 => ruststream(load, orders, Peer::Frames).await,
        6 => tidewater_counting(load, orders, 1).await,
        7 => ruststream(load, orders, Peer::Typed).await,
        8 => ruststream(load, orders, Peer::Lanes).await,
        _ => tidewater_counting(load, orders, 4).await,
    }
}

/// The paths `TW_BENCH_ONLY` names (a number or a comma-separated list), if it names any.
fn only() -> Option<Vec<usize>> {
    let listed: Vec<usize> =
        std::env::var("TW_BENCH_ONLY").ok()?.split(',').filter_map(|v| v.trim().parse().ok()).collect();
    (!listed.is_empty()).then_some(listed)
}

/// Whether `path` runs: all do, unless `TW_BENCH_ONLY` names some.
fn selected(path: usize) -> bool {
    only().is_none_or(|only| only.contains(&path))
}

/// Runs each of `paths` `rounds` times under `load`, in alternating order, after a
/// warm-up; the samples are indexed by path, empty for a path not run.
async fn rounds(paths: &[usize], load: Load, rounds: usize, warm_up: Load) -> Vec<Vec<Sample>> {
    let orders = Orders::for_load(load);
    let warm = Orders::for_load(warm_up);
    let mut samples: Vec<Vec<Sample>> = (0..PATHS.len()).map(|_| Vec::new()).collect();
    for &path in paths.iter().filter(|&&p| selected(p)) {
        run(path, warm_up, &warm).await;
    }
    for round in 0..rounds {
        let mut order = paths.to_vec();
        if round % 2 == 1 {
            order.reverse();
        }
        for path in order.into_iter().filter(|&p| selected(p)) {
            samples[path].push(run(path, load, &orders).await);
        }
    }
    samples
}

/// Ratios from the rounds of a run: their median, lowest and highest.
struct Spread {
    median: f64,
    low: f64,
    high: f64,
}

impl Spread {
    fn of(ratios: impl Iterator<Item = f64>) -> Self {
        let r: Vec<f64> = ratios.collect();
        // NaN for no rounds, as the median is.
        let low = r.iter().copied().fold(f64::NAN, f64::min);
        let high = r.iter().copied().fold(f64::NAN, f64::max);
        Self { median: median(r), low, high }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} ({:.2}-{:.2})", self.median, self.low, self.high)
    }
}

/// The median run of `samples` by time: its elapsed time and allocations.
fn middle(samples: &mut [Sample]) -> (Duration, u64) {
    samples.sort_by_key(|x| x.elapsed);
    let m = &samples[samples.len() / 2];
    (m.elapsed, m.allocations)
}

/// The throughput table of a whole run, with issue 17's targets for it.
fn print_throughput(samples: &mut [Vec<Sample>], n: usize) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    // Each path's rate over its peer's and over raw's, round by round: the rounds'
    // samples are in the order they ran, and within a round the two sides of a pair ran a
    // few seconds apart at most (the counting rows and the byte rows back to back), so a
    // stretch of the machine's noise weighs on both, where the medians of each side
    // alone can come from rounds minutes apart.
    let per_round = |path: usize, base: usize| {
        Spread::of(
            samples[path].iter().zip(&samples[base]).map(|(p, b)| b.elapsed.as_secs_f64() / p.elapsed.as_secs_f64()),
        )
    };
    let vs_peer: Vec<Spread> = (0..PATHS.len()).map(|path| per_round(path, peer_of(path))).collect();
    let vs_raw: Vec<Spread> = (0..PATHS.len()).map(|path| per_round(path, 0)).collect();
    let medians: Vec<(Duration, u64)> = samples.iter_mut().map(|s| middle(s)).collect();
    println!("| path | msg/s | ns/msg | allocations/msg | vs RustStream | vs raw |");
    println!("|---|---|---|---|---|---|");
    for (path, (elapsed, allocations)) in medians.iter().enumerate() {
        println!(
            "| {} | {:.0}k | {:.0} | {:.1} | {} | {} |",
            PATHS[path],
            rate(*elapsed) / 1e3,
            elapsed.as_nanos() as f64 / n as f64,
            *allocations as f64 / n as f64,
            vs_peer[path],
            vs_raw[path],
        );
    }
    let allocations = |path: usize| medians[path].1 as f64 / n as f64;
    print_targets(&[
        Target::new("publish_bytes -> fn(Order), over RustStream's &Order", Goal::AtLeast(1.5), "x", vs_peer[2].median),
        Target::new(
            "publish(&Order) -> fn(Order), over RustStream's message(&Order)",
            Goal::AtLeast(1.5),
            "x",
            vs_peer[3].median,
        ),
        Target::new("the counting rows, tidewater over RustStream", Goal::AtLeast(1.5), "x", vs_peer[6].median),
        Target::new(
            "the counting rows on four lanes, tidewater over RustStream",
            Goal::AtLeast(1.5),
            "x",
            vs_peer[9].median,
        ),
        Target::new("publish_bytes -> fn(Order), over raw mpsc", Goal::AtLeast(0.4), "x", vs_raw[2].median),
        Target::new("tidewater's counting row, over raw mpsc", Goal::AtLeast(0.4), "x", vs_raw[6].median),
        // The bench's own copy of each payload is one of them; the rows that decode an
        // Order also count the String its note decodes into, which is the event's own.
        Target::new("allocations a message, tidewater's counting row", Goal::AtMost(3.0), "", allocations(6)),
        Target::new("allocations a message, the same on four lanes", Goal::AtMost(3.0), "", allocations(9)),
    ]);
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(200_000);
    let round_count = args.get(1).copied().unwrap_or(5);
    let paced = args.get(2).copied().unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let body_len = serde_json::to_vec(&order(1)).unwrap().len();
    println!(
        "{n} messages of {body_len} bytes, 2 workers, median of {round_count} rounds in alternating order; \
         ratios: the median of the rounds' own (lowest-highest)"
    );
    let mut samples = runtime.block_on(rounds(
        &(0..PATHS.len()).collect::<Vec<_>>(),
        Load::Flood(n),
        round_count,
        Load::Flood(n / 10),
    ));
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    if let Some(paths) = only() {
        for path in paths.into_iter().filter(|&p| p < PATHS.len()) {
            let (elapsed, allocations) = middle(&mut samples[path]);
            let per = |x: f64| x / n as f64;
            let (ns, allocations) = (per(elapsed.as_nanos() as f64), per(allocations as f64));
            println!(
                "{}: {:.0}k msg/s, {ns:.0} ns/msg, {allocations:.1} allocations/msg",
                PATHS[path],
                rate(elapsed) / 1e3
            );
        }
    } else {
        print_throughput(&mut samples, n);
    }
    if paced == 0 {
        return;
    }
    // Latency at a fixed 10k msg/s, the batch path left out (its linger is the point).
    let every = Duration::from_micros(100);
    let slice = (paced / LATENCY_SLICES).max(1);
    let load = Load::Paced { n: slice, every };
    let warm_up = Load::Paced { n: slice, every };
    let samples = runtime.block_on(rounds(&LATENCY_PATHS, load, LATENCY_SLICES, warm_up));
    println!();
    println!(
        "latency, send to handler, {} messages at 10k msg/s in {LATENCY_SLICES} slices, the paths taking turns; \
         p50 and p99 of them all, the first {}% of each slice left out",
        slice * LATENCY_SLICES,
        100 / SLICE_WARM_PART
    );
    println!("| path | p50 | p99 | p50 vs raw | publish call p50 | p50 vs raw, slice by slice |");
    println!("|---|---|---|---|---|---|");
    // Quantiles in µs of the times of `slices`' messages together.
    let quantiles = |slices: &[Sample], times: fn(&Sample) -> &[u64], qs: &[f64]| -> Option<Vec<f64>> {
        let mut all: Vec<u64> =
            slices.iter().flat_map(|s| times(s).iter().skip(times(s).len() / SLICE_WARM_PART).copied()).collect();
        all.sort_unstable();
        (!all.is_empty()).then(|| qs.iter().map(|q| all[((all.len() - 1) as f64 * q) as usize] as f64 / 1e3).collect())
    };
    // Each run path's p50 and p99, and its publish call's p50.
    let percentiles: Vec<(usize, f64, f64, f64)> = LATENCY_PATHS
        .iter()
        .filter_map(|&path| {
            let latency = quantiles(&samples[path], |s| &s.latencies, &[0.5, 0.99])?;
            let call = quantiles(&samples[path], |s| &s.publish_times, &[0.5])?;
            Some((path, latency[0], latency[1], call[0]))
        })
        .collect();
    let raw = percentiles.iter().find(|p| p.0 == 0).map_or(f64::NAN, |p| p.1);
    // The same difference taken slice by slice: each slice's p50 less that of raw's slice
    // of the same turn, a few seconds apart at most, and the median of those. The
    // machine's slow stretches, which move a whole run's p50s by several microseconds,
    // then fall on both sides of each difference.
    let slice_p50 = |s: &Sample| quantiles(std::slice::from_ref(s), |s| &s.latencies, &[0.5]).map(|q| q[0]);
    let by_slice = |path: usize| {
        let pairs = samples[path].iter().zip(&samples[0]);
        median(pairs.filter_map(|(s, r)| Some(slice_p50(s)? - slice_p50(r)?)).collect())
    };
    for &(path, p50, p99, call) in &percentiles {
        println!(
            "| {} | {p50:.1} µs | {p99:.1} µs | {:+.1} µs | {call:.2} µs | {:+.2} µs |",
            PATHS[path],
            p50 - raw,
            by_slice(path)
        );
    }
    // p50 within 1 µs of raw, for the paths that carry bytes as raw does: the typed
    // publish also serializes its event, which raw never does.
    let over_raw = |path: usize| percentiles.iter().find(|p| p.0 == path).map_or(f64::NAN, |p| p.1 - raw);
    print_targets(&[
        Target::new("p50 over raw, publish_bytes -> fn(Order)", Goal::AtMost(1.0), " µs", over_raw(2)),
        Target::new("p50 over raw, tidewater's counting row", Goal::AtMost(1.0), " µs", over_raw(6)),
    ]);
}
