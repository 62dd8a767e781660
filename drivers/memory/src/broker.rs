//! The broker: topics by name, the writer and reader, and the test harness.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tidewater_core::{
    wire, Admin, BrokerWriter, Closable, Driver, Error, ErrorKind, Message, PartitionLag, ReadTask, Reader,
    ReadySignal, Result, Source, TopicName, Transactions, WriteNow, Writer,
};
use tokio::sync::Notify;

use crate::source::MemorySource;
use crate::topic::{Append, Topic};
use crate::MemoryConfig;

pub(crate) const DRIVER: &str = "memory";

/// A message broker inside the process: topics with partitions, consumer groups,
/// retention, acks and redelivery, bounded buffers. Use it where a service would use
/// Kafka or NATS, in tests and in development. Cloning is cheap; clones share the broker.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tidewater_core::Result<()> {
/// use std::time::Duration;
/// use tidewater_core::{testing::Recorder, Bus, EventRegistry};
/// use tidewater_memory::MemoryBroker;
///
/// let broker = MemoryBroker::new();
/// let mut bus = Bus::new(&broker, EventRegistry::new());
/// let seen = Recorder::new();
/// bus.subscribe("greetings", seen.clone()).group("greeter");
/// bus.start().await?;
/// bus.publisher().publish_bytes("greetings", "hello", "text/plain").await?;
/// let got = seen.wait_for(1, Duration::from_secs(5)).await.unwrap();
/// assert_eq!(&got[0].message().payload[..], b"hello");
/// bus.shutdown(Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    config: MemoryConfig,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    closed: AtomicBool,
    topic_created: Notify,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl MemoryBroker {
    /// A broker with the default configuration.
    pub fn new() -> Self {
        Self::with_config(MemoryConfig::default())
    }

    /// A broker with `config`.
    pub fn with_config(config: MemoryConfig) -> Self {
        Self { inner: Arc::new(Inner { config, ..Inner::default() }) }
    }

    /// The configuration.
    pub fn config(&self) -> &MemoryConfig {
        &self.inner.config
    }

    /// Creates `topic` with `partitions` partitions. Fails with `InvalidName` for a bad
    /// name; creating an existing topic does nothing.
    pub fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        validate_topic(topic)?;
        let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        topics.entry(topic.to_owned()).or_insert_with(|| {
            Arc::new(Topic::new(topic, partitions, self.inner.config.capacity, self.inner.config.retain))
        });
        drop(topics);
        self.inner.topic_created.notify_waiters();
        Ok(())
    }

    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::closed("the memory broker was closed").with_driver(DRIVER));
        }
        if let Some(topic) = self.inner.topics.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(Arc::clone(topic));
        }
        validate_topic(name)?;
        if !self.inner.config.auto_create {
            return Err(Error::new(
                ErrorKind::UnknownTopic,
                "the topic does not exist and auto-create is off; create it with MemoryBroker::create_topic",
            )
            .with_driver(DRIVER)
            .with_topic(name));
        }
        self.create_topic(name, self.inner.config.partitions)?;
        self.topic(name)
    }

    fn existing(&self, name: &str) -> Option<Arc<Topic>> {
        self.inner.topics.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    async fn append_to(topic: &Topic, message: Message) -> Result<()> {
        // Shared at once: a message is moved several times on its way into the log, and
        // moving a pointer is cheaper than moving the message.
        let message = Arc::new(message);
        let closed = || Err(closed(topic));
        let mut message = match topic.append(message) {
            Append::Done => return Ok(()),
            Append::Closed => return closed(),
            Append::Full(back) => back,
        };
        // Only a publisher that found the partition full listens for room: listening
        // takes the Notify's lock, too dear to pay on every publish. Counted in first,
        // then listening, then looking again, so room made in between is not missed.
        let _waiting = topic.wait_for_room();
        loop {
            let room = topic.space.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match topic.append(message) {
                Append::Done => return Ok(()),
                Append::Closed => return closed(),
                Append::Full(back) => message = back,
            }
            room.await;
        }
    }

    /// The messages `topic` still holds, in publish order: what a test reads back to see
    /// what a service published. Empty for a topic that does not exist. Once consumer
    /// groups have settled them, a partition holds only the newest
    /// [`MemoryConfig::retain`] of them.
    pub fn published(&self, topic: &str) -> Vec<Message> {
        self.existing(topic).map(|t| t.retained()).unwrap_or_default()
    }

    /// Waits until at least `n` messages were published to `topic` (counting from the
    /// broker's start), for at most `timeout`, and returns the retained messages.
    pub async fn wait_published(&self, topic: &str, n: u64, timeout: Duration) -> Result<Vec<Message>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let t = loop {
            let created = self.inner.topic_created.notified();
            tokio::pin!(created);
            created.as_mut().enable();
            if let Some(t) = self.existing(topic) {
                break t;
            }
            if tokio::time::timeout_at(deadline, created).await.is_err() {
                return Err(wait_error(topic, format!("no message was published in {timeout:?}")));
            }
        };
        self.wait_on(&t, || t.published_count() >= n, deadline).await.map_err(|_| {
            wait_error(topic, format!("{} of {n} messages published in {timeout:?}", t.published_count()))
        })?;
        Ok(t.retained())
    }

    /// Waits until consumer group `group` has acked at least `n` messages of `topic`, for
    /// at most `timeout`: the way for a test to wait for handlers without sleeping.
    pub async fn wait_acked(&self, topic: &str, group: &str, n: u64, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let t = self.topic(topic)?;
        self.wait_on(&t, || t.acked_count(group) >= n, deadline).await.map_err(|_| {
            wait_error(topic, format!("group {group} acked {} of {n} messages in {timeout:?}", t.acked_count(group)))
        })
    }

    async fn wait_on(&self, topic: &Topic, done: impl Fn() -> bool, deadline: tokio::time::Instant) -> Result<(), ()> {
        topic.watchers.fetch_add(1, Ordering::AcqRel);
        let result = async {
            loop {
                let changed = topic.settled.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if done() {
                    return Ok(());
                }
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    return Err(());
                }
            }
        }
        .await;
        topic.watchers.fetch_sub(1, Ordering::AcqRel);
        result
    }

    /// Deletes `topic` with its messages and groups: its readers end (and, restarted,
    /// find a new topic of that name if auto-create is on). Returns whether it existed.
    pub fn delete_topic(&self, topic: &str) -> bool {
        let removed = self.inner.topics.write().unwrap_or_else(|e| e.into_inner()).remove(topic);
        if let Some(topic) = &removed {
            topic.delete();
        }
        removed.is_some()
    }

    /// The names of the topics there are, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.inner.topics.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        names.sort();
        names
    }

    /// Forgets consumer group `group` of `topic` and its positions, so it no longer holds
    /// messages back. Returns whether it existed.
    pub fn delete_group(&self, topic: &str, group: &str) -> bool {
        self.existing(topic).is_some_and(|t| t.delete_group(group))
    }

    /// Closes the broker: readers end, waiting publishers and later writes fail with
    /// `Closed`.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        for topic in self.inner.topics.read().unwrap_or_else(|e| e.into_inner()).values() {
            topic.close();
        }
    }
}

