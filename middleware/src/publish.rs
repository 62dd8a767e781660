//! The publish side: interceptors and metrics around a writer, and handler metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tidewater_core::{
    BoxHandler, Delivery, Error, Handler, HandlerError, Message, MessageId, Middleware, Result, TopicName, Writer,
};

/// Sees every message a writer sends, and the broker's answer.
///
/// `on_send` may change the message (add a header, say) before it is written;
/// `on_acknowledgement` is told the outcome of each write call, with the id and topic of
/// every message in it.
pub trait PublishInterceptor: Send + Sync + 'static {
    /// Called for each message before it is written.
    fn on_send(&self, _message: &mut Message) {}

    /// Called after each write with the messages' (id, topic) and the result.
    fn on_acknowledgement(&self, _sent: &[(MessageId, TopicName)], _result: std::result::Result<(), &Error>) {}
}

/// What happened to a handler call, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Processed.
    Ok,
    /// Failed; retrying can help.
    Transient,
    /// Failed; retrying cannot help.
    Permanent,
}

/// Receives measurements. Every method has an empty default, and [`NoMetrics`] is the
/// default collector, so implement only what you export (to Prometheus, OpenTelemetry...).
/// Fetch counts (batches and deliveries fetched) live in each task's
/// [`TaskReport`](tidewater_core::TaskReport), live from `SubscriberScheduler::stats`.
pub trait MetricsCollector: Send + Sync + 'static {
    /// A write of `messages` messages (`bytes` payload bytes) to `topic` took `latency`.
    fn sent(&self, _topic: &str, _messages: usize, _bytes: usize, _latency: Duration, _error: Option<&Error>) {}

    /// A handler call on a message of `topic` took `latency` and ended with `outcome`.
    fn handled(&self, _topic: &str, _latency: Duration, _outcome: Outcome) {}
}

/// The collector that collects nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMetrics;

impl MetricsCollector for NoMetrics {}

/// A writer with interceptors and a metrics collector around it.
///
/// ```
/// # fn demo(writer: std::sync::Arc<dyn tidewater_core::Writer>) {
/// use std::sync::Arc;
/// use tidewater_core::Message;
/// use tidewater_middleware::{InstrumentedWriter, PublishInterceptor};
///
/// struct Stamp;
/// impl PublishInterceptor for Stamp {
///     fn on_send(&self, message: &mut Message) {
///         message.headers.insert("service", "billing");
///     }
/// }
/// let writer = Arc::new(InstrumentedWriter::new(writer).interceptor(Stamp));
/// # let _ = writer;
/// # }
/// ```
pub struct InstrumentedWriter {
    inner: Arc<dyn Writer>,
    interceptors: Vec<Arc<dyn PublishInterceptor>>,
    metrics: Arc<dyn MetricsCollector>,
}

impl InstrumentedWriter {
    /// Wraps `inner` with no interceptor and no metrics.
    pub fn new(inner: Arc<dyn Writer>) -> Self {
        Self { inner, interceptors: Vec::new(), metrics: Arc::new(NoMetrics) }
    }

    /// Adds an interceptor; they run in the order added.
    pub fn interceptor(mut self, interceptor: impl PublishInterceptor) -> Self {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// Sets the metrics collector.
    pub fn metrics(mut self, metrics: impl MetricsCollector) -> Self {
        self.metrics = Arc::new(metrics);
        self
    }
}

#[async_trait]
impl Writer for InstrumentedWriter {
    fn driver(&self) -> &'static str {
        self.inner.driver()
    }

    async fn write(&self, mut batch: Vec<Message>) -> Result<()> {
        for message in &mut batch {
            for interceptor in &self.interceptors {
                interceptor.on_send(message);
            }
        }
        let sent: Vec<(MessageId, TopicName)> = if self.interceptors.is_empty() {
            Vec::new()
        } else {
            batch.iter().map(|m| (m.id.clone(), m.stream.clone())).collect()
        };
        let topic = batch.first().map(|m| m.stream.clone()).unwrap_or_default();
        let (count, bytes) = (batch.len(), batch.iter().map(|m| m.payload.len()).sum());
        let started = Instant::now();
        let result = self.inner.write(batch).await;
        self.metrics.sent(&topic, count, bytes, started.elapsed(), result.as_ref().err());
        for interceptor in &self.interceptors {
            interceptor.on_acknowledgement(&sent, result.as_ref().map(|_| ()));
        }
        result
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

/// Reports each handler call's latency and outcome to a [`MetricsCollector`].
#[derive(Clone)]
pub struct Metrics {
    collector: Arc<dyn MetricsCollector>,
}

impl Metrics {
    /// Reports to `collector`.
    pub fn new(collector: impl MetricsCollector) -> Self {
        Self { collector: Arc::new(collector) }
    }
}

impl Middleware for Metrics {
    fn wrap(&self, inner: BoxHandler) -> BoxHandler {
        Arc::new(MetricsHandler { inner, collector: Arc::clone(&self.collector) })
    }
}

struct MetricsHandler {
    inner: BoxHandler,
    collector: Arc<dyn MetricsCollector>,
}

impl Handler for MetricsHandler {
    async fn handle(&self, delivery: Delivery) -> std::result::Result<(), HandlerError> {
        let started = Instant::now();
        let topic = delivery.message().stream.clone();
        let result = self.inner.handle(delivery).await;
        let outcome = match &result {
            Ok(()) => Outcome::Ok,
            Err(e) if e.is_transient() => Outcome::Transient,
            Err(_) => Outcome::Permanent,
        };
        self.collector.handled(&topic, started.elapsed(), outcome);
        result
    }
}
