//! What a handler receives: a message plus where and how often it was delivered.

use std::any::Any;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::Message;

mod spares;

/// What became of a delivery whose handler returned `Ok`, for the scheduler's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Processed: the default.
    Processed = 0,
    /// Written to a dead-letter queue ([`Delivery::mark_dead_lettered`]).
    DeadLettered = 1,
    /// Passed over as not for the handler ([`Delivery::mark_skipped`]).
    Skipped = 2,
}

/// How the broker behind a reader settles messages. Every [`Delivery`] says which one it
/// is in, so a handler never has to guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryModel {
    /// Each message is settled on its own (NATS JetStream, Pulsar, the memory driver).
    /// An ack settles this message only; a nack redelivers this message only, while later
    /// messages keep flowing, so a nacked message can overtake nothing but can be overtaken.
    Queue,
    /// Messages are records in a partitioned log (Kafka, StreamBus). Settling means
    /// committing an offset, and a commit settles every record below it in the partition.
    /// A record is committed only once it and all records before it in its partition were
    /// handled, so a slow record holds the partition's commit back. A nack rewinds the
    /// partition to this record, so it and the records after it are delivered again.
    Log,
}

/// Where a delivery sits in its broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// A queue-style delivery. The partition and sequence are reported where the broker
    /// has them (the memory driver does), for diagnostics only: they settle nothing.
    Queue {
        /// The partition, where the broker has one.
        partition: Option<u32>,
        /// The broker's sequence number for the message, where it has one.
        sequence: Option<u64>,
    },
    /// A log record: committing `offset + 1` settles everything up to and including it.
    Log {
        /// The partition of the record.
        partition: u32,
        /// The offset of the record in its partition.
        offset: u64,
    },
}

impl Position {
    /// The delivery model this position belongs to.
    pub fn model(&self) -> DeliveryModel {
        match self {
            Position::Queue { .. } => DeliveryModel::Queue,
            Position::Log { .. } => DeliveryModel::Log,
        }
    }

    /// The partition, where known.
    pub fn partition(&self) -> Option<u32> {
        match *self {
            Position::Queue { partition, .. } => partition,
            Position::Log { partition, .. } => Some(partition),
        }
    }
}

/// How a delivery ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Processed: never deliver it again (queue), or count it towards the commit (log).
    Ack,
    /// Not processed: deliver it again, after `delay` if given and the broker can delay.
    Nack {
        /// How long to wait before the redelivery.
        delay: Option<Duration>,
    },
}

/// One delivery of a message to a handler.
///
/// Cloning is cheap (a reference count), so middleware can keep a delivery across
/// retries and hand it to a dead-letter writer.
#[derive(Clone)]
pub struct Delivery(ManuallyDrop<Arc<Inner>>);

impl std::fmt::Debug for Delivery {
    // As the derived form printed it before the handle was wrapped.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Delivery").field(&*self.0).finish()
    }
}

#[derive(Debug)]
struct Inner {
    /// The message; `None` in an in-place retry, which reads its first delivery's.
    message: Option<DeliveredMessage>,
    /// The handler call this is: the broker's delivery count plus in-place retries.
    attempt: u32,
    /// The broker's delivery count.
    deliveries: u32,
    position: Position,
    group: Option<Arc<str>>,
    /// The delivery the runner handed out, when this one is an in-place retry of it.
    first: Option<Delivery>,
    /// What became of the message: a [`Fate`].
    fate: AtomicU8,
    /// In-place retries made of the first delivery, counted there.
    retries: AtomicU32,
    /// What the driver that made the delivery needs to find it again (see
    /// [`Delivery::with_origin`]).
    origin: Option<Arc<dyn Any + Send + Sync>>,
    /// What the driver noted on it when it dispatched it (see [`DispatchNote`]).
    note: DispatchNote,
}

/// Numbers a driver keeps on a delivery for itself: set as it dispatches the delivery
/// ([`Delivery::set_dispatch`]) and read back as it settles it ([`Delivery::note`]), zero
/// until then. What they mean is the driver's: say, which assignment of its partition the
/// delivery came in and which dispatch of its record it is, which is what tells it from
/// a later dispatch of the same record. With them on the delivery, a source's one
/// [`SharedSettle`](crate::SharedSettle) can settle each delivery, where a
/// [`Settle`](crate::Settle) of its own would be an allocation a delivery.
pub type DispatchNote = [u64; 3];

