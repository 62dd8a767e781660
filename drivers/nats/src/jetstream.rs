//! JetStream: streams, acknowledged publishes, durable pull consumers. At least once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer, stream, AckKind};
use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use tidewater_core::{
    await_receipts, Admin, BrokerWriter, Closable, Delivery, Driver, Error, ErrorKind, Incoming, Message, PartitionLag,
    Position, ReadTask, Reader, ReadySignal, Result, Settlement, SharedSettle, Source, StartFrom, TopicName, Writer,
    MOST_A_FETCH,
};
use tokio::task::JoinHandle;

use crate::headers::{check_sizes, check_subject, from_nats, to_nats, topic_of, wire_size, Implied};
use crate::subjects::subject_of;
use crate::{connection_error, failed_in_batch, NatsConfig, DRIVER};

/// How JetStream streams and consumers are set up.
#[derive(Clone, Debug)]
pub struct JetStreamConfig {
    /// Create a stream for a topic no stream covers, named after the topic (`.` and other
    /// characters streams cannot have become `_`). When off, such a topic is an
    /// `UnknownTopic` error; bind topics with [`JetStream::create_stream`]. Default on.
    pub auto_create_streams: bool,
    /// Storage of created streams. Default file.
    pub storage: stream::StorageType,
    /// Retention of created streams. Default limits (messages stay for late groups).
    pub retention: stream::RetentionPolicy,
    /// Replicas of created streams. Default 1.
    pub replicas: usize,
    /// Longest age of messages in created streams; `None` keeps them until other limits.
    pub max_age: Option<Duration>,
    /// How long a delivery may stay unsettled before the server delivers it again. While
    /// a handler runs, the driver sends in-progress acks every third of this, so a slow
    /// handler is not redelivered under it. Default 30 s.
    pub ack_wait: Duration,
    /// Deliveries a consumer may have unsettled at once. Default 1,000.
    pub max_ack_pending: i64,
    /// How long a group's durable consumer stays on the server with no member reading,
    /// after which the server removes it with its position (a group that comes back later
    /// starts as a new one, where its task says). `None` keeps it until deleted. Default 7
    /// days, as Kafka keeps a group's offsets, so that groups of tests and of services
    /// long gone do not pile up. Servers before 2.10 keep durables regardless.
    pub group_expiry: Option<Duration>,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        Self {
            auto_create_streams: true,
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            replicas: 1,
            max_age: None,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            group_expiry: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

/// NATS JetStream.
///
/// - **Publishing** waits for the stream's acknowledgement and sets `Nats-Msg-Id` to the
///   message id, so the server drops a retried publish it already stored (within the
///   stream's duplicate window).
/// - **Consumer groups** are durable pull consumers with explicit acks, one per group
///   and topic (named `<group>__<topic>`, with `.` and the other characters JetStream
///   names cannot hold as `_`); members of a group share it. The consumer records its
///   group, so a second group whose name maps to the same consumer (`billing.eu`,
///   `billing_eu`) is refused with `InvalidName` rather than sharing the first's
///   messages. A task without a group gets an ephemeral consumer. New groups start at
///   the first message or at new ones, as the task says.
/// - **Settlement** is per message ([`DeliveryModel::Queue`](tidewater_core::DeliveryModel::Queue)): ack, or nak with the
///   nack delay. The attempt is the server's delivery count. The consumer has no
///   delivery limit (`max_deliver` unlimited), because the server would silently stop
///   delivering a message that reached it; cap deliveries with the dead-letter
///   middleware's `max_deliveries` instead, which writes the message somewhere first.
/// - **Order**: one subject's messages arrive in stream order; the runner keeps per-key
///   order with concurrency above 1. A redelivered message can overtake later ones.
#[derive(Clone)]
pub struct JetStream {
    context: jetstream::Context,
    config: Arc<JetStreamConfig>,
    /// Topic -> stream, for topics seen.
    streams: Arc<Mutex<HashMap<String, String>>>,
}

impl std::fmt::Debug for JetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStream").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A name streams and consumers accept: `.`, `*`, `>`, path separators and white space
/// become `_`.
pub(crate) fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace() || c.is_control() { '_' } else { c })
        .collect()
}

