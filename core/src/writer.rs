//! The low-level write side.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use crate::{Error, Message, MessageId, Result};

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

/// The write side a driver implements: [`Closable`] makes it a [`Writer`], with the
/// closing every writer shares (a write after [`Writer::close`] fails with `Closed`, the
/// same way on every driver) and the driver's name.
///
/// Its methods are those of [`Writer`] without the boxing of `async_trait`: an
/// implementation writes them as `async fn`.
pub trait BrokerWriter: Send + Sync + 'static {
    /// Writes `batch`; see [`Writer::write`].
    fn write(&self, batch: Vec<Message>) -> impl Future<Output = Result<()>> + Send + '_;

    /// Writes one message; see [`Writer::write_one`]. The default wraps it in a batch.
    fn write_one(&self, message: Message) -> impl Future<Output = Result<()>> + Send + '_ {
        self.write(vec![message])
    }

    /// Writes `message` if that needs no waiting; see [`Writer::try_write_now`]. The
    /// default hands every message back.
    fn try_write_now(&self, message: Message) -> WriteNow {
        WriteNow::Wait(message)
    }

    /// Waits until every message accepted so far is on the broker; see
    /// [`Writer::flush`]. The default has nothing to wait for.
    fn flush(&self) -> impl Future<Output = Result<()>> + Send + '_ {
        std::future::ready(Ok(()))
    }
}

/// A driver's [`BrokerWriter`] as a [`Writer`]: it refuses writes once closed, and a
/// close flushes. What `Driver::writer` returns, shared.
///
/// ```
/// use std::sync::Arc;
/// use tidewater_core::{BrokerWriter, Closable, Message, Result, Writer};
///
/// struct Discard;
///
/// impl BrokerWriter for Discard {
///     async fn write(&self, _batch: Vec<Message>) -> Result<()> {
///         Ok(())
///     }
/// }
///
/// # async fn demo() {
/// let writer: Arc<dyn Writer> = Arc::new(Closable::new("discard", Discard));
/// writer.write_one(Message::new("t", "x")).await.unwrap();
/// writer.close().await.unwrap();
/// let refused = writer.write_one(Message::new("t", "x")).await.unwrap_err();
/// assert_eq!(refused.kind(), tidewater_core::ErrorKind::Closed);
/// # }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo());
/// ```
pub struct Closable<W> {
    driver: &'static str,
    inner: W,
    closed: AtomicBool,
}

impl<W> Closable<W> {
    /// `inner`, open, for the driver named `driver`.
    pub fn new(driver: &'static str, inner: W) -> Self {
        Self { driver, inner, closed: AtomicBool::new(false) }
    }

    /// The driver's writer.
    pub fn inner(&self) -> &W {
        &self.inner
    }

    fn check(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed("the writer was closed").with_driver(self.driver));
        }
        Ok(())
    }

    /// The write `write` makes, unless the writer is closed.
    fn checked<'f>(&self, write: impl FnOnce() -> BoxFuture<'f, Result<()>>) -> BoxFuture<'f, Result<()>> {
        match self.check() {
            Ok(()) => write(),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

impl<W> std::fmt::Debug for Closable<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closable")
            .field("driver", &self.driver)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<W: BrokerWriter> Writer for Closable<W> {
    fn driver(&self) -> &'static str {
        self.driver
    }

    fn write<'w, 'f>(&'w self, batch: Vec<Message>) -> BoxFuture<'f, Result<()>>
    where
        'w: 'f,
        Self: 'f,
    {
        self.checked(|| Box::pin(self.inner.write(batch)))
    }

    // Written out rather than as an `async fn`, so that the box holds the driver's future
    // alone and not the message beside it.
    fn write_one<'w, 'f>(&'w self, message: Message) -> BoxFuture<'f, Result<()>>
    where
        'w: 'f,
        Self: 'f,
    {
        self.checked(|| Box::pin(self.inner.write_one(message)))
    }

    fn try_write_now(&self, message: Message) -> WriteNow {
        match self.check() {
            Ok(()) => self.inner.try_write_now(message),
            Err(e) => WriteNow::Done(Err(e)),
        }
    }

    fn flush<'w, 'f>(&'w self) -> BoxFuture<'f, Result<()>>
    where
        'w: 'f,
        Self: 'f,
    {
        Box::pin(self.inner.flush())
    }

    fn close<'w, 'f>(&'w self) -> BoxFuture<'f, Result<()>>
    where
        'w: 'f,
        Self: 'f,
    {
        self.closed.store(true, Ordering::Release);
        Box::pin(self.inner.flush())
    }
}

/// Waits for the broker's receipt of each message of a batch that was sent ahead of the
/// waiting (so the batch costs about one round trip), and makes one error of what failed:
/// a lone failure is returned as it is, several as "`n` of `total` messages were not
/// `what`" with the first as the cause. Every failure is logged with its topic and id.
///
/// `error` turns a receipt's error into the driver's [`Error`] for the topic it names.
pub async fn await_receipts<T, F, R, E>(
    driver: &'static str,
    what: &str,
    receipts: Vec<(T, MessageId, F)>,
    error: impl Fn(E, &str) -> Error,
) -> Result<()>
where
    T: AsRef<str>,
    F: std::future::IntoFuture<Output = std::result::Result<R, E>>,
    E: std::fmt::Display,
{
    let total = receipts.len();
    let mut failed = 0;
    let mut first: Option<Error> = None;
    for (topic, id, receipt) in receipts {
        if let Err(e) = receipt.await {
            failed += 1;
            let topic = topic.as_ref();
            tracing::warn!(driver, topic, id = %id, error = %e, "the broker did not confirm a message");
            first.get_or_insert_with(|| error(e, topic));
        }
    }
    match first {
        None => Ok(()),
        Some(err) if total == 1 => Err(err),
        Some(err) => Err(Error::new(err.kind(), format!("{failed} of {total} messages were not {what}"))
            .with_driver(driver)
            .with_source(err)),
    }
}

type BoxFuture<'f, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'f>>;
