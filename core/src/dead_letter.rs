//! The dead-letter queue: where messages go that cannot be processed, and the way back.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::{
    unix_time, Around, Delivery, ErrorKind, Handler, HandlerError, Inner, Message, MessageId, Position, Writer,
};

/// Header names on dead-lettered messages.
pub mod headers {
    /// The topic the message was consumed from.
    pub const ORIGINAL_TOPIC: &str = "tw-dlq-original-topic";
    /// The message key as text; a key that is not UTF-8 is written as `hex:` and its
    /// bytes in hex. (The key also stays the DLQ message's own key.)
    pub const ORIGINAL_KEY: &str = "tw-dlq-original-key";
    /// The last error and its causes, cut after its first
    /// [`ERROR_MAX_BYTES`](super::DeadLetter::ERROR_MAX_BYTES) bytes with a note of how
    /// many were left out.
    pub const ERROR: &str = "tw-dlq-error";
    /// `transient` (retries ran out) or `permanent` (retrying could not help).
    pub const RECOVERY: &str = "tw-dlq-recovery";
    /// Handler calls made in all, across retries and redeliveries seen by this process.
    pub const ATTEMPTS: &str = "tw-dlq-attempts";
    /// The first failure, in milliseconds since the Unix epoch.
    pub const FIRST_FAILURE: &str = "tw-dlq-first-failure";
    /// The last failure, in milliseconds since the Unix epoch.
    pub const LAST_FAILURE: &str = "tw-dlq-last-failure";
    /// When the original message was created (its own timestamp), in milliseconds since
    /// the Unix epoch. The dead letter itself is stamped with the time it was written.
    pub const ORIGINAL_TIMESTAMP: &str = "tw-dlq-original-timestamp";
    /// The consumer group that failed to process it.
    pub const GROUP: &str = "tw-dlq-group";
    /// Where the original sits in its broker (`partition 2 offset 41`, `sequence 17`),
    /// where the broker says.
    pub const ORIGINAL_POSITION: &str = "tw-dlq-original-position";
    /// Set when the payload was left out because the dead letter with it was larger than
    /// the broker takes: the original payload's size in bytes. The original is then only
    /// where [`ORIGINAL_POSITION`] says, for as long as the broker keeps it, and
    /// [`Redrive`](crate::Redrive) refuses such a dead letter rather than write back an
    /// empty message.
    pub const PAYLOAD_DROPPED: &str = "tw-dlq-payload-dropped";
    /// Set by [`Redrive`](crate::Redrive) on the message it writes back, and not
    /// stripped: the dead letter's last failure, in milliseconds since the Unix epoch.
    /// It tells this write of the message from its original publish and from other
    /// redrives, for brokers that drop a repeated message id as a duplicate (JetStream,
    /// within its duplicate window).
    pub const REDRIVEN: &str = "tw-redriven";
    /// Every header a dead letter carries, for stripping on redrive.
    pub const ALL: [&str; 11] = [
        ORIGINAL_TOPIC,
        ORIGINAL_KEY,
        ERROR,
        RECOVERY,
        ATTEMPTS,
        FIRST_FAILURE,
        LAST_FAILURE,
        ORIGINAL_TIMESTAMP,
        GROUP,
        ORIGINAL_POSITION,
        PAYLOAD_DROPPED,
    ];
}

type TopicFor = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Moves messages that cannot be processed to a dead-letter topic, then settles the
/// original so the stream moves on.
///
/// A failure goes to the DLQ when it is permanent (bad input, undecodable payload), or
/// when it is transient and this is at least the `max_deliveries`-th delivery. Put
/// `tidewater_middleware::Retry` inside this middleware for in-place retries, or raise
/// `max_deliveries` to let the broker redeliver first.
///
/// The DLQ message keeps the payload, key, id, content type and headers, and adds the
/// [`headers`] that say where it came from, when it was created and why it failed. It is
/// stamped with the time it is written, not the original's: a broker that expires
/// messages by their own timestamp (Kafka's time retention, on create time) would
/// otherwise delete the dead letter of a message older than the dead-letter topic's
/// retention at its next check, minutes after writing it. If writing it
/// fails, the original is **not** settled and nothing is lost: a failure that may pass
/// (the broker is down) goes on as a transient error, one that cannot (the DLQ topic
/// does not exist, the name is invalid) as a permanent one, and either way the message
/// comes again after the task's growing nack delay. A dead letter too large for the
/// broker only because of the added headers is written once more without its payload,
/// with [`headers::PAYLOAD_DROPPED`] and [`headers::ORIGINAL_POSITION`] saying so and where
/// the original is, so that a message that can never be dead-lettered whole still
/// leaves the stream.
///
/// A [`Bus`](crate::Bus) dead-letters to `<topic>.dlq` by default; add this middleware
/// yourself to choose the topic or `max_deliveries`:
///
/// ```
/// # fn demo(bus: &mut tidewater_core::Bus) {
/// use tidewater_core::DeadLetter;
///
/// let dlq = DeadLetter::new(bus.writer()).max_deliveries(5).topic_name(|topic| format!("dead.{topic}"));
/// bus.with_middleware(dlq);
/// # }
/// ```
#[derive(Clone)]
pub struct DeadLetter {
    writer: Arc<dyn Writer>,
    topic: TopicFor,
    max_deliveries: u32,
    book: moka::sync::Cache<(String, MessageId), Failures>,
}

