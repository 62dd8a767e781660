//! Publish to handler return, as a service calls it, in one process: tidewater's `Bus` and
//! `Publisher` on the memory driver (default ids and codec), RustStream 0.7.7's memory
//! broker with a `#[subscriber]`, and a raw tokio channel, in the same run, paired and in
//! alternating order. Prints messages per second, nanoseconds and allocations per message,
//! and the ratios.
//!
//! ```sh
//! cargo run --release --manifest-path bench/Cargo.toml            # 200,000 messages, 5 rounds
//! cargo run --release --manifest-path bench/Cargo.toml -- 50000 3
//! ```
//!
//! Every path carries the same 1 KiB JSON order and ends in a handler that decodes it (the
//! raw channel only counts) and counts down a latch; the clock runs from the first publish
//! to the last handler's return. Setup (building and starting the service) is outside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Counts heap allocations, so each path reports how many a message costs.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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

/// Counts deliveries down and wakes the waiter at zero.
#[derive(Clone, Default)]
pub struct Latch(Arc<(AtomicUsize, Notify)>);

impl Latch {
    fn expect(&self, n: usize) {
        self.0 .0.store(n, Ordering::SeqCst);
    }

    fn arrived(&self) {
        if self.0 .0.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0 .1.notify_one();
        }
    }

    async fn drained(&self) {
        while self.0 .0.load(Ordering::Acquire) > 0 {
            let notified = self.0 .1.notified();
            if self.0 .0.load(Ordering::Acquire) == 0 {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(10), notified).await;
        }
    }
}

/// One timed run: elapsed time and allocations.
struct Sample {
    elapsed: Duration,
    allocations: u64,
}

async fn timed(latch: &Latch, n: usize, publish: impl AsyncFnOnce()) -> Sample {
    latch.expect(n);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let start = Instant::now();
    publish().await;
    latch.drained().await;
    Sample { elapsed: start.elapsed(), allocations: ALLOCATIONS.load(Ordering::Relaxed) - before }
}

// ---- raw tokio mpsc ------------------------------------------------------------------

async fn raw_mpsc(n: usize, body: &Bytes) -> Sample {
    let latch = Latch::default();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
    let counter = latch.clone();
    let consumer = tokio::spawn(async move {
        while let Some(payload) = rx.recv().await {
            std::hint::black_box(payload.len());
            counter.arrived();
        }
    });
    let sample = timed(&latch, n, async || {
        for _ in 0..n {
            tx.send(Bytes::copy_from_slice(body)).await.unwrap();
        }
    })
    .await;
    drop(tx);
    consumer.await.unwrap();
    sample
}

// ---- tidewater -------------------------------------------------------------------------

async fn tidewater_handle(order: Order, tidewater::State(latch): tidewater::State<Latch>) -> tidewater::HandlerResult {
    std::hint::black_box((order.id, order.quantity));
    latch.arrived();
    Ok(())
}

/// `typed`: `publisher.publish(&event)`; else `publish_bytes` of the JSON.
async fn tidewater(n: usize, body: &Bytes, typed: bool) -> Sample {
    let latch = Latch::default();
    let broker = tidewater::memory::MemoryBroker::new();
    let mut bus = tidewater::Bus::new(&broker, tidewater::EventRegistry::new().route::<Order>("orders"));
    bus.with_state(latch.clone());
    bus.subscribe_event(tidewater_handle).group("bench");
    bus.start().await.unwrap();
    let publisher = bus.publisher().clone();
    let event = order(1);
    let sample = timed(&latch, n, async || {
        for _ in 0..n {
            if typed {
                publisher.publish(&event).await.unwrap();
            } else {
                publisher.publish_bytes("orders", Bytes::copy_from_slice(body), "application/json").await.unwrap();
            }
        }
    })
    .await;
    bus.shutdown(Duration::from_secs(10)).await.unwrap();
    sample
}

