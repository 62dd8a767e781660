//! The dead-letter queue: where messages go that cannot be processed, and the way back.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tidewater_core::{BoxHandler, Delivery, Handler, HandlerError, Message, Middleware, Writer};

/// Header names on dead-lettered messages.
pub mod headers {
    /// The topic the message was consumed from.
    pub const ORIGINAL_TOPIC: &str = "tw-dlq-original-topic";
    /// The message key as text; a key that is not UTF-8 is written as `hex:` and its
    /// bytes in hex. (The key also stays the DLQ message's own key.)
    pub const ORIGINAL_KEY: &str = "tw-dlq-original-key";
    /// The last error and its causes.
    pub const ERROR: &str = "tw-dlq-error";
    /// `transient` (retries ran out) or `permanent` (retrying could not help).
    pub const RECOVERY: &str = "tw-dlq-recovery";
    /// Handler calls made in all, across retries and redeliveries seen by this process.
    pub const ATTEMPTS: &str = "tw-dlq-attempts";
    /// The first failure, in milliseconds since the Unix epoch.
    pub const FIRST_FAILURE: &str = "tw-dlq-first-failure";
    /// The last failure, in milliseconds since the Unix epoch.
    pub const LAST_FAILURE: &str = "tw-dlq-last-failure";
    /// The consumer group that failed to process it.
    pub const GROUP: &str = "tw-dlq-group";
    /// Every header this module writes, for stripping on redrive.
    pub const ALL: [&str; 8] =
        [ORIGINAL_TOPIC, ORIGINAL_KEY, ERROR, RECOVERY, ATTEMPTS, FIRST_FAILURE, LAST_FAILURE, GROUP];
}

type TopicName = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Moves messages that cannot be processed to a dead-letter topic, then settles the
/// original so the stream moves on.
///
/// A failure goes to the DLQ when it is permanent (bad input, undecodable payload), or
/// when it is transient and this is at least the `max_deliveries`-th delivery. Put
/// [`Retry`](crate::Retry) inside this middleware for in-place retries, or raise
/// `max_deliveries` to let the broker redeliver first.
///
/// The DLQ message keeps the payload, key, id, content type, timestamp and headers, and
/// adds the [`headers`] that say where it came from and why it failed. If writing it
/// fails, the original is **not** settled: the error goes on as a transient failure, the
/// broker delivers the message again, and nothing is lost.
#[derive(Clone)]
pub struct DeadLetter {
    writer: Arc<dyn Writer>,
    topic: TopicName,
    max_deliveries: u32,
    book: moka::sync::Cache<(String, String), Failures>,
}

#[derive(Clone, Copy)]
struct Failures {
    calls: u32,
    first: SystemTime,
}

impl DeadLetter {
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

    /// Dead-letters transient failures only from the `n`-th delivery on (at least 1);
    /// earlier ones are nacked for the broker to redeliver.
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n.max(1);
        self
    }
}

impl Middleware for DeadLetter {
    fn wrap(&self, inner: BoxHandler) -> BoxHandler {
        Arc::new(DeadLetterHandler { inner, config: self.clone() })
    }
}

struct DeadLetterHandler {
    inner: BoxHandler,
    config: DeadLetter,
}

#[async_trait]
impl Handler for DeadLetterHandler {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let err = match self.inner.handle(delivery.clone()).await {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        let now = SystemTime::now();
        let message = delivery.message();
        let group = delivery.group().unwrap_or_default();
        let book_key = (group.to_owned(), message.id.clone());
        let calls = err.attempts().map_or(1, |a| a.count);
        let first = err.attempts().map_or(now, |a| a.first_failure);
        let failures = match self.config.book.get(&book_key) {
            Some(seen) => Failures { calls: seen.calls + calls, first: seen.first.min(first) },
            None => Failures { calls, first },
        };
        if err.is_transient() && delivery.attempt() < self.config.max_deliveries {
            self.config.book.insert(book_key, failures);
            return Err(err);
        }
        let dlq_topic = (self.config.topic)(&message.stream);
        let dead = dead_letter_message(&dlq_topic, message, group, &err, failures, now);
        match self.config.writer.write(vec![dead]).await {
            Ok(()) => {
                self.config.book.invalidate(&book_key);
                tracing::warn!(
                    topic = %message.stream, id = %message.id, dlq = %dlq_topic,
                    attempts = failures.calls, error = %err, "message dead-lettered"
                );
                Ok(())
            }
            Err(write_err) => {
                self.config.book.insert(book_key, failures);
                tracing::error!(
                    topic = %message.stream, id = %message.id, dlq = %dlq_topic, error = %write_err,
                    "dead-lettering failed; the message stays unsettled and will come again"
                );
                Err(HandlerError::transient(format!(
                    "writing to dead-letter topic {dlq_topic} failed ({write_err}) after: {}",
                    err.chain()
                )))
            }
        }
    }
}

fn dead_letter_message(
    dlq_topic: &str,
    message: &Message,
    group: &str,
    err: &HandlerError,
    failures: Failures,
    now: SystemTime,
) -> Message {
    let mut dead = message.clone();
    dead.stream = dlq_topic.to_owned();
    let h = &mut dead.headers;
    h.insert(headers::ORIGINAL_TOPIC, message.stream.as_str());
    if let Some(key) = &message.key {
        let text = match std::str::from_utf8(key) {
            Ok(text) => text.to_owned(),
            Err(_) => format!("hex:{}", key.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        };
        h.insert(headers::ORIGINAL_KEY, text);
    }
    h.insert(headers::ERROR, err.chain());
    h.insert(headers::RECOVERY, if err.is_transient() { "transient" } else { "permanent" });
    h.insert(headers::ATTEMPTS, failures.calls.to_string());
    h.insert(headers::FIRST_FAILURE, epoch_millis(failures.first));
    h.insert(headers::LAST_FAILURE, epoch_millis(now));
    h.insert(headers::GROUP, group);
    dead
}

fn epoch_millis(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis().to_string()
}

/// A handler that publishes dead-lettered messages back to their original topic, without
/// the DLQ headers, keeping id, key, payload and the other headers. Subscribe it to a DLQ
/// topic once the cause is fixed:
///
/// ```no_run
/// # async fn demo(bus: &mut tidewater_core::Bus, writer: std::sync::Arc<dyn tidewater_core::Writer>) {
/// use tidewater_middleware::Redrive;
/// bus.subscribe("orders.dlq", Redrive::new(writer)).group("redrive");
/// # }
/// ```
///
/// A message without the original-topic header is not a dead letter; it fails
/// permanently rather than being guessed at.
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

#[async_trait]
impl Handler for Redrive {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let dead = delivery.message();
        let Some(topic) = dead.headers.get(headers::ORIGINAL_TOPIC) else {
            return Err(HandlerError::permanent(format!(
                "message {} on {} has no {} header; it is not a dead letter",
                dead.id,
                dead.stream,
                headers::ORIGINAL_TOPIC
            )));
        };
        let mut again = dead.clone();
        again.stream = topic.to_owned();
        for name in headers::ALL {
            again.headers.remove(name);
        }
        self.writer.write(vec![again]).await?;
        Ok(())
    }
}
