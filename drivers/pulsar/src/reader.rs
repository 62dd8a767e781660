//! The read side: a subscription per group, acks per message, batches acked whole.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use pulsar::consumer::{InitialPosition, Message as Received};
use pulsar::message::proto::MessageIdData;
use pulsar::{Consumer, ConsumerOptions, TokioExecutor};
use tidewater_core::{
    Delivery, DispatchNote, Error, ErrorKind, IdFactory, Incoming, Position, ReadTask, Reader, ReadySignal, Result,
    Settlement, SharedSettle, Source, StartFrom, TopicName, UuidV7Ids, MOST_A_FETCH,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::errors::pulsar_error;
use crate::link::{InUse, Link};
use crate::record::from_pulsar;
use crate::{PulsarConfig, SubscriptionType, DRIVER};

/// Reads a topic through a Pulsar subscription.
///
/// - **Groups** are subscriptions named after the group, of the configured
///   [`SubscriptionType`] (Shared by default). A task without a group reads through an
///   Exclusive subscription of its own, `tidewater-private-<uuid>`, removed when it stops.
/// - **Settlement** is per message ([`DeliveryModel::Queue`](tidewater_core::DeliveryModel::Queue)). A nack asks the broker to
///   redeliver after the nack delay (the task's, else [`PulsarConfig::nack_delay`]).
/// - **Batches** (messages a producer sent together, one broker entry) are acked when
///   every message of the batch is: brokers that do not track acks inside a batch take an
///   ack of one of its messages for the whole batch, which would lose the others if they
///   then failed. A nack redelivers the whole batch; its messages that were acked already,
///   or whose handlers still run, are not handed out again.
/// - **Attempts**: the pulsar crate does not pass the broker's redelivery count on, so
///   this reader counts the deliveries it sees of each message. A redelivery to another
///   member of the group starts at 1 there.
/// - **Flow**: at most the task's prefetch and concurrency (or the receiver queue, if
///   smaller) are unsettled at once; the reader takes no more from the consumer until
///   some are settled. The broker's flow permits stay at
///   [`PulsarConfig::receiver_queue`] a partition: it dispatches batched entries whole,
///   and permits below a producer's batch (up to 1,000 messages by default) stalled its
///   dispatch, at an eighth of the throughput (`BENCHMARKS.md`). So a member whose
///   handlers are stuck can hold up to that many of a Shared subscription's messages.
///   A reader that receives a batch larger than its receiver queue says so in a
///   warning, once.
/// - **Outages**: the pulsar crate reconnects by itself. An ack or nack that does not go
///   through within three request timeouts, or a broker that no longer knows the
///   consumer after as long a quiet spell, ends the subscription with an error, and the
///   scheduler subscribes anew: a consumer never waits for good. Such a failure, or a
///   subscription that times out, also replaces the readers' client with a new one:
///   after a broker restart the pulsar crate's client can keep a connection that
///   answers nothing, and every consumer made through it would stall as well.
#[derive(Clone)]
pub struct PulsarReader {
    client: Arc<ConsumerClient>,
    config: Arc<PulsarConfig>,
}

/// How many deliveries a reader of `task` hands its runner before some are settled: its
/// prefetch and what its handlers run, or the receiver queue if that is smaller.
fn unsettled_at_most(config: &PulsarConfig, task: &ReadTask) -> usize {
    let runner = task.prefetch.max(1) + task.concurrency.max(1);
    runner.min(config.receiver_queue.max(1) as usize)
}

/// The client consumers subscribe through, made anew when it stops answering. Its
/// generation tells a reader whether the client it used was replaced already.
pub(crate) struct ConsumerClient {
    config: Arc<PulsarConfig>,
    current: std::sync::Mutex<(u64, pulsar::Pulsar<TokioExecutor>)>,
    /// Whether the client reaches the broker, once a reader has subscribed.
    link: Link,
}

impl ConsumerClient {
    pub(crate) fn new(client: pulsar::Pulsar<TokioExecutor>, config: Arc<PulsarConfig>) -> Self {
        Self { config, current: std::sync::Mutex::new((0, client)), link: Link::default() }
    }

    /// The client, and how often it was replaced before.
    pub(crate) fn get(&self) -> (u64, pulsar::Pulsar<TokioExecutor>) {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn config(&self) -> &PulsarConfig {
        &self.config
    }

    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    /// Replaces the client of `generation` with a new connection, unless another reader
    /// did already. A broker that is still away fails it; the next failure tries again.
    async fn renew(&self, generation: u64) {
        if self.get().0 != generation {
            return;
        }
        match crate::Pulsar::client_for(&self.config).await {
            Ok(fresh) => {
                let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
                if current.0 == generation {
                    tracing::info!(url = %self.config.url, "the readers' Pulsar client stopped answering; connected anew");
                    *current = (generation + 1, fresh);
                }
            }
            Err(err) => tracing::debug!(error = %err, "a new Pulsar client could not connect yet"),
        }
    }
}

impl std::fmt::Debug for PulsarReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PulsarReader").field("url", &self.config.url).finish_non_exhaustive()
    }
}

