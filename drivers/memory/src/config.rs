//! Settings of an in-memory broker.

/// How an in-memory broker behaves.
///
/// ```
/// use tidewater_memory::MemoryConfig;
///
/// let config = MemoryConfig::default().partitions(8).capacity(1_000).auto_create(false);
/// assert_eq!(config.partitions, 8);
/// ```
#[derive(Clone, Debug)]
pub struct MemoryConfig {
    /// Partitions of a topic created on first use (at least 1). Default 4.
    pub partitions: u32,
    /// Messages one partition holds at most. A publisher to a full partition waits until
    /// every consumer group has settled the oldest message, which then makes room; with no
    /// group on the topic, the oldest message is dropped instead, as a log's retention
    /// would. Default 10,000.
    pub capacity: usize,
    /// Settled messages one partition keeps at most, newest first, for groups that join
    /// later at the earliest message and for
    /// [`MemoryBroker::published`](crate::MemoryBroker::published). Messages some group
    /// has not settled are kept regardless, up to `capacity`. Default 1,024: a longer
    /// retention costs memory and, as each message is freed long after it was written,
    /// cache misses on every publish (see the crate docs).
    pub retain: usize,
    /// Largest message accepted, counting payload, key, id, headers and content type.
    /// Default 1 MiB, as Kafka's default.
    pub max_message_bytes: usize,
    /// Whether writing to or reading from an unknown topic creates it. Default true.
    pub auto_create: bool,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self { partitions: 4, capacity: 10_000, retain: 1_024, max_message_bytes: 1024 * 1024, auto_create: true }
    }
}

impl MemoryConfig {
    /// Sets the partition count of auto-created topics.
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// Sets the per-partition capacity.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Sets how many settled messages a partition keeps at most.
    pub fn retain(mut self, retain: usize) -> Self {
        self.retain = retain;
        self
    }

    /// Sets the message size limit.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Sets whether unknown topics are created on use.
    pub fn auto_create(mut self, auto_create: bool) -> Self {
        self.auto_create = auto_create;
        self
    }
}
