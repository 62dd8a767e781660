//! The middleware allocate nothing on a message's success path: the whole chain,
//! Deduplicate included, around a handler that succeeds, allocates nothing when it is put
//! around the handler, and nothing beyond its boxed futures when a bus applies it as
//! middleware. Issue 17's bound, held here because a count, unlike the time the
//! `chain_cost` bench prints beside it, does not move with the machine.

use std::sync::Arc;
use std::time::Duration;

use tidewater_core::{apply_chain, handler_fn, Around, BoxHandler, Delivery, Handler, HandlerError, Middleware};
use tidewater_memory::MemoryBroker;
use tidewater_middleware::*;
use tidewater_testkit::bench::{allocations, deliveries, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// More than the in-memory store's default 100,000 ids, so that forgetting the oldest
/// is counted too, as in a service that runs for long.
const MESSAGES: usize = 120_000;
/// Deliveries made at a time, before counting: a consumer's fetch makes them, not the chain.
const BATCH: usize = 1_000;

/// Allocations `handler` made over `MESSAGES` deliveries, each handled with success,
/// after as many not counted: a thread's first deliveries make the blocks later ones
/// reuse.
async fn allocations_handling(handler: &impl Handler) -> u64 {
    handle_all(handler).await;
    handle_all(handler).await
}

async fn handle_all(handler: &impl Handler) -> u64 {
    let mut made = 0;
    for from in (0..MESSAGES).step_by(BATCH) {
        let batch = deliveries(from, BATCH);
        let before = allocations();
        for delivery in batch {
            handler.handle(delivery).await.expect("the handler succeeds");
        }
        made += allocations() - before;
    }
    made
}

fn succeeding() -> impl Handler + Clone {
    handler_fn(|delivery: Delivery| async move {
        std::hint::black_box(delivery.message().payload.len());
        Ok::<_, HandlerError>(())
    })
}

// One test, not several: the allocator counts every thread, and tests run side by side.
#[tokio::test(flavor = "current_thread")]
async fn the_chain_allocates_nothing_on_success_beyond_its_boxed_futures() {
    let broker = MemoryBroker::new();
    let bare = allocations_handling(&succeeding()).await;
    assert_eq!(bare, 0, "the handler alone allocates nothing");
    let per = |made: u64| made as f64 / MESSAGES as f64;

    let stack = || {
        Trace
            .then(CorrelationId)
            .then(DeadLetter::new(broker.writer()))
            .then(Deduplicate::in_memory())
            .then(Retry::new())
            .then(Timeout(Duration::from_secs(30)))
            .then(Recover::new())
    };
    // Around the handler and subscribed as one handler: called through its own type.
    let wrapped = allocations_handling(&stack().wrapping(succeeding())).await;
    assert_eq!(wrapped, 0, "the whole chain put around the handler allocated {wrapped} times in {MESSAGES} messages");

    // The breaker closed and a rate never reached (a call a nanosecond) take no lock and
    // no timer, and allocate nothing either.
    let guards = CircuitBreaker::new("api").then(RateLimit::per_second(1_000_000_000));
    let guarded = allocations_handling(&guards.wrapping(succeeding())).await;
    assert_eq!(guarded, 0, "a closed breaker and a rate limit allocated {guarded} times in {MESSAGES} messages");

    // As a bus applies its middleware list, the handler boxed inside it: each boxed
    // handler or layer boxes its future on each call, and nothing else may allocate.
    let boxed = || -> BoxHandler { Arc::new(succeeding()) };
    let one = allocations_handling(&apply_chain(boxed(), &[Arc::new(stack())])).await;
    let layers: Vec<Arc<dyn Middleware>> = vec![
        Arc::new(Trace),
        Arc::new(CorrelationId),
        Arc::new(DeadLetter::new(broker.writer())),
        Arc::new(Deduplicate::in_memory()),
        Arc::new(Retry::new()),
        Arc::new(Timeout(Duration::from_secs(30))),
        Arc::new(Recover::new()),
    ];
    let listed = allocations_handling(&apply_chain(boxed(), &layers)).await;
    println!(
        "allocations a message: the chain around the handler {:.2}, as one middleware {:.2}, as a list of {} {:.2}",
        per(wrapped),
        per(one),
        layers.len(),
        per(listed)
    );
    assert!(one <= 2 * MESSAGES as u64, "the chain as one middleware: {:.2} allocations a message, not 2", per(one));
    let futures = (layers.len() + 1) as u64;
    assert!(
        listed <= futures * MESSAGES as u64,
        "the chain as a list of {}: {:.2} allocations a message, not {futures}",
        layers.len(),
        per(listed)
    );
}
