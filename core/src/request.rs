//! Request/reply over any broker: a request carries the topic to answer on and an id; a
//! handler answers with [`Publisher::reply`]; the [`Requester`] waits for the answer
//! with that id on a reply topic of its own, or, where the broker has request/reply of
//! its own ([`NativeRequests`], core NATS), through that.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::{
    handler_fn, Admin, Codec, Delivery, Driver, Error, ErrorKind, Event, EventRegistry, HandlerError, Message,
    Publisher, ReadTask, Result, StartFrom, SubscriberScheduler,
};

/// Header names of request/reply.
pub mod headers {
    /// On a request: the topic its reply goes to.
    pub const REPLY_TO: &str = "tw-reply-to";
    /// On a request and its reply: which request it is.
    pub const REQUEST_ID: &str = "tw-request-id";
}

/// Requests waiting for their replies, by request id: what a requester keeps, whether
/// its replies come on a topic of its own or to a broker's inbox. A reply for an id
/// nobody waits for (its request timed out) is dropped and counted.
pub struct Waiters<T> {
    waiting: Mutex<HashMap<String, oneshot::Sender<T>>>,
    late: AtomicU64,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Self { waiting: Mutex::default(), late: AtomicU64::new(0) }
    }
}

impl<T> std::fmt::Debug for Waiters<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters").field("late", &self.late()).finish_non_exhaustive()
    }
}

impl<T> Waiters<T> {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<T>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts waiting for the reply to `id`. Register before sending the request, so a
    /// quick reply finds its waiter; the wait is forgotten when the [`Wait`] is dropped.
    pub fn wait(self: &Arc<Self>, id: impl Into<String>) -> Wait<T> {
        let (tx, rx) = oneshot::channel();
        let id = id.into();
        self.waiting().insert(id.clone(), tx);
        Wait { waiters: Arc::clone(self), id, rx: Some(rx) }
    }

    /// Hands `reply` to the request `id`, or counts it late when nobody waits for it.
    pub fn deliver(&self, id: &str, reply: T) {
        let waiter = self.waiting().remove(id);
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(reply);
            }
            None => {
                self.late.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(request = %id, "a reply came for no waiting request (it timed out); dropped");
            }
        }
    }

    /// Replies that came for no waiting request, so far.
    pub fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }
}

/// One request's wait for its reply (from [`Waiters::wait`]).
pub struct Wait<T> {
    waiters: Arc<Waiters<T>>,
    id: String,
    rx: Option<oneshot::Receiver<T>>,
}

impl<T> Wait<T> {
    /// The reply, if it comes within `timeout`: a `Timeout` error naming the request
    /// otherwise, a `Closed` one if the requester stopped.
    pub async fn reply(mut self, timeout: Duration) -> Result<T> {
        let rx = self.rx.take().expect("a wait is awaited once");
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(Error::closed("the requester stopped before the reply came")),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("no reply to request {} within {timeout:?} (no handler answered, or none in time)", self.id),
            )),
        }
    }
}

impl<T> Drop for Wait<T> {
    /// Forgotten however the wait ends, so a late reply finds no waiter.
    fn drop(&mut self) {
        self.waiters.waiting().remove(&self.id);
    }
}

/// A broker's own request/reply, which a driver offers through
/// [`Driver::native_requests`]. The broker routes the
/// reply back to the asking connection (no reply topic to create), and can tell that
/// nobody listens on a topic: a `NoResponders` error right away instead of a `Timeout`.
///
/// A request's message reaches the handler with the [`headers::REPLY_TO`] and
/// [`headers::REQUEST_ID`] headers set by the driver, so [`Publisher::reply`] answers
/// it as on any other broker.
#[async_trait]
pub trait NativeRequests: Send + Sync {
    /// Where replies come to (for logs and [`Requester::inbox`]).
    fn inbox(&self) -> &str;

    /// Sends `message` and waits up to `timeout` for its reply: `Timeout` if none came,
    /// `NoResponders` if the broker says nobody listens.
    async fn request(&self, message: Message, timeout: Duration) -> Result<Message>;