impl PulsarReader {
    pub(crate) fn new(client: Arc<ConsumerClient>, config: Arc<PulsarConfig>) -> Self {
        Self { client, config }
    }
}

#[async_trait]
impl Reader for PulsarReader {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    /// Whether the readers' client reaches the broker, from a topic lookup asked once a
    /// second while a subscription is open or being made, and for 10 s after the last
    /// (`None` before the first lookup ends, and again after). The pulsar crate
    /// reconnects its consumers by itself, so a reader fails only after a quiet spell of
    /// three request timeouts, and its readiness alone would miss most of an outage.
    fn connected(&self) -> Option<bool> {
        self.client.link().connected()
    }

    async fn open(&self, task: &ReadTask, _ready: &ReadySignal) -> Result<Box<dyn Source>> {
        tidewater_core::names::check_topic(&task.topic).map_err(|e| e.with_driver(DRIVER))?;
        let config = &self.config;
        let (subscription, sub_type, private) = match &task.group {
            Some(group) => (group.clone(), config.subscription.sub_type(), false),
            None => {
                (format!("tidewater-private-{}", UuidV7Ids.next_id()), SubscriptionType::Exclusive.sub_type(), true)
            }
        };
        let position = match task.start {
            StartFrom::Earliest => InitialPosition::Earliest,
            StartFrom::Latest => InitialPosition::Latest,
        };
        let in_use = Link::in_use(&self.client, config.full_topic(&task.topic));
        let (generation, client) = self.client.get();
        let mut builder = client
            .consumer()
            .with_topic(config.full_topic(&task.topic))
            .with_subscription(subscription.as_str())
            .with_subscription_type(sub_type)
            .with_consumer_name(format!("tidewater-{}", UuidV7Ids.next_id()))
            .with_batch_size(config.receiver_queue.max(1))
            .with_unacked_message_resend_delay(config.ack_timeout)
            .with_options(ConsumerOptions::default().with_initial_position(position).durable(true));
        if let Some(dead_letter) = &config.dead_letter {
            builder = builder.with_dead_letter_policy(dead_letter.policy(&task.topic, &config.namespace));
        }
        let subscribe = tokio::time::timeout(config.request_timeout, builder.build::<Vec<u8>>());
        let consumer = match subscribe.await {
            Ok(Ok(consumer)) => consumer,
            Ok(Err(err)) => {
                return Err(pulsar_error(format!("cannot subscribe {subscription:?}"), err).with_topic(&task.topic))
            }
            Err(_) => {
                self.client.renew(generation).await;
                return Err(Error::new(ErrorKind::Timeout, format!("subscribing {subscription:?} timed out"))
                    .with_driver(DRIVER)
                    .with_topic(&task.topic));
            }
        };
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (deliveries, delivery_rx) = mpsc::unbounded_channel();
        let engine = Engine {
            topic: TopicName::from(&task.topic),
            group: task.group.as_deref().map(Arc::from),
            consumer,
            commands: command_rx,
            deliveries,
            entries: HashMap::new(),
            unsettled: 0,
            max_unsettled: unsettled_at_most(config, task),
            nacks: BinaryHeap::new(),
            nack_ids: HashMap::new(),
            done: RecentEntries::default(),
            partition_topics: HashMap::new(),
            stuck: None,
            last_received: Instant::now(),
            unsubscribe: private,
            close_timeout: config.request_timeout,
            client: Arc::clone(&self.client),
            generation,
            _in_use: in_use,
            receiver_queue: config.receiver_queue.max(1) as usize,
            warned_of_a_larger_batch: false,
        };
        let engine = tokio::spawn(engine.run());
        let settler = Arc::new(PulsarSettle { commands: commands.clone(), default_nack_delay: config.nack_delay });
        Ok(Box::new(PulsarSource {
            commands,
            deliveries: delivery_rx,
            settler,
            engine: Some(engine),
            pending_error: None,
        }))
    }
}

