//! # tidewater
//!
//! One API to publish and consume messages on any broker. Write handlers once, pick
//! Kafka, NATS, Pulsar or StreamBus with a Cargo feature, and use the in-memory driver in
//! tests.
//!
//! This crate re-exports [`tidewater_core`] (messages, publisher, scheduler, bus) and,
//! behind features, the drivers and middleware:
//!
//! | feature      | module          | status |
//! |--------------|-----------------|--------|
//! | `memory` (default) | `memory` | in-process broker for tests and development |
//! | `derive` (default) | `Event` | `#[derive(Event)]`: `#[event(type = "order.placed", key = order_id)]`, and `aliases = [...]` for a renamed type's former names |
//! | `middleware` (default) | `middleware` | retry, dedup, dead-letter queue, tracing, timeout, panic recovery, correlation ids, circuit breaker, rate limit |
//! | `kafka`      | `kafka`       | consumer groups with commits that never pass an unprocessed record, on rdkafka |
//! | `nats`       | `nats`        | core NATS (at most once) and JetStream (at least once), on async-nats |
//! | `pulsar`     | `pulsar`      | subscriptions (Shared, Key_Shared, Exclusive, Failover) with per-message acks, delayed nacks, ack timeout and the broker's dead-letter policy; batching producers; on the pulsar crate |
//! | `streambus`  | `streambus`   | native client for both StreamBus protocol generations: groups, offsets and transactions on later brokers, static partitions and a value envelope on v1.0.x |
//! | `prometheus` | `prometheus`  | Prometheus metrics (counters per task, handler durations, consumer lag per partition, circuit breakers) and a `/metrics`, `/health/live`, `/health/ready` endpoint, on prometheus-client |
//! | `otel`       | `otel`        | OpenTelemetry trace context across the broker: W3C `traceparent` in headers, producer and consumer spans, on tracing-opentelemetry |
//! | `outbox`     | `outbox`      | a transactional outbox on PostgreSQL (sqlx): messages stored in the business transaction, relayed to any driver in order per key by one or several relays; and the inbox, which makes a handler's writes happen once per message |
//! | `full`       | all of the above | |
//!
//! A default build compiles no network client crate.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tidewater::Result<()> {
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use tidewater::{memory::MemoryBroker, Bus, Delivery, Event, EventRegistry, HandlerError};
//!
//! #[derive(Serialize, Deserialize, Event)]
//! #[event(type = "order.placed", key = order_id)]
//! struct OrderPlaced { order_id: String }
//!
//! let broker = MemoryBroker::new();
//! let mut bus = Bus::new(&broker, EventRegistry::new().route::<OrderPlaced>("orders"));
//! bus.subscribe_event(|order: OrderPlaced, _d: Delivery| async move {
//!     println!("billing order {}", order.order_id);
//!     Ok::<_, HandlerError>(())
//! })
//! .group("billing");
//! bus.start().await?;
//! bus.publisher().publish(&OrderPlaced { order_id: "o-1".into() }).await?;
//! broker.wait_acked("orders", "billing", 1, Duration::from_secs(5)).await?;
//! bus.shutdown(Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

// The README's Rust blocks, compiled and run as doc tests so that they stay true to the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

pub use tidewater_core::*;

/// `#[derive(Event)]`: `#[event(type = "order.placed", key = order_id)]` on the struct
/// implements [`Event`] with that type name and that field as the partition key;
/// `aliases = ["OrderPlaced"]` adds the names the type had before
/// ([`Event::ALIASES`]).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tidewater::Event;
///
/// #[derive(Serialize, Deserialize, Event)]
/// #[event(type = "order.placed", key = order_id, aliases = ["OrderPlaced"])]
/// struct OrderPlaced { order_id: String }
///
/// assert_eq!((OrderPlaced::TYPE, OrderPlaced::ALIASES), ("order.placed", &["OrderPlaced"][..]));
/// ```
///
/// A mistake in the attribute is a compile error that says what is wrong: a missing
/// `type`, a `key` that names no field, an alias that is the type's own name.
///
/// ```compile_fail
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize, tidewater::Event)]
/// #[event(type = "order.placed", key = id)] // OrderPlaced has no field `id`
/// struct OrderPlaced { order_id: String }
/// ```
///
/// ```compile_fail
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize, tidewater::Event)]
/// #[event(type = "order.placed", aliases = ["order.placed"])] // its own name
/// struct OrderPlaced { order_id: String }
/// ```
#[cfg(feature = "derive")]
pub use tidewater_macros::Event;

/// The in-memory driver.
#[cfg(feature = "memory")]
pub use tidewater_memory as memory;

/// Handler middleware.
#[cfg(feature = "middleware")]
pub use tidewater_middleware as middleware;

/// The Kafka driver, on rdkafka.
#[cfg(feature = "kafka")]
pub use tidewater_kafka as kafka;

/// The NATS driver: core NATS and JetStream.
#[cfg(feature = "nats")]
pub use tidewater_nats as nats;

/// The Pulsar driver, on the pulsar crate.
#[cfg(feature = "pulsar")]
pub use tidewater_pulsar as pulsar;

/// The StreamBus driver: our own client for both StreamBus protocol generations.
#[cfg(feature = "streambus")]
pub use tidewater_streambus as streambus;

/// Prometheus metrics, consumer lag included, and the health and metrics endpoint.
#[cfg(feature = "prometheus")]
pub use tidewater_prometheus as prometheus;

/// OpenTelemetry trace context across the broker.
#[cfg(feature = "otel")]
pub use tidewater_otel as otel;

/// The transactional outbox and inbox on PostgreSQL.
#[cfg(feature = "outbox")]
pub use tidewater_outbox as outbox;