impl JetStream {
    /// Connects with `nats` and sets JetStream up as `config` says.
    /// Errors as [`NatsConfig::connect`] gives them.
    pub async fn connect(nats: &NatsConfig, config: JetStreamConfig) -> Result<Self> {
        let client = nats.connect().await?;
        let context = jetstream::ContextBuilder::new()
            .timeout(nats.request_timeout)
            .ack_timeout(nats.request_timeout)
            .build(client);
        Ok(Self::from_context(context, config))
    }

    /// Uses an existing JetStream context.
    pub fn from_context(context: jetstream::Context, config: JetStreamConfig) -> Self {
        Self { context, config: Arc::new(config), streams: Arc::default() }
    }

    /// The JetStream context, for what tidewater does not cover.
    pub fn context(&self) -> &jetstream::Context {
        &self.context
    }

    /// Creates stream `name` over `subjects` with the configured storage, retention,
    /// replicas and age, or binds to it if it exists.
    pub async fn create_stream(&self, name: &str, subjects: &[&str]) -> Result<()> {
        let config = stream::Config {
            name: name.to_owned(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            storage: self.config.storage,
            retention: self.config.retention,
            num_replicas: self.config.replicas,
            max_age: self.config.max_age.unwrap_or_default(),
            ..Default::default()
        };
        let stream = self.context.get_or_create_stream(config).await.map_err(|e| {
            Error::new(ErrorKind::BrokerPermanent, format!("cannot create or bind stream {name}"))
                .with_source(e)
                .with_driver(DRIVER)
        })?;
        // An existing stream of that name keeps its own subjects: binding to it would
        // leave these subjects without a stream, and every publish would fail with a
        // "no stream found" that names neither the stream nor the cause.
        let held = &stream.cached_info().config.subjects;
        let missing: Vec<&str> = subjects.iter().copied().filter(|s| !held.iter().any(|h| h == s)).collect();
        if !missing.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!(
                    "{missing:?} would go to JetStream stream {name}, which already exists for {held:?}: topics that \
                     differ only in '.' and '_' map to one stream name; rename one, or bind it to a stream of its own \
                     with JetStream::create_stream"
                ),
            )
            .with_driver(DRIVER));
        }
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        for subject in subjects {
            streams.insert(subject.to_string(), name.to_owned());
        }
        Ok(())
    }

    /// The stream that holds `topic`, created if allowed and needed.
    async fn stream_for(&self, topic: &str) -> Result<String> {
        if let Some(name) = self.streams.lock().unwrap_or_else(|e| e.into_inner()).get(topic) {
            return Ok(name.clone());
        }
        check_subject(topic).map_err(|e| e.with_topic(topic))?;
        if let Ok(name) = self.context.stream_by_subject(topic).await {
            self.streams.lock().unwrap_or_else(|e| e.into_inner()).insert(topic.to_owned(), name.clone());
            return Ok(name);
        }
        if !self.config.auto_create_streams {
            return Err(Error::new(
                ErrorKind::UnknownTopic,
                "no JetStream stream covers this subject and auto-create is off; create one with JetStream::create_stream",
            )
            .with_driver(DRIVER)
            .with_topic(topic));
        }
        let name = sanitize(topic);
        self.create_stream(&name, &[topic]).await.map_err(|e| e.with_topic(topic))?;
        Ok(name)
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<()> {
        let mut prepared = Vec::with_capacity(batch.len());
        for message in &batch {
            let headers = to_nats(message, &Implied::default())?;
            let subject = subject_of(&message.stream).map_err(|e| e.with_topic(message.stream.clone()))?;
            prepared.push((subject, headers));
        }
        let max = self.context.client().max_payload();
        check_sizes(max, batch.iter().zip(&prepared).map(|(m, (_, h))| (wire_size(h, m.payload.len()), m)))?;
        // Streams are looked up (and made) only for a batch that passed every check: a
        // refused batch creates none.
        let mut seen = HashSet::new();
        for message in &batch {
            if seen.insert(message.stream.as_str()) {
                self.stream_for(&message.stream).await?;
            }
        }
        // Send everything first and then wait for the acknowledgements, so a batch costs
        // about one round trip rather than one per message.
        let total = batch.len();
        let mut acks = Vec::with_capacity(total);
        for (i, (message, (subject, headers))) in batch.into_iter().zip(prepared).enumerate() {
            let ack = self
                .context
                .publish_with_headers(subject, headers, message.payload)
                .await
                .map_err(|e| failed_in_batch(publish_error(e, &message.stream), i, total))?;
            acks.push((message.stream, message.id, ack));
        }
        await_receipts(DRIVER, "acknowledged", acks, publish_error).await
    }

    /// The stream that holds `topic`, with its info, or `None` when no stream does.
    async fn stream_holding(&self, topic: &str) -> Result<Option<jetstream::stream::Stream>> {
        let Some(name) = self.stream_name_of(topic).await? else { return Ok(None) };
        self.context.get_stream(&name).await.map(Some).map_err(|e| stream_lookup_failed(topic, &e))
    }

    /// The name of the stream that holds `topic`, under a wildcard of its subjects or by
    /// name, or `None` when no stream does.
    async fn stream_name_of(&self, topic: &str) -> Result<Option<String>> {
        match self.context.stream_by_subject(topic).await {
            Ok(name) => Ok(Some(name)),
            Err(e) if matches!(e.kind(), jetstream::context::GetStreamByNameErrorKind::NotFound) => Ok(None),
            Err(e) => Err(stream_lookup_failed(topic, &e)),
        }
    }
}