fn wait_error(topic: &str, what: String) -> Error {
    Error::new(ErrorKind::Timeout, what).with_driver(DRIVER).with_topic(topic)
}

fn validate_topic(name: &str) -> Result<()> {
    tidewater_core::names::check_topic(name).map_err(|e| e.with_driver(DRIVER))
}

/// A writer to a [`MemoryBroker`], from [`Driver::writer`] or [`MemoryBroker::writer`].
/// Writes are on the broker when they return, so flushing has nothing to wait for.
pub struct MemoryWriter {
    broker: MemoryBroker,
    /// The topic written last: most writers write to one topic, and finding it by name
    /// in the broker's map costs a lock and a hash per message.
    last: std::sync::Mutex<Option<Arc<Topic>>>,
    /// The topic of the writer's first write, with the name it came by: a write to it
    /// takes neither `last`'s lock nor a reference to the topic, whose counting took
    /// two atomic operations more a publish (see [`MemoryWriter::usual_topic`]). Kept
    /// for the writer's life, even once deleted: a deletion drops the topic's messages.
    first: std::sync::OnceLock<(TopicName, Arc<Topic>)>,
}

impl MemoryBroker {
    /// A new writer, shared, as every driver's [`Driver::writer`] gives it (this is the
    /// same method, callable without the trait in scope).
    pub fn writer(&self) -> Arc<dyn Writer> {
        Arc::new(self.memory_writer())
    }

