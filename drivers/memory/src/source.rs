//! A group member's stream of deliveries, and their settlement.

use std::sync::Arc;

use async_trait::async_trait;
use tidewater_core::{Delivery, Incoming, Position, Result, Settle, Settlement, Source, StartFrom};

use crate::topic::{MemberId, Topic};

/// One member of a consumer group on one topic. Leaving the group (on close or drop)
/// hands what it had in flight back to the group.
pub(crate) struct MemorySource {
    topic: Arc<Topic>,
    group: Arc<str>,
    member: MemberId,
    left: bool,
}

impl MemorySource {
    pub(crate) fn join(topic: Arc<Topic>, group: Option<&str>, start: StartFrom) -> Self {
        let (group, member) = topic.join(group, start);
        Self { topic, group, member, left: false }
    }

    fn leave(&mut self) {
        if !self.left {
            self.left = true;
            self.topic.leave(&self.group, self.member);
        }
    }
}

impl Drop for MemorySource {
    fn drop(&mut self) {
        self.leave();
    }
}

#[async_trait]
impl Source for MemorySource {
    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Incoming>>> {
        loop {
            let data = self.topic.data.notified();
            tokio::pin!(data);
            data.as_mut().enable();
            if self.topic.lock().closed {
                return Ok(None);
            }
            let (fetched, wake) = self.topic.fetch(&self.group, self.member, max);
            if !fetched.is_empty() {
                let batch = fetched
                    .into_iter()
                    .map(|f| Incoming {
                        delivery: Delivery::new(
                            f.message,
                            f.attempt,
                            Position::Queue { partition: Some(f.partition), sequence: Some(f.offset) },
                            Some(Arc::clone(&self.group)),
                        ),
                        settle: Box::new(MemorySettle {
                            topic: Arc::clone(&self.topic),
                            group: Arc::clone(&self.group),
                            partition: f.partition,
                            offset: f.offset,
                        }),
                    })
                    .collect();
                return Ok(Some(batch));
            }
            match wake {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at, data).await;
                }
                None => data.await,
            }
        }
    }

    async fn close(&mut self) -> Result<()> {
        self.leave();
        Ok(())
    }
}

struct MemorySettle {
    topic: Arc<Topic>,
    group: Arc<str>,
    partition: u32,
    offset: u64,
}

#[async_trait]
impl Settle for MemorySettle {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<()> {
        match settlement {
            Settlement::Ack => self.topic.ack(&self.group, self.partition, self.offset),
            Settlement::Nack { delay } => {
                self.topic.nack(&self.group, self.partition, self.offset, delay.unwrap_or_default())
            }
        }
        Ok(())
    }
}
