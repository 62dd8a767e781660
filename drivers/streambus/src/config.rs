//! How the driver connects, batches, reads and degrades.

use std::sync::Arc;
use std::time::Duration;

use crate::offsets::{MemoryOffsets, OffsetStore};
use crate::ProduceInterceptor;

/// Which protocol generation to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Generation {
    /// Probe the broker once on connect: a later broker answers FindCoordinator, a
    /// v1.0.x broker closes the connection on it.
    #[default]
    Detect,
    /// A v1.0.x broker: request types 0x01–0x07 only.
    V1,
    /// A later broker: groups, offsets, transactions.
    Later,
}

/// Whether message metadata travels in a value envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Envelope {
    /// On against a v1.0.x broker (which drops headers and timestamps), off against a
    /// later one (which stores them).
    #[default]
    Auto,
    /// Always wrap values: id, headers, content type and time survive any broker.
    Always,
    /// Never wrap: values are written as they are, for topics shared with plain
    /// StreamBus clients. On a v1.0.x broker the id, headers, content type and
    /// time are then lost; readers give such records the id `topic-partition-offset`
    /// and the time they were fetched.
    Never,
}

/// How consumer group ids are formed from a read task's group name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GroupScope {
    /// `<group>.<topic>`: each topic's members rebalance on their own, as the other
    /// tidewater drivers scope groups. The default.
    #[default]
    PerTopic,
    /// The group name as given.
    AsGiven,
}

/// Retries of failed requests: exponential back-off from `initial` doubling up to `max`,
/// for as long as `deadline` allows. The default rides out a broker restart: a StreamBus
/// broker takes 3-6 s to come back after a crash with its log replayed.
///
/// A request that fails past the deadline fails with an error that names the deadline;
/// its source is the last failure.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// How long after the first try a request may still be tried again. Zero turns
    /// retries off. Default 30 s.
    pub deadline: Duration,
    /// The first wait. Default 100 ms.
    pub initial: Duration,
    /// The longest wait. Default 2 s.
    pub max: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `n` (from 1).
    pub fn delay(&self, n: u32) -> Duration {
        self.initial.saturating_mul(1 << n.saturating_sub(1).min(16)).min(self.max)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { deadline: Duration::from_secs(30), initial: Duration::from_millis(100), max: Duration::from_secs(2) }
    }
}