    /// A new writer of the concrete type; a closed one refuses further writes, as a
    /// closed network producer would.
    pub fn memory_writer(&self) -> Closable<MemoryWriter> {
        let writer =
            MemoryWriter { broker: self.clone(), last: std::sync::Mutex::default(), first: Default::default() };
        Closable::new(DRIVER, writer)
    }
}

impl std::fmt::Debug for MemoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryWriter").field("broker", &self.broker).finish()
    }
}

impl MemoryWriter {
    /// The topic `message` goes to, once the message is checked against the name rules
    /// and the size limit.
    fn checked_topic(&self, message: &Message) -> Result<Arc<Topic>> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some(topic) if *topic.name == *message.stream && !topic.is_deleted() => {
                self.check_for_known(topic, message)?;
                Ok(Arc::clone(topic))
            }
            _ => {
                self.broker.check(0, message)?;
                let topic = self.broker.topic(&message.stream)?;
                *last = Some(Arc::clone(&topic));
                let _ = self.first.set((message.stream.clone(), Arc::clone(&topic)));
                Ok(topic)
            }
        }
    }

    /// Checks `message` for `topic`, which the writer found before: against the size
    /// limit only. The name was checked when the topic was created: checking it again
    /// was a fortieth of a memory publish's instructions. A closed broker's topics are
    /// closed too, so appending to a kept one fails as a lookup would.
    #[inline]
    fn check_for_known(&self, topic: &Topic, message: &Message) -> Result<()> {
        topic.prefetch_for_append();
        self.broker.check_size(0, message)
    }

    /// The writer's first topic, if `message` goes there and it was not deleted.
    ///
    /// Found with no lock and no reference counted: the peer bench's counting row, whose
    /// publishing thread is its bottleneck, ran about 2% faster (`BENCHMARKS.md`, session
    /// 48). Names are compared by pointer first: names made from the same text on one
    /// thread share their `Arc` (`TopicName` keeps a few recent ones), so the text is
    /// compared only for a name made elsewhere.
    #[inline]
    fn usual_topic(&self, message: &Message) -> Option<&Arc<Topic>> {
        let (name, topic) = self.first.get()?;
        let same = message.stream.shares(name) || *message.stream == **name;
        (same && !topic.is_deleted()).then_some(topic)
    }
}

impl BrokerWriter for MemoryWriter {
    /// Appends each message to its topic, waiting for room where a partition is full.
    /// The batch is checked first: if any message is invalid, none is written.
    async fn write(&self, batch: Vec<Message>) -> Result<()> {
        self.broker.write(batch).await
    }

    /// Appends, waiting for room where the partition is full. No `try_write_now` first:
    /// appending tries at once before it waits, so a publisher that already found the
    /// partition full (the `Publisher` tries `try_write_now` first) tries it once less.
    async fn write_one(&self, message: Message) -> Result<()> {
        let topic = self.checked_topic(&message)?;
        MemoryBroker::append_to(&topic, message).await
    }

    /// Appends at once when the partition has room; a full one hands the message back.
    // Inline into `Closable`'s, which calls it: as a call of its own, the message moved
    // into it whole.
    #[inline]
    fn try_write_now(&self, message: Message) -> WriteNow {
        if let Some(topic) = self.usual_topic(&message) {
            return match self.check_for_known(topic, &message) {
                Ok(()) => append_now(topic, message),
                Err(err) => WriteNow::Done(Err(err)),
            };
        }
        match self.checked_topic(&message) {
            Ok(topic) => append_now(&topic, message),
            Err(err) => WriteNow::Done(Err(err)),
        }
    }
}

/// Appends `message` to `topic` if it has room; a full one hands the message back.
#[inline]
fn append_now(topic: &Topic, message: Message) -> WriteNow {
    match topic.append(Arc::new(message)) {
        Append::Done => WriteNow::Done(Ok(())),
        Append::Closed => WriteNow::Done(Err(closed(topic))),
        // Nobody else holds it: a full partition hands back the only reference.
        Append::Full(back) => match Arc::try_unwrap(back) {
            Ok(message) => WriteNow::Wait(message),
            Err(shared) => WriteNow::Wait((*shared).clone()),
        },
    }
}

