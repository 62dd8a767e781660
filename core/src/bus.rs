//! The one-line entry point: publisher, scheduler and registry together.

use std::sync::Arc;
use std::time::Duration;

use futures::Future;

use crate::{
    Codec, Delivery, Driver, Event, EventRegistry, Handler, HandlerError, IdFactory, JsonCodec, Middleware, Publisher,
    Result, ShutdownReport, SubscriberScheduler, TaskSpec, UuidV7Ids,
};

/// A publisher and a subscriber scheduler over one driver, sharing a registry and codec.
///
/// ```
/// # #[cfg(any())] mod hidden {}
/// # async fn demo(driver: impl tidewater_core::Driver) -> tidewater_core::Result<()> {
/// use std::time::Duration;
/// use tidewater_core::{handler_fn, Bus, Delivery, EventRegistry, HandlerError};
///
/// let mut bus = Bus::new(&driver, EventRegistry::new());
/// bus.subscribe("audit", handler_fn(|d: Delivery| async move {
///     println!("{}", String::from_utf8_lossy(&d.message().payload));
///     Ok::<_, HandlerError>(())
/// }))
/// .group("auditor");
/// bus.start().await?;
/// bus.publisher().publish_bytes("audit", "hello", "text/plain").await?;
/// let report = bus.shutdown(Duration::from_secs(5)).await?;
/// println!("{report:?}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Bus<C: Codec = JsonCodec> {
    publisher: Publisher<C>,
    scheduler: SubscriberScheduler<C>,
}

impl Bus<JsonCodec> {
    /// A JSON bus over `driver` with UUID v7 ids.
    pub fn new(driver: &impl Driver, registry: EventRegistry) -> Self {
        Self::with_parts(driver, registry, JsonCodec, UuidV7Ids)
    }
}

impl<C: Codec + Clone> Bus<C> {
    /// A bus with its own codec and id factory.
    pub fn with_parts(driver: &impl Driver, registry: EventRegistry, codec: C, ids: impl IdFactory) -> Self {
        let registry = Arc::new(registry);
        let publisher = Publisher::with_parts(driver.writer(), Arc::clone(&registry), codec.clone(), Arc::new(ids));
        let scheduler = SubscriberScheduler::with_codec(driver.reader(), registry, codec);
        Self { publisher, scheduler }
    }
}

impl<C: Codec> Bus<C> {
    /// The publisher (clone it freely).
    pub fn publisher(&self) -> &Publisher<C> {
        &self.publisher
    }

    /// The scheduler.
    pub fn scheduler(&mut self) -> &mut SubscriberScheduler<C> {
        &mut self.scheduler
    }

    /// See [`SubscriberScheduler::with_middleware`].
    pub fn with_middleware(&mut self, middleware: impl Middleware) -> &mut Self {
        self.scheduler.with_middleware(middleware);
        self
    }

    /// See [`SubscriberScheduler::subscribe`].
    pub fn subscribe(&mut self, topic: impl Into<String>, handler: impl Handler) -> &mut TaskSpec {
        self.scheduler.subscribe(topic, handler)
    }

    /// See [`SubscriberScheduler::subscribe_event`].
    pub fn subscribe_event<E, F, Fut>(&mut self, handler: F) -> Result<&mut TaskSpec>
    where
        E: Event,
        F: Fn(E, Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.scheduler.subscribe_event(handler)
    }

    /// See [`SubscriberScheduler::start`].
    pub async fn start(&mut self) -> Result<()> {
        self.scheduler.start().await
    }

    /// Shuts the scheduler down (see [`SubscriberScheduler::shutdown`]), then flushes and
    /// closes the publisher. The report comes back even if the close fails: the error
    /// says what the publisher could not deliver.
    pub async fn shutdown(&mut self, grace: Duration) -> Result<ShutdownReport> {
        let report = self.scheduler.shutdown(grace).await;
        self.publisher.close().await?;
        Ok(report)
    }
}