/// `publish_bytes`, consumed by a batch handler of up to 100 deliveries.
async fn tidewater_batches(n: usize, body: &Bytes) -> Sample {
    let latch = Latch::default();
    let broker = tidewater::memory::MemoryBroker::new();
    let mut bus = tidewater::Bus::new(&broker, tidewater::EventRegistry::new());
    let counter = latch.clone();
    let handler = tidewater::batch_handler_fn(move |batch: Vec<tidewater::Delivery>| {
        let counter = counter.clone();
        async move {
            for delivery in &batch {
                std::hint::black_box(delivery.message().payload.len());
                counter.arrived();
            }
            Ok::<_, tidewater::BatchError>(())
        }
    });
    bus.subscribe_batch("orders", 100, Duration::from_millis(1), handler).group("bench");
    bus.start().await.unwrap();
    let publisher = bus.publisher().clone();
    let sample = timed(&latch, n, async || {
        for _ in 0..n {
            publisher.publish_bytes("orders", Bytes::copy_from_slice(body), "application/json").await.unwrap();
        }
    })
    .await;
    bus.shutdown(Duration::from_secs(10)).await.unwrap();
    sample
}

// ---- RustStream ------------------------------------------------------------------------

mod peer {
    use ruststream::memory::prelude::*;

    use super::{Latch, Order};

    #[subscriber("orders")]
    pub async fn consume(order: &Order, ctx: &mut Context<'_, (), Latch>) -> HandlerOutcome {
        std::hint::black_box((order.id, order.quantity));
        ctx.state().arrived();
        HandlerOutcome::ack()
    }
}

async fn ruststream(n: usize, body: &Bytes) -> Sample {
    use ruststream::memory::prelude::*;

    let latch = Latch::default();
    let broker = MemoryBroker::new();
    let state = latch.clone();
    let app = RustStream::new(AppInfo::new("bench", "0.0.0"))
        .on_startup(async move |()| Ok::<_, std::convert::Infallible>(state))
        .with_broker(broker.clone(), |b| {
            b.include(peer::consume);
        });
    let running = app.start().await.expect("the peer service starts");
    let publisher = broker.publisher();
    let sample = timed(&latch, n, async || {
        for _ in 0..n {
            let payload = Bytes::copy_from_slice(body);
            publisher.publish(ruststream::OutgoingMessage::new("orders", &payload[..]), None).await.unwrap();
        }
    })
    .await;
    drop(running);
    sample
}

// ---- the run ---------------------------------------------------------------------------

const PATHS: [&str; 5] = [
    "raw tokio mpsc of Bytes",
    "RustStream 0.7.7 memory, #[subscriber] &Order",
    "tidewater memory, publish_bytes -> fn(Order)",
    "tidewater memory, publish(&Order) -> fn(Order)",
    "tidewater memory, publish_bytes -> batches of up to 100",
];

async fn run(path: usize, n: usize, body: &Bytes) -> Sample {
    match path {
        0 => raw_mpsc(n, body).await,
        1 => ruststream(n, body).await,
        2 => tidewater(n, body, false).await,
        3 => tidewater(n, body, true).await,
        _ => tidewater_batches(n, body).await,
    }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(200_000);
    let rounds = args.get(1).copied().unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let body = Bytes::from(serde_json::to_vec(&order(1)).unwrap());
    println!("{n} messages of {} bytes, 2 workers, median of {rounds} rounds in alternating order", body.len());
    let mut samples: Vec<Vec<Sample>> = (0..PATHS.len()).map(|_| Vec::new()).collect();
    runtime.block_on(async {
        for path in 0..PATHS.len() {
            run(path, n / 10, &body).await; // warm-up
        }
        for round in 0..rounds {
            let order: Vec<usize> =
                if round % 2 == 0 { (0..PATHS.len()).collect() } else { (0..PATHS.len()).rev().collect() };
            for path in order {
                samples[path].push(run(path, n, &body).await);
            }
        }
    });
    let median = |s: &mut Vec<Sample>| {
        s.sort_by_key(|x| x.elapsed);
        let m = &s[s.len() / 2];
        (m.elapsed, m.allocations)
    };
    let medians: Vec<(Duration, u64)> = samples.iter_mut().map(median).collect();
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("| path | msg/s | ns/msg | allocations/msg | vs RustStream | vs raw |");
    println!("|---|---|---|---|---|---|");
    for (path, (elapsed, allocations)) in medians.iter().enumerate() {
        println!(
            "| {} | {:.0}k | {:.0} | {:.1} | {:.2} | {:.2} |",
            PATHS[path],
            rate(*elapsed) / 1e3,
            elapsed.as_nanos() as f64 / n as f64,
            *allocations as f64 / n as f64,
            rate(*elapsed) / rate(medians[1].0),
            rate(*elapsed) / rate(medians[0].0),
        );
    }
}
