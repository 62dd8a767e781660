//! Core NATS: publish, subscribe, queue groups. At most once.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use async_nats::message::OutboundMessage;
use async_trait::async_trait;
use futures::future::Either;
use futures::{FutureExt, Sink, StreamExt, TryFutureExt};
use tidewater_core::{
    Admin, BrokerWriter, Closable, Delivery, Driver, Error, ErrorKind, IdFactory, Incoming, Message, Position,
    ReadTask, Reader, ReadySignal, Result, Settle, Settlement, Source, TopicName, UuidV7Ids, WriteNow, Writer,
    MOST_A_FETCH,
};

use tidewater_core::request::{self, NativeRequests};

use crate::headers::{check_sizes, from_nats, to_send, topic_of, wire_size, Implied};
use crate::requests::CoreRequests;
use crate::subjects::subject_of;
use crate::{connection_error, failed_in_batch, NatsConfig, DRIVER};

/// Core NATS, without JetStream.
///
/// **At most once.** Core NATS keeps nothing: a message published while no subscriber
/// listens is gone, and a nack cannot bring a message back; the settlement fails with
/// an `Unsupported` error that the task report counts under `settle_errors`. Use
/// [`JetStream`](crate::JetStream) when messages must not be lost, or put the
/// dead-letter middleware in front so failures are written elsewhere.
///
/// Consumer groups are queue groups: each group gets every message and its members
/// share them; a group has no position, so it gets only what is published while it
/// listens. Per-key order holds for one subscriber of one publisher.
///
/// A message's fields travel as headers (see the crate's table). Two options send fewer
/// of them, for consumers that do not need them: [`NatsCore::without_message_ids`] and
/// [`NatsCore::with_implied_content_type`]. A message with no header at all goes out as a
/// plain `PUB`, which async-nats and the server handle in about half the time of one
/// with headers (`BENCHMARKS.md`).
#[derive(Clone, Debug)]
pub struct NatsCore {
    client: async_nats::Client,
    implied: Implied,
}

impl NatsCore {
    /// Connects with `config`.
    /// Errors as [`NatsConfig::connect`] gives them.
    pub async fn connect(config: &NatsConfig) -> Result<Self> {
        Ok(Self::from_client(config.connect().await?))
    }

    /// Uses an existing client.
    pub fn from_client(client: async_nats::Client) -> Self {
        Self { client, implied: Implied::default() }
    }

    /// Publishes without the message's id (the `Nats-Msg-Id` header), and so without its
    /// time, which tidewater's UUIDv7 ids carry.
    ///
    /// Core NATS de-duplicates nothing, so on the wire the id serves only consumers that
    /// read it. Without it, a consumer gets an id and a time made when the message
    /// arrives, as for a plain client's message: unique, but not the id the publisher
    /// returned, so logs cannot join the two sides on it and the `Deduplicate` middleware
    /// cannot recognise a message published twice. Readers of this connection are
    /// unchanged.
    ///
    /// ```no_run
    /// # async fn run() -> tidewater_core::Result<()> {
    /// use tidewater_nats::{NatsConfig, NatsCore};
    ///
    /// let core = NatsCore::connect(&NatsConfig::new("nats://127.0.0.1:4222"))
    ///     .await?
    ///     .without_message_ids()
    ///     .with_implied_content_type("application/json");
    /// # Ok(()) }
    /// ```
    pub fn without_message_ids(mut self) -> Self {
        self.implied.no_ids = true;
        self
    }

    /// Takes `content_type` as the type of every message without a `Content-Type`
    /// header: publishes of that type leave the header out, and messages read without
    /// one, from tidewater or a plain client, get that type.
    ///
    /// Every connection that reads what this one publishes should imply the same type;
    /// one that does not reads such messages with no content type.
    pub fn with_implied_content_type(mut self, content_type: impl Into<Cow<'static, str>>) -> Self {
        self.implied.content_type = Some(content_type.into());
        self
    }

    /// The client, for what tidewater does not cover.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}

impl Driver for NatsCore {
    fn admin(&self) -> Arc<dyn Admin> {
        Arc::new(self.clone())
    }

    fn writer(&self) -> Arc<dyn Writer> {
        Arc::new(Closable::new(
            DRIVER,
            CoreWriter {
                client: self.client.clone(),
                sink: Mutex::new(self.client.clone()),
                implied: self.implied.clone(),
            },
        ))
    }

