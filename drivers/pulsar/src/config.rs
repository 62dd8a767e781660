//! How to reach the broker and how producers and consumers behave.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pulsar::compression::{self, Compression as Codec};
use pulsar::consumer::DeadLetterPolicy;
use pulsar::message::proto::command_subscribe::SubType;

/// How a group's members share a subscription. Pulsar calls a consumer group a
/// subscription; its type says who gets what.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubscriptionType {
    /// Competing consumers: every member gets some of the messages, in any order across
    /// members. The default, as in Pulsar. Per-key order holds within one member.
    #[default]
    Shared,
    /// Competing consumers, each key on one member, so per-key order holds across
    /// members too. Writers to such a topic should turn batching off
    /// ([`PulsarConfig::batching`] `None`): a batch goes whole to the member of its
    /// first key, as in every Pulsar client without key-based batching.
    KeyShared,
    /// One member at a time; a second one is refused.
    Exclusive,
    /// One active member; the others take over when it goes.
    Failover,
}

impl SubscriptionType {
    pub(crate) fn sub_type(self) -> SubType {
        match self {
            SubscriptionType::Shared => SubType::Shared,
            SubscriptionType::KeyShared => SubType::KeyShared,
            SubscriptionType::Exclusive => SubType::Exclusive,
            SubscriptionType::Failover => SubType::Failover,
        }
    }
}

/// Producer batching: a batch is sent when it holds `max_messages` or `max_bytes`, or
/// `linger` after its first message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Messages per batch. Default 1,000.
    pub max_messages: u32,
    /// Bytes per batch. Default 128 KiB (Pulsar's default).
    pub max_bytes: usize,
    /// How long a batch waits for more messages. Default 5 ms.
    pub linger: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Self { max_messages: 1000, max_bytes: 128 * 1024, linger: Duration::from_millis(5) }
    }
}

/// Compression of produced messages. Consumers read every codec whatever this says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// None, the default.
    #[default]
    None,
    /// LZ4.
    Lz4,
    /// zlib.
    Zlib,
    /// Zstandard.
    Zstd,
    /// Snappy.
    Snappy,
}

impl Compression {
    pub(crate) fn codec(self) -> Option<Codec> {
        match self {
            Compression::None => None,
            Compression::Lz4 => Some(Codec::Lz4(compression::CompressionLz4::default())),
            Compression::Zlib => Some(Codec::Zlib(compression::CompressionZlib::default())),
            Compression::Zstd => Some(Codec::Zstd(compression::CompressionZstd::default())),
            Compression::Snappy => Some(Codec::Snappy(compression::CompressionSnappy::default())),
        }
    }
}

/// The broker's dead-letter policy: after `max_deliveries` deliveries of a message, the
/// consumer moves it to a dead-letter topic instead of handing it out again.
///
/// The defaults match the dead-letter middleware: the topic is `<topic>.dlq`, and a
/// message read from it carries the middleware's headers (original topic, recovery,
/// error), so one consumer of `orders.dlq` and `Redrive` handle letters from both.
/// Use the middleware when the handler knows a failure is permanent (it dead-letters at
/// once, with the error); use this policy for messages whose deliveries time out or
/// crash the consumer, where no handler gets to decide.
#[derive(Clone)]
pub struct DeadLetter {
    /// Deliveries before a message goes to the dead-letter topic (at least 1).
    pub max_deliveries: u32,
    /// The dead-letter topic for a source topic. Default `<topic>.dlq`.
    pub topic: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

impl DeadLetter {
    /// Dead-letters after `max_deliveries` deliveries, to `<topic>.dlq`.
    pub fn after(max_deliveries: u32) -> Self {
        Self { max_deliveries: max_deliveries.max(1), topic: Arc::new(|topic: &str| format!("{topic}.dlq")) }
    }

    /// Names the dead-letter topic for a source topic.
    pub fn topic_name(mut self, name: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.topic = Arc::new(name);
        self
    }

    pub(crate) fn policy(&self, topic: &str, namespace: &str) -> DeadLetterPolicy {
        DeadLetterPolicy {
            // The pulsar crate hands a message out while its redelivery count is below
            // this, so it is the number of deliveries.
            max_redeliver_count: self.max_deliveries.max(1) as usize,
            dead_letter_topic: format!("{namespace}{}", (self.topic)(topic)),
        }
    }
}

impl fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("max_deliveries", &self.max_deliveries)
            .field("topic", &(self.topic)("<topic>"))
            .finish()
    }
}

