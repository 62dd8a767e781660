//! How to reach the brokers and how the clients behave.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;

/// Compression of produced batches (`compression.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// No compression. The default, as in librdkafka.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// How a keyed message picks its partition (librdkafka's `partitioner`). Clients that
/// hash keys alike put a key on the same partition, which matters when services in other
/// languages write the same keys and rely on per-key order.
///
/// Keyless messages go to a random partition under each of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Partitioner {
    /// murmur2 of the key: what Apache Kafka's Java client and Kafka Streams pick by
    /// default (and librdkafka's `murmur2_random`). The default.
    #[default]
    Murmur2Random,
    /// CRC32 of the key: librdkafka's own default (`consistent_random`), so that of
    /// confluent-kafka for Python, Go and .NET and of kcat with their default settings.
    ConsistentRandom,
    /// FNV-1a of the key (`fnv1a_random`): Sarama's default.
    Fnv1aRandom,
}

impl Partitioner {
    fn name(self) -> &'static str {
        match self {
            Partitioner::Murmur2Random => "murmur2_random",
            Partitioner::ConsistentRandom => "consistent_random",
            Partitioner::Fnv1aRandom => "fnv1a_random",
        }
    }
}

/// The SASL mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN`: the password travels as it is, so use it over TLS.
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

/// SASL credentials. The password never appears in `Debug` output.
#[derive(Clone)]
pub struct Sasl {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// TLS settings: file locations, as librdkafka takes them. The key password never
/// appears in `Debug` output.
#[derive(Clone, Default)]
pub struct Tls {
    /// CA certificates to verify the brokers with (`ssl.ca.location`); the system's when
    /// `None`.
    pub ca_location: Option<String>,
    /// The client certificate, for mutual TLS (`ssl.certificate.location`).
    pub certificate_location: Option<String>,
    /// The client key (`ssl.key.location`).
    pub key_location: Option<String>,
    /// The client key's password (`ssl.key.password`).
    pub key_password: Option<String>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca_location", &self.ca_location)
            .field("certificate_location", &self.certificate_location)
            .field("key_location", &self.key_location)
            .field("key_password", &self.key_password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Which Kafka group id a read task's consumer group becomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupScope {
    /// `<group>.<topic>`: one Kafka group per group and topic, as the other drivers
    /// scope groups (a JetStream consumer is per group and topic too). A member joining
    /// or leaving rebalances only the consumers of its own topic, which matters when a
    /// service reads many topics under one group name. The default.
    #[default]
    PerTopic,
    /// The group name as given, for groups shared with other Kafka clients or watched by
    /// lag monitors under their own name. Every consumer of the group, whatever its
    /// topic, then rebalances together.
    AsGiven,
}

/// How topics the driver creates are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    /// Partitions of a new topic.
    pub partitions: u32,
    /// Replicas of each partition; `None` leaves it to the broker's default.
    pub replication_factor: Option<u16>,
}

impl Default for TopicSpec {
    fn default() -> Self {
        Self { partitions: 3, replication_factor: None }
    }
}

/// The Kafka driver's configuration: typed options for what services usually set, as
/// public fields (set them with struct update syntax over [`KafkaConfig::new`], as with
/// the other drivers' configurations), and any other librdkafka property through
/// [`KafkaConfig::set`].
///
/// `Debug` output redacts passwords, secrets and keys, also those set as properties.
///
/// ```
/// use std::time::Duration;
/// use tidewater_kafka::{Compression, KafkaConfig};
///
/// let config = KafkaConfig {
///     linger: Duration::from_millis(10),
///     compression: Compression::Zstd,
///     ..KafkaConfig::new("127.0.0.1:9092")
/// }
/// .set("sasl.password", "hunter2");
/// assert!(!format!("{config:?}").contains("hunter2"));
/// ```
#[derive(Clone)]
pub struct KafkaConfig {
    /// The bootstrap brokers, comma-separated `host:port` (`bootstrap.servers`).
    pub brokers: String,
    /// The client id the brokers see (`client.id`). Default `tidewater`.
    pub client_id: String,
    /// How long the producer waits to fill a batch (`linger.ms`). Default 5 ms, as in
    /// librdkafka: a writer's call waits for the broker's acknowledgement, so this is
    /// also the least latency of a single write.
    pub linger: Duration,
    /// The largest batch in bytes (`batch.size`). Default 1,000,000.
    pub batch_bytes: usize,
    /// Compression of batches. Default none.
    pub compression: Compression,
    /// How keys pick partitions. Default [`Partitioner::Murmur2Random`], the Java
    /// client's.
    pub partitioner: Partitioner,
    /// The idempotent producer (`enable.idempotence`): retries never duplicate or
    /// reorder a partition's records. Default on; turn it off for a broker that lacks
    /// it.
    pub idempotent: bool,
    /// How long a produced message may take, retries included, before its write fails
    /// with a timeout (`message.timeout.ms`). Default 30 s.
    pub delivery_timeout: Duration,
    /// How long a metadata, admin or synchronous commit request may take. Default 10 s.
    pub request_timeout: Duration,
    /// How long the group coordinator waits for a silent consumer before it gives the
    /// consumer's partitions to others (`session.timeout.ms`). Default 45 s.
    pub session_timeout: Duration,
    /// How often processed offsets are committed while a reader runs. Offsets are also
    /// committed when partitions are revoked and when the reader stops. Default 1 s.
    pub commit_interval: Duration,
    /// How long a transaction may stay open before the broker aborts it
    /// (`transaction.timeout.ms`). Default 60 s. A transaction a crashed process left
    /// open holds `read_committed` readers back until then, unless a new producer with
    /// the same transactional id starts first (see [`Kafka::kafka_transactions`](crate::Kafka::kafka_transactions)).
    pub transaction_timeout: Duration,
    /// Create topics that do not exist when a writer or reader first uses them, made as
    /// this says. `None` makes an unknown topic an `UnknownTopic` error. Default
    /// `Some` with 3 partitions and the broker's replication factor.
    pub auto_create_topics: Option<TopicSpec>,
    /// Which Kafka group id a task's group becomes. Default [`GroupScope::PerTopic`].
    pub group_scope: GroupScope,
    /// SASL authentication.
    pub sasl: Option<Sasl>,
    /// TLS.
    pub tls: Option<Tls>,
    /// librdkafka properties as they are, for producers, consumers and the admin client
    /// alike; they win over the typed options. Empty by default; see [`KafkaConfig::set`].
    pub properties: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// A configuration for the brokers at `brokers`, with the defaults.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: "tidewater".to_owned(),
            linger: Duration::from_millis(5),
            batch_bytes: 1_000_000,
            compression: Compression::None,
            partitioner: Partitioner::Murmur2Random,
            idempotent: true,
            delivery_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(45),
            commit_interval: Duration::from_secs(1),
            transaction_timeout: Duration::from_secs(60),
            auto_create_topics: Some(TopicSpec::default()),
            group_scope: GroupScope::PerTopic,
            sasl: None,
            tls: None,
            properties: BTreeMap::new(),
        }
    }

    /// Sets any librdkafka property, for producers, consumers and the admin client alike.
    /// It wins over the typed options.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The Kafka group id of `group` reading `topic`.
    pub fn group_id(&self, group: &str, topic: &str) -> String {
        match self.group_scope {
            GroupScope::PerTopic => format!("{group}.{topic}"),
            GroupScope::AsGiven => group.to_owned(),
        }
    }

    /// The properties every client gets: brokers, security, and what was set.
    pub(crate) fn common(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers).set("client.id", &self.client_id);
        let protocol = match (&self.sasl, &self.tls) {
            (None, None) => "plaintext",
            (None, Some(_)) => "ssl",
            (Some(_), None) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(sasl) = &self.sasl {
            let mechanism = match sasl.mechanism {
                SaslMechanism::Plain => "PLAIN",
                SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
                SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            };
            c.set("sasl.mechanism", mechanism)
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        if let Some(tls) = &self.tls {
            let pairs = [
                ("ssl.ca.location", &tls.ca_location),
                ("ssl.certificate.location", &tls.certificate_location),
                ("ssl.key.location", &tls.key_location),
                ("ssl.key.password", &tls.key_password),
            ];
            for (key, value) in pairs {
                if let Some(value) = value {
                    c.set(key, value);
                }
            }
        }
        c
    }

    /// Applies the pass-through properties last, so they win.
    pub(crate) fn finish(&self, mut c: ClientConfig) -> ClientConfig {
        for (key, value) in &self.properties {
            c.set(key, value);
        }
        c
    }

    /// The producer's properties.
    pub(crate) fn producer(&self) -> ClientConfig {
        let mut c = self.common();
        c.set("linger.ms", millis(self.linger))
            .set("batch.size", self.batch_bytes.to_string())
            .set("compression.type", self.compression.name())
            .set("enable.idempotence", self.idempotent.to_string())
            .set("message.timeout.ms", millis(self.delivery_timeout))
            .set("partitioner", self.partitioner.name());
        self.finish(c)
    }

    /// The largest record a producer takes, as librdkafka counts it (see
    /// [`record::wire_size`](crate::record::wire_size)): the `message.max.bytes`
    /// property if set, else librdkafka's default. A value librdkafka cannot read fails
    /// the producer's creation, so what this falls back to for it is never used.
    pub(crate) fn max_message_bytes(&self) -> usize {
        const LIBRDKAFKA_DEFAULT: usize = 1_000_000;
        self.properties.get("message.max.bytes").and_then(|v| v.trim().parse().ok()).unwrap_or(LIBRDKAFKA_DEFAULT)
    }

    /// A transactional producer's properties, under the transactional id `id`.
    pub(crate) fn transactional_producer(&self, id: &str) -> ClientConfig {
        let mut c = self.producer();
        // librdkafka refuses a message timeout longer than the transaction's.
        let delivery = self.delivery_timeout.min(self.transaction_timeout);
        c.set("transactional.id", id)
            .set("transaction.timeout.ms", millis(self.transaction_timeout))
            .set("message.timeout.ms", millis(delivery))
            .set("enable.idempotence", "true");
        c
    }

    /// The admin client's properties.
    pub(crate) fn admin(&self) -> ClientConfig {
        let mut c = self.common();
        // A metadata lookup must not create the topic it asks about.
        c.set("allow.auto.create.topics", "false");
        self.finish(c)
    }

    /// A consumer's properties for `group`, fetching about `prefetch` messages ahead.
    ///
    /// librdkafka keeps its own queue of fetched messages, by default up to 100,000
    /// messages per partition and 64 MiB per consumer, whatever the task's prefetch says:
    /// a slow consumer then holds tens of MiB it will not handle soon. The queue is held
    /// to 8 KiB a prefetched message, at least 2 MiB and at most 64 MiB; a property set
    /// on the configuration wins. The bound is in bytes, not messages: a fetch brings up
    /// to 1 MiB a partition, and a queue of twice that lets the next fetch arrive while
    /// the last is handled. Bounding the count as well (to `prefetch` a partition) left
    /// each partition waiting for a fetch once it ran low, at 0.40-0.47 of raw rdkafka's
    /// throughput against 0.52-0.74 without it (`BENCHMARKS.md`).
    ///
    /// A partition whose queue is full is fetched again only after `fetch.queue.backoff.ms`,
    /// 1,000 ms by librdkafka's default: with a bounded queue that capped a busy consumer
    /// at about 1,000 messages a second. It is 1 ms here, so a drained queue is filled
    /// again at once.
    pub(crate) fn consumer(&self, group: &str, earliest: bool, prefetch: usize) -> ClientConfig {
        let mut c = self.common();
        let kbytes =
            prefetch.saturating_mul(tidewater_core::ReadTask::BYTES_A_PREFETCHED_MESSAGE / 1024).clamp(2048, 65_536);
        c.set("queued.max.messages.kbytes", kbytes.to_string()).set("fetch.queue.backoff.ms", "1");
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("allow.auto.create.topics", "false")
            .set("session.timeout.ms", millis(self.session_timeout))
            // Whether the consumer reaches a broker is told only here (`Reader::connected`).
            .set("statistics.interval.ms", "1000")
            .set("auto.offset.reset", if earliest { "earliest" } else { "latest" });
        self.finish(c)
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

/// Whether a property's value must not be shown.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "jaas", "token", ".pem", "sasl.oauthbearer.config", "ssl.key"]
        .iter()
        .any(|s| key.contains(s))
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "<redacted>" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("linger", &self.linger)
            .field("batch_bytes", &self.batch_bytes)
            .field("compression", &self.compression)
            .field("partitioner", &self.partitioner)
            .field("idempotent", &self.idempotent)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("session_timeout", &self.session_timeout)
            .field("commit_interval", &self.commit_interval)
            .field("auto_create_topics", &self.auto_create_topics)
            .field("group_scope", &self.group_scope)
            .field("sasl", &self.sasl)
            .field("tls", &self.tls)
            .field("properties", &properties)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_options_become_properties_and_set_wins() {
        let config = KafkaConfig {
            sasl: Some(Sasl { mechanism: SaslMechanism::ScramSha512, username: "svc".into(), password: "pw".into() }),
            tls: Some(Tls { ca_location: Some("/ca.pem".into()), ..Tls::default() }),
            compression: Compression::Lz4,
            ..KafkaConfig::new("b:9092")
        }
        .set("linger.ms", "50");
        let p = config.producer();
        assert_eq!(p.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(p.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(p.get("sasl.password"), Some("pw"));
        assert_eq!(p.get("ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(p.get("compression.type"), Some("lz4"));
        assert_eq!(p.get("linger.ms"), Some("50"), "a set property wins over the typed option");
        assert_eq!(p.get("partitioner"), Some("murmur2_random"), "the Java client's, by default");
        let p = KafkaConfig { partitioner: Partitioner::ConsistentRandom, ..config.clone() }.producer();
        assert_eq!(p.get("partitioner"), Some("consistent_random"));
        let c = config.consumer("g", false, 256);
        assert_eq!(c.get("auto.offset.reset"), Some("latest"));
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("2048"), "the task's prefetch bounds the queue");
        assert_eq!(c.get("queued.min.messages"), None, "in bytes alone");
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("1"), "a full queue is not left for a second");
        assert_eq!(config.consumer("g", false, 5_000).get("queued.max.messages.kbytes"), Some("40000"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.group_id("billing", "orders"), "billing.orders");
        let shared = KafkaConfig { group_scope: GroupScope::AsGiven, ..config };
        assert_eq!(shared.group_id("billing", "orders"), "billing");
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let config = KafkaConfig {
            sasl: Some(Sasl { mechanism: SaslMechanism::Plain, username: "svc".into(), password: "s3cret-pw".into() }),
            tls: Some(Tls { key_password: Some("key-pw".into()), ..Tls::default() }),
            ..KafkaConfig::new("b:9092")
        }
        .set("sasl.oauthbearer.client.secret", "oauth-secret")
        .set("ssl.key.pem", "-----BEGIN PRIVATE KEY-----")
        .set("socket.keepalive.enable", "true");
        let shown = format!("{config:?}");
        for secret in ["s3cret-pw", "key-pw", "oauth-secret", "BEGIN PRIVATE KEY"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("socket.keepalive.enable"), "{shown}");
        assert!(shown.contains("svc"), "the user name is no secret: {shown}");
    }
}
