//! What a handler receives: a message plus where and how often it was delivered.

use std::sync::Arc;
use std::time::Duration;

use crate::Message;

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
#[derive(Clone, Debug)]
pub struct Delivery(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    message: Arc<Message>,
    attempt: u32,
    position: Position,
    group: Option<Arc<str>>,
}

impl Delivery {
    /// A delivery of `message`, for drivers. `attempt` counts from 1.
    pub fn new(message: impl Into<Arc<Message>>, attempt: u32, position: Position, group: Option<Arc<str>>) -> Self {
        Self(Arc::new(Inner { message: message.into(), attempt: attempt.max(1), position, group }))
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.0.message
    }

    /// The message, shared.
    pub fn shared_message(&self) -> Arc<Message> {
        Arc::clone(&self.0.message)
    }

    /// Which delivery of this message this is: 1 the first time, then counting up on
    /// each redelivery, as far as the broker tracks it.
    pub fn attempt(&self) -> u32 {
        self.0.attempt
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
    pub fn group(&self) -> Option<&str> {
        self.0.group.as_deref()
    }
}