    fn reader(&self) -> Arc<dyn Reader> {
        Arc::new(self.clone())
    }

    /// NATS's own request/reply: replies come to an inbox of the connection, and a
    /// subject nobody listens on is a `NoResponders` error at once.
    fn native_requests(&self) -> Option<Arc<dyn NativeRequests>> {
        Some(Arc::new(CoreRequests::new(self.client.clone(), self.implied.clone())))
    }
}

/// Core NATS has no topics to create or delete: a subject exists while someone
/// subscribes to it. Creating and deleting check the name and do nothing; listing is
/// `Unsupported`, as the server keeps no list.
#[async_trait]
impl Admin for NatsCore {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    async fn create_topic(&self, topic: &str, _partitions: u32) -> Result<()> {
        tidewater_core::names::check_topic(topic).map_err(|e| e.with_driver(DRIVER))
    }

    async fn delete_topic(&self, topic: &str) -> Result<()> {
        tidewater_core::names::check_topic(topic).map_err(|e| e.with_driver(DRIVER))
    }

    async fn topics(&self) -> Result<Vec<String>> {
        Err(Error::new(ErrorKind::Unsupported, "core NATS keeps no list of subjects").with_driver(DRIVER))
    }
}

/// Writes to core NATS. A write returns once the client has the messages;
/// [`Writer::flush`] waits until the server has them.
struct CoreWriter {
    client: async_nats::Client,
    /// A client of the writer's own, used as a `Sink` by `try_write_now`: its readiness is
    /// asked before the message is handed over, so a publish that would wait leaves the
    /// message whole and its payload can be moved rather than cloned. The clone and the
    /// message's drop were two atomic operations on a count the connection's task
    /// writes too (it drops its reference once the bytes are out), a twentieth of a
    /// publish with no headers. A publish that finds the sink taken (a publish on
    /// another thread at that moment) uses `client` and clones.
    sink: Mutex<async_nats::Client>,
    implied: Implied,
}

/// What is sent of a message: its subject in the client's form, its headers and its
/// payload. Not its topic, which an error names: the callers add it from the message,
/// moved or only when there is an error, where a clone here cost an atomic increment
/// and decrement a publish.
struct Prepared {
    subject: async_nats::Subject,
    /// `None` when there are none to send.
    headers: Option<async_nats::HeaderMap>,
    payload: bytes::Bytes,
}

impl CoreWriter {
    /// Checks a message and makes what is sent of it (before anything of its batch is
    /// sent); the message stays with the caller, which `try_write_now` needs.
    fn prepare(&self, message: &Message) -> Result<Prepared> {
        let (subject, headers) = self.address(message)?;
        Ok(Prepared { subject, headers, payload: message.payload.clone() })
    }

    /// Checks a message and makes its subject and headers: `None` when there are none to
    /// send, so that a plain publish carries no empty header map.
    fn address(&self, message: &Message) -> Result<(async_nats::Subject, Option<async_nats::HeaderMap>)> {
        let subject = subject_of(&message.stream).map_err(|e| e.with_topic(message.stream.clone()))?;
        let headers = to_send(message, &self.implied)?.filter(|h| !h.is_empty());
        Ok((subject, headers))
    }

    /// Hands `message` to the connection through `sink` if its channel has room now;
    /// `Wait` with the message whole if not.
    fn send_now(&self, sink: &mut async_nats::Client, message: Message) -> WriteNow {
        let (subject, headers) = match self.address(&message) {
            Ok(address) => address,
            Err(e) => return WriteNow::Done(Err(e)),
        };
        match Pin::new(&mut *sink).poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return WriteNow::Done(Err(publish_error(e).with_topic(message.stream))),
            Poll::Pending => {
                // The sink has queued for room, and would take the first that frees and
                // keep it from others until its next send: a fresh one has not queued.
                *sink = self.client.clone();
                return WriteNow::Wait(message);
            }
        }
        let Message { stream, payload, .. } = message;
        let sent = Pin::new(sink).start_send(OutboundMessage { subject, reply: None, payload, headers });
        WriteNow::Done(sent.map_err(|e| publish_error(e).with_topic(stream)))
    }

