//! Keeping a consumer in its group while its reader fetches nothing.
//!
//! librdkafka takes a consumer that has not been polled for `max.poll.interval.ms` (5
//! minutes by default) for a stuck application, and leaves the group: its partitions
//! go to others, and what its handlers finish after that is not committed, so it comes
//! again. A reader fetches only when its handlers have room, so one whose handlers are
//! all busy for longer than that (a slow call, a retry that backs off for long, a
//! circuit breaker holding its deliveries through an outage) was put out of its group,
//! and its records handled twice.
//!
//! So while the reader does not fetch, a task of the source's own polls the consumer
//! once a second, with every assigned partition paused: the poll serves rebalances and
//! tells librdkafka the application is alive, and brings no records (pausing drops
//! what librdkafka had fetched ahead, and the next fetch after the resume starts after
//! the last record handed out). Records a poll does bring, of a partition assigned
//! since the last pause, wait in a stash for the reader's next fetch, in order.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::TopicPartitionList;
use tokio::time::Instant;

use super::copies::Copies;
use super::rebalance::ReaderContext;
use super::source::{fetched, Fetched};
use super::state::Shared;

/// How long the reader may go without fetching before the partitions are paused and the
/// consumer polled on its behalf: well under the least `max.poll.interval.ms` there can
/// be (it is at least `session.timeout.ms`, which brokers hold to 6 s or more).
const IDLE_AFTER: Duration = Duration::from_secs(2);
/// How often the keep-alive looks.
const TICK: Duration = Duration::from_secs(1);
/// Polls in one pass, at most: a poll that serves a rebalance returns no record, and
/// the records fetched ahead may follow it.
const POLLS_A_PASS: usize = 16;

/// What the reader's fetch and the keep-alive share, under [`Shared::idle`].
pub(super) struct Idle {
    /// When the consumer was last polled, by either.
    pub(super) last: Instant,
    /// Partitions the keep-alive paused, each with its assignment, for the next fetch to
    /// resume. The assignment tells a partition revoked and assigned again since, which
    /// fetches again, from one paused and still so.
    pub(super) paused: Vec<(i32, u64)>,
    /// Records a keep-alive poll brought, each with its partition's assignment, for the
    /// next fetch to hand out first.
    pub(super) stash: Vec<(u64, Fetched)>,
    /// Set when the source closes: no pass starts after it.
    pub(super) closed: bool,
}

impl Default for Idle {
    fn default() -> Self {
        Self { last: Instant::now(), paused: Vec::new(), stash: Vec::new(), closed: false }
    }
}

/// Polls `consumer` on the reader's behalf while it does not fetch, until the source
/// closes or the consumer is gone.
pub(super) async fn run(consumer: Weak<StreamConsumer<ReaderContext>>, shared: Arc<Shared>, group: Option<Arc<str>>) {
    let mut copies = Copies::default();
    loop {
        tokio::time::sleep(TICK).await;
        if !pass(&consumer, &shared, &group, &mut copies) {
            return;
        }
    }
}

/// One look; false once there is nothing more to keep alive.
fn pass(
    consumer: &Weak<StreamConsumer<ReaderContext>>,
    shared: &Shared,
    group: &Option<Arc<str>>,
    copies: &mut Copies,
) -> bool {
    let mut idle = shared.idle();
    if idle.closed {
        return false;
    }
    if shared.fetching.load(Ordering::SeqCst) || idle.last.elapsed() < IDLE_AFTER {
        return true;
    }
    // Taken under the lock, which `close` takes before it drops the consumer: the last
    // reference is never this task's.
    let Some(consumer) = consumer.upgrade() else { return false };
    pause_the_rest(&consumer, shared, &mut idle.paused);
    let mut stream = consumer.stream();
    for _ in 0..POLLS_A_PASS {
        match stream.next().now_or_never() {
            Some(Some(Ok(record))) => {
                let record = fetched(&shared.topic, &record, copies, group);
                let assignment = shared.state().partitions.get(&record.partition).map(|part| part.generation);
                match assignment {
                    Some(generation) => idle.stash.push((generation, record)),
                    None => continue,
                }
            }
            Some(Some(Err(err))) => {
                tracing::debug!(topic = %shared.topic, error = %err, "Kafka consumer error while the reader waits")
            }
            Some(None) => break,
            // Nothing ready, or an event (a rebalance) served: poll on.
            None => {}
        }
    }
    drop(stream);
    // A rebalance served above may have assigned partitions that now fetch.
    pause_the_rest(&consumer, shared, &mut idle.paused);
    idle.last = Instant::now();
    true
}

/// Pauses the assigned partitions that are not paused yet, by the keep-alive or for a
/// nack's rewind.
fn pause_the_rest(consumer: &StreamConsumer<ReaderContext>, shared: &Shared, paused: &mut Vec<(i32, u64)>) {
    let mut tpl = TopicPartitionList::new();
    for (&partition, part) in shared.state().partitions.iter() {
        let this = (partition, part.generation);
        if !part.paused && !paused.contains(&this) {
            tpl.add_partition(&shared.topic, partition);
            paused.push(this);
        }
    }
    if tpl.count() > 0 {
        if let Err(err) = consumer.pause(&tpl) {
            tracing::warn!(topic = %shared.topic, error = %err, "pausing the partitions while the reader waits failed");
        }
    }
}

/// What a fetch does first: resumes what the keep-alive paused, and takes the records
/// it stashed that are still of a current assignment.
pub(super) fn take_over(consumer: &StreamConsumer<ReaderContext>, shared: &Shared, into: &mut Vec<Fetched>) {
    let mut idle = shared.idle();
    idle.last = Instant::now();
    if !idle.paused.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for (partition, _) in idle.paused.drain(..) {
            if tpl.find_partition(&shared.topic, partition).is_none() {
                tpl.add_partition(&shared.topic, partition);
            }
        }
        // A partition revoked since is no longer the consumer's to resume; the error
        // says only that.
        if let Err(err) = consumer.resume(&tpl) {
            tracing::debug!(topic = %shared.topic, error = %err, "resuming the partitions paused while the reader waited");
        }
    }
    if !idle.stash.is_empty() {
        let state = shared.state();
        for (generation, record) in idle.stash.drain(..) {
            if state.partitions.get(&record.partition).is_some_and(|part| part.generation == generation) {
                into.push(record);
            }
        }
    }
}

/// Marks the reader as fetching while it lives; dropped, as the fetch ends however it
/// ends, it stamps the poll.
pub(super) struct Fetching<'a>(pub(super) &'a Shared);

impl<'a> Fetching<'a> {
    pub(super) fn begin(shared: &'a Shared) -> Self {
        shared.fetching.store(true, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        self.0.idle().last = Instant::now();
        self.0.fetching.store(false, Ordering::SeqCst);
    }
}
