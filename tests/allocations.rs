//! What the path a service calls costs the heap: allocations a message from `publish` to
//! the handler's return, and the bytes a message held by the memory broker keeps. Issue
//! 17's bounds, held here because counts, unlike times, do not move with the machine:
//! the benches (`bench/`, `benches/memory_held.rs`) print the same figures beside their
//! timings.
//!
//! The allocator counts every thread's allocations, so the tests take turns.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tidewater::memory::{MemoryBroker, MemoryConfig};
use tidewater::{handler_fn, Bus, Delivery, Event, EventRegistry, HandlerError, HandlerResult, State};
use tidewater_testkit::bench::{allocations, live_bytes, Tracking};
use tokio::sync::Notify;

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Held by each test while it counts.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `test` on a runtime of two workers, as the benches do, alone: no other test of
/// this file runs, or has a runtime still shutting down, while it counts.
fn alone<F: std::future::Future>(test: impl FnOnce() -> F) -> F::Output {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let output = runtime.block_on(test());
    // Dropped under the lock: its shutdown frees what its workers held.
    drop(runtime);
    output
}

/// Messages published before counting starts: the bus's first messages make what it
/// keeps for the rest (delivery blocks, buffers grown to size).
const WARM_UP: usize = 2_000;
const COUNTED: usize = 20_000;
/// Published at a time, then handled before the next: far below the topic's room, so no
/// publish waits for it. (A publish that waits, its consumer behind by a whole topic,
/// makes two allocations more: its message's shared block a second time, and the
/// writer's boxed wait.)
const CHUNK: usize = 500;
const PAYLOAD: usize = 1024;
/// Allocations a message allowed beyond the bound, for what is made now and then rather
/// than for each message: a timer's entry, a block of the lanes' channels that could not
/// be reused, a delivery's block when a fetch brings more than a thread keeps spare.
/// 0.0004-0.0164 a message here over twenty runs, with the machine idle or its cores
/// kept busy by three other processes: a tenth leaves room for a busier machine and
/// still fails a path that allocates once more for one message in ten.
const STRAY: f64 = 0.1;
const WAIT: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
    note: String,
}

impl Event for Order {
    const TYPE: &'static str = "order.placed";
}

/// An order whose JSON is `PAYLOAD` bytes: the note and 18 bytes around it.
fn order(id: u64) -> Order {
    Order { id: id % 10, note: "x".repeat(PAYLOAD - 18) }
}

/// Counts handled messages and wakes the test when the count it waits for is reached.
#[derive(Clone, Default)]
struct Seen(Arc<(AtomicUsize, Notify)>);

impl Seen {
    fn one(&self) {
        self.0 .0.fetch_add(1, Ordering::AcqRel);
        self.0 .1.notify_one();
    }

