//! Publishing typed events and raw messages.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::Either;
use futures::FutureExt;

use crate::{
    context, wire, Codec, Event, EventRegistry, IdFactory, JsonCodec, Message, Result, UuidV7Ids, WriteNow, Writer,
};
use crate::{MessageId, TopicName};

/// Turns typed events into messages and writes them: the topic comes from the
/// [`EventRegistry`], the payload from the [`Codec`], the id from the [`IdFactory`].
/// Cheap to clone; clones share the writer.
pub struct Publisher<C: Codec = JsonCodec> {
    writer: Arc<dyn Writer>,
    registry: Arc<EventRegistry>,
    codec: Arc<C>,
    ids: Arc<dyn IdFactory>,
}

impl<C: Codec> Clone for Publisher<C> {
    fn clone(&self) -> Self {
        Self {
            writer: Arc::clone(&self.writer),
            registry: Arc::clone(&self.registry),
            codec: Arc::clone(&self.codec),
            ids: Arc::clone(&self.ids),
        }
    }
}

impl<C: Codec> fmt::Debug for Publisher<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").field("driver", &self.writer.driver()).finish_non_exhaustive()
    }
}

impl Publisher<JsonCodec> {
    /// A JSON publisher over `writer`, with UUID v7 ids.
    pub fn new(writer: Arc<dyn Writer>, registry: EventRegistry) -> Self {
        Self::with_parts(writer, Arc::new(registry), JsonCodec, Arc::new(UuidV7Ids))
    }
}

impl<C: Codec> Publisher<C> {
    /// A publisher from all of its parts.
    pub fn with_parts(
        writer: Arc<dyn Writer>,
        registry: Arc<EventRegistry>,
        codec: C,
        ids: Arc<dyn IdFactory>,
    ) -> Self {
        Self { writer, registry, codec: Arc::new(codec), ids }
    }

    /// The same publisher (registry, codec, ids) writing through `writer`.
    pub fn with_writer(&self, writer: Arc<dyn Writer>) -> Self {
        Self {
            writer,
            registry: Arc::clone(&self.registry),
            codec: Arc::clone(&self.codec),
            ids: Arc::clone(&self.ids),
        }
    }

    /// The same publisher with another id factory.
    pub fn with_ids(mut self, ids: impl IdFactory) -> Self {
        self.ids = Arc::new(ids);
        self
    }

    /// The writer this publisher writes through, shared: for a
    /// [`DeadLetter`](crate::DeadLetter) or anything else that writes raw messages.
    pub fn writer(&self) -> Arc<dyn Writer> {
        Arc::clone(&self.writer)
    }

    /// The registry.
    pub fn registry(&self) -> &EventRegistry {
        &self.registry
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// Publishes `event` to the topic the registry gives its type. Returns the message id.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<MessageId> {
        self.send(self.encode_to(self.registry.route_of::<E>()?, event)?).await
    }

    /// Publishes `event` to `topic`, whatever the registry says. Returns the message id.
    pub async fn publish_to<E: Event>(&self, topic: &str, event: &E) -> Result<MessageId> {
        self.send(self.encode(topic, event)?).await
    }

    /// Publishes `events` in one write, each to its registered topic. Returns the ids in
    /// order.
    pub async fn publish_batch<E: Event>(&self, events: &[E]) -> Result<Vec<MessageId>> {
        let topic = self.registry.route_of::<E>()?;
        let messages = events.iter().map(|e| self.encode_to(topic, e)).collect::<Result<Vec<_>>>()?;
        let ids = messages.iter().map(|m| m.id.clone()).collect();
        self.writer.write(messages).await?;
        Ok(ids)
    }

    /// Publishes a raw message as it is, filling in its id if empty and the current
    /// correlation id if it has none. Returns the id.
    pub async fn publish_message(&self, mut message: Message) -> Result<MessageId> {
        self.stamp(&mut message);
        self.send(message).await
    }

    /// Writes one stamped message, without a boxed future where the writer can take it at
    /// once; its id.
    ///
    /// Not an `async fn`: one would hold the message (about 200 bytes) in its state from
    /// its call, copied in and out again, where the writer mostly takes it at once. The
    /// message enters a future only when the writer has to wait. So it writes when called,
    /// not when polled: its callers await it at once. With `publish_bytes`
    /// stamping and sending without `publish_message`'s future between, that is two to
    /// three fewer copies a publish (callgrind, the peer bench's counting row).
    ///
    /// The waiting branch is the writer's own boxed future, mapped, rather than an
    /// `async` block around it: the block held the message too, which made every
    /// caller's future that large, copied whole as each caller awaited it, on the path
    /// that does not wait as well.
    fn send(&self, message: Message) -> impl Future<Output = Result<MessageId>> + '_ {
        let id = message.id.clone();
        match self.writer.try_write_now(message) {
            WriteNow::Done(result) => Either::Left(std::future::ready(result.map(|()| id))),
            WriteNow::Wait(message) => {
                Either::Right(self.writer.write_one(message).map(|written| written.map(|()| id)))
            }
        }
    }

    /// Publishes raw messages in one write; see [`Publisher::publish_message`].
    pub async fn publish_messages(&self, mut messages: Vec<Message>) -> Result<Vec<MessageId>> {
        messages.iter_mut().for_each(|m| self.stamp(m));
        let ids = messages.iter().map(|m| m.id.clone()).collect();
        self.writer.write(messages).await?;
        Ok(ids)
    }

    /// Publishes `payload` to `topic` untouched, with `content_type`.
    pub async fn publish_bytes(&self, topic: &str, payload: impl Into<Bytes>, content_type: &str) -> Result<MessageId> {
        // Built in place rather than through `with_content_type` and a `stamp` that takes
        // and returns the message: each of those moves it whole (about 220 bytes, a
        // `memcpy` call each, by callgrind).
        let mut message = Message::new(topic, payload);
        message.set_content_type(content_type);
        self.stamp(&mut message);
        self.send(message).await
    }

    /// The message `publish_to` would write for `event`.
    pub fn encode<E: Event>(&self, topic: &str, event: &E) -> Result<Message> {
        self.encode_to(&TopicName::from(topic), event)
    }

    fn encode_to<E: Event>(&self, topic: &TopicName, event: &E) -> Result<Message> {
        let payload = self.codec.encode(event).map_err(|e| e.with_topic(topic))?;
        let mut message = Message::new(topic, payload);
        message.set_content_type(self.codec.content_type());
        message.key = event.key().map(Bytes::from);
        message.headers = event.headers();
        message.headers.insert_static(wire::EVENT_TYPE, E::TYPE);
        self.stamp(&mut message);
        Ok(message)
    }

    fn stamp(&self, message: &mut Message) {
        if message.id.is_empty() {
            message.id = self.ids.id_at(message.timestamp);
        }
        if !message.headers.contains(wire::CORRELATION_ID) {
            if let Some(id) = context::correlation_id() {
                message.headers.insert(wire::CORRELATION_ID, id);
            }
        }
    }

    /// Waits until everything published so far is on the broker.
    pub async fn flush(&self) -> Result<()> {
        self.writer.flush().await
    }

    /// Flushes and closes the writer.
    pub async fn close(&self) -> Result<()> {
        self.writer.close().await
    }
}