/// The driver's settings. [`StreamBusConfig::new`] gives the defaults for one broker.
#[derive(Clone)]
pub struct StreamBusConfig {
    /// The broker, `host:port`. StreamBus brokers share no data, so one driver talks to
    /// one broker (group and transaction coordinators may name another).
    pub broker: String,
    /// Sent in JoinGroup.
    pub client_id: String,
    /// Which protocol generation to speak.
    pub generation: Generation,
    /// Connections per broker address. A request that finds them all busy waits up to
    /// `acquire_timeout` for one.
    pub pool_size: usize,
    /// How long a request waits for a free connection before it fails with `Busy`.
    pub acquire_timeout: Duration,
    /// How long dialing may take.
    pub connect_timeout: Duration,
    /// How long a request may wait for its response. The connection is dropped after a
    /// timeout, since its response may still come.
    pub request_timeout: Duration,
    /// Pooled connections idle this long are closed. Must stay under the broker's 30 s
    /// read deadline: a connection idle past it is never answered again and costs the
    /// broker a spinning goroutine.
    pub idle_close: Duration,
    /// Retries of requests that failed on the connection or with a retryable code.
    pub retry: RetryPolicy,
    /// Whether Produce is retried too. Produce has no idempotence on the wire: a retry
    /// after a timeout or a broken connection can write the batch twice. On by default
    /// (at least once); pair it with the dedup middleware on the read side.
    pub retry_produce: bool,
    /// How long a batch that gathered while its partition's previous request was in
    /// flight may wait for more records once that request returns (unless it is full).
    /// A write to a partition with nothing in flight is sent at once whatever this
    /// says. Default zero: batches grow with the load alone.
    pub linger: Duration,
    /// A batch is sent when its records reach this many bytes.
    pub batch_bytes: usize,
    /// A batch is sent when it holds this many records.
    pub batch_records: usize,
    /// The most key and value bytes a fetch asks for; kept far below the 10 MiB frame
    /// limit (the broker closes the connection when a response would exceed it). A
    /// reader asks for 8 KiB a record of its task's prefetch, up to this.
    pub fetch_max_bytes: u32,
    /// The longest pause between empty fetches. Brokers answer at once, empty or not,
    /// so readers poll, doubling the pause from 1 ms up to this.
    pub fetch_idle_max: Duration,
    /// Partitions of topics the driver creates. `None`: writing to or reading from an
    /// unknown topic fails with `UnknownTopic` (instead of the broker quietly creating
    /// it with one partition).
    pub auto_create_partitions: Option<u32>,
    /// Message metadata in the value.
    pub envelope: Envelope,
    /// How group ids are formed.
    pub group_scope: GroupScope,
    /// Group session timeout (later brokers).
    pub session_timeout: Duration,
    /// How often members heartbeat (later brokers); also how fast they notice a rebalance.
    pub heartbeat_interval: Duration,
    /// How long a join round waits for members to rejoin (later brokers).
    pub rebalance_timeout: Duration,
    /// How often processed offsets are committed.
    pub commit_interval: Duration,
    /// Where groups keep their positions on a v1.0.x broker, which has no offset
    /// requests. In memory by default; [`FileOffsets`](crate::FileOffsets) keeps them
    /// across restarts.
    pub offset_store: Arc<dyn OffsetStore>,
    /// Readers on later brokers see only committed transactions (true, the default) or
    /// everything.
    pub read_committed: bool,
    /// Called around every produce request.
    pub interceptors: Vec<Arc<dyn ProduceInterceptor>>,
    /// Which address coordinator requests (groups, transactions) go to. Default
    /// [`CoordinatorAddress::Advertised`].
    pub coordinator_address: CoordinatorAddress,
    /// Dial through TLS. Behind a TLS-terminating proxy, set
    /// [`coordinator_address`](Self::coordinator_address) to `Bootstrap` too: the broker
    /// advertises its own plain-TCP address, which a TLS dial cannot use.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::TlsOptions>,
}

/// Where coordinator requests go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CoordinatorAddress {
    /// To the host and port FindCoordinator answers with, as the protocol intends.
    #[default]
    Advertised,
    /// To [`StreamBusConfig::broker`], for a single broker behind a proxy (TLS
    /// termination, NAT) whose advertised address clients cannot reach. A broker that is
    /// not the coordinator answers `NotCoordinator`, which surfaces as an error.
    Bootstrap,
}

impl std::fmt::Debug for StreamBusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamBusConfig")
            .field("broker", &self.broker)
            .field("generation", &self.generation)
            .field("pool_size", &self.pool_size)
            .field("linger", &self.linger)
            .field("envelope", &self.envelope)
            .finish_non_exhaustive()
    }
}

impl StreamBusConfig {
    /// Defaults for the broker at `broker` (`host:port`).
    pub fn new(broker: impl Into<String>) -> Self {
        Self {
            broker: broker.into(),
            client_id: "tidewater".into(),
            generation: Generation::Detect,
            pool_size: 5,
            acquire_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_close: Duration::from_secs(20),
            retry: RetryPolicy::default(),
            retry_produce: true,
            linger: Duration::ZERO,
            batch_bytes: 512 * 1024,
            batch_records: 1000,
            fetch_max_bytes: 1024 * 1024,
            fetch_idle_max: Duration::from_millis(50),
            auto_create_partitions: Some(3),
            envelope: Envelope::Auto,
            group_scope: GroupScope::PerTopic,
            session_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(3),
            rebalance_timeout: Duration::from_secs(30),
            commit_interval: Duration::from_secs(1),
            offset_store: Arc::new(MemoryOffsets::default()),
            read_committed: true,
            interceptors: Vec::new(),
            coordinator_address: CoordinatorAddress::Advertised,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    pub(crate) fn group_id(&self, group: &str, topic: &str) -> String {
        match self.group_scope {
            GroupScope::PerTopic => format!("{group}.{topic}"),
            GroupScope::AsGiven => group.to_owned(),
        }
    }
}
