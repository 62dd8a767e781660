//! How much a reader takes ahead of its handlers, and at once.

use std::collections::HashSet;
use std::sync::Arc;

use tidewater_core::{ReadTask, ReadySignal, Settlement, Settler, MOST_A_FETCH};
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
    quick.wait_ids(caps.patience, &rest).await;
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
    let topic = crate::cases::topic(&*f, "fetch-bound").await;
    let task = ReadTask::new(&topic).with_prefetch(PREFETCH);
    let reader = f.reader().await;
    let mut source = match reader.open(&task, &ReadySignal::new().0).await {
        Ok(source) => source,
        Err(err) => panic!("opening a source on {topic} failed: {err}"),
    };
    let messages = batch(&topic, MESSAGES, |_, m| m);
    let expected = ids(&messages);
    if let Err(err) = f.writer().await.write(messages).await {
        panic!("writing {MESSAGES} messages to {topic} failed: {err}");
    }

    let (mut sizes, mut seen, mut fetched) = (Vec::new(), HashSet::new(), Vec::new());
    while seen.len() < MESSAGES {
        let n = match tokio::time::timeout(patience, source.next_batch(&mut fetched, PREFETCH)).await {
            Ok(Ok(n)) => n,
            Ok(Err(err)) => panic!("a fetch failed after {} of {MESSAGES}: {err}", seen.len()),
            Err(_) => panic!("{} of {MESSAGES} messages arrived within {patience:?}", seen.len()),
        };
        assert!(n > 0, "the source ended after {} of {MESSAGES} messages", seen.len());
        sizes.push(n);
        for incoming in fetched.drain(..) {
            let id = incoming.delivery.message().id.clone();
            let settled = match incoming.settle {
                Settler::Own(settle) => settle.settle(Settlement::Ack).await,
                Settler::Shared(settle) => settle.settle(&incoming.delivery, Settlement::Ack).await,
            };
            if let Err(err) = settled {
                panic!("acking {id} failed: {err}");
            }
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
