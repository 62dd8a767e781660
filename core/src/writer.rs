//! The low-level write side.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
///
/// Receipts are waited for in order, but if the batch is not answered within 100 ms,
/// every receipt not waited for yet is polled once, so that receipts whose timeout
/// starts at their first poll (async-nats's) time out together. Waited for only one
/// after the other, a batch whose answers were lost (a broker restart) took a timeout
/// a message: 200 s for a JetStream batch of 100 with a 2 s timeout.
pub async fn await_receipts<T, F, R, E>(
    driver: &'static str,
    what: &str,
    receipts: Vec<(T, MessageId, F)>,
    error: impl Fn(E, &str) -> Error,
) -> Result<()>
where
    T: AsRef<str>,
    F: std::future::IntoFuture<Output = std::result::Result<R, E>>,
    F::IntoFuture: Unpin,
    E: std::fmt::Display,
{
    let total = receipts.len();
    let mut failed = 0;
    let mut first: Option<Error> = None;
    let mut receipts: Vec<Waiting<T, F>> =
        receipts.into_iter().map(|(topic, id, receipt)| (topic, id, receipt.into_future(), None)).collect();
    // One timer for the batch, not one a receipt: a batch answered within it (every
    // healthy one) starts no receipt ahead of its turn.
    let mut straggler = std::pin::pin!(tokio::time::sleep(STRAGGLER));
    let mut rest_started = false;
    for i in 0..receipts.len() {
        let (done, rest) = receipts.split_at_mut(i + 1);
        let (_, _, receipt, answered) = &mut done[i];
        let outcome = match answered.take() {
            Some(outcome) => outcome,
            None if rest_started => receipt.await,
            None => tokio::select! {
                biased;
                outcome = &mut *receipt => outcome,
                () = straggler.as_mut() => {
                    start::<T, F>(rest);
                    rest_started = true;
                    receipt.await
                }
            },
        };
        if let Err(e) = outcome {
            failed += 1;
            let (topic, id, _, _) = &done[i];
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

/// How long [`await_receipts`] waits for one receipt before it starts the rest: far
/// longer than a round trip to a broker that answers, far shorter than any timeout.
pub(crate) const STRAGGLER: Duration = Duration::from_millis(100);

/// A receipt waited for: its topic, id, future and, once polled ahead, its outcome.
type Waiting<T, F> =
    (T, MessageId, <F as std::future::IntoFuture>::IntoFuture, Option<<F as std::future::IntoFuture>::Output>);

/// Polls each receipt of `rest` once, keeping the outcome of those answered already.
///
/// Polled without a waker: the receipt waited for is polled again with the waiting
/// task's, and one answered meanwhile is found ready then, so none of the others wakes
/// the task for nothing.
fn start<T, F: std::future::IntoFuture>(rest: &mut [Waiting<T, F>])
where
    F::IntoFuture: Unpin,
{
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for (_, _, receipt, answered) in rest {
        if answered.is_none() {
            if let std::task::Poll::Ready(outcome) = Pin::new(receipt).poll(&mut cx) {
                *answered = Some(outcome);
            }
        }
    }
}

type BoxFuture<'f, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'f>>;

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::time::Duration;

    use super::{await_receipts, STRAGGLER};
    use crate::{Error, ErrorKind, MessageId};

    type Receipt = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

    /// A receipt that fails `timeout` after it is first polled, as async-nats's do when
    /// the answer never comes; `None` answers at once.
    fn receipt(timeout: Option<Duration>) -> Receipt {
        Box::pin(async move {
            match timeout {
                Some(timeout) => {
                    tokio::time::sleep(timeout).await;
                    Err("timed out".to_owned())
                }
                None => Ok(()),
            }
        })
    }

    /// A receipt answered `delay` after its first poll.
    fn answered_after(delay: Duration) -> Receipt {
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(())
        })
    }

    fn batch(receipts: impl IntoIterator<Item = Receipt>) -> Vec<(&'static str, MessageId, Receipt)> {
        receipts.into_iter().enumerate().map(|(i, r)| ("orders", MessageId::from(format!("m{i}")), r)).collect()
    }

    fn failed(e: String, topic: &str) -> Error {
        Error::new(ErrorKind::Timeout, e).with_topic(topic)
    }

    #[tokio::test(start_paused = true)]
    async fn lost_answers_time_out_together_not_one_after_another() {
        let timeout = Duration::from_secs(2);
        let started = tokio::time::Instant::now();
        let err = await_receipts("test", "acknowledged", batch((0..100).map(|_| receipt(Some(timeout)))), failed)
            .await
            .unwrap_err();
        // The first receipt waited for alone until the others were started.
        assert_eq!(started.elapsed(), STRAGGLER + timeout, "one timeout for the batch, not one a message");
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.to_string().contains("100 of 100 messages were not acknowledged"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_rest_start_even_when_an_answer_comes_as_the_batch_is_late() {
        // The first answer and the batch's 100 ms come at the same instant; the answer
        // is taken first, and the lost ones after it must still time out together.
        let timeout = Duration::from_secs(2);
        let receipts = std::iter::once(answered_after(STRAGGLER)).chain((0..50).map(|_| receipt(Some(timeout))));
        let started = tokio::time::Instant::now();
        let err = await_receipts("test", "acknowledged", batch(receipts), failed).await.unwrap_err();
        assert_eq!(started.elapsed(), STRAGGLER + timeout);
        assert!(err.to_string().contains("50 of 51 messages were not acknowledged"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn answers_that_came_count_and_the_first_failure_is_the_cause() {
        let receipts = [None, Some(Duration::from_millis(300)), None, Some(Duration::from_millis(100))];
        let err = await_receipts("test", "stored", batch(receipts.map(receipt)), failed).await.unwrap_err();
        assert!(err.to_string().contains("2 of 4 messages were not stored"), "{err}");
        assert!(await_receipts("test", "stored", batch([None, None].map(receipt)), failed).await.is_ok());
    }
}
