//! Prometheus metrics for a tidewater service, consumer lag included, and a small HTTP
//! endpoint for probes and scrapes.
//!
//! [`PrometheusMetrics::instrument`] takes a [`Bus`] and measures
//! what it does; [`PrometheusMetrics::render`] writes the OpenMetrics text a scrape
//! gets; [`serve`] answers `/metrics`, `/health/live` and `/health/ready`.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `tidewater_messages_published_total` | topic | messages the bus's writer wrote |
//! | `tidewater_publish_errors_total` | topic | messages whose write failed |
//! | `tidewater_publish_duration_seconds` | topic | a write call's time, until the broker took its messages (or refused them); a call that wrote to several topics counts under its first |
//! | `tidewater_messages_delivered_total` | topic, group | handed to a handler by the broker |
//! | `tidewater_messages_acked_total` | topic, group | handled and settled as done |
//! | `tidewater_messages_nacked_total` | topic, group | settled for redelivery |
//! | `tidewater_messages_dead_lettered_total` | topic, group | written to a dead-letter queue |
//! | `tidewater_messages_skipped_total` | topic, group | of an event type the task's handlers do not take, settled unhandled |
//! | `tidewater_handler_failures_total` | topic, group | failed with an error and not dead-lettered (so redelivered) |
//! | `tidewater_handler_panics_total` | topic, group | panicked and not dead-lettered |
//! | `tidewater_settle_errors_total` | topic, group | settlements the broker did not take |
//! | `tidewater_handler_retries_total` | topic, group | calls made again in place by retry middleware |
//! | `tidewater_reader_restarts_total` | topic, group | readers restarted after a failure |
//! | `tidewater_messages_in_flight` | topic, group | handed out, not yet settled |
//! | `tidewater_task_ready` | topic, group | 1 while the task is subscribed (which it stays while its client reconnects) |
//! | `tidewater_task_paused` | topic, group | 1 while the task is paused ([`Monitor::pause`](tidewater_core::Monitor::pause)) |
//! | `tidewater_connected` | driver | 1 while the driver's connection is up, 0 while it is not; absent where the driver cannot tell ([`Reader::connected`](tidewater_core::Reader::connected)) |
//! | `tidewater_consumer_lag` | topic, group, partition | not yet settled by the group, asked of the broker at each scrape (left out for a group whose broker has not answered within 2 s: [`PrometheusMetrics::with_lag_timeout`]) |
//! | `tidewater_handler_duration_seconds` | topic, group | the handler chain's time per delivery (single handlers: middleware does not wrap batch handlers, whose deliveries the counters above count all the same) |
//! | `tidewater_circuit_state` | breaker, state | 1 for the state a [`CircuitBreaker`] given to [`PrometheusMetrics::watch_breaker`] is in (`closed`, `open`, `half_open`), 0 for the others |
//! | `tidewater_circuit_held` | breaker | deliveries the breaker holds while it is open |
//! | `tidewater_circuit_opened_total` | breaker | times it opened after being closed |
//!
//! Why `prometheus-client` and not the `metrics` facade with its exporter: the counters
//! of a task already live in the scheduler, so the exporter reads them at scrape time
//! (a collector) instead of mirroring every event into a second set of counters; the
//! registry is a value, not a process global, so two buses (or two tests) in one
//! process keep apart; and it needs no HTTP stack of its own.
//!
//! ```no_run
//! # async fn demo(driver: tidewater_memory::MemoryBroker) -> tidewater_core::Result<()> {
//! use std::time::Duration;
//! use tidewater_core::{Bus, EventRegistry};
//! use tidewater_prometheus::PrometheusMetrics;
//!
//! let mut bus = Bus::new(&driver, EventRegistry::new());
//! let metrics = PrometheusMetrics::new();
//! metrics.instrument(&mut bus);
//! // ... subscribe handlers ...
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await.expect("a free port");
//! tokio::spawn(tidewater_prometheus::serve(listener, metrics.clone(), bus.monitor()));
//! bus.run_until_stopped(Duration::from_secs(30)).await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod breakers;
mod collector;
mod http;
mod instruments;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tidewater_core::{Bus, Codec, Monitor};
use tidewater_middleware::CircuitBreaker;

