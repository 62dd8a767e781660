//! How much a reader takes ahead of its handlers.

use std::sync::Arc;

use tidewater_core::ReadTask;
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
