//! Topics: which exist, and creating the missing ones.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;
use rdkafka::{Offset, TopicPartitionList};
use tidewater_core::reach;
use tidewater_core::{names, Error, ErrorKind, PartitionLag, Result};

use crate::errors::kafka_error;
use crate::{KafkaConfig, DRIVER};

/// Looks topics up once and remembers the ones that exist, so a writer asks the broker
/// about a topic only on its first use.
pub(crate) struct Topics {
    admin: Arc<AdminClient<DefaultClientContext>>,
    config: Arc<KafkaConfig>,
    known: Mutex<HashSet<String>>,
}

impl Topics {
    pub(crate) fn new(config: Arc<KafkaConfig>) -> Result<Self> {
        let admin = config.admin().create().map_err(|e| kafka_error("cannot create the Kafka admin client", e))?;
        Ok(Self { admin: Arc::new(admin), config, known: Mutex::default() })
    }

    /// Makes sure `topic` exists: known, found on the broker, or created if the
    /// configuration allows it.
    pub(crate) async fn ensure(&self, topic: &str) -> Result<()> {
        if self.known.lock().unwrap().contains(topic) {
            return Ok(());
        }
        names::check_topic(topic).map_err(|e| e.with_driver(DRIVER))?;
        if self.exists(topic).await? {
            self.known.lock().unwrap().insert(topic.to_owned());
            return Ok(());
        }
        match self.config.auto_create_topics {
            Some(spec) => self.create(topic, spec.partitions, spec.replication_factor).await,
            None => Err(Error::new(
                ErrorKind::UnknownTopic,
                format!(
                    "topic {topic:?} does not exist and auto_create_topics is off; create it first \
                     (Kafka::create_topic or the broker's tools)"
                ),
            )
            .with_driver(DRIVER)
            .with_topic(topic)),
        }
    }

    async fn exists(&self, topic: &str) -> Result<bool> {
        Ok(shows(&self.metadata(topic).await?, topic))
    }

    /// The broker's metadata of `topic`.
    async fn metadata(&self, topic: &str) -> Result<Metadata> {
        let admin = Arc::clone(&self.admin);
        let timeout = self.config.request_timeout;
        let name = topic.to_owned();
        blocking(move || admin.inner().fetch_metadata(Some(&name), timeout))
            .await?
            .map_err(|e| kafka_error(format!("cannot look topic {topic:?} up"), e).with_topic(topic))
    }

    /// Deletes `topic`; a topic that does not exist is fine.
    pub(crate) async fn delete(&self, topic: &str) -> Result<()> {
        self.known.lock().unwrap().remove(topic);
        let options = AdminOptions::new().operation_timeout(Some(self.config.request_timeout));
        let results = self
            .admin
            .delete_topics(&[topic], &options)
            .await
            .map_err(|e| kafka_error(format!("cannot delete topic {topic:?}"), e).with_topic(topic))?;
        admin_outcome(results, RDKafkaErrorCode::UnknownTopicOrPartition, topic, || {
            format!("cannot delete topic {topic:?}")
        })?;
        // As with creation, the broker clients ask learns of it a moment after the
        // controller: wait until it no longer shows the topic, so a list that follows
        // does not.
        self.until_metadata(
            topic,
            |m| !shows(m, topic),
            |waited| format!("topic {topic:?} was deleted, but the broker still showed it after {waited:?}"),
        )
        .await
    }