fn stream_lookup_failed(topic: &str, e: &dyn std::fmt::Display) -> Error {
    Error::new(ErrorKind::Connection, format!("cannot look up the stream of {topic:?}: {e}"))
        .with_driver(DRIVER)
        .with_topic(topic)
}

fn publish_error(e: async_nats::jetstream::context::PublishError, topic: &str) -> Error {
    use async_nats::jetstream::context::PublishErrorKind as K;
    let kind = match e.kind() {
        K::TimedOut => ErrorKind::Timeout,
        K::StreamNotFound => ErrorKind::UnknownTopic,
        K::MaxPayloadExceeded => ErrorKind::TooLarge,
        K::BrokenPipe => ErrorKind::Connection,
        _ => ErrorKind::BrokerTransient,
    };
    Error::new(kind, "JetStream publish failed").with_source(e).with_driver(DRIVER).with_topic(topic)
}

impl Driver for JetStream {
    fn admin(&self) -> Arc<dyn Admin> {
        Arc::new(self.clone())
    }

    fn writer(&self) -> Arc<dyn Writer> {
        Arc::new(Closable::new(DRIVER, JsWriter { js: self.clone() }))
    }

    fn reader(&self) -> Arc<dyn Reader> {
        Arc::new(self.clone())
    }
}

/// Writes to JetStream; a write returns when the stream acknowledged every message.
struct JsWriter {
    js: JetStream,
}

impl BrokerWriter for JsWriter {
    async fn write(&self, batch: Vec<Message>) -> Result<()> {
        self.js.publish(batch).await
    }

    async fn flush(&self) -> Result<()> {
        self.js.context.client().flush().await.map_err(|e| connection_error("flush failed", e))
    }
}

#[async_trait]
impl Reader for JetStream {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    /// The client's connection state: it reconnects by itself, and reads wait meanwhile.
    fn connected(&self) -> Option<bool> {
        Some(self.context.client().connection_state() == async_nats::connection::State::Connected)
    }