/// The message a delivery carries: its own (a network driver decodes a record into a
/// message of the delivery's own, and one allocation holds both) or shared with the
/// broker's log and other groups' deliveries (the memory driver). Made by `From`, so
/// [`Delivery::new`] takes a [`Message`] or an `Arc<Message>`.
#[derive(Debug)]
pub struct DeliveredMessage(Held);

#[derive(Debug)]
enum Held {
    Own(Message),
    Shared(Arc<Message>),
}

impl From<Message> for DeliveredMessage {
    fn from(message: Message) -> Self {
        Self(Held::Own(message))
    }
}

impl From<Arc<Message>> for DeliveredMessage {
    fn from(message: Arc<Message>) -> Self {
        Self(Held::Shared(message))
    }
}

impl std::ops::Deref for DeliveredMessage {
    type Target = Message;

    #[inline]
    fn deref(&self) -> &Message {
        match &self.0 {
            Held::Own(message) => message,
            Held::Shared(message) => message,
        }
    }
}

impl Delivery {
    /// A delivery of `message`, for drivers. `attempt` is the broker's delivery count,
    /// from 1.
    #[inline]
    pub fn new(
        message: impl Into<DeliveredMessage>,
        attempt: u32,
        position: Position,
        group: Option<Arc<str>>,
    ) -> Self {
        Self::build(message.into(), attempt, position, group, None)
    }

    /// [`Delivery::new`] with the driver's `origin`: what the driver needs to find the
    /// delivery's consumer again later, for example to commit its position in a
    /// transaction. Shared, not copied, per delivery; [`Delivery::origin`] reads it back.
    pub fn with_origin(
        message: impl Into<DeliveredMessage>,
        attempt: u32,
        position: Position,
        group: Option<Arc<str>>,
        origin: Arc<dyn Any + Send + Sync>,
    ) -> Self {
        Self::build(message.into(), attempt, position, group, Some(origin))
    }

    // Inlined, with `new`: a call of its own took the message (about 200 bytes) by
    // pointer and copied it into the delivery on its stack, and that again into the
    // allocation, three `memcpy` calls a delivery (callgrind, the Kafka reader).
    #[inline]
    fn build(
        message: DeliveredMessage,
        attempt: u32,
        position: Position,
        group: Option<Arc<str>>,
        origin: Option<Arc<dyn Any + Send + Sync>>,
    ) -> Self {
        let attempt = attempt.max(1);
        Self::share(Inner {
            message: Some(message),
            attempt,
            deliveries: attempt,
            position,
            group,
            first: None,
            fate: AtomicU8::new(Fate::Processed as u8),
            retries: AtomicU32::new(0),
            origin,
            note: [0; 3],
        })
    }

    #[inline]
    fn share(inner: Inner) -> Self {
        Self(ManuallyDrop::new(spares::share(inner)))
    }

    /// Sets the attempt, the origin and the driver's note of a delivery its driver made
    /// before it knew them, and has not handed out or cloned yet: a driver can then make
    /// each delivery as it reads its record, where the message would otherwise be moved
    /// whole into a batch and out again before the delivery is made. Returns false,
    /// changing nothing, for a delivery that was cloned.
    ///
    /// ```
    /// use tidewater_core::{Delivery, Message, Position};
    ///
    /// let position = Position::Log { partition: 0, offset: 7 };
    /// let mut delivery = Delivery::new(Message::new("orders", "{}"), 1, position, None);
    /// assert!(delivery.set_dispatch(3, None, [5, 1, 0]));
    /// assert_eq!((delivery.attempt(), delivery.note()), (3, [5, 1, 0]));
    /// let copy = delivery.clone();
    /// assert!(!delivery.set_dispatch(4, None, [6, 2, 0]));
    /// assert_eq!((copy.attempt(), copy.note()), (3, [5, 1, 0]));
    /// ```
    pub fn set_dispatch(
        &mut self,
        attempt: u32,
        origin: Option<Arc<dyn Any + Send + Sync>>,
        note: DispatchNote,
    ) -> bool {
        let Some(inner) = Arc::get_mut(&mut *self.0) else { return false };
        let attempt = attempt.max(1);
        (inner.attempt, inner.deliveries, inner.origin, inner.note) = (attempt, attempt, origin, note);
        true
    }

    /// What the driver noted on the delivery as it dispatched it; see [`DispatchNote`].
    /// An in-place retry has its first delivery's.
    pub fn note(&self) -> DispatchNote {
        self.0.note
    }