    /// Per partition, the messages of `topic` past `group`'s committed offset (from the
    /// low watermark where it committed none), read as the group's own members would.
    pub(crate) async fn lag(&self, topic: &str, group: &str) -> Result<Vec<PartitionLag>> {
        let metadata = self.metadata(topic).await?;
        let Some(partitions) = metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none()).map(|t| {
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            ids
        }) else {
            return Err(Error::new(ErrorKind::UnknownTopic, "no such topic").with_driver(DRIVER).with_topic(topic));
        };
        let group_name = self.config.group_id(group, topic);
        let config = self.config.consumer(&group_name, true, 1);
        let timeout = self.config.request_timeout;
        let name = topic.to_owned();
        let measured = blocking(move || -> KafkaResult<Option<Vec<PartitionLag>>> {
            let consumer: BaseConsumer = config.create()?;
            let groups = consumer.fetch_group_list(Some(&group_name), timeout)?;
            if !groups.groups().iter().any(|g| g.name() == group_name && g.state() != "Dead") {
                return Ok(None);
            }
            let mut asked = TopicPartitionList::new();
            for p in &partitions {
                asked.add_partition(&name, *p);
            }
            let committed = consumer.committed_offsets(asked, timeout)?;
            let mut lags = Vec::with_capacity(partitions.len());
            for p in partitions {
                let (low, high) = consumer.fetch_watermarks(&name, p, timeout)?;
                let from = match committed.find_partition(&name, p).map(|e| e.offset()) {
                    Some(Offset::Offset(n)) => n.max(low),
                    _ => low,
                };
                lags.push(PartitionLag { partition: p as u32, lag: (high - from).max(0) as u64 });
            }
            Ok(Some(lags))
        })
        .await?
        .map_err(|e| kafka_error(format!("cannot read group {group:?}'s lag"), e).with_topic(topic))?;
        measured.ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownGroup,
                format!("the broker knows no group {:?}", self.config.group_id(group, topic)),
            )
            .with_driver(DRIVER)
            .with_topic(topic)
        })
    }

    /// The topics of the cluster, the broker's internal ones (`__consumer_offsets`) left out.
    pub(crate) async fn list(&self) -> Result<Vec<String>> {
        let admin = Arc::clone(&self.admin);
        let timeout = self.config.request_timeout;
        let metadata = blocking(move || admin.inner().fetch_metadata(None, timeout))
            .await?
            .map_err(|e| kafka_error("cannot list topics", e))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
            .map(|t| t.name().to_owned())
            .collect())
    }

    /// Creates `topic`; a topic that already exists is fine.
    pub(crate) async fn create(&self, topic: &str, partitions: u32, replication: Option<u16>) -> Result<()> {
        names::check_topic(topic).map_err(|e| e.with_driver(DRIVER))?;
        let replication = TopicReplication::Fixed(replication.map_or(-1, i32::from));
        let new = NewTopic::new(topic, partitions as i32, replication);
        let options = AdminOptions::new().operation_timeout(Some(self.config.request_timeout));
        let results = self
            .admin
            .create_topics([&new], &options)
            .await
            .map_err(|e| kafka_error(format!("cannot create topic {topic:?}"), e).with_topic(topic))?;
        admin_outcome(results, RDKafkaErrorCode::TopicAlreadyExists, topic, || {
            format!("cannot create topic {topic:?} with {partitions} partitions")
        })?;
        self.visible(topic, partitions).await?;
        self.known.lock().unwrap().insert(topic.to_owned());
        Ok(())
    }

    /// Waits until the broker's metadata shows `topic` with `partitions` partitions,
    /// each with a leader. CreateTopics returns once the controller has the topic; the
    /// broker that clients ask may learn of it a moment later, and a consumer that
    /// subscribes in that moment fails with UnknownTopicOrPartition (seen on Kafka 4.4
    /// with many topics made at once).
    async fn visible(&self, topic: &str, partitions: u32) -> Result<()> {
        let ready = |metadata: &Metadata| {
            metadata.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().len() >= partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            })
        };
        self.until_metadata(topic, ready, |waited| {
            format!(
                "topic {topic:?} was created, but the broker did not show it with {partitions} partitions and their \
                 leaders within {waited:?}"
            )
        })
        .await
    }

    /// Asks for `topic`'s metadata until `done` holds, for at most the request timeout;
    /// else a transient error whose text `what` makes from the time waited.
    async fn until_metadata(
        &self,
        topic: &str,
        done: impl Fn(&Metadata) -> bool,
        what: impl FnOnce(std::time::Duration) -> String,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.config.request_timeout;
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            if done(&self.metadata(topic).await?) {
                return Ok(());
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(Error::new(ErrorKind::BrokerTransient, what(self.config.request_timeout))
                    .with_driver(DRIVER)
                    .with_topic(topic));
            }
            // Metadata has no change notification: ask again, a little later each time.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(200));
        }
    }
}

/// Whether `metadata` shows `topic` with partitions.
fn shows(metadata: &Metadata, topic: &str) -> bool {
    metadata.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
}

/// The outcome of an admin request about `topic`, `tolerated` (it exists already, it is
/// gone already) counting as done.
fn admin_outcome<T>(
    results: Vec<std::result::Result<T, (String, RDKafkaErrorCode)>>,
    tolerated: RDKafkaErrorCode,
    topic: &str,
    what: impl FnOnce() -> String,
) -> Result<()> {
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, code)) if code == tolerated => {}
            Err((_, code)) => {
                return Err(Error::new(crate::errors::kind_of_code(code), format!("{}: {code}", what()))
                    .with_driver(DRIVER)
                    .with_topic(topic))
            }
        }
    }
    Ok(())
}

/// The `host:port` of each bootstrap server (librdkafka's default port where one gives
/// none, a `protocol://` prefix left out).
pub(crate) fn hosts(brokers: &str) -> Vec<String> {
    brokers
        .split(',')
        .map(|b| b.trim())
        .map(|b| b.split_once("://").map_or(b, |(_, rest)| rest))
        .filter(|b| !b.is_empty())
        .map(|b| reach::with_port(b, 9092))
        .collect()
}

/// Runs a blocking librdkafka call off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::new(ErrorKind::Closed, format!("a blocking Kafka call did not finish: {e}")).with_driver(DRIVER)
    })
}

#[cfg(test)]
mod tests {
    use super::hosts;

    #[test]
    fn bootstrap_servers_name_their_hosts_with_ports() {
        assert_eq!(hosts("a:9093, b"), ["a:9093", "b:9092"]);
        assert_eq!(hosts("PLAINTEXT://a:9093,SSL://b:9094"), ["a:9093", "b:9094"]);
        assert_eq!(hosts("[::1]:9093,[::1]"), ["[::1]:9093", "[::1]:9092"]);
    }
}