    async fn open(&self, task: &ReadTask, _ready: &ReadySignal) -> Result<Box<dyn Source>> {
        let topic = task.topic.clone();
        let stream_name = self.stream_for(&topic).await?;
        let stream = self.context.get_stream(&stream_name).await.map_err(|e| {
            Error::new(ErrorKind::Connection, format!("cannot look up stream {stream_name}"))
                .with_source(e)
                .with_driver(DRIVER)
                .with_topic(topic.clone())
        })?;
        let durable = task.group.as_deref().map(|g| durable_name(g, &topic));
        let config = consumer::pull::Config {
            durable_name: durable.clone(),
            description: task.group.as_deref().map(|g| format!("{GROUP_PREFIX}{g}")),
            deliver_policy: match task.start {
                StartFrom::Earliest => consumer::DeliverPolicy::All,
                StartFrom::Latest => consumer::DeliverPolicy::New,
            },
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.config.ack_wait,
            max_deliver: -1,
            max_ack_pending: self.config.max_ack_pending,
            filter_subject: topic.clone(),
            inactive_threshold: match &durable {
                Some(_) => self.config.group_expiry.unwrap_or(Duration::ZERO),
                None => Duration::from_secs(60),
            },
            ..Default::default()
        };
        let consumer_error = |e: &dyn std::fmt::Display| {
            Error::new(ErrorKind::Connection, format!("cannot create or bind the consumer: {e}"))
                .with_driver(DRIVER)
                .with_topic(topic.clone())
        };
        let consumer: consumer::PullConsumer = match (&durable, &task.group) {
            (Some(name), Some(group)) => {
                let bound = stream.get_or_create_consumer(name, config).await.map_err(|e| consumer_error(&e))?;
                let owner = Owner { group, topic: &topic, durable: name, stream: &stream_name };
                owner.check(&bound.cached_info().config)?;
                bound
            }
            _ => stream.create_consumer(config).await.map_err(|e| consumer_error(&e))?,
        };
        let unsettled = Arc::new(Unsettled::new(self.context.client()));
        let progress = tokio::spawn(keep_alive(Arc::clone(&unsettled), self.config.ack_wait / 3));
        let settler: Arc<dyn SharedSettle> = Arc::clone(&unsettled) as _;
        Ok(Box::new(JsSource {
            consumer,
            topic: TopicName::from(&task.topic),
            batch: None,
            stream: Arc::from(stream_name.as_str()),
            group: task.group.as_deref().map(Arc::from),
            unsettled,
            settler,
            progress,
        }))
    }
}

/// The durable consumer that stands for `group` on `topic`: one per group and subject,
/// since a stream may hold several subjects.
fn durable_name(group: &str, topic: &str) -> String {
    sanitize(&format!("{group}__{topic}"))
}

/// How a consumer's description names the group it stands for.
const GROUP_PREFIX: &str = "tidewater group ";

/// A group binding the durable consumer its name maps to.
struct Owner<'a> {
    group: &'a str,
    topic: &'a str,
    durable: &'a str,
    stream: &'a str,
}