    /// The origin the driver gave the delivery, if it is a `T`.
    pub fn origin<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.0.origin.clone().and_then(|origin| origin.downcast().ok())
    }

    /// The same delivery for the next handler call of an in-place retry, its attempt one
    /// higher: for retrying middleware, so that the handler can tell its third call from
    /// its first.
    ///
    /// ```
    /// use tidewater_core::{Delivery, Message, Position};
    ///
    /// let first = Delivery::new(Message::new("orders", "{}"), 1, Position::Queue { partition: None, sequence: None }, None);
    /// let third = first.retried().retried();
    /// assert_eq!((third.attempt(), third.deliveries()), (3, 1));
    /// assert_eq!(first.attempt(), 1);
    /// ```
    pub fn retried(&self) -> Delivery {
        let first = self.0.first.clone().unwrap_or_else(|| self.clone());
        first.0.retries.fetch_add(1, Ordering::Relaxed);
        Self::share(Inner {
            // Read through `first`, which keeps the message.
            message: None,
            attempt: self.0.attempt.saturating_add(1),
            deliveries: self.0.deliveries,
            position: self.0.position,
            group: self.0.group.clone(),
            first: Some(first),
            fate: AtomicU8::new(Fate::Processed as u8),
            retries: AtomicU32::new(0),
            origin: self.0.origin.clone(),
            note: self.0.note,
        })
    }

    /// The message.
    #[inline]
    pub fn message(&self) -> &Message {
        let first = self.0.first.as_ref().unwrap_or(self);
        first.0.message.as_deref().expect("a first delivery keeps its message")
    }

    /// Which handler call for this message this is: 1 the first time, counting up on
    /// each redelivery (as far as the broker tracks it) and on each in-place retry.
    pub fn attempt(&self) -> u32 {
        self.0.attempt
    }

    /// How often the broker delivered this message, this delivery included, as far as it
    /// tracks it; in-place retries do not count.
    pub fn deliveries(&self) -> u32 {
        self.0.deliveries
    }

    /// Where the message sits in its broker.
    pub fn position(&self) -> Position {
        self.0.position
    }

    /// How the broker settles this delivery.
    pub fn model(&self) -> DeliveryModel {
        self.0.position.model()
    }

    /// The consumer group this delivery was made to, if the read task has one.
    #[inline]
    pub fn group(&self) -> Option<&str> {
        self.0.group.as_deref()
    }

    /// Records that the message was written to a dead-letter queue, so that the
    /// scheduler counts it as dead-lettered rather than processed when the handler
    /// returns `Ok`. For dead-letter middleware.
    pub fn mark_dead_lettered(&self) {
        let first = self.0.first.as_ref().unwrap_or(self);
        first.0.fate.store(Fate::DeadLettered as u8, Ordering::Relaxed);
    }

    /// Records that the message was not for this handler (a typed handler's topic also
    /// carries other event types, routed there), so that the scheduler counts it as
    /// skipped rather than processed when the handler returns `Ok`.
    pub fn mark_skipped(&self) {
        let first = self.0.first.as_ref().unwrap_or(self);
        first.0.fate.store(Fate::Skipped as u8, Ordering::Relaxed);
    }

    /// Whether the message was passed over as not for this handler.
    pub fn is_skipped(&self) -> bool {
        self.fate() == Fate::Skipped
    }

    /// What became of the message, read once where the scheduler counts it.
    pub(crate) fn fate(&self) -> Fate {
        let first = self.0.first.as_ref().unwrap_or(self);
        match first.0.fate.load(Ordering::Relaxed) {
            1 => Fate::DeadLettered,
            2 => Fate::Skipped,
            _ => Fate::Processed,
        }
    }

    /// How many in-place retries were made of this delivery so far.
    pub fn retries(&self) -> u32 {
        let first = self.0.first.as_ref().unwrap_or(self);
        first.0.retries.load(Ordering::Relaxed)
    }

    /// Whether the message was dead-lettered during this delivery.
    pub fn is_dead_lettered(&self) -> bool {
        self.fate() == Fate::DeadLettered
    }
}

impl Drop for Delivery {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: taken once, here, and never read again.
        spares::release(unsafe { ManuallyDrop::take(&mut self.0) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_prints_as_its_fields() {
        let position = Position::Queue { partition: None, sequence: None };
        let printed = format!("{:?}", Delivery::new(Message::new("orders", "{}"), 1, position, None));
        assert!(printed.starts_with("Delivery(Inner {"), "{printed}");
        assert!(printed.contains("attempt: 1"), "{printed}");
    }
}