/// One broker entry: a single message, or a batch of them, which the broker acks and
/// redelivers as a whole.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct EntryKey {
    ledger: u64,
    entry: u64,
    partition: i32,
}

impl EntryKey {
    fn of(id: &MessageIdData) -> Self {
        Self { ledger: id.ledger_id, entry: id.entry_id, partition: id.partition.unwrap_or(-1) }
    }
}

/// Which message of which entry a delivery carries: written in the delivery's dispatch
/// note, so that the source's one settler can name it to the engine, which keeps the
/// message's id. A settler of each delivery's own, holding a copy of the id, was an
/// allocation a message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Ticket {
    key: EntryKey,
    index: i32,
}

impl Ticket {
    fn note(self) -> DispatchNote {
        let (partition, index) = (self.key.partition as u32 as u64, self.index as u32 as u64);
        [self.key.ledger, self.key.entry, partition << 32 | index]
    }

    fn of(delivery: &Delivery) -> Self {
        let [ledger, entry, both] = delivery.note();
        Self { key: EntryKey { ledger, entry, partition: (both >> 32) as u32 as i32 }, index: both as u32 as i32 }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Not handed out, or nacked or released since.
    Waiting,
    /// Handed out, not settled.
    Running,
    /// Nacked with a delay that has not passed: not handed out again before it has,
    /// even if its batch comes again for another message.
    Delayed,
    Acked,
}

/// What this consumer knows of an entry it received: each message's state and how
/// often it was handed out. Forgotten when the entry is acked.
struct Entry {
    /// The topic the consumer received it on: for a partitioned topic, the partition's
    /// own (`...-partition-N`), which acks and nacks must name.
    topic: Arc<str>,
    slots: Vec<Slot>,
    deliveries: Vec<u32>,
    /// The message ids to ack when every message is acked.
    ids: Vec<Option<MessageIdData>>,
}

enum Command {
    Ack(Ticket),
    Nack(Ticket, std::time::Duration),
    Release(Ticket),
    Close(oneshot::Sender<Result<()>>),
}

type Delivered = Result<Delivery>;

/// Owns the consumer (whose acks need `&mut`): hands messages out, turns settlements
/// into acks and nacks, and holds delayed nacks until they are due.
struct Engine {
    topic: TopicName,
    group: Option<Arc<str>>,
    consumer: Consumer<Vec<u8>, TokioExecutor>,
    commands: mpsc::UnboundedReceiver<Command>,
    deliveries: mpsc::UnboundedSender<Delivered>,
    entries: HashMap<EntryKey, Entry>,
    unsettled: usize,
    max_unsettled: usize,
    /// Nacks waiting for their delay, by due time, and the ids they are for.
    nacks: BinaryHeap<Reverse<(Instant, EntryKey, i32)>>,
    nack_ids: HashMap<(EntryKey, i32), MessageIdData>,
    /// Entries acked lately, whose messages may still arrive from a redelivery asked for
    /// before the last of them was acked.
    done: RecentEntries,
    /// The full name of each partition the consumer reads (-1: an unpartitioned topic),
    /// made once rather than per entry.
    partition_topics: HashMap<i32, Arc<str>>,
    /// Why the consumer counts as stuck, once an ack or nack did not go through.
    stuck: Option<Error>,
    /// When a message last came; a long quiet spell makes the engine ask the broker
    /// about this consumer.
    last_received: Instant,
    unsubscribe: bool,
    close_timeout: std::time::Duration,
    /// Renewed when this consumer is found stuck.
    client: Arc<ConsumerClient>,
    generation: u64,
    /// Keeps the client's link watched while the consumer lives.
    _in_use: InUse,
    /// The consumer's flow permits a partition ([`PulsarConfig::receiver_queue`]), and
    /// whether a batch larger than that has been warned of already.
    receiver_queue: usize,
    warned_of_a_larger_batch: bool,
}

/// The last [`RecentEntries::KEEP`] entries acked.
#[derive(Default)]
struct RecentEntries {
    order: VecDeque<EntryKey>,
    set: HashSet<EntryKey>,
}

impl RecentEntries {
    const KEEP: usize = 4096;