impl Owner<'_> {
    /// Refuses a consumer that another group or another subject made: JetStream names
    /// cannot hold `.` and a few more characters, which [`sanitize`] turns into `_`, so
    /// groups `billing.eu` and `billing_eu` (or two subjects of one stream) map to one
    /// consumer, and binding it would split one group's messages with the other's, or
    /// read another subject's. A consumer whose description names no group (made before
    /// groups were recorded, or by another client) is taken as it is.
    fn check(&self, bound: &consumer::Config) -> Result<()> {
        let problem = if bound.filter_subject != self.topic {
            Some(match bound.filter_subject.as_str() {
                "" => "reads every subject of the stream".to_owned(),
                other => format!("reads {other:?}"),
            })
        } else {
            bound
                .description
                .as_deref()
                .and_then(|d| d.strip_prefix(GROUP_PREFIX))
                .filter(|other| *other != self.group)
                .map(|other| format!("belongs to group {other:?}"))
        };
        let Some(problem) = problem else { return Ok(()) };
        let text = format!(
            "group {:?} of {:?} maps to JetStream consumer {} of stream {}, which {problem}: JetStream names \
             hold no '.', '*', '>', '/', '\\' or whitespace, so they become '_'; rename one of the two",
            self.group, self.topic, self.durable, self.stream
        );
        Err(Error::new(ErrorKind::InvalidName, text).with_driver(DRIVER).with_topic(self.topic))
    }
}

/// Topics are subjects, each in a stream of its own named after it (as auto-created
/// streams are); partition counts do not apply.
#[async_trait]
impl Admin for JetStream {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    async fn create_topic(&self, topic: &str, _partitions: u32) -> Result<()> {
        tidewater_core::names::check_topic(topic).map_err(|e| e.with_driver(DRIVER))?;
        self.create_stream(&sanitize(topic), &[topic]).await.map_err(|e| e.with_topic(topic))
    }

    /// Deletes the topic's stream, with its messages and its groups' consumers. A topic
    /// that shares its stream with other subjects is refused: deleting the stream would
    /// take them too.
    async fn delete_topic(&self, topic: &str) -> Result<()> {
        let Some(stream) = self.stream_holding(topic).await? else { return Ok(()) };
        let info = stream.cached_info();
        let (name, subjects) = (info.config.name.clone(), &info.config.subjects);
        if subjects.iter().any(|s| s != topic) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("topic {topic:?} is one subject of stream {name}, which also holds {subjects:?}; delete the stream itself"),
            )
            .with_driver(DRIVER)
            .with_topic(topic));
        }
        self.context.delete_stream(&name).await.map_err(|e| {
            Error::new(ErrorKind::BrokerTransient, format!("cannot delete stream {name}"))
                .with_source(e)
                .with_driver(DRIVER)
        })?;
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, stream| *stream != name);
        Ok(())
    }

    /// The group's durable consumer's pending and unacknowledged counts, as partition 0.
    async fn lag(&self, topic: &str, group: &str) -> Result<Vec<PartitionLag>> {
        let Some(stream) = self.stream_holding(topic).await? else {
            return Err(Error::new(ErrorKind::UnknownTopic, "no stream holds this subject")
                .with_driver(DRIVER)
                .with_topic(topic));
        };
        let name = &stream.cached_info().config.name;
        let failed = |e: &dyn std::fmt::Display| {
            Error::new(ErrorKind::Connection, format!("cannot read group {group:?}'s lag: {e}"))
                .with_driver(DRIVER)
                .with_topic(topic)
        };
        let durable = durable_name(group, topic);
        match stream.consumer_info(&durable).await {
            Ok(info) => Ok(vec![PartitionLag { partition: 0, lag: info.num_pending + info.num_ack_pending as u64 }]),
            Err(e) if matches!(e.kind(), jetstream::context::ConsumerInfoErrorKind::NotFound) => Err(Error::new(
                ErrorKind::UnknownGroup,
                format!("stream {name} has no consumer {durable} for group {group:?}"),
            )
            .with_driver(DRIVER)
            .with_topic(topic)),
            Err(e) => Err(failed(&e)),
        }
    }

    /// Whether a stream holds the subject, under a wildcard of its subjects or by name.
    async fn topic_exists(&self, topic: &str) -> Result<bool> {
        tidewater_core::names::check_topic(topic).map_err(|e| e.with_driver(DRIVER))?;
        Ok(self.stream_name_of(topic).await?.is_some())
    }

    /// The subjects of every stream, wildcard subjects left out.
    async fn topics(&self) -> Result<Vec<String>> {
        let failed = |e: &dyn std::fmt::Display| {
            Error::new(ErrorKind::Connection, format!("cannot list the JetStream streams: {e}")).with_driver(DRIVER)
        };
        let mut streams = self.context.streams();
        let mut topics = Vec::new();
        while let Some(info) = streams.next().await {
            let info = info.map_err(|e| failed(&e))?;
            topics.extend(info.config.subjects.into_iter().filter(|s| !s.contains(['*', '>'])));
        }
        Ok(topics)
    }
}