    /// Replies that came after their request had timed out, so far.
    fn late_replies(&self) -> u64;

    /// Stops taking replies.
    async fn close(&self) -> Result<()>;
}

/// Sends typed requests and waits for their typed replies.
///
/// It reads a reply topic of its own (`tidewater.inbox.<id>`), created when it starts
/// and deleted by [`Requester::close`]; each request names it and carries an id, and the
/// reply with that id ends the wait. A reply that comes after its request timed out is
/// dropped and counted ([`Requester::late_replies`]), never delivered to a later request.
/// On a driver with [`NativeRequests`] (core NATS), it uses those instead, with the
/// same guarantees, and a request to a topic nobody listens on fails at once with
/// `NoResponders`.
///
/// ```no_run
/// # use std::time::Duration;
/// # use serde::{Deserialize, Serialize};
/// # use tidewater_core::*;
/// # #[derive(Serialize, Deserialize)] struct Quote { sku: String }
/// # impl Event for Quote { const TYPE: &'static str = "quote.requested"; }
/// # #[derive(Serialize, Deserialize)] struct Price { cents: u64 }
/// # async fn demo(driver: impl Driver) -> Result<()> {
/// // The service that answers: a typed handler replies through the bus's publisher.
/// let mut bus = Bus::new(&driver, EventRegistry::new().route::<Quote>("quotes"));
/// bus.subscribe_event(|quote: Quote, request: Delivery, State(publisher): State<Publisher>| async move {
///     publisher.reply(&request, &Price { cents: 1250 }).await?;
///     Ok::<_, HandlerError>(())
/// })
/// .group("pricing");
/// bus.start().await?;
///
/// // The one that asks.
/// let requester = Requester::start(&driver, bus.publisher().clone()).await?;
/// let price: Price = requester.request(&Quote { sku: "apple".into() }, Duration::from_secs(2)).await?;
/// requester.close().await?;
/// # Ok(()) }
/// ```
pub struct Requester<C: Codec = crate::JsonCodec> {
    publisher: Publisher<C>,
    replies: Replies,
}

/// A reply topic of the requester's own, and the requests waiting for replies on it.
struct TopicReplies {
    inbox: String,
    waiters: Arc<Waiters<Delivery>>,
    scheduler: SubscriberScheduler,
    admin: Arc<dyn Admin>,
}

/// Where replies come from.
enum Replies {
    /// A reply topic of the requester's own.
    Topic(Box<TopicReplies>),
    /// The broker's own request/reply.
    Native(Arc<dyn NativeRequests>),
}

impl<C: Codec> std::fmt::Debug for Requester<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requester").field("inbox", &self.inbox()).finish_non_exhaustive()
    }
}

impl<C: Codec> Requester<C> {
    /// Creates the reply topic on `driver`'s broker, subscribes to it, and returns once
    /// replies can arrive; or, where the driver has [`NativeRequests`], takes those.
    /// Requests go out through `publisher`.
    pub async fn start(driver: &impl Driver, publisher: Publisher<C>) -> Result<Self> {
        if let Some(native) = driver.native_requests() {
            return Ok(Self { publisher, replies: Replies::Native(native) });
        }
        let inbox = format!("tidewater.inbox.{}", uuid::Uuid::now_v7().simple());
        let admin = driver.admin();
        // Brokers that create topics on first use (or whose admin is not configured)
        // still take the subscription; one that cannot fails it below.
        if let Err(err) = admin.create_topic(&inbox, 1).await {
            tracing::debug!(topic = %inbox, error = %err, "the reply topic was not created ahead");
        }
        let waiters: Arc<Waiters<Delivery>> = Arc::default();
        let handler = {
            let waiters = Arc::clone(&waiters);
            handler_fn(move |reply: Delivery| {
                let waiters = Arc::clone(&waiters);
                async move {
                    let id = reply.message().headers.get(headers::REQUEST_ID).unwrap_or_default().to_owned();
                    waiters.deliver(&id, reply);
                    Ok::<_, HandlerError>(())
                }
            })
        };
        let mut scheduler = SubscriberScheduler::new(driver.reader(), EventRegistry::new());
        // The topic is new and only this requester's: from its start, nothing is missed.
        scheduler.add(ReadTask::new(&inbox).with_start(StartFrom::Earliest), Arc::new(handler));
        scheduler.start().await?;
        Ok(Self { publisher, replies: Replies::Topic(Box::new(TopicReplies { inbox, waiters, scheduler, admin })) })
    }