#[derive(Clone, Copy)]
struct Failures {
    calls: u32,
    first: SystemTime,
}

impl DeadLetter {
    /// The most of an error's text that [`headers::ERROR`] carries. An error that quotes
    /// a whole response body would otherwise make a dead letter larger than the broker
    /// takes even without its payload, and its message would come back for good.
    pub const ERROR_MAX_BYTES: usize = 8 * 1024;

    /// Dead-letters through `writer` to `<topic>.dlq`, at the first failure that reaches it.
    pub fn new(writer: Arc<dyn Writer>) -> Self {
        Self {
            writer,
            topic: Arc::new(|topic: &str| format!("{topic}.dlq")),
            max_deliveries: 1,
            book: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(3600)).build(),
        }
    }

    /// Names the DLQ topic for a source topic.
    pub fn topic_name(mut self, name: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.topic = Arc::new(name);
        self
    }

    /// Dead-letters permanent failures only; transient ones are always given back for
    /// the broker to redeliver (after the task's growing nack delay). What a
    /// [`Bus`](crate::Bus) uses by default.
    pub fn permanent_only(self) -> Self {
        self.max_deliveries(u32::MAX)
    }

    /// Dead-letters transient failures only from the `n`-th delivery by the broker on (at
    /// least 1; see [`Delivery::deliveries`]); earlier ones are nacked for the broker to
    /// redeliver.
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n.max(1);
        self
    }
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter")
            .field("writer", &self.writer.driver())
            .field("max_deliveries", &self.max_deliveries)
            .finish_non_exhaustive()
    }
}

impl Around for DeadLetter {
    async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
        match next.run(delivery.clone()).await {
            Ok(()) => Ok(()),
            // Boxed, so that the success path's future does not carry the failure path's
            // state (a dead-letter write) inside it.
            Err(err) => Box::pin(self.dispose(&delivery, err)).await,
        }
    }

    fn dead_letters(&self) -> bool {
        true
    }
}

impl DeadLetter {
    /// What becomes of a failed delivery: `Ok` once it is in the dead-letter topic (the
    /// original is then settled), the error again when it is to be redelivered.
    pub(crate) async fn dispose(&self, delivery: &Delivery, err: HandlerError) -> Result<(), HandlerError> {
        // A delivery let go at a stop was not processed, nor did it fail: it comes again.
        if err.is_stopping() && crate::shutdown::stop_requested() {
            return Err(err);
        }
        let now = SystemTime::now();
        let message = delivery.message();
        let group = delivery.group().unwrap_or_default();
        let book_key = (group.to_owned(), message.id.clone());
        let calls = err.attempts().map_or(1, |a| a.count);
        let first = err.attempts().map_or(now, |a| a.first_failure);
        let failures = match self.book.get(&book_key) {
            Some(seen) => Failures { calls: seen.calls + calls, first: seen.first.min(first) },
            None => Failures { calls, first },
        };
        if err.is_transient() && delivery.deliveries() < self.max_deliveries {
            self.book.insert(book_key, failures);
            return Err(err);
        }
        let dlq_topic = (self.topic)(&message.stream);
        let dead = dead_letter_message(&dlq_topic, delivery, group, &err, failures, now);
        let written = match self.writer.write(vec![dead]).await {
            Err(too_large) if too_large.kind() == ErrorKind::TooLarge => {
                let mut light = dead_letter_message(&dlq_topic, delivery, group, &err, failures, now);
                light.headers.insert(headers::PAYLOAD_DROPPED, message.payload.len().to_string());
                light.payload = bytes::Bytes::new();
                tracing::warn!(
                    topic = %message.stream, id = %message.id, dlq = %dlq_topic, error = %too_large,
                    "dead letter too large; writing it without its payload"
                );
                self.writer.write(vec![light]).await
            }
            other => other,
        };
        match written {
            Ok(()) => {
                self.book.invalidate(&book_key);
                delivery.mark_dead_lettered();
                tracing::warn!(
                    topic = %message.stream, id = %message.id, dlq = %dlq_topic,
                    attempts = failures.calls, error = %err, "message dead-lettered"
                );
                Ok(())
            }
            Err(write_err) => {
                self.book.insert(book_key, failures);
                tracing::error!(
                    topic = %message.stream, id = %message.id, dlq = %dlq_topic, error = %write_err,
                    "dead-lettering failed; the message stays unsettled and will come again"
                );
                let failure =
                    format!("writing to dead-letter topic {dlq_topic} failed ({write_err}) after: {}", err.chain());
                Err(if write_err.is_retryable() {
                    HandlerError::transient(failure)
                } else {
                    HandlerError::permanent(failure)
                })
            }
        }
    }
}