/// The error of a write to a closed broker.
fn closed(topic: &Topic) -> Error {
    Error::closed("the memory broker was closed").with_driver(DRIVER).with_topic(&*topic.name)
}

impl MemoryBroker {
    /// Checks the `i`-th message of a write against the topic name rules and size limit.
    pub(crate) fn check(&self, i: usize, message: &Message) -> Result<()> {
        validate_topic(&message.stream).map_err(|e| e.with_topic(&message.stream))?;
        self.check_size(i, message)
    }

    /// Checks the `i`-th message of a write against the size limit.
    fn check_size(&self, i: usize, message: &Message) -> Result<()> {
        let limit = self.inner.config.max_message_bytes;
        let size = message.encoded_len();
        if size > limit {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("{} is {size} bytes; the limit is {limit}", wire::in_batch(i, message)),
            )
            .with_driver(DRIVER)
            .with_topic(&message.stream));
        }
        Ok(())
    }

    /// Writes `batch` whole or not at all, but for a close or a cancel on the way: every
    /// message is checked and its topic found (or made) before the first is appended,
    /// so a message to a topic that does not exist leaves the batch unwritten rather
    /// than written up to it, which a caller that writes it again would duplicate.
    pub(crate) async fn write(&self, batch: Vec<Message>) -> Result<()> {
        for (i, message) in batch.iter().enumerate() {
            self.check(i, message)?;
        }
        let mut topics = Vec::with_capacity(batch.len());
        for (i, message) in batch.iter().enumerate() {
            let topic = self.topic(&message.stream).map_err(|e| {
                Error::new(e.kind(), format!("{} was not written: {}", wire::in_batch(i, message), e.message()))
                    .with_driver(DRIVER)
                    .with_topic(&message.stream)
            })?;
            topics.push(topic);
        }
        for (message, topic) in batch.into_iter().zip(topics) {
            Self::append_to(&topic, message).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Reader for MemoryBroker {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    /// Connected until the broker is closed.
    fn connected(&self) -> Option<bool> {
        Some(!self.inner.closed.load(Ordering::Acquire))
    }

    async fn open(&self, task: &ReadTask, _ready: &ReadySignal) -> Result<Box<dyn Source>> {
        let topic = self.topic(&task.topic)?;
        Ok(Box::new(MemorySource::join(topic, task.group.as_deref(), task.start)))
    }
}

impl Driver for MemoryBroker {
    fn writer(&self) -> Arc<dyn Writer> {
        MemoryBroker::writer(self)
    }

    fn admin(&self) -> Arc<dyn Admin> {
        Arc::new(self.clone())
    }

    fn reader(&self) -> Arc<dyn Reader> {
        Arc::new(self.clone())
    }

    /// Transactions of this broker; `id` names them in logs only (nothing outlives the
    /// process to fence).
    fn transactions(&self, id: &str) -> Result<Arc<dyn Transactions>> {
        Ok(Arc::new(crate::transaction::MemoryTransactions::new(self.clone(), id)))
    }
}

#[async_trait]
impl Admin for MemoryBroker {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        MemoryBroker::create_topic(self, topic, partitions)
    }

    async fn delete_topic(&self, topic: &str) -> Result<()> {
        MemoryBroker::delete_topic(self, topic);
        Ok(())
    }

    async fn topics(&self) -> Result<Vec<String>> {
        Ok(MemoryBroker::topics(self))
    }

    async fn lag(&self, topic: &str, group: &str) -> Result<Vec<PartitionLag>> {
        // Looked up, never created: asking about a topic does not make one.
        let found = self.inner.topics.read().unwrap_or_else(|e| e.into_inner()).get(topic).cloned();
        let Some(found) = found else {
            return Err(Error::new(ErrorKind::UnknownTopic, "no such topic").with_driver(DRIVER).with_topic(topic));
        };
        let lags = found.lag(group).ok_or_else(|| {
            Error::new(ErrorKind::UnknownGroup, format!("group {group:?} never read this topic"))
                .with_driver(DRIVER)
                .with_topic(topic)
        })?;
        Ok(lags
            .into_iter()
            .enumerate()
            .map(|(partition, lag)| PartitionLag { partition: partition as u32, lag })
            .collect())
    }
}