    fn insert(&mut self, key: EntryKey) {
        if self.set.insert(key) {
            self.order.push_back(key);
            if self.order.len() > Self::KEEP {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn contains(&self, key: &EntryKey) -> bool {
        self.set.contains(key)
    }
}

impl Engine {
    async fn run(mut self) {
        loop {
            if let Some(err) = self.stuck.take() {
                // Dropping the consumer lets the crate's engine go; the runner gets the
                // error after what it has, and the scheduler subscribes anew, through a
                // new client if this one is what stopped answering.
                self.client.renew(self.generation).await;
                let _ = self.deliveries.send(Err(err));
                return;
            }
            let next_nack = self.nacks.peek().map(|Reverse((due, _, _))| *due);
            let quiet_until = self.last_received + self.stall_timeout();
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Close(done)) => {
                        let _ = done.send(self.close().await);
                        return;
                    }
                    Some(command) => self.command(command).await,
                    // Every sender is gone: the source was dropped without a close.
                    None => {
                        let _ = self.close().await;
                        return;
                    }
                },
                _ = tokio::time::sleep_until(next_nack.unwrap_or_else(Instant::now)), if next_nack.is_some() => {
                    let now = Instant::now();
                    while let Some(Reverse((due, key, index))) = self.nacks.peek().copied() {
                        if due > now {
                            break;
                        }
                        self.nacks.pop();
                        if let Some(id) = self.nack_ids.remove(&(key, index)) {
                            let Some(entry) = self.entries.get_mut(&key) else { continue };
                            if let Some(slot) = entry.slots.get_mut(index as usize) {
                                *slot = Slot::Waiting;
                            }
                            let topic = Arc::clone(&entry.topic);
                            self.nack(&topic, id).await;
                        }
                    }
                }
                _ = tokio::time::sleep_until(quiet_until), if self.unsettled < self.max_unsettled => {
                    self.probe().await;
                }
                received = self.consumer.next(), if self.unsettled < self.max_unsettled => match received {
                    Some(Ok(message)) => {
                        if let Some((topic, id)) = self.received(message) {
                            self.ack(&topic, id).await;
                        }
                    }
                    Some(Err(err)) => {
                        let err = pulsar_error("receiving from Pulsar failed", err).with_topic(&self.topic);
                        if self.deliveries.send(Err(err)).is_err() {
                            let _ = self.close().await;
                            return;
                        }
                    }
                    None => {
                        let err = Error::new(ErrorKind::Closed, "the Pulsar consumer ended").with_driver(DRIVER).with_topic(&self.topic);
                        let _ = self.deliveries.send(Err(err));
                        return;
                    }
                },
            }
        }
    }

    /// Hands a received message out, unless this consumer has it already. Returns the
    /// id to ack again for a message of an entry that was acked: the broker sent it
    /// again, so the ack did not reach it (sent while it was down), and it would keep the
    /// message otherwise.
    fn received(&mut self, mut received: Received<Vec<u8>>) -> Option<(Arc<str>, MessageIdData)> {
        self.last_received = Instant::now();
        let id = received.message_id().clone();
        let size = received.message_id.batch_size.filter(|n| *n > 0).unwrap_or(1) as usize;
        if size > self.receiver_queue && !self.warned_of_a_larger_batch {
            self.warned_of_a_larger_batch = true;
            // Once a reader: the pace it would explain is the same for every batch.
            tracing::warn!(
                topic = %self.topic,
                "a batch of {size} messages came, more than the receiver queue of {}: the broker sends a \
                 producer's batch whole and, to a consumer with fewer flow permits than it holds, dispatches \
                 at a fraction of its pace; set PulsarConfig::receiver_queue to at least the producers' \
                 largest batch",
                self.receiver_queue
            );
        }
        let index = id.batch_index.filter(|i| *i >= 0).unwrap_or(0) as usize;
        let key = EntryKey::of(&id);
        let topic = Arc::clone(
            self.partition_topics.entry(key.partition).or_insert_with(|| Arc::from(received.topic.as_str())),
        );
        if self.done.contains(&key) {
            return Some((topic, id));
        }
        let entry = self.entries.entry(key).or_insert_with(|| Entry {
            topic,
            slots: vec![Slot::Waiting; size],
            deliveries: vec![0; size],
            ids: vec![None; size],
        });
        if index >= entry.slots.len() || entry.slots[index] != Slot::Waiting {
            // Acked already, or its handler still runs: a redelivery of its batch for
            // another message's nack, or of its own after the ack timeout.
            return None;
        }
        entry.slots[index] = Slot::Running;
        entry.deliveries[index] += 1;
        let attempt = entry.deliveries[index];
        let position = Position::Queue { partition: id.partition.map(|p| p as u32), sequence: Some(id.entry_id) };
        entry.ids[index] = Some(id);
        let message = from_pulsar(&self.topic, &mut received);
        self.unsettled += 1;
        let mut delivery = Delivery::new(message, attempt, position, self.group.clone());
        delivery.set_dispatch(attempt, None, Ticket { key, index: index as i32 }.note());
        let _ = self.deliveries.send(Ok(delivery));
        None
    }

