//! Middleware for tidewater handlers: retry, deduplication, dead-letter queue, tracing,
//! timeout, panic recovery, correlation ids, a circuit breaker and a rate limit; and, on
//! the publish side, interceptors and metrics around a writer.
//!
//! # Order
//!
//! A chain is a list; the first middleware is the outermost. This order works for most
//! services, and the quickstart uses it:
//!
//! ```text
//! runner
//!   └─ Trace           span per delivery, outcome recorded
//!      └─ CorrelationId   correlation id in scope for what the handler publishes
//!         └─ DeadLetter      permanent failure, or retries used up -> <topic>.dlq, then settle
//!            └─ Deduplicate     already processed by this group -> ack, skip the rest
//!               └─ CircuitBreaker  (optional) what the handler calls is down -> hold, try one
//!                  └─ Retry           transient failure -> back off, call again
//!                     └─ RateLimit       (optional) each call waits its turn
//!                        └─ Timeout         each call limited
//!                           └─ handler        a panic is a transient error here, with no opt-in
//! ```
//!
//! A [`Bus`](tidewater_core::Bus) adds a `DeadLetter` to `<topic>.dlq` outermost by
//! itself when a task's chain has none; add your own where the order above puts it to
//! choose its topic or `max_deliveries`. [`Recover::permanent`] goes innermost when
//! panics should be dead-lettered at once rather than retried.
//!
//! Why this order: `Deduplicate` sits inside `DeadLetter` so that a dead-lettered
//! message is never committed as processed and can be redriven; `Retry` sits inside
//! `Deduplicate` so a retried success is committed once; `Timeout` sits inside `Retry` so
//! each attempt gets the full limit. `CircuitBreaker` sits outside `Retry`, so that it
//! counts messages that failed after their retries rather than each retry, and inside
//! `DeadLetter`, which returns a failure it dead-lettered as a success that would keep
//! the circuit closed through any outage; `RateLimit` sits inside
//! `Retry` so that a retry is a call that waits its turn like any other, and outside
//! `Timeout` so that the wait is not counted against the call.
//!
//! ```
//! # fn demo(scheduler: &mut tidewater_core::SubscriberScheduler, dlq: std::sync::Arc<dyn tidewater_core::Writer>) {
//! use std::time::Duration;
//! use tidewater_middleware::*;
//!
//! scheduler
//!     .with_middleware(Trace)
//!     .with_middleware(CorrelationId)
//!     .with_middleware(DeadLetter::new(dlq))
//!     .with_middleware(Deduplicate::in_memory())
//!     .with_middleware(Retry::new().max_attempts(3))
//!     .with_middleware(Timeout(Duration::from_secs(30)));
//! # }
//! ```
//!
//! Every middleware here is an [`Around`](tidewater_core::Around) layer, so the same
//! chain can be one layer joined with `then`: the layers then run as one future, one
//! allocation a call for the whole chain instead of one for each layer.
//!
//! ```
//! # fn demo(scheduler: &mut tidewater_core::SubscriberScheduler, dlq: std::sync::Arc<dyn tidewater_core::Writer>) {
//! use std::time::Duration;
//! use tidewater_core::Around;
//! use tidewater_middleware::*;
//!
//! scheduler.with_middleware(
//!     Trace
//!         .then(CorrelationId)
//!         .then(DeadLetter::new(dlq))
//!         .then(Deduplicate::in_memory())
//!         .then(Retry::new().max_attempts(3))
//!         .then(Timeout(Duration::from_secs(30))),
//! );
//! # }
//! ```
//!
//! Put around the handler itself with [`Around::wrapping`](tidewater_core::Around::wrapping)
//! and subscribed as one handler, the stack is called through its own type and costs no
//! allocation a message at all. Such a handler says whether it dead-letters, so the
//! scheduler's default dead letter stays out when the stack has its own.
//!
//! ```
//! # fn demo(bus: &mut tidewater_core::Bus) {
//! use std::time::Duration;
//! use tidewater_core::{handler_fn, Around, Delivery, HandlerError};
//! use tidewater_middleware::*;
//!
//! let handler = handler_fn(|_delivery: Delivery| async { Ok::<_, HandlerError>(()) });
//! let dlq = DeadLetter::new(bus.writer()).max_deliveries(5);
//! bus.subscribe(
//!     "orders",
//!     Trace
//!         .then(CorrelationId)
//!         .then(dlq)
//!         .then(Deduplicate::in_memory())
//!         .then(Retry::new().max_attempts(3))
//!         .then(Timeout(Duration::from_secs(30)))
//!         .wrapping(handler),
//! );
//! # }
//! ```
//!
//! # Why not tower
//!
//! Middleware here implement [`tidewater_core::Middleware`]: a function from handler to
//! handler over one async method. Tower's `Service` was considered and not taken: its
//! `poll_ready`/`&mut self` call model makes every shared handler a clone-per-call and
//! a buffer, its errors are boxed without the transient/permanent distinction that
//! retry and DLQ decisions need, and its timeout and rate-limit layers are small layers
//! here ([`Timeout`], [`RateLimit`]). An empty chain costs nothing (the handler is called
//! directly) and each layer given on its own costs one boxed future (a stack joined with `then`, one in
//! all; wrapped around a typed handler, none); the `chain_cost` benchmark measures each.

mod breaker;
mod correlation;
mod dedup;
mod publish;
mod rate;
mod recover;
mod retry;
mod timeout;
mod trace;

pub use breaker::{CircuitBreaker, CircuitState};
pub use correlation::CorrelationId;
pub use dedup::{DedupKey, Deduplicate, DeduplicationStorage, InMemoryDedupStorage, MokaDedupStorage};
pub use publish::{InstrumentedWriter, Metrics, MetricsCollector, NoMetrics, Outcome, PublishInterceptor};
pub use rate::RateLimit;
pub use recover::Recover;
pub use retry::Retry;
pub use tidewater_core::dead_letter::{headers as dlq_headers, DeadLetter, Redrive, RedriveRefusal};
pub use tidewater_core::{middleware_fn, Next};
pub use timeout::Timeout;
pub use trace::Trace;
