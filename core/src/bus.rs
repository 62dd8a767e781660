//! The one-line entry point: publisher, scheduler and registry together.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Admin, Codec, DeadLetter, Driver, EventFn, EventRegistry, Handler, Health, IdFactory, JsonCodec, Middleware,
    Monitor, Publisher, Result, ShutdownReport, SubscriberScheduler, TaskSpec, UuidV7Ids, Writer,
};

/// A publisher and a subscriber scheduler over one driver, sharing a registry and codec.
///
/// A message whose handler fails permanently (it does not decode, it breaks a rule) goes
/// to `<topic>.dlq` through the bus's own writer, unless a middleware of the task's chain
/// dead-letters it or [`Bus::dead_letter`] says otherwise; nothing the handler cannot
/// take loops or is dropped. A failure that may pass is redelivered after the task's
/// nack delay, which doubles with each delivery up to
/// [`ReadTask::MAX_NACK_DELAY`](crate::ReadTask::MAX_NACK_DELAY); add a
/// [`DeadLetter`] with [`DeadLetter::max_deliveries`] to give up on those too.
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
pub struct Bus<C: Codec = JsonCodec> {
    publisher: Publisher<C>,
    scheduler: SubscriberScheduler<C>,
    admin: Arc<dyn Admin>,
}

impl<C: Codec> std::fmt::Debug for Bus<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("publisher", &self.publisher).field("scheduler", &self.scheduler).finish()
    }
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
        let writer = driver.writer();
        let publisher = Publisher::with_parts(Arc::clone(&writer), Arc::clone(&registry), codec.clone(), Arc::new(ids));
        let mut scheduler = SubscriberScheduler::with_codec(driver.reader(), registry, codec);
        scheduler.with_state(publisher.clone());
        scheduler.default_dead_letter(Some(DeadLetter::new(writer).permanent_only()));
        Self { publisher, scheduler, admin: driver.admin() }
    }

    /// Puts `wrap`'s writer around the one the bus writes through: its publisher, the
    /// `Publisher` handlers take as state, and the default dead letter all use it. For
    /// a writer that counts or intercepts what the service publishes:
    ///
    /// ```
    /// # fn demo(bus: &mut tidewater_core::Bus) {
    /// use std::sync::Arc;
    /// use tidewater_core::Writer;
    ///
    /// bus.wrap_writer(|inner: Arc<dyn Writer>| inner /* an instrumented writer around it */);
    /// # }
    /// ```
    pub fn wrap_writer(&mut self, wrap: impl FnOnce(Arc<dyn Writer>) -> Arc<dyn Writer>) -> &mut Self {
        let writer = wrap(self.publisher.writer());
        self.publisher = self.publisher.with_writer(Arc::clone(&writer));
        self.scheduler.with_state(self.publisher.clone());
        if self.scheduler.has_default_dead_letter() {
            self.scheduler.default_dead_letter(Some(DeadLetter::new(writer).permanent_only()));
        }
        self
    }
}

impl<C: Codec> Bus<C> {
    /// The publisher (clone it freely).
    pub fn publisher(&self) -> &Publisher<C> {
        &self.publisher
    }

    /// The writer the publisher writes through, shared: for a [`DeadLetter`] of your own,
    /// a [`Redrive`](crate::Redrive), or raw writes. It is the driver's, so this line
    /// works unchanged on every broker:
    ///
    /// ```
    /// # fn demo(bus: &mut tidewater_core::Bus) {
    /// use tidewater_core::DeadLetter;
    ///
    /// let dlq = DeadLetter::new(bus.writer()).max_deliveries(3);
    /// bus.with_middleware(dlq);
    /// # }
    /// ```
    pub fn writer(&self) -> Arc<dyn Writer> {
        self.publisher.writer()
    }