/// The reply subjects of deliveries handed out and not yet settled, and of deliveries
/// given back while a pull request was open: a delivery is acked, nak'ed or kept alive by
/// a message to its reply subject.
///
/// One for the whole source, as what settles its deliveries: a delivery says which it
/// is by its stream sequence and attempt (JetStream counts each delivery of a message),
/// so no delivery needs a settler of its own, nor an `Acker` with a copy of the context
/// (two allocations a message, of the three a tidewater consumer made beyond raw
/// async-nats's; the third, the boxed settlement, remains).
///
/// A delivery given back (released at a stop, or left unsettled by a handler abandoned
/// at the deadline) is nak'ed only once no pull request of this consumer is open: the
/// server redelivers a nak'ed message at once, to the open request if there is one, and
/// a closing source that nak'ed it again would spin it through the request, one delivery
/// count each time, until the request was used up.
struct Unsettled {
    client: async_nats::Client,
    replies: Mutex<HashMap<(u64, u32), async_nats::Subject>>,
    pull_open: AtomicBool,
    given_back: Mutex<Vec<async_nats::Subject>>,
}

impl Unsettled {
    fn new(client: async_nats::Client) -> Self {
        Self { client, replies: Mutex::default(), pull_open: AtomicBool::new(false), given_back: Mutex::default() }
    }

    /// Sends `kind` for the delivery whose reply subject is `reply`.
    async fn send(&self, reply: async_nats::Subject, kind: AckKind) -> Result<()> {
        self.client.publish(reply, kind.into()).await.map_err(|e| {
            Error::new(ErrorKind::Connection, "acknowledging a JetStream delivery failed")
                .with_source(e)
                .with_driver(DRIVER)
        })
    }

    /// Nak's the delivery whose reply subject is `reply` now, or once the open pull
    /// request has ended.
    async fn give_back(&self, reply: async_nats::Subject) {
        if self.pull_open.load(Ordering::SeqCst) {
            self.given_back.lock().unwrap_or_else(|e| e.into_inner()).push(reply);
        } else {
            let _ = self.send(reply, AckKind::Nak(None)).await;
        }
    }

    /// Nak's what was given back while the pull request that has now ended was open.
    async fn nak_given_back(&self) {
        let replies = std::mem::take(&mut *self.given_back.lock().unwrap_or_else(|e| e.into_inner()));
        for reply in replies {
            let _ = self.send(reply, AckKind::Nak(None)).await;
        }
    }

    /// Gives back every delivery still unsettled: at the source's close, those are the
    /// deliveries of handlers abandoned at the deadline, which the server would otherwise
    /// hold until their ack wait ran out.
    fn give_back_unsettled(&self) {
        let left: Vec<_> = self.replies.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, r)| r).collect();
        self.given_back.lock().unwrap_or_else(|e| e.into_inner()).extend(left);
    }

    /// Where `delivery`'s reply subject is kept: its stream sequence and delivery count.
    fn key(delivery: &Delivery) -> Option<(u64, u32)> {
        match delivery.position() {
            Position::Queue { sequence: Some(sequence), .. } => Some((sequence, delivery.attempt())),
            _ => None,
        }
    }

    fn add(&self, key: (u64, u32), reply: async_nats::Subject) {
        self.replies.lock().unwrap_or_else(|e| e.into_inner()).insert(key, reply);
    }

    /// The reply subject of `delivery`, if it is still unsettled; taken, so that it is
    /// settled once.
    fn take(&self, delivery: &Delivery) -> Option<async_nats::Subject> {
        let key = Self::key(delivery)?;
        self.replies.lock().unwrap_or_else(|e| e.into_inner()).remove(&key)
    }

    fn all(&self) -> Vec<async_nats::Subject> {
        self.replies.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}