/// TLS for `pulsar+ssl://` URLs.
#[derive(Clone, Debug)]
pub struct Tls {
    /// PEM certificates to trust besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. For tests only.
    pub allow_insecure: bool,
    /// Check that the certificate names the host. Default on.
    pub verify_hostname: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Self::new()
    }
}

impl Tls {
    /// Verified TLS: the system's roots, hostname checked.
    pub fn new() -> Self {
        Self { ca_file: None, allow_insecure: false, verify_hostname: true }
    }

    /// Trusts the CA certificates in `path` too.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }
}

/// Authentication. The token never appears in `Debug` output.
#[derive(Clone)]
pub enum Auth {
    /// A JWT, as Pulsar's token authentication expects.
    Token(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// How to reach Pulsar and how clients behave.
#[derive(Clone, Debug)]
pub struct PulsarConfig {
    /// `pulsar://host:6650` or `pulsar+ssl://host:6651`.
    pub url: String,
    /// Where short topic names live. Default `persistent://public/default/`.
    pub namespace: String,
    /// The broker's admin (web service) URL, `http://host:8080`, for
    /// [`Driver::admin`](tidewater_core::Driver::admin): Pulsar creates, deletes and lists
    /// topics only through it. Default none, which makes admin calls a `Config` error.
    pub admin_url: Option<String>,
    /// Authentication, if the broker wants it.
    pub auth: Option<Auth>,
    /// TLS settings for `pulsar+ssl://` URLs.
    pub tls: Option<Tls>,
    /// Producer batching; `None` sends each message on its own. Default on.
    pub batching: Option<Batching>,
    /// Compression of produced messages. Default none.
    pub compression: Compression,
    /// The largest payload a writer sends; larger ones are a `TooLarge` error rather
    /// than a broker error that closes the connection. Default 5 MiB, Pulsar's
    /// `maxMessageSize`.
    pub max_message_bytes: usize,
    /// How a group's members share its subscription. Default Shared.
    pub subscription: SubscriptionType,
    /// Messages a consumer fetches ahead, a partition: its flow permits, and what the
    /// pulsar crate's queue holds. Default 1,000.
    ///
    /// Keep it at or above the most messages a producer puts in one batch (Pulsar's
    /// producers batch up to 1,000 by default, and tidewater's writer up to 1,000 or
    /// 128 KiB): the broker sends a batch whole, and to a consumer with fewer permits
    /// than a batch holds it dispatches at a fraction of its pace. With batches of 128
    /// messages, the raw pulsar crate read 18,203-25,576 msg/s with 130-1,000 permits and
    /// 4,501-4,556 with 64-100 (`BENCHMARKS.md`). A reader that receives a batch larger
    /// than this warns once. Past that floor, a smaller queue holds less: a group member
    /// whose handlers are stuck can hold up to this many of a Shared subscription's
    /// messages a partition.
    pub receiver_queue: u32,
    /// Redeliver a delivery left unsettled this long (Pulsar's ack timeout). Default
    /// none: a slow handler is never redelivered under itself.
    pub ack_timeout: Option<Duration>,
    /// The delay of a nack that names none. Default none: redelivered at once.
    pub nack_delay: Duration,
    /// The broker's dead-letter policy. Default none.
    pub dead_letter: Option<DeadLetter>,
    /// How long connecting and each request may take. Default 10 s.
    pub request_timeout: Duration,
}

impl PulsarConfig {
    /// The defaults, for the broker at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            namespace: "persistent://public/default/".to_owned(),
            admin_url: None,
            auth: None,
            tls: None,
            batching: Some(Batching::default()),
            compression: Compression::None,
            max_message_bytes: 5 * 1024 * 1024,
            subscription: SubscriptionType::Shared,
            receiver_queue: 1000,
            ack_timeout: None,
            nack_delay: Duration::ZERO,
            dead_letter: None,
            request_timeout: Duration::from_secs(10),
        }
    }

    /// With the admin (web service) URL, `http://host:8080`.
    pub fn admin_url(mut self, url: impl Into<String>) -> Self {
        self.admin_url = Some(url.into());
        self
    }

    /// With token authentication.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Some(Auth::Token(token.into()));
        self
    }

    /// The full Pulsar name of tidewater topic `topic`.
    pub(crate) fn full_topic(&self, topic: &str) -> String {
        format!("{}{topic}", self.namespace)
    }
}