fn dead_letter_message(
    dlq_topic: &str,
    delivery: &Delivery,
    group: &str,
    err: &HandlerError,
    failures: Failures,
    now: SystemTime,
) -> Message {
    let message = delivery.message();
    let mut dead = message.clone();
    dead.stream = dlq_topic.into();
    dead.timestamp = now;
    let h = &mut dead.headers;
    h.insert(headers::ORIGINAL_TOPIC, message.stream.as_str());
    h.insert(headers::ORIGINAL_TIMESTAMP, unix_time::millis(message.timestamp).to_string());
    if let Some(key) = &message.key {
        let text = match std::str::from_utf8(key) {
            Ok(text) => text.to_owned(),
            Err(_) => format!("hex:{}", key.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        };
        h.insert(headers::ORIGINAL_KEY, text);
    }
    h.insert(headers::ERROR, at_most(err.chain(), DeadLetter::ERROR_MAX_BYTES));
    h.insert(headers::RECOVERY, if err.is_transient() { "transient" } else { "permanent" });
    h.insert(headers::ATTEMPTS, failures.calls.to_string());
    h.insert(headers::FIRST_FAILURE, unix_time::millis(failures.first).to_string());
    h.insert(headers::LAST_FAILURE, unix_time::millis(now).to_string());
    h.insert(headers::GROUP, group);
    let position = match delivery.position() {
        Position::Log { partition, offset } => Some(format!("partition {partition} offset {offset}")),
        Position::Queue { partition: Some(partition), sequence: Some(sequence) } => {
            Some(format!("partition {partition} sequence {sequence}"))
        }
        Position::Queue { partition: None, sequence: Some(sequence) } => Some(format!("sequence {sequence}")),
        Position::Queue { sequence: None, .. } => None,
    };
    if let Some(position) = position {
        h.insert(headers::ORIGINAL_POSITION, position);
    }
    dead
}

/// `text` cut to its first `max` bytes or fewer (at a character's boundary) with a note of
/// what was left out, or whole when it fits.
fn at_most(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let left_out = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("... ({left_out} bytes more)"));
    text
}

/// A handler that publishes dead-lettered messages back to their original topic, without
/// the DLQ headers, keeping id, key, payload and the other headers. The message written
/// back is stamped with the time of the redrive (the original's time is in the dead
/// letter's [`headers::ORIGINAL_TIMESTAMP`]; see [`DeadLetter`] for why) and carries
/// [`headers::REDRIVEN`]. Subscribe it to a DLQ topic once the cause is fixed:
///
/// ```no_run
/// # async fn demo(bus: &mut tidewater_core::Bus, writer: std::sync::Arc<dyn tidewater_core::Writer>) {
/// use tidewater_core::Redrive;
/// bus.subscribe("orders.dlq", Redrive::new(writer)).group("redrive");
/// # }
/// ```
///
/// A message without the original-topic header is not a dead letter; it fails
/// permanently rather than being guessed at. So does a dead letter written without its
/// payload ([`headers::PAYLOAD_DROPPED`]): written back, it would be an empty message
/// under the original's id, so it stays where it is for its original to be published
/// again from where it came from. So does one whose original topic is not a valid
/// name. ([`RedriveRefusal::of`] tells these three apart without writing.) So does one
/// whose write is refused for the
/// dead letter's own sake ([`ErrorKind::refuses_the_message`]: its original topic no
/// longer exists where topics are not made on first use, say): with the bus's default dead
/// letter it moves on to the dead-letter topic's own, rather than coming back after each
/// nack delay for good. Any other refusal is the writer's or the broker's, not the dead
/// letter's (the broker is down, the writer is closed because the service is stopping,
/// writing to the topic is not authorized), and would refuse every dead letter alike: it
/// fails transiently, so the dead letters stay where they are until the cause is fixed,
/// as an outbox relay keeps its rows.
#[derive(Clone)]
pub struct Redrive {
    writer: Arc<dyn Writer>,
}

