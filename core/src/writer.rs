//! The low-level write side.

use async_trait::async_trait;

use crate::{Message, Result};

/// Writes messages to a broker. Each message names its own stream, so one batch may span
/// topics. Object-safe: a bus holds an `Arc<dyn Writer>`.
#[async_trait]
pub trait Writer: Send + Sync {
    /// The driver's name, for errors and logs.
    fn driver(&self) -> &'static str;

    /// Writes `batch`. When it returns `Ok`, the broker has accepted every message (or,
    /// for a driver that buffers, the driver has and [`Writer::flush`] will deliver them).
    /// On error, some messages may have been written: the error says which failed.
    async fn write(&self, batch: Vec<Message>) -> Result<()>;

    /// Writes one message. The default wraps it in a batch; drivers override it where a
    /// single message can skip that allocation (the publisher's usual path).
    async fn write_one(&self, message: Message) -> Result<()> {
        self.write(vec![message]).await
    }

    /// Waits until every message accepted so far is on the broker.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Flushes, then releases the writer. Writes after a close fail with `Closed`.
    async fn close(&self) -> Result<()> {
        self.flush().await
    }
}