    /// The reply topic (or the broker's inbox replies come to).
    pub fn inbox(&self) -> &str {
        match &self.replies {
            Replies::Topic(topic) => &topic.inbox,
            Replies::Native(native) => native.inbox(),
        }
    }

    /// Replies that came after their request had timed out, so far.
    pub fn late_replies(&self) -> u64 {
        match &self.replies {
            Replies::Topic(topic) => topic.waiters.late(),
            Replies::Native(native) => native.late_replies(),
        }
    }

    /// Publishes `request` to the topic the registry gives its type and waits up to
    /// `timeout` for the reply, decoded as `R`. No reply in time is a `Timeout` error
    /// (on these brokers no answer and no responder look the same).
    pub async fn request<E: Event, R: DeserializeOwned>(&self, request: &E, timeout: Duration) -> Result<R> {
        let topic = self.publisher.registry().topic_of::<E>()?.to_owned();
        self.request_to(&topic, request, timeout).await
    }

    /// [`Requester::request`] to `topic`.
    pub async fn request_to<E: Event, R: DeserializeOwned>(
        &self,
        topic: &str,
        request: &E,
        timeout: Duration,
    ) -> Result<R> {
        let mut message = self.publisher.encode(topic, request)?;
        let id = message.id.clone();
        let (inbox, waiters) = match &self.replies {
            Replies::Topic(topic) => (&topic.inbox, &topic.waiters),
            Replies::Native(native) => {
                let reply = native.request(message, timeout).await.map_err(|e| e.with_topic(topic))?;
                return self.publisher.codec().decode_message(&reply).map_err(|e| e.with_topic(topic));
            }
        };
        message.headers.insert(headers::REPLY_TO, inbox.as_str());
        message.headers.insert(headers::REQUEST_ID, id.as_str());
        let wait = waiters.wait(id);
        self.publisher.publish_message(message).await?;
        let reply = wait.reply(timeout).await.map_err(|e| e.with_topic(topic))?;
        self.publisher.codec().decode_message(reply.message()).map_err(|e| e.with_topic(topic))
    }

    /// Stops reading replies and deletes the reply topic.
    pub async fn close(self) -> Result<()> {
        match self.replies {
            Replies::Topic(mut topic) => {
                topic.scheduler.shutdown(Duration::from_secs(5)).await;
                topic.admin.delete_topic(&topic.inbox).await
            }
            Replies::Native(native) => native.close().await,
        }
    }
}

impl<C: Codec> Publisher<C> {
    /// Answers `request` (a delivery a [`Requester`] sent) with `reply`, encoded with the
    /// publisher's codec, on the topic the request names. A delivery that is not a
    /// request is an `InvalidInput` error.
    pub async fn reply<T: Serialize + ?Sized>(&self, request: &Delivery, reply: &T) -> Result<()> {
        let asked = &request.message().headers;
        let (Some(topic), Some(id)) = (asked.get(headers::REPLY_TO), asked.get(headers::REQUEST_ID)) else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("message {} is not a request: it has no {} header", request.message().id, headers::REPLY_TO),
            )
            .with_topic(&request.message().stream));
        };
        let payload = self.codec().encode(reply).map_err(|e| e.with_topic(topic))?;
        let message = Message::new(topic, payload)
            .with_content_type(self.codec().content_type())
            .with_header(headers::REQUEST_ID, id);
        self.publish_message(message).await.map(|_| ())
    }
}