impl Redrive {
    /// Redrives through `writer`.
    pub fn new(writer: Arc<dyn Writer>) -> Self {
        Self { writer }
    }
}

/// Why [`Redrive`] would not write a message back, known from the message alone: what a
/// dry run of a redrive reports without writing anything. A write can still be refused
/// by the broker (a topic that no longer exists where topics are not made on first use).
///
/// ```
/// use tidewater_core::dead_letter::{headers, RedriveRefusal};
/// use tidewater_core::Message;
///
/// let dead = Message::new("orders.dlq", "{}").with_header(headers::ORIGINAL_TOPIC, "orders");
/// assert!(RedriveRefusal::of(&dead).is_none());
/// let plain = Message::new("orders.dlq", "{}");
/// assert!(matches!(RedriveRefusal::of(&plain), Some(RedriveRefusal::NotADeadLetter)));
/// let emptied = dead.clone().with_header(headers::PAYLOAD_DROPPED, "1800");
/// assert!(matches!(RedriveRefusal::of(&emptied), Some(RedriveRefusal::PayloadDropped)));
/// let typo = Message::new("orders.dlq", "{}").with_header(headers::ORIGINAL_TOPIC, "or ders");
/// assert_eq!(RedriveRefusal::of(&typo).unwrap().to_string(), "invalid original topic");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum RedriveRefusal {
    /// It has no [`headers::ORIGINAL_TOPIC`]: it is not a dead letter, and where it
    /// belongs is not guessed at.
    NotADeadLetter,
    /// It was written without its payload ([`headers::PAYLOAD_DROPPED`]): written back,
    /// it would be an empty message under the original's id.
    PayloadDropped,
    /// Its original topic's name is one no broker takes ([`crate::names::check_topic`]'s
    /// error): a header written or edited by hand.
    InvalidTopic(crate::Error),
}

impl RedriveRefusal {
    /// Why [`Redrive`] would refuse `dead`, or `None` when it would write it back.
    pub fn of(dead: &Message) -> Option<Self> {
        Self::check(dead).err()
    }

    /// The topic [`Redrive`] would write `dead` back to, or why it would not.
    fn check(dead: &Message) -> Result<&str, Self> {
        let topic = dead.headers.get(headers::ORIGINAL_TOPIC).ok_or(Self::NotADeadLetter)?;
        if dead.headers.contains(headers::PAYLOAD_DROPPED) {
            return Err(Self::PayloadDropped);
        }
        crate::names::check_topic(topic).map_err(Self::InvalidTopic)?;
        Ok(topic)
    }
}

/// A few words, for a line per dead letter: `not a dead letter`, `written without its
/// payload`, `invalid original topic`.
impl std::fmt::Display for RedriveRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotADeadLetter => "not a dead letter",
            Self::PayloadDropped => "written without its payload",
            Self::InvalidTopic(_) => "invalid original topic",
        })
    }
}

impl Handler for Redrive {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let dead = delivery.message();
        let topic = match RedriveRefusal::check(dead) {
            Ok(topic) => topic,
            Err(RedriveRefusal::NotADeadLetter) => {
                return Err(HandlerError::permanent(format!(
                    "message {} on {} has no {} header; it is not a dead letter",
                    dead.id,
                    dead.stream,
                    headers::ORIGINAL_TOPIC
                )))
            }
            Err(RedriveRefusal::PayloadDropped) => {
                let size = dead.headers.get(headers::PAYLOAD_DROPPED).unwrap_or_default();
                let topic = dead.headers.get(headers::ORIGINAL_TOPIC).unwrap_or_default();
                return Err(HandlerError::permanent(format!(
                    "dead letter {} on {} was written without its payload of {size} bytes, too large for {}; \
                     written back to {topic} it would be an empty message: publish the original again from its \
                     source",
                    dead.id, dead.stream, dead.stream
                )));
            }
            Err(RedriveRefusal::InvalidTopic(err)) => return Err(HandlerError::permanent(err)),
        };
        let failed_at = dead
            .headers
            .get(headers::LAST_FAILURE)
            .map_or_else(|| unix_time::millis(dead.timestamp).to_string(), str::to_owned);
        let mut again = dead.clone();
        again.stream = topic.into();
        // Dead letters are redriven days later, often after the original topic's time
        // retention: stamped with their old time, Kafka would delete them at its next
        // retention check, before the topic's readers got to them.
        again.timestamp = SystemTime::now();
        for name in headers::ALL {
            again.headers.remove(name);
        }
        again.headers.insert(headers::REDRIVEN, failed_at);
        self.writer.write(vec![again]).await.map_err(|err| match err.kind().refuses_the_message() {
            true => HandlerError::permanent(err),
            false => HandlerError::transient(err),
        })
    }
}