    /// Nacks `id`, which the consumer received on `topic`.
    async fn nack(&mut self, topic: &str, id: MessageIdData) {
        self.send(false, topic, id).await;
    }

    /// Acks `id`, which the consumer received on `topic`.
    async fn ack(&mut self, topic: &str, id: MessageIdData) {
        self.send(true, topic, id).await;
    }

    /// Acks (or nacks) `id` through the consumer, waiting at most the stall timeout.
    async fn send(&mut self, ack: bool, topic: &str, id: MessageIdData) {
        let timeout = self.stall_timeout();
        let consumer = &mut self.consumer;
        let call = async move {
            if ack {
                consumer.ack_with_id(topic, id).await
            } else {
                consumer.nack_with_id(topic, id).await
            }
        };
        let (what, then) = if ack {
            ("an ack", "the message may come again")
        } else {
            ("a nack", "the message comes again when this consumer closes")
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(topic = %self.topic, error = %err, "{what} failed; {then}"),
            Err(_) => self.stuck(format!("{what} did not reach the Pulsar consumer within {timeout:?}")),
        }
    }

    /// How long an ack or nack may wait, and how long a quiet spell lasts before the
    /// broker is asked about this consumer: longer than a broker restart takes, during
    /// which the pulsar crate holds acks back while it reconnects (a new consumer then
    /// would get every unacked message again).
    fn stall_timeout(&self) -> std::time::Duration {
        self.close_timeout * 3
    }

