//! The low-level write side.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use crate::{Error, Message, Result};

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

    /// Writes `message` if that needs no waiting (the broker is in the process and has
    /// room), else hands it back to be written with [`Writer::write_one`]. The publisher
    /// tries it first: a write done here skips the boxed future of `write_one`, an
    /// allocation a message. The default hands every message back.
    fn try_write_now(&self, message: Message) -> WriteNow {
        WriteNow::Wait(message)
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

/// What [`Writer::try_write_now`] did.
#[derive(Debug)]
pub enum WriteNow {
    /// Written, or failed, without waiting.
    Done(Result<()>),
    /// Not written: writing it would wait. The message, for [`Writer::write_one`].
    Wait(Message),
}

/// Whether a writer was closed. Every driver's writer keeps one, so that a write after
/// [`Writer::close`] fails with a `Closed` error the same way everywhere.
#[derive(Debug, Default)]
pub struct CloseFlag(AtomicBool);

impl CloseFlag {
    /// An open writer's flag.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Ok` while open; once closed, a `Closed` error naming `driver`.
    pub fn check(&self, driver: &'static str) -> Result<()> {
        if self.0.load(Ordering::Acquire) {
            return Err(Error::closed("the writer was closed").with_driver(driver));
        }
        Ok(())
    }

    /// Marks the writer closed.
    pub fn close(&self) {
        self.0.store(true, Ordering::Release);
    }
}
