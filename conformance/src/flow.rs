//! How much a reader takes ahead of its handlers, and at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tidewater_core::{Incoming, MessageId, ReadTask, ReadySignal, Settlement, Source, MOST_A_FETCH};
use tokio::sync::Semaphore;

use crate::cases::GRACE;
use crate::support::{batch, ids, skip, subscribe, write_each, Act, Probe};
use crate::Fixture;

/// Case 24: A group member whose handlers are stuck takes no more of the group's
/// messages than its prefetch allows, so the other members get the rest; once its
/// handlers run again, nothing is lost.
///
/// The member runs two handlers at once with a prefetch of 8. It may hold what its
/// handlers run and the prefetch, and as many again for what its client took in
/// answer to an earlier, larger request: 18 of 120. A reader that fetched again as soon
/// as its lanes took a batch held 35 on JetStream, and one that ignores the prefetch
/// holds its share of the topic, about half. Runs where the broker's flow follows what
/// the reader asks for.
pub async fn prefetch_bounds_read_ahead(f: Arc<dyn Fixture>) {
    const MESSAGES: usize = 120;
    const PREFETCH: usize = 8;
    const CONCURRENCY: usize = 2;
    const MOST_HELD: usize = CONCURRENCY + 2 * PREFETCH;
    let caps = f.capabilities();
    if !caps.flow_follows_prefetch {
        skip("prefetch_bounds_read_ahead", "flow_follows_prefetch");
        return;
    }
    let topic = crate::cases::topic(&*f, "prefetch").await;
    let stuck = Arc::new(Semaphore::new(0));
    let slow = Probe::new({
        let stuck = Arc::clone(&stuck);
        move |_| Act::Block(Arc::clone(&stuck))
    });
    let task = ReadTask::new(&topic).with_group("pf").with_concurrency(CONCURRENCY).with_prefetch(PREFETCH);
    let mut slow_sub = subscribe(&*f, task, slow.clone()).await;
    let quick = Probe::succeeding();
    let mut quick_sub = subscribe(&*f, ReadTask::new(&topic).with_group("pf"), quick.clone()).await;

    let messages = batch(&topic, MESSAGES, |_, m| m);
    let expected = ids(&messages);
    write_each(&*f.writer().await, messages).await;
    let least = MESSAGES - MOST_HELD;
    let what = format!(
        "{least} of {MESSAGES} messages on the member whose handlers run: the other, stuck, with prefetch \
         {PREFETCH} and concurrency {CONCURRENCY}, may hold {MOST_HELD}"
    );
    let result = tokio::spawn({
        let quick = quick.clone();
        async move { quick.wait(caps.patience, &what, |s| s.done_ids().len() >= least).await }
    })
    .await;

    // The stuck handlers finish; what the member still held is handled by it, or given
    // back as it stops and handled by the other.
    stuck.add_permits(MESSAGES * 4);
    slow_sub.shutdown(GRACE).await;
    let handled_by_slow = slow.state().done_ids();
    let rest: std::collections::HashSet<_> = expected.difference(&handled_by_slow).cloned().collect();
    quick.wait_ids_again(&*f, &topic, caps.patience, &rest).await;
    quick_sub.shutdown(GRACE).await;
    if let Err(err) = result {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// Case 25: However large the prefetch, one call of a source's `next_batch` hands out
/// at most [`MOST_A_FETCH`] deliveries, leaving the rest in the broker's client, and
/// every message comes once.
///
/// A batch's deliveries are all made before its first handler runs; a Kafka reader
/// catching up with a prefetch of 8,192 made about a thousand at once, which outgrew the
/// caches. The case opens the reader's source itself with that prefetch, writes 1,000
/// small messages and reads them, settling each. Without the bound, a source made
/// batches of 334 to 1,000 where the backlog reaches the client at once (the memory
/// driver, Kafka, Pulsar, StreamBus and the toy driver of `examples/writing_a_driver`);
/// on NATS the messages arrive as they are sent, in smaller batches.
pub async fn fetches_stay_bounded_whatever_the_prefetch(f: Arc<dyn Fixture>) {
    const MESSAGES: usize = 1_000;
    const PREFETCH: usize = 8_192;
    let patience = f.capabilities().patience;
    let (mut source, expected) = backlog(&*f, "fetch-bound", MESSAGES, PREFETCH).await;

    let (mut sizes, mut seen, mut fetched) = (Vec::new(), HashSet::new(), Vec::new());
    while seen.len() < MESSAGES {
        sizes.push(next_batch(&mut *source, &mut fetched, PREFETCH, patience, seen.len()).await);
        for incoming in fetched.drain(..) {
            let id = settle(incoming, Settlement::Ack).await;
            assert!(seen.insert(id.clone()), "{id} came twice");
        }
    }
    if let Err(err) = source.close().await {
        panic!("closing the source failed: {err}");
    }
    assert_eq!(seen, expected);
    assert!(
        sizes.iter().all(|&n| n <= MOST_A_FETCH),
        "fetches made more than {MOST_A_FETCH} deliveries at once: {sizes:?}"
    );
}

/// Case 26: Once a nack has rewound a partition, its source hands out nothing the rewind
/// made stale: what it held of that partition beyond the nacked message is dropped, and
/// the partition is read again from the nacked message, which comes again; every message
/// is acked once in the end.
///
/// A stale delivery reaches a handler only to be given back unhandled (the runner asks
/// `is_current` first), but a source that made a whole fetch's deliveries before handing
/// them out still made them, and handed out up to a fetch of them after the nack. The
/// case opens the source itself with a prefetch of 8,192, writes 1,000 small messages,
/// nacks the first it is handed, and asks of every delivery handed out after whether it
/// is still current. Without it, the StreamBus reader handed out the rest of a fetch
/// made stale by the nack. Where a nack redelivers that one message (the memory driver,
/// Pulsar, JetStream), nothing is rewound and nothing goes stale.
pub async fn nothing_stale_is_handed_out_after_a_nack(f: Arc<dyn Fixture>) {
    const MESSAGES: usize = 1_000;
    const PREFETCH: usize = 8_192;
    let caps = f.capabilities();
    if !caps.redelivery_on_nack {
        return skip("nothing_stale_is_handed_out_after_a_nack", "redelivery_on_nack");
    }
    let patience = caps.patience;
    let (mut source, expected) = backlog(&*f, "stale", MESSAGES, PREFETCH).await;

    let mut fetched = Vec::new();
    next_batch(&mut *source, &mut fetched, PREFETCH, patience, 0).await;
    let mut first = fetched.drain(..);
    let nacked = first.next().expect("a batch is not empty");
    let nacked_id = nacked.delivery.message().id.clone();
    settle(nacked, Settlement::Nack { delay: Some(Duration::from_millis(20)) }).await;
    // Handed out before the nack: the records it made stale are given back, as the
    // runner gives them back; the others (of other partitions) are handled.
    let mut seen = HashSet::new();
    for incoming in first {
        ack_if_current(incoming, &mut seen).await;
    }
    let mut stale = Vec::new();
    while seen.len() < MESSAGES {
        next_batch(&mut *source, &mut fetched, PREFETCH, patience, seen.len()).await;
        for incoming in fetched.drain(..) {
            stale.extend(ack_if_current(incoming, &mut seen).await);
        }
    }
    if let Err(err) = source.close().await {
        panic!("closing the source failed: {err}");
    }
    assert!(
        stale.is_empty(),
        "after the nack of {nacked_id}, the source handed out {} deliveries the nack had already made stale, \
         the first {:?}",
        stale.len(),
        &stale[..stale.len().min(3)]
    );
    assert!(seen.contains(&nacked_id), "the nacked {nacked_id} came again");
    assert_eq!(seen, expected);
}

/// A source opened with `prefetch` on a fresh topic, to which `messages` small
/// messages were then written, and their ids.
async fn backlog(
    f: &dyn Fixture,
    name: &str,
    messages: usize,
    prefetch: usize,
) -> (Box<dyn Source>, HashSet<MessageId>) {
    let topic = crate::cases::topic(f, name).await;
    let task = ReadTask::new(&topic).with_prefetch(prefetch);
    let source = match f.reader().await.open(&task, &ReadySignal::new().0).await {
        Ok(source) => source,
        Err(err) => panic!("opening a source on {topic} failed: {err}"),
    };
    let written = batch(&topic, messages, |_, m| m);
    let expected = ids(&written);
    if let Err(err) = f.writer().await.write(written).await {
        panic!("writing {messages} messages to {topic} failed: {err}");
    }
    (source, expected)
}

/// One call of `next_batch` into `fetched`, which must hand out something within
/// `patience`; `so_far` messages were handled before it.
async fn next_batch(
    source: &mut dyn Source,
    fetched: &mut Vec<Incoming>,
    max: usize,
    patience: Duration,
    so_far: usize,
) -> usize {
    match tokio::time::timeout(patience, source.next_batch(fetched, max)).await {
        Ok(Ok(0)) => panic!("the source ended after {so_far} messages"),
        Ok(Ok(n)) => n,
        Ok(Err(err)) => panic!("a fetch failed after {so_far} messages: {err}"),
        Err(_) => panic!("nothing more arrived within {patience:?} after {so_far} messages"),
    }
}

/// Acks `incoming` and adds its id to `seen` if its source still wants it handled;
/// else gives it back, as the runner does, and returns its id.
async fn ack_if_current(incoming: Incoming, seen: &mut HashSet<MessageId>) -> Option<MessageId> {
    if incoming.settle.is_current(&incoming.delivery) {
        seen.insert(settle(incoming, Settlement::Ack).await);
        return None;
    }
    let Incoming { delivery, settle } = incoming;
    settle.release(&delivery).await;
    Some(delivery.message().id.clone())
}

/// Settles `incoming`, which must succeed, and returns its message's id.
async fn settle(incoming: Incoming, settlement: Settlement) -> MessageId {
    let Incoming { delivery, settle } = incoming;
    let id = delivery.message().id.clone();
    if let Err(err) = settle.settle(&delivery, settlement).await {
        panic!("settling {id} with {settlement:?} failed: {err}");
    }
    id
}

/// Case 30: A handler busy for longer than the broker waits on a consumer that seems
/// stuck keeps its place: its message is neither given to another consumer nor
/// delivered again, and the messages behind it come once each. A reader fetches only
/// when its handlers have room; Kafka's consumer was polled only by those fetches, so a
/// handler busy past `max.poll.interval.ms` (or a circuit breaker holding deliveries
/// through an outage) put it out of its group, and the held record came twice.
pub async fn a_busy_handler_keeps_its_place(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    let (reader, window) = match f.busy_reader().await {
        Some(busy) => busy,
        None => (f.reader().await, Duration::from_secs(1)),
    };
    let topic = crate::fresh_topic("busy");
    if let Err(err) = f.create_topic(&topic, 1).await {
        panic!("creating topic {topic} failed: {err}");
    }
    let messages = batch(&topic, 3, |_, m| m);
    let (all, first) = (ids(&messages), messages[0].id.clone());
    let held = Arc::new(Semaphore::new(0));
    let probe = Probe::new({
        let held = Arc::clone(&held);
        move |d: &tidewater_core::Delivery| match d.message().id == first {
            true => Act::Block(Arc::clone(&held)),
            false => Act::Succeed,
        }
    });
    // Subscribed before the writes, so a broker that keeps nothing (core NATS) has them too.
    let task = ReadTask::new(&topic).with_group("busy").with_prefetch(1);
    let mut sub = crate::subscribe_reader(reader, task, probe.clone()).await;
    write_each(&*f.writer().await, messages).await;
    probe.wait(caps.patience, "the first message, to hold", |s| !s.calls.is_empty()).await;
    // The hold itself, not a wait for a signal: past the broker's window twice over.
    tokio::time::sleep(window * 2 + Duration::from_secs(1)).await;
    // Enough for the held call and any delivery of it again, which must not come.
    held.add_permits(10);
    let state = probe.wait_ids(caps.patience, &all).await;
    let report = sub.shutdown(GRACE).await;
    let calls: Vec<&str> = state.calls.iter().map(|d| d.message().id.as_str()).collect();
    assert_eq!(
        state.duplicates(),
        0,
        "each message once, after a hold of {window:?} twice over: {calls:?}, {report:?}"
    );
    assert_eq!(report.tasks.iter().map(|t| t.restarts).sum::<u64>(), 0, "the reader kept going: {report:?}");
}