    /// Asks the broker about this consumer after a quiet spell. A consumer the broker no
    /// longer knows (its resubscription after an outage failed) or whose requests go
    /// nowhere receives nothing for good without a word from the pulsar crate.
    async fn probe(&mut self) {
        let timeout = self.close_timeout;
        tracing::debug!(topic = %self.topic, "no message for a while; asking the broker about this consumer");
        match tokio::time::timeout(timeout, self.consumer.get_stats()).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                self.stuck(format!("the broker does not answer for this consumer after a quiet spell: {err}"))
            }
            Err(_) => self.stuck(format!("a stats request for this consumer got no answer within {timeout:?}")),
        }
        self.last_received = Instant::now();
    }

    /// Marks the consumer as stuck: the subscription then ends with an error, and the
    /// scheduler makes a new consumer. The pulsar crate takes acks and nacks through a
    /// bounded queue to its own engine, whose reconnects retry without end by default;
    /// when that engine is stuck, they never return, and nothing else would end this
    /// one.
    fn stuck(&mut self, why: String) {
        if self.stuck.is_none() {
            tracing::warn!(topic = %self.topic, reason = %why, "the Pulsar consumer is stuck; subscribing anew");
            self.stuck = Some(Error::new(ErrorKind::Connection, why).with_driver(DRIVER).with_topic(&self.topic));
        }
    }

    async fn command(&mut self, command: Command) {
        let Ticket { key, index } = match command {
            Command::Ack(ticket) | Command::Nack(ticket, _) | Command::Release(ticket) => ticket,
            Command::Close(_) => return,
        };
        let Ok(index) = usize::try_from(index) else { return };
        let Some(entry) = self.entries.get_mut(&key) else { return };
        if entry.slots.get(index) != Some(&Slot::Running) {
            return;
        }
        self.unsettled = self.unsettled.saturating_sub(1);
        match command {
            Command::Ack(_) => {
                entry.slots[index] = Slot::Acked;
                if entry.slots.iter().all(|s| *s == Slot::Acked) {
                    let entry = self.entries.remove(&key).expect("the entry is there");
                    self.done.insert(key);
                    // Acked one by one, so the consumer's ack-timeout bookkeeping (by
                    // message id) lets go of each.
                    for id in entry.ids.into_iter().flatten() {
                        self.ack(&entry.topic, id).await;
                        if self.stuck.is_some() {
                            return;
                        }
                    }
                }
            }
            Command::Nack(_, delay) => {
                let Some(id) = entry.ids[index].clone() else { return };
                if delay.is_zero() {
                    entry.slots[index] = Slot::Waiting;
                    let topic = Arc::clone(&entry.topic);
                    self.nack(&topic, id).await;
                    return;
                }
                entry.slots[index] = Slot::Delayed;
                self.nack_ids.insert((key, index as i32), id);
                self.nacks.push(Reverse((Instant::now() + delay, key, index as i32)));
            }
            Command::Release(_) => entry.slots[index] = Slot::Waiting,
            Command::Close(_) => {}
        }
    }

    /// Closes the consumer, within `close_timeout`: a close on a connection that broke
    /// (a broker restart) can hang in the pulsar crate, and a reader that never finished
    /// closing would never be restarted. Past the timeout the consumer is dropped, which
    /// closes it in the background; the broker redelivers what it left unacked either way.
    ///
    /// What this consumer holds unacked (delayed nacks not yet due, messages whose
    /// handlers were abandoned at the stop's deadline) is not nacked first: the close
    /// gives all of it back at once, and a nack just before it lost messages on Pulsar
    /// 4.0.7. As far as the broker's stats show, the nack starts a redelivery read, the
    /// close removes the subscription's last consumer while that read is in flight, and
    /// the next consumer gets the redelivered message but not the cursor's rewind a
    /// subscription's first consumer is owed: the closed consumer's other messages stay
    /// in the backlog, held by no consumer and queued for no redelivery, until the next
    /// message published to that partition. Conformance case 12 met it in two stress
    /// runs of seven beside other load (a partition's backlog of 5 with nothing unacked
    /// or in replay, its new consumer given 1 message), and in none of 12 after this.
    async fn close(&mut self) -> Result<()> {
        let (timeout, topic) = (self.close_timeout, self.topic.clone());
        let closing = async {
            if self.unsubscribe {
                if let Err(err) = through_engine(&mut self.consumer, |c| Box::pin(c.unsubscribe())).await {
                    tracing::debug!(topic = %self.topic, error = %err, "removing a private subscription failed");
                }
            }
            through_engine(&mut self.consumer, |c| Box::pin(c.close())).await
        };
        match tokio::time::timeout(timeout, closing).await {
            Ok(result) => result.map_err(|e| pulsar_error("closing the Pulsar consumer failed", e).with_topic(&topic)),
            Err(_) => {
                tracing::warn!(topic = %topic, ?timeout, "closing the Pulsar consumer timed out; dropping it");
                Ok(())
            }
        }
    }
}

/// How long a request that goes through the pulsar crate's consumer engine may wait
/// before the engine's queue is emptied again; see [`through_engine`].
const ENGINE_STEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `request` (an unsubscribe or a close) on `consumer`, emptying the crate's queue
/// of received messages first, and again while the request waits.
///
/// The pulsar crate's consumer engine hands messages over through a bounded queue and
/// waits while it is full; acks, unsubscribes and closes are served by the same loop,
/// after the messages that arrived before them. A reader that stopped taking messages
/// (its handlers held all they may) would have its last acks and its close wait behind
/// a full queue until the close timed out, and the acks were lost: the group got those
/// messages again. What is read here was never handed out; the broker gives it to
/// another member once this consumer is gone.
async fn through_engine(
    consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
    request: impl Fn(
        &mut Consumer<Vec<u8>, TokioExecutor>,
    ) -> futures::future::BoxFuture<'_, std::result::Result<(), pulsar::Error>>,
) -> std::result::Result<(), pulsar::Error> {
    loop {
        while let Some(Some(_)) = consumer.next().now_or_never() {}
        if let Ok(result) = tokio::time::timeout(ENGINE_STEP, request(consumer)).await {
            return result;
        }
    }
}

