//! Topic administration: create, delete and list topics the same way on every driver,
//! so that tests clean up after themselves and services can set up what they use; and
//! how far a consumer group is behind, for metrics, probes and the `tidewater lag`
//! command.

use async_trait::async_trait;

use crate::{Error, ErrorKind, Result};

/// Creates, deletes and lists topics on a driver's broker. Get one with
/// [`Driver::admin`](crate::Driver::admin).
///
/// ```
/// # async fn demo(driver: impl tidewater_core::Driver) -> tidewater_core::Result<()> {
/// let admin = driver.admin();
/// admin.create_topic("orders", 3).await?;
/// assert!(admin.topics().await?.iter().any(|t| t == "orders"));
/// admin.delete_topic("orders").await?;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Admin: Send + Sync {
    /// The driver's name, for errors and logs.
    fn driver(&self) -> &'static str;

    /// Creates `topic` with `partitions` partitions (brokers without partitions ignore the
    /// count). A topic that already exists is left as it is and is not an error.
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()>;

    /// Deletes `topic` with its messages (and, where the broker keeps them with the topic,
    /// its groups' positions). A topic that does not exist is not an error.
    async fn delete_topic(&self, topic: &str) -> Result<()>;

    /// The topics there are, in no particular order.
    async fn topics(&self) -> Result<Vec<String>>;

    /// Whether `topic` exists, without creating it.
    ///
    /// Worth asking before reading a topic a person named: where the broker or the driver
    /// makes topics on first use (Kafka's and Pulsar's defaults, JetStream's
    /// `auto_create_streams`), subscribing to a misspelt name makes a new, empty topic and
    /// waits on it. By default, whether [`topics`](Admin::topics) lists it; JetStream
    /// answers whether a stream holds the subject, so a subject under a stream's wildcard
    /// exists. A name that is not valid is [`ErrorKind::InvalidName`]; a broker that
    /// keeps no list (core NATS) answers [`ErrorKind::Unsupported`].
    ///
    /// ```
    /// # async fn demo(driver: impl tidewater_core::Driver) -> tidewater_core::Result<()> {
    /// if !driver.admin().topic_exists("orders").await? {
    ///     eprintln!("no topic orders: create it first");
    /// }
    /// # Ok(()) }
    /// ```
    async fn topic_exists(&self, topic: &str) -> Result<bool> {
        crate::names::check_topic(topic).map_err(|e| e.with_driver(self.driver()))?;
        Ok(self.topics().await?.iter().any(|t| t == topic))
    }

    /// How many messages of `topic` the consumer group `group` has not yet settled, per
    /// partition (one entry, partition 0, on brokers without partitions). Messages
    /// handed to a handler that has not returned count as behind: the figure drops as
    /// handlers finish, not as messages are fetched.
    ///
    /// Each broker answers from what it keeps: committed offsets against the high
    /// watermark (Kafka), the consumer's pending and unacknowledged counts (JetStream),
    /// the subscription's backlog (Pulsar), the committed position against the log end
    /// (StreamBus). A group the broker does not know is [`ErrorKind::UnknownGroup`]
    /// (StreamBus cannot list groups: there a group that committed nothing counts from
    /// the log start, as a Kafka group known to the broker without commits does); a
    /// broker that keeps no positions (core NATS) answers [`ErrorKind::Unsupported`],
    /// which is the default.
    async fn lag(&self, topic: &str, group: &str) -> Result<Vec<PartitionLag>> {
        let _ = group;
        Err(Error::new(ErrorKind::Unsupported, "this driver cannot tell a group's lag")
            .with_driver(self.driver())
            .with_topic(topic))
    }
}

/// How far a consumer group is behind on one partition: see [`Admin::lag`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartitionLag {
    /// The partition (0 on brokers without partitions).
    pub partition: u32,
    /// Messages not yet settled by the group.
    pub lag: u64,
}

impl PartitionLag {
    /// The lag of all `partitions` together.
    pub fn total(partitions: &[PartitionLag]) -> u64 {
        partitions.iter().map(|p| p.lag).sum()
    }
}

/// The admin of a driver that has none: every call is `Unsupported`.
pub(crate) struct NoAdmin(pub(crate) &'static str);

impl NoAdmin {
    fn unsupported(&self, what: &str) -> Error {
        Error::new(ErrorKind::Unsupported, format!("this driver cannot {what}")).with_driver(self.0)
    }
}

#[async_trait]
impl Admin for NoAdmin {
    fn driver(&self) -> &'static str {
        self.0
    }

    async fn create_topic(&self, topic: &str, _partitions: u32) -> Result<()> {
        Err(self.unsupported("create topics").with_topic(topic))
    }

    async fn delete_topic(&self, topic: &str) -> Result<()> {
        Err(self.unsupported("delete topics").with_topic(topic))
    }

    async fn topics(&self) -> Result<Vec<String>> {
        Err(self.unsupported("list topics"))
    }
}