    /// Publishes a prepared message; the caller adds its topic to an error. A combinator
    /// rather than an `async fn`, which would keep the prepared message beside the
    /// client's future.
    fn publish(&self, prepared: Prepared) -> impl Future<Output = Result<()>> + Send + '_ {
        let Prepared { subject, headers, payload } = prepared;
        // With no headers, a plain publish: nothing of an empty header map to move along
        // (`address` leaves an empty one out).
        let sent = match headers {
            None => Either::Left(self.client.publish(subject, payload)),
            Some(headers) => Either::Right(self.client.publish_with_headers(subject, headers, payload)),
        };
        sent.map_err(publish_error)
    }
}

/// A core publish error as a tidewater error of the kind that says whether a retry helps.
pub(crate) fn publish_error(e: async_nats::PublishError) -> Error {
    use async_nats::PublishErrorKind as K;
    let (kind, what) = match e.kind() {
        K::MaxPayloadExceeded => (ErrorKind::TooLarge, "the message is larger than the server's max_payload"),
        K::InvalidSubject => (ErrorKind::InvalidName, "the client refused the subject"),
        K::Send => (ErrorKind::Connection, "publish failed: the client's connection has closed"),
    };
    Error::new(kind, what).with_source(e).with_driver(DRIVER)
}

impl BrokerWriter for CoreWriter {
    async fn write(&self, batch: Vec<Message>) -> Result<()> {
        let out = batch.iter().map(|m| self.prepare(m)).collect::<Result<Vec<_>>>()?;
        check_sizes(
            self.client.max_payload(),
            out.iter()
                .zip(&batch)
                .map(|(p, m)| (p.headers.as_ref().map_or(p.payload.len(), |h| wire_size(h, p.payload.len())), m)),
        )?;
        let total = out.len();
        for (i, (prepared, message)) in out.into_iter().zip(&batch).enumerate() {
            self.publish(prepared)
                .await
                .map_err(|e| failed_in_batch(e.with_topic(message.stream.clone()), i, total))?;
        }
        Ok(())
    }

    // Written out rather than as an `async fn`, which would keep the message in the boxed
    // future beside the client's publish future: 1,184 bytes in all, past the largest
    // size glibc's per-thread cache serves (1,032), so that allocating the box took
    // malloc's slow path (about 320 instructions instead of 50, on every publish).
    // Preparing first leaves only the publish in the box: 704 bytes with async-nats 0.51.
    fn write_one(&self, message: Message) -> impl Future<Output = Result<()>> + Send + '_ {
        match self.address(&message) {
            Ok((subject, headers)) => {
                // Moved out, the rest of the message dropped here: the future keeps only
                // the name.
                let Message { stream, payload, .. } = message;
                Either::Left(
                    self.publish(Prepared { subject, headers, payload }).map_err(move |e| e.with_topic(stream)),
                )
            }
            Err(e) => Either::Right(std::future::ready(Err(e))),
        }
    }

    // Through the writer's sink when no other thread has it, which moves the payload.
    // Otherwise through the client's publish, which is a send on its bounded command
    // channel: ready at the first poll unless the channel is full. Either way it saves
    // the boxed future of `write_one` on nearly every publish. A send that is not ready
    // has sent nothing (tokio's `Sender::send` is cancel safe, and it is the publish's
    // only wait), so the message goes back to be written by `write_one`.
    // Inline into `Closable`'s, which calls it: as a call of its own, the message moved
    // into it whole.
    #[inline]
    fn try_write_now(&self, message: Message) -> WriteNow {
        if let Ok(mut sink) = self.sink.try_lock() {
            return self.send_now(&mut sink, message);
        }
        let prepared = match self.prepare(&message) {
            Ok(prepared) => prepared,
            Err(e) => return WriteNow::Done(Err(e)),
        };
        // Pinned where it is made and polled there, not through `now_or_never`, which
        // takes the future by value: a copy of all its 700 bytes, about 100 instructions
        // a publish (callgrind).
        let publish = std::pin::pin!(self.publish(prepared));
        match publish.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => WriteNow::Done(result.map_err(|e| e.with_topic(message.stream))),
            Poll::Pending => WriteNow::Wait(message),
        }
    }

    async fn flush(&self) -> Result<()> {
        self.client.flush().await.map_err(|e| connection_error("flush failed", e))
    }
}

#[async_trait]
impl Reader for NatsCore {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    /// The client's connection state: it reconnects by itself, and reads wait meanwhile.
    fn connected(&self) -> Option<bool> {
        Some(self.client.connection_state() == async_nats::connection::State::Connected)
    }