/// The runner's side: deliveries from the engine, settlements to it.
struct PulsarSource {
    commands: mpsc::UnboundedSender<Command>,
    deliveries: mpsc::UnboundedReceiver<Delivered>,
    /// Settles every delivery of this source.
    settler: Arc<dyn SharedSettle>,
    engine: Option<tokio::task::JoinHandle<()>>,
    /// An error met while a batch was filled: the batch went out first, the error goes
    /// with the next call.
    pending_error: Option<Error>,
}

#[async_trait]
impl Source for PulsarSource {
    async fn next_batch(&mut self, batch: &mut Vec<Incoming>, max: usize) -> Result<usize> {
        if let Some(err) = self.pending_error.take() {
            return Err(err);
        }
        // The engine ends only after it sent why; a channel closed without a word is an
        // engine that died, which ends the subscription all the same.
        let first = self.deliveries.recv().await.unwrap_or_else(|| {
            Err(Error::new(ErrorKind::Closed, "the Pulsar consumer's engine stopped").with_driver(DRIVER))
        });
        let start = batch.len();
        batch.push(Incoming::shared(first?, &self.settler));
        // The engine's channel keeps what is left.
        while batch.len() - start < max.min(MOST_A_FETCH) {
            match self.deliveries.try_recv() {
                Ok(Ok(next)) => batch.push(Incoming::shared(next, &self.settler)),
                Ok(Err(err)) => {
                    // Hand out what arrived; the error comes with the next call, which
                    // ends this subscription so the scheduler makes a new consumer.
                    self.pending_error = Some(err);
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(batch.len() - start)
    }

    async fn close(&mut self) -> Result<()> {
        let Some(engine) = self.engine.take() else { return Ok(()) };
        let (done, result) = oneshot::channel();
        if self.commands.send(Command::Close(done)).is_err() {
            let _ = engine.await;
            return Ok(());
        }
        let result = result.await.unwrap_or(Ok(()));
        let _ = engine.await;
        result
    }
}

impl Drop for PulsarSource {
    fn drop(&mut self) {
        if let Some(engine) = &self.engine {
            let (done, _) = oneshot::channel();
            if self.commands.send(Command::Close(done)).is_err() {
                engine.abort();
            }
        }
    }
}

/// Settles the deliveries of one source through its engine, each named by the
/// [`Ticket`] in its dispatch note. A delivery whose handler was abandoned at a stop's
/// deadline is never settled here: the engine nacks it as it closes.
struct PulsarSettle {
    commands: mpsc::UnboundedSender<Command>,
    default_nack_delay: std::time::Duration,
}

impl PulsarSettle {
    /// Hands the settlement to the engine: a send on an unbounded channel, which never
    /// waits.
    fn send(&self, delivery: &Delivery, settlement: Settlement) -> Result<()> {
        let ticket = Ticket::of(delivery);
        let command = match settlement {
            Settlement::Ack => Command::Ack(ticket),
            Settlement::Nack { delay } => Command::Nack(ticket, delay.unwrap_or(self.default_nack_delay)),
        };
        self.commands.send(command).map_err(|_| {
            Error::new(ErrorKind::Closed, "the Pulsar consumer is closed; the message will be delivered again")
                .with_driver(DRIVER)
        })
    }
}

#[async_trait]
impl SharedSettle for PulsarSettle {
    async fn settle(&self, delivery: &Delivery, settlement: Settlement) -> Result<()> {
        self.send(delivery, settlement)
    }

    /// Always at once: the runner then makes no boxed future for the settlement.
    fn settle_now(&self, delivery: &Delivery, settlement: Settlement) -> Option<Result<()>> {
        Some(self.send(delivery, settlement))
    }

    async fn release(&self, delivery: &Delivery) {
        let _ = self.commands.send(Command::Release(Ticket::of(delivery)));
    }
}

#[cfg(test)]
mod tests {
    use tidewater_core::{Delivery, Message, Position};

    use super::{EntryKey, Ticket};

    #[test]
    fn a_ticket_comes_back_whole_from_a_deliverys_note() {
        let position = Position::Queue { partition: None, sequence: Some(7) };
        for (partition, index) in [(-1, 0), (0, 999), (i32::MAX, i32::MAX), (12, 1)] {
            let ticket = Ticket { key: EntryKey { ledger: u64::MAX - 3, entry: 7, partition }, index };
            let mut delivery = Delivery::new(Message::new("t", "x"), 1, position, None);
            assert!(delivery.set_dispatch(2, None, ticket.note()));
            assert_eq!(Ticket::of(&delivery), ticket);
        }
    }
}