    async fn reach(&self, n: usize) {
        tokio::time::timeout(WAIT, async {
            while self.0 .0.load(Ordering::Acquire) < n {
                self.0 .1.notified().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} of {n} messages handled in {WAIT:?}", self.0 .0.load(Ordering::Acquire)));
    }
}

async fn decode_order(order: Order, State(seen): State<Seen>) -> HandlerResult {
    std::hint::black_box(order.note.len());
    seen.one();
    Ok(())
}

/// How the test publishes, and to what handler.
#[derive(Clone, Copy, Debug)]
enum Path {
    /// `publish_bytes` of the order's JSON (copied from a buffer, as a service has the
    /// bytes of its own), to a `handler_fn` that counts, on this many lanes.
    Counting { lanes: usize },
    /// The same bytes, to a handler that takes the decoded order.
    BytesToTyped,
    /// `publish(&order)`, to the same handler.
    Typed,
}

/// Allocations a message over `COUNTED` messages on `path`, publish to handler's return.
async fn allocations_a_message(path: Path) -> f64 {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new().route::<Order>("orders"));
    let seen = Seen::default();
    match path {
        Path::Counting { lanes } => {
            let seen = seen.clone();
            let handler = handler_fn(move |d: Delivery| {
                std::hint::black_box(d.message().payload.len());
                seen.one();
                async { Ok::<_, HandlerError>(()) }
            });
            bus.subscribe("orders", handler).group("counted").concurrency(lanes);
        }
        Path::BytesToTyped | Path::Typed => {
            bus.with_state(seen.clone());
            bus.subscribe_event(decode_order).group("counted");
        }
    }
    bus.start().await.unwrap();
    let publisher = bus.publisher().clone();
    let body = serde_json::to_vec(&order(0)).unwrap();
    assert_eq!(body.len(), PAYLOAD);
    let the_order = order(0);
    let publish = async |from: usize, n: usize| {
        for chunk in (from..from + n).step_by(CHUNK) {
            for _ in 0..CHUNK {
                match path {
                    Path::Typed => drop(publisher.publish(&the_order).await.unwrap()),
                    _ => drop(
                        publisher
                            .publish_bytes("orders", Bytes::copy_from_slice(&body), "application/json")
                            .await
                            .unwrap(),
                    ),
                }
            }
            seen.reach(chunk + CHUNK).await;
        }
    };
    publish(0, WARM_UP).await;
    let before = allocations();
    publish(WARM_UP, COUNTED).await;
    let made = allocations() - before;
    bus.shutdown(WAIT).await.unwrap();
    made as f64 / COUNTED as f64
}

#[test]
fn publish_to_handler_costs_at_most_three_allocations() {
    for path in [Path::Counting { lanes: 1 }, Path::Counting { lanes: 4 }, Path::BytesToTyped, Path::Typed] {
        let per = alone(|| allocations_a_message(path));
        println!("{path:?}: {per:.4} allocations a message");
        assert!(per <= 3.0 + STRAY, "{path:?}: {per:.4} allocations a message; issue 17 allows 3");
    }
}

/// Heap bytes a message held by the broker keeps (as asked of the allocator, without
/// its own overhead), and what was left once the broker was dropped: 20,000 messages of
/// 1 KiB on a topic of 4 partitions x 5,000 that nobody reads, as a slow consumer leaves
/// them.
async fn held_bytes_a_message(typed: bool) -> (f64, isize) {
    const HELD: usize = 20_000;
    let start = live_bytes();
    let broker = MemoryBroker::with_config(MemoryConfig::default().partitions(4).capacity(HELD / 4));
    let bus = Bus::new(&broker, EventRegistry::new().route::<Order>("orders"));
    let publisher = bus.publisher().clone();
    let body = serde_json::to_vec(&order(0)).unwrap();
    // The topic, made by the first publish, is not a message's cost.
    publisher.publish_bytes("orders", body.clone(), "application/json").await.unwrap();
    let before = live_bytes();
    for id in 1..HELD as u64 {
        if typed {
            publisher.publish(&order(id)).await.unwrap();
        } else {
            publisher.publish_bytes("orders", body.clone(), "application/json").await.unwrap();
        }
    }
    let held = live_bytes() - before;
    assert_eq!(broker.published("orders").len(), HELD, "every message is held");
    drop((publisher, bus, broker));
    (held as f64 / (HELD - 1) as f64, live_bytes() - start)
}

#[test]
fn a_held_message_costs_little_more_than_its_payload() {
    for typed in [false, true] {
        let (per, left) = alone(|| held_bytes_a_message(typed));
        let ratio = per / PAYLOAD as f64;
        println!("typed {typed}: {per:.0} heap bytes a held message, {ratio:.3}x the payload; {left} bytes left after");
        assert!(ratio <= 1.3, "typed {typed}: a held message takes {per:.0} bytes of heap, {ratio:.2}x its payload");
        assert!(left <= 64 * 1024, "typed {typed}: {left} bytes still allocated after the broker was dropped");
    }
}