    async fn open(&self, task: &ReadTask, _ready: &ReadySignal) -> Result<Box<dyn Source>> {
        let topic = task.topic.clone();
        let subscriber = match &task.group {
            Some(group) => self.client.queue_subscribe(topic.clone(), group.clone()).await,
            None => self.client.subscribe(topic.clone()).await,
        }
        .map_err(|e| connection_error("subscribe failed", e).with_topic(topic.clone()))?;
        server_round_trip(&self.client).await.map_err(|e| e.with_topic(topic))?;
        Ok(Box::new(CoreSource {
            subscriber,
            topic: TopicName::from(&task.topic),
            group: task.group.as_deref().map(Arc::from),
            content_type: self.implied.content_type.clone(),
        }))
    }
}

/// Waits until the server has processed everything this client sent so far.
///
/// `Client::flush` only empties the local buffer, so a publish from another connection
/// could still overtake a subscription just sent and find no interest. The server
/// handles one connection's commands in order, so once a message published to a fresh
/// inbox of ours comes back, every earlier subscription is in place. (This needs echo,
/// which is on unless a client given to [`NatsCore::from_client`] turned it off.)
async fn server_round_trip(client: &async_nats::Client) -> Result<()> {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.map_err(|e| connection_error("subscribe failed", e))?;
    client.publish(inbox, bytes::Bytes::new()).await.map_err(|e| connection_error("publish failed", e))?;
    client.flush().await.map_err(|e| connection_error("flush failed", e))?;
    let answered = tokio::time::timeout(std::time::Duration::from_secs(10), echo.next()).await;
    let _ = echo.unsubscribe().await;
    match answered {
        Ok(Some(_)) => Ok(()),
        _ => Err(Error::new(ErrorKind::Timeout, "the server did not confirm the subscription within 10 s")
            .with_driver(DRIVER)),
    }
}

struct CoreSource {
    subscriber: async_nats::Subscriber,
    topic: TopicName,
    group: Option<Arc<str>>,
    /// The content type of a message without a `Content-Type` header, if implied.
    content_type: Option<Cow<'static, str>>,
}

impl CoreSource {
    fn incoming(&self, msg: async_nats::Message) -> Incoming {
        let subject = topic_of(&self.topic, &msg.subject);
        let mut message = from_nats(
            subject,
            msg.headers.as_ref(),
            msg.payload,
            || UuidV7Ids.next_id(),
            None,
            self.content_type.as_ref(),
        );
        if let Some(reply) = msg.reply {
            // A request (a Requester's, or any NATS client's): `Publisher::reply` answers
            // it on the subject the server gave.
            if message.headers.get(request::headers::REPLY_TO).is_none() {
                message.headers.insert(request::headers::REPLY_TO, reply.as_str());
            }
            if message.headers.get(request::headers::REQUEST_ID).is_none() {
                let id = message.id.clone();
                message.headers.insert(request::headers::REQUEST_ID, id);
            }
        }
        let position = Position::Queue { partition: None, sequence: None };
        Incoming::new(Delivery::new(message, 1, position, self.group.clone()), CoreSettle)
    }
}

#[async_trait]
impl Source for CoreSource {
    async fn next_batch(&mut self, batch: &mut Vec<Incoming>, max: usize) -> Result<usize> {
        let Some(first) = self.subscriber.next().await else { return Ok(0) };
        batch.push(self.incoming(first));
        let mut n = 1;
        // The client's subscription buffer keeps what is left.
        while n < max.min(MOST_A_FETCH) {
            match self.subscriber.next().now_or_never() {
                Some(Some(msg)) => batch.push(self.incoming(msg)),
                _ => break,
            }
            n += 1;
        }
        Ok(n)
    }

    async fn close(&mut self) -> Result<()> {
        self.subscriber.unsubscribe().await.map_err(|e| connection_error("unsubscribe failed", e))
    }
}

struct CoreSettle;

impl CoreSettle {
    fn outcome(settlement: Settlement) -> Result<()> {
        match settlement {
            Settlement::Ack => Ok(()),
            Settlement::Nack { .. } => Err(Error::new(
                ErrorKind::Unsupported,
                "core NATS is at most once: a nacked message is not delivered again (use JetStream)",
            )
            .with_driver(DRIVER)),
        }
    }
}

#[async_trait]
impl Settle for CoreSettle {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<()> {
        Self::outcome(settlement)
    }

    fn settle_now(&mut self, settlement: Settlement) -> Option<Result<()>> {
        Some(Self::outcome(settlement))
    }
}
