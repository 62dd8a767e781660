//! A group member's stream of deliveries, and their settlement.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::task::AtomicWaker;
use tidewater_core::{
    Delivery, Error, ErrorKind, Incoming, Position, Result, Settlement, SharedSettle, Source, StartFrom, MOST_A_FETCH,
};

use crate::gather::Gather;
use crate::topic::{FetchBuffers, MemberId, Settled, Topic};

/// Settlements a member's handlers made, waiting to be applied with its next fetch: one
/// lock of the topic then covers a whole batch rather than one message. While a
/// publisher waits for room, they are applied as they come instead.
struct Pending {
    settled: Mutex<Vec<Settled>>,
    /// Wakes an idle reader so settlements made while it waits are applied at once.
    wake: AtomicWaker,
    /// Whether the reader waits, counted in the topic's idle readers: a settlement made
    /// while it runs is applied with its next fetch, and waking it then would only poll
    /// it once more for nothing.
    waiting: AtomicBool,
    topic: Arc<Topic>,
    group: Arc<str>,
}

impl Pending {
    /// Swaps what was settled into `out`, which must be empty, leaving its allocation
    /// for the next settlements.
    fn take_into(&self, out: &mut Vec<Settled>) {
        debug_assert!(out.is_empty());
        std::mem::swap(out, &mut *self.settled.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// One member of a consumer group on one topic. Leaving the group (on close or drop)
/// applies what it settled and hands what it still had in flight back to the group.
pub(crate) struct MemorySource {
    member: MemberId,
    pending: Arc<Pending>,
    /// `pending`, as what settles this member's deliveries.
    settler: Arc<dyn SharedSettle>,
    /// Settlements being applied; kept between fetches for its allocation.
    applying: Vec<Settled>,
    /// What a fetch fills: what it found, before that becomes deliveries, and its
    /// scratch; kept for their allocations too.
    buffers: FetchBuffers,
    /// Wakes a waiting reader when its earliest redelivery falls due; made at the first
    /// such wait and reset for the next.
    redelivery: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the next fetch waits for more messages first.
    gather: Gather,
    left: bool,
}

impl MemorySource {
    pub(crate) fn join(topic: Arc<Topic>, group: Option<&str>, start: StartFrom) -> Self {
        let (group, member) = topic.join(group, start);
        let pending = Arc::new(Pending {
            settled: Mutex::default(),
            wake: AtomicWaker::new(),
            waiting: AtomicBool::new(false),
            topic: Arc::clone(&topic),
            group: Arc::clone(&group),
        });
        let settler: Arc<dyn SharedSettle> = Arc::clone(&pending) as _;
        Self {
            member,
            pending,
            settler,
            applying: Vec::new(),
            buffers: FetchBuffers::default(),
            redelivery: None,
            gather: Gather::default(),
            left: false,
        }
    }

    fn topic(&self) -> &Arc<Topic> {
        &self.pending.topic
    }

    fn leave(&mut self) {
        if !self.left {
            self.left = true;
            self.not_idle();
            self.pending.topic.forget_reader(self.member);
            self.pending.take_into(&mut self.applying);
            self.pending.topic.leave(&self.pending.group, self.member, &self.applying);
            self.applying.clear();
        }
    }

    /// Applies what was settled and appends up to `max` deliveries to `batch`; `None`
    /// once the topic is closed.
    fn fetch(&mut self, batch: &mut Vec<Incoming>, max: usize) -> Option<crate::topic::Fetch> {
        self.pending.take_into(&mut self.applying);
        let pending = &self.pending;
        let fetch = pending.topic.fetch(&pending.group, self.member, max, &self.applying, &mut self.buffers);
        self.applying.clear();
        batch.extend(self.buffers.fetched.drain(..).map(|f| {
            let position = Position::Queue { partition: Some(f.partition), sequence: Some(f.offset) };
            let delivery = Delivery::new(f.message, f.attempt, position, Some(Arc::clone(&self.pending.group)));
            Incoming::shared(delivery, &self.settler)
        }));
        fetch
    }
}

impl Drop for MemorySource {
    fn drop(&mut self) {
        self.leave();
    }
}

impl MemorySource {
    /// Counts this reader out of the topic's idle readers, if it was in.
    fn not_idle(&self) {
        if self.pending.waiting.swap(false, Ordering::SeqCst) {
            self.topic().idle_readers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Fetches into `batch`, or registers to be woken when there may be something; after
    /// a small fetch, a moment later (see `gather.rs`).
    fn poll_fetch(&mut self, cx: &mut Context<'_>, batch: &mut Vec<Incoming>, max: usize) -> Poll<Result<usize>> {
        // The partitions keep what is left: the prefetch bounds nothing else here.
        let max = max.min(MOST_A_FETCH);
        self.gather.before_fetch();
        let start = batch.len();
        let polled = self.poll_fetch_now(cx, batch, max);
        self.gather.after_fetch(batch.len() - start, max);
        polled
    }

    fn poll_fetch_now(&mut self, cx: &mut Context<'_>, batch: &mut Vec<Incoming>, max: usize) -> Poll<Result<usize>> {
        let start = batch.len();
        if self.fetch(batch, max).is_some() && batch.len() == start {
            // Nothing there: register, count in as idle, then look once more, so that a
            // publish in between is not missed (the publisher reads the count after
            // appending, and wakes whoever registered).
            self.topic().register_reader(self.member, cx.waker());
            self.pending.wake.register(cx.waker());
            if !self.pending.waiting.swap(true, Ordering::SeqCst) {
                self.topic().idle_readers.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(fetch) = self.fetch(batch, max) {
                if batch.len() == start {
                    if let Some(at) = fetch.wake {
                        let timer = self.redelivery.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                        timer.as_mut().reset(at);
                        if timer.as_mut().poll(cx).is_ready() {
                            cx.waker().wake_by_ref();
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
        // Found something, or the topic was closed (0: the end).
        self.not_idle();
        Poll::Ready(Ok(batch.len() - start))
    }
}

#[async_trait]
impl Source for MemorySource {
    async fn next_batch(&mut self, batch: &mut Vec<Incoming>, max: usize) -> Result<usize> {
        std::future::poll_fn(|cx| self.poll_fetch(cx, batch, max)).await
    }

    fn poll_next_batch(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut Vec<Incoming>,
        max: usize,
    ) -> Option<Poll<Result<usize>>> {
        Some(self.poll_fetch(cx, batch, max))
    }

    async fn close(&mut self) -> Result<()> {
        self.leave();
        Ok(())
    }
}

impl Pending {
    /// Notes `settlement` of the message at `partition`/`offset`, to be applied with the
    /// next fetch, or at once while a publisher waits for room.
    fn record(&self, partition: u32, offset: u64, settlement: Settlement) {
        let nack = match settlement {
            Settlement::Ack => None,
            Settlement::Nack { delay } => Some(delay.unwrap_or_default()),
        };
        let this = Settled { partition, offset, nack };
        let mut settled = self.settled.lock().unwrap_or_else(|e| e.into_inner());
        if self.topic.publishers_blocked() {
            // Applied at once, without the list in the common case that nothing else
            // waits in it. When something does, it is applied under the list's lock and
            // the list kept: taken away, its allocation went with it, and the next
            // settlement allocated a new one, once each time a publisher had to wait
            // (a fourteenth of the messages of a flood that outran a decoding handler).
            // Nothing takes the two locks the other way round: a fetch releases this one
            // before it takes the topic's.
            if settled.is_empty() {
                drop(settled);
                self.topic.settle(&self.group, std::slice::from_ref(&this));
            } else {
                settled.push(this);
                self.topic.settle(&self.group, &settled);
                settled.clear();
            }
            return;
        }
        settled.push(this);
        let first = settled.len() == 1;
        drop(settled);
        if first && self.waiting.load(Ordering::SeqCst) {
            // A reader about to wait says so before its last look, so it either takes
            // this settlement with that look or is seen waiting and woken here.
            self.wake.wake();
        }
    }

    fn record_delivery(&self, delivery: &Delivery, settlement: Settlement) -> Result<()> {
        // Every delivery of a memory source has both (see `MemorySource::fetch`).
        match delivery.position() {
            Position::Queue { partition: Some(partition), sequence: Some(offset) } => {
                self.record(partition, offset, settlement);
                Ok(())
            }
            other => Err(Error::new(ErrorKind::InvalidInput, format!("not a memory delivery's position: {other:?}"))
                .with_driver(crate::broker::DRIVER)),
        }
    }
}

/// One settler for all of a member's deliveries: a delivery's position says which
/// message it is, so no delivery needs a settlement object of its own.
#[async_trait]
impl SharedSettle for Pending {
    async fn settle(&self, delivery: &Delivery, settlement: Settlement) -> Result<()> {
        self.record_delivery(delivery, settlement)
    }

    fn settle_now(&self, delivery: &Delivery, settlement: Settlement) -> Option<Result<()>> {
        Some(self.record_delivery(delivery, settlement))
    }
}