fn ack_kind(settlement: Settlement) -> AckKind {
    match settlement {
        Settlement::Ack => AckKind::Ack,
        Settlement::Nack { delay } => AckKind::Nak(delay),
    }
}

#[async_trait]
impl SharedSettle for Unsettled {
    async fn settle(&self, delivery: &Delivery, settlement: Settlement) -> Result<()> {
        let Some(reply) = self.take(delivery) else { return Ok(()) };
        self.send(reply, ack_kind(settlement)).await
    }

    /// At once unless the client's queue of outgoing messages is full: an ack is a
    /// publish, which only waits for room in that queue. Spares the runner the boxed
    /// future of `settle`, one allocation a message.
    fn settle_now(&self, delivery: &Delivery, settlement: Settlement) -> Option<Result<()>> {
        let Some(reply) = self.take(delivery) else { return Some(Ok(())) };
        // A publish dropped before it is done sends nothing: then the delivery is put
        // back unsettled, for `settle` to wait for room.
        let sent = self.send(reply.clone(), ack_kind(settlement)).now_or_never();
        if sent.is_none() {
            // `take` found it, so it has a key.
            self.add(Self::key(delivery)?, reply);
        }
        sent
    }

    async fn release(&self, delivery: &Delivery) {
        if let Some(reply) = self.take(delivery) {
            self.give_back(reply).await;
        }
    }
}

/// Tells the server that unsettled deliveries are still being worked on, so a handler
/// that outlives the ack wait is not redelivered under it.
async fn keep_alive(unsettled: Arc<Unsettled>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.tick().await;
    loop {
        tick.tick().await;
        // The subjects stay in the registry while in use here, so a settlement meanwhile
        // still finds its own.
        for reply in unsettled.all() {
            let _ = unsettled.send(reply, AckKind::Progress).await;
        }
    }
}

/// How long one pull request waits for messages on the server.
const PULL_EXPIRES: Duration = Duration::from_secs(1);

/// Reads with one pull request at a time, kept here between calls so a cancelled call
/// loses nothing. On close the last request is read to its end and what it brings is
/// nak'ed: a request left open would deliver to a gone subscriber, and those messages
/// would wait out the ack wait before anyone else got them.
struct JsSource {
    consumer: consumer::PullConsumer,
    topic: TopicName,
    batch: Option<consumer::pull::Batch>,
    stream: Arc<str>,
    group: Option<Arc<str>>,
    unsettled: Arc<Unsettled>,
    /// `unsettled`, as what settles this source's deliveries.
    settler: Arc<dyn SharedSettle>,
    progress: JoinHandle<()>,
}

impl JsSource {
    fn incoming(&self, msg: jetstream::Message) -> Result<Incoming> {
        let info = msg.info().map_err(|e| {
            Error::new(ErrorKind::BrokerPermanent, "a JetStream delivery had no valid reply subject")
                .with_source(e)
                .with_driver(DRIVER)
        })?;
        let (attempt, sequence) = (info.delivered.max(1) as u32, info.stream_sequence);
        let published = SystemTime::from(info.published);
        let mut msg = msg.message;
        // `info` read the reply subject, so there is one.
        let reply = msg.reply.take().ok_or_else(|| {
            Error::new(ErrorKind::BrokerPermanent, "a JetStream delivery had no reply subject").with_driver(DRIVER)
        })?;
        let stream = &self.stream;
        let message = from_nats(
            topic_of(&self.topic, &msg.subject),
            msg.headers.as_ref(),
            msg.payload,
            || format!("{stream}-{sequence}").into(),
            Some(published),
            None,
        );
        self.unsettled.add((sequence, attempt), reply);
        let position = Position::Queue { partition: None, sequence: Some(sequence) };
        let delivery = Delivery::new(message, attempt, position, self.group.clone());
        Ok(Incoming::shared(delivery, &self.settler))
    }
}