pub use http::serve;
pub use instruments::{HandlerTimer, PublishCounter};

use crate::breakers::BreakerCollector;
use crate::collector::TaskCollector;
use crate::instruments::Instruments;

/// A registry of a service's tidewater metrics. Clones share it.
#[derive(Clone)]
pub struct PrometheusMetrics {
    registry: Arc<Mutex<Registry>>,
    tasks: Arc<TaskCollector>,
    instruments: Arc<Instruments>,
    breakers: Arc<BreakerCollector>,
    lag_timeout: Duration,
}

impl std::fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusMetrics").finish_non_exhaustive()
    }
}

impl Default for PrometheusMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PrometheusMetrics {
    /// An empty registry whose metrics are named `tidewater_...`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tidewater");
        let tasks = Arc::new(TaskCollector::default());
        let instruments = Arc::new(Instruments::default());
        let breakers = Arc::new(BreakerCollector::default());
        registry.register_collector(Box::new(Arc::clone(&tasks)));
        registry.register_collector(Box::new(Arc::clone(&instruments)));
        registry.register_collector(Box::new(Arc::clone(&breakers)));
        let registry = Arc::new(Mutex::new(registry));
        Self { registry, tasks, instruments, breakers, lag_timeout: Duration::from_secs(2) }
    }

    /// How long a scrape waits for each group's lag (2 s by default); a group whose
    /// broker has not answered by then has no lag in that scrape, and the rest is served
    /// as it is. Without a bound, a scrape while the broker is away took the driver's
    /// request timeout (10 s on most) for each group, longer than Prometheus waits for
    /// a whole scrape (10 s by default), so every metric of the service was lost just
    /// when it was needed most.
    pub fn with_lag_timeout(mut self, timeout: Duration) -> Self {
        self.lag_timeout = timeout;
        self
    }

    /// Measures `bus`: its tasks' counters, health and lag ([`PrometheusMetrics::watch`]),
    /// its handlers' durations (a [`HandlerTimer`] outermost in its chain) and what it
    /// publishes (a [`PublishCounter`] around its writer). Call it before the bus starts.
    pub fn instrument<C: Codec + Clone>(&self, bus: &mut Bus<C>) {
        self.watch(bus.monitor());
        bus.with_middleware(self.handler_timer());
        let counter = self.publish_counter();
        bus.wrap_writer(|inner| counter.around(inner));
    }

    /// Reports the tasks `monitor` sees: counters, in-flight, readiness, and the lag of
    /// their groups where the monitor has an admin.
    pub fn watch(&self, monitor: Monitor) {
        self.tasks.watch(monitor);
    }

    /// Reports `breaker`'s state, the deliveries it holds and the times it opened,
    /// labelled with its name. Clones of a breaker are one circuit: watch it once.
    pub fn watch_breaker(&self, breaker: &CircuitBreaker) {
        self.breakers.watch(breaker.clone());
    }

    /// A middleware that times each delivery's handler chain.
    pub fn handler_timer(&self) -> HandlerTimer {
        HandlerTimer::new(Arc::clone(&self.instruments))
    }

    /// Counts what writers it is put around publish.
    pub fn publish_counter(&self) -> PublishCounter {
        PublishCounter::new(Arc::clone(&self.instruments))
    }

    /// Registers the service's own metrics next to these, so one scrape gets both.
    pub fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self.registry.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The OpenMetrics text of every metric, with each group's lag asked of its broker
    /// now, all groups at once. A broker that cannot tell, or not within the lag timeout
    /// ([`PrometheusMetrics::with_lag_timeout`]), leaves the lag of that task out (and
    /// logs why at debug level).
    pub async fn render(&self) -> String {
        self.tasks.refresh_lag(self.lag_timeout).await;
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String does not fail");
        text
    }
}
