//! The consumer's callbacks: assignments, revokes and commit results.

use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tidewater_core::StartFrom;

use crate::transaction::KafkaOrigin;

use super::link::Link;
use super::state::{Part, Shared};

/// The consumer's callbacks: rebalances and commit results.
pub(super) struct ReaderContext {
    pub(super) shared: Arc<Shared>,
    /// Whether the consumer reaches a broker, from its statistics.
    pub(super) link: Arc<Link>,
}

impl ClientContext for ReaderContext {
    fn stats(&self, statistics: Statistics) {
        self.link.observe(&statistics);
    }
}

impl ConsumerContext for ReaderContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                tracing::warn!(topic = %self.shared.topic, error = ?other, "rebalance failed; giving up the assignment");
                self.revoke(consumer, tpl);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(err) = result {
            tracing::warn!(topic = %self.shared.topic, error = %err, "committing processed offsets failed; will retry");
            self.shared.commit_failed(offsets);
        }
    }
}

impl ReaderContext {
    pub(super) fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let shared = &self.shared;
        let mut assignment = tpl.clone();
        if shared.start == StartFrom::Latest {
            self.resolve_latest(consumer, &mut assignment);
        }
        {
            let mut state = shared.state();
            state.generation += 1;
            shared.changed();
            let generation = state.generation;
            if shared.commits {
                state.origin = consumer.group_metadata().map(|group| Arc::new(KafkaOrigin { group }));
            }
            for elem in tpl.elements() {
                state.partitions.insert(
                    elem.partition(),
                    Part { generation, commits: None, committed: None, rewind: None, awaiting: None, paused: false },
                );
            }
        }
        if let Err(err) = consumer.assign(&assignment) {
            tracing::warn!(topic = %shared.topic, error = %err, "taking the assigned partitions failed");
        }
        tracing::debug!(topic = %shared.topic, partitions = tpl.count(), "partitions assigned");
        shared.ready.ready();
    }

    /// Gives partitions without a committed offset an explicit start at their current
    /// end, so that readiness means what it says: everything published from now on
    /// arrives. (Left to `auto.offset.reset=latest`, the end would be looked up after
    /// the reader said it was ready, and a message published in between would be lost.)
    pub(super) fn resolve_latest(&self, consumer: &BaseConsumer<Self>, assignment: &mut TopicPartitionList) {
        let shared = &self.shared;
        let committed = match consumer.committed_offsets(assignment.clone(), shared.request_timeout) {
            Ok(committed) => committed,
            Err(err) => {
                tracing::warn!(topic = %shared.topic, error = %err, "cannot read committed offsets; starting at the end");
                return;
            }
        };
        for elem in committed.elements() {
            if matches!(elem.offset(), Offset::Offset(_)) {
                continue;
            }
            match consumer.fetch_watermarks(&shared.topic, elem.partition(), shared.request_timeout) {
                Ok((_, high)) => {
                    let _ = assignment.set_partition_offset(&shared.topic, elem.partition(), Offset::Offset(high));
                }
                Err(err) => tracing::warn!(topic = %shared.topic, error = %err, "cannot look the partition end up"),
            }
        }
    }

    pub(super) fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let shared = &self.shared;
        let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        shared.commit_now(consumer, |p| revoked.contains(&p));
        {
            let mut state = shared.state();
            shared.changed();
            for p in &revoked {
                if let Some(point) = state.partitions.remove(p).and_then(|part| part.commits).map(|c| c.committable()) {
                    // Below the commit point everything was processed: nothing to count.
                    if let Some(attempts) = state.attempts.get_mut(p) {
                        attempts.retain(|offset, _| *offset >= point);
                    }
                }
            }
        }
        if let Err(err) = consumer.unassign() {
            tracing::warn!(topic = %shared.topic, error = %err, "giving the revoked partitions up failed");
        }
        tracing::debug!(topic = %shared.topic, partitions = revoked.len(), "partitions revoked");
    }
}