fn read_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    // Pull requests fail when the connection is down; the scheduler restarts the reader.
    Error::new(ErrorKind::Connection, "reading from JetStream failed").with_source(e).with_driver(DRIVER)
}

#[async_trait]
impl Source for JsSource {
    async fn next_batch(&mut self, batch_out: &mut Vec<Incoming>, max: usize) -> Result<usize> {
        loop {
            let batch = match &mut self.batch {
                Some(batch) => batch,
                None => {
                    self.unsettled.pull_open.store(false, Ordering::SeqCst);
                    self.unsettled.nak_given_back().await;
                    self.unsettled.pull_open.store(true, Ordering::SeqCst);
                    let batch = self
                        .consumer
                        .batch()
                        .max_messages(max)
                        .expires(PULL_EXPIRES)
                        .messages()
                        .await
                        .map_err(read_error)?;
                    self.batch.insert(batch)
                }
            };
            let first = match batch.next().await {
                None => {
                    self.batch = None;
                    continue;
                }
                Some(Ok(first)) => first,
                Some(Err(e)) => {
                    self.batch = None;
                    return Err(read_error(e));
                }
            };
            let mut rest = Vec::new();
            // The pull asked for `max`; what this call leaves of it stays in the pull's
            // stream for the next.
            while rest.len() + 1 < max.min(MOST_A_FETCH) {
                match batch.next().now_or_never() {
                    Some(Some(Ok(msg))) => rest.push(msg),
                    Some(Some(Err(e))) => {
                        // Hand out what arrived; the next call starts a fresh pull.
                        tracing::warn!(stream = %self.stream, error = %e, "JetStream pull failed; pulling again");
                        self.batch = None;
                        break;
                    }
                    Some(None) => {
                        self.batch = None;
                        break;
                    }
                    None => break,
                }
            }
            let n = rest.len() + 1;
            batch_out.push(self.incoming(first)?);
            for msg in rest {
                batch_out.push(self.incoming(msg)?);
            }
            return Ok(n);
        }
    }

    async fn close(&mut self) -> Result<()> {
        self.progress.abort();
        if let Some(mut batch) = self.batch.take() {
            // Read the open request to its end; what it still brings is given back once it
            // has ended, with everything else given back meanwhile.
            let deadline = tokio::time::Instant::now() + PULL_EXPIRES + Duration::from_secs(1);
            while let Ok(Some(item)) = tokio::time::timeout_at(deadline, batch.next()).await {
                if let Some(reply) = item.ok().and_then(|mut msg| msg.message.reply.take()) {
                    self.unsettled.given_back.lock().unwrap_or_else(|e| e.into_inner()).push(reply);
                }
            }
        }
        self.unsettled.give_back_unsettled();
        self.unsettled.pull_open.store(false, Ordering::SeqCst);
        self.unsettled.nak_given_back().await;
        // Acks are published without waiting for an answer; flushing puts them on the
        // server before the next subscription asks for messages.
        self.unsettled.client.flush().await.map_err(|e| connection_error("flush failed", e))
    }
}

impl Drop for JsSource {
    fn drop(&mut self) {
        self.progress.abort();
        // Dropped without a close (its task was aborted): the request it had open is
        // abandoned, so what was given back, and what is still unsettled, goes back now.
        self.unsettled.give_back_unsettled();
        self.unsettled.pull_open.store(false, Ordering::SeqCst);
        let unsettled = Arc::clone(&self.unsettled);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { unsettled.nak_given_back().await });
        }
    }
}