    /// Sets where messages go whose chain has no dead-letter middleware of its own: by
    /// default a [`DeadLetter`] to `<topic>.dlq` for permanent failures
    /// ([`DeadLetter::permanent_only`]); `None` sends them nowhere, so that a
    /// permanent failure is redelivered with growing delays until a handler takes it.
    pub fn dead_letter(&mut self, dead_letter: Option<DeadLetter>) -> &mut Self {
        self.scheduler.default_dead_letter(dead_letter);
        self
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

    /// See [`SubscriberScheduler::subscribe_batch`].
    pub fn subscribe_batch(
        &mut self,
        topic: impl Into<String>,
        max: usize,
        linger: Duration,
        handler: impl crate::BatchHandler,
    ) -> &mut TaskSpec {
        self.scheduler.subscribe_batch(topic, max, linger, handler)
    }

    /// See [`SubscriberScheduler::subscribe_event_batch`].
    pub fn subscribe_event_batch<E, F, Fut>(&mut self, max: usize, linger: Duration, f: F) -> &mut TaskSpec
    where
        E: crate::Event,
        F: Fn(Vec<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = crate::BatchResult> + Send + 'static,
    {
        self.scheduler.subscribe_event_batch(max, linger, f)
    }

    /// See [`SubscriberScheduler::subscribe_event`].
    pub fn subscribe_event<T: 'static, H: EventFn<T>>(&mut self, handler: H) -> &mut TaskSpec {
        self.scheduler.subscribe_event(handler)
    }

    /// Gives typed handlers a value they take as [`State<S>`](crate::State). The bus's
    /// own [`Publisher`] is there from the start, so a handler that publishes takes
    /// `State<Publisher>`.
    pub fn with_state<S: Clone + Send + Sync + 'static>(&mut self, state: S) -> &mut Self {
        self.scheduler.with_state(state);
        self
    }

    /// See [`SubscriberScheduler::health`]: liveness and readiness for probes.
    pub fn health(&self) -> Health {
        self.scheduler.health()
    }

    /// A shared view of the bus's tasks (health, counters, and the groups' lag through
    /// the driver's admin) for probes and exporters that run beside it. See [`Monitor`].
    pub fn monitor(&self) -> Monitor {
        self.scheduler.monitor().with_admin(Arc::clone(&self.admin))
    }

    /// See [`SubscriberScheduler::start`].
    pub async fn start(&mut self) -> Result<()> {
        self.scheduler.start().await
    }

    /// Starts what was subscribed, runs until the process is asked to stop (SIGTERM, as
    /// container runtimes and systemd send it, or Ctrl-C), then shuts down as
    /// [`Bus::shutdown`] does, with `grace` for the handlers still running, and returns the
    /// report. The one call a service's `main` needs:
    ///
    /// ```no_run
    /// # async fn demo(mut bus: tidewater_core::Bus) -> tidewater_core::Result<()> {
    /// let report = bus.run_until_stopped(std::time::Duration::from_secs(30)).await?;
    /// if !report.is_clean() {
    ///     eprintln!("left for redelivery: {} handler calls", report.abandoned());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn run_until_stopped(&mut self, grace: Duration) -> Result<ShutdownReport> {
        // Listening before starting, so a signal that comes while subscribing is not the
        // default one that ends the process without draining.
        let stop = stop_signal()?;
        self.run_until(stop, grace).await
    }

    /// Starts what was subscribed, runs until `stop` completes, then shuts down with
    /// `grace` as [`Bus::shutdown`] does: [`Bus::run_until_stopped`] with a stop of your
    /// own (a oneshot from an admin endpoint, a test).
    pub async fn run_until(&mut self, stop: impl Future<Output = ()>, grace: Duration) -> Result<ShutdownReport> {
        self.start().await?;
        stop.await;
        tracing::info!(?grace, "asked to stop; draining");
        self.shutdown(grace).await
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

/// SIGTERM or Ctrl-C, whichever comes first; listening starts when this is called.
fn stop_signal() -> Result<impl Future<Output = ()>> {
    let failed = |e: std::io::Error| {
        crate::Error::new(crate::ErrorKind::Config, "cannot listen for stop signals").with_source(e)
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(failed)?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(failed)?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        let _ = failed;
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
