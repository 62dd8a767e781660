//! The core of tidewater: one API to publish and consume messages on any broker.
//!
//! - [`Message`] is the envelope; a [`Delivery`] is a message as a handler receives it,
//!   with its attempt count and [`Position`], which says whether the broker settles
//!   messages one by one ([`DeliveryModel::Queue`]) or by committing offsets
//!   ([`DeliveryModel::Log`]).
//! - [`Writer`] and [`Reader`] are what drivers implement: a reader opens a subscription
//!   and hands back its [`Source`], and core runs the handlers over it ([`run_source`],
//!   called by [`Reader::read`]), so readiness, concurrency, per-key order, panics and
//!   shutdown behave the same on every broker.
//! - [`Publisher`] turns typed [`Event`]s into messages through an [`EventRegistry`], a
//!   [`Codec`] and an [`IdFactory`]; [`SubscriberScheduler`] runs one worker per read task
//!   and shuts down gracefully; [`Bus`] puts them together.
//! - [`Error`] (transport) and [`HandlerError`] (handlers) say what went wrong and
//!   whether a retry can help.
//!
//! # Where things are
//!
//! | concern | files |
//! |---|---|
//! | the envelope | `message.rs` (Message, Headers, wire names), `topic.rs` (TopicName, a shared topic name), `delivery.rs` (Delivery, Position, Settlement), `message_id.rs` (MessageId, kept inline), `id.rs` (the id factories), `unix_time.rs` (times as Unix milliseconds), `names.rs` (the topic rule) |
//! | what a driver implements | `driver.rs`, `writer.rs`, `reader.rs` (Reader, Source, ReadTask, TaskStats), `settle.rs` (Incoming, Settle, SharedSettle), `admin.rs` (topics, lag), `commit.rs` (offset commits for logs) |
//! | running handlers | `runner.rs` (the shared read loop, lanes, settlement), `scheduler.rs` (workers, restarts, shutdown), `shutdown.rs`, `hash.rs` (lanes by key), `lane_queue.rs` (a fetch's share handed to a lane at once) |
//! | handlers and middleware | `handler.rs` (Handler, Middleware, Around, `handler_fn`, `middleware_fn`), `extract.rs` (typed handlers, State), `dispatch.rs` (a group's typed handlers of one topic, as one), `extensions.rs`, `context.rs` (correlation ids) |
//! | failures | `error.rs`, `dead_letter.rs` (DeadLetter, Redrive, RedriveRefusal), `reach.rs` (whether a broker's address takes connections, for connect errors) |
//! | publishing | `publisher.rs`, `event.rs` (Event, EventRegistry), `codec.rs`, `transaction.rs` (writes that land together, consumed positions with them), `request.rs` (request/reply) |
//! | the service's view | `bus.rs`, `health.rs`, `monitor.rs` (health, counters and lag for probes and exporters) |
//! | tests | `testing/` (Recorder, Gate, TestKit) |

mod admin;
mod batch;
mod bus;
mod codec;
mod commit;
pub mod context;
pub mod dead_letter;
mod delivery;
mod dispatch;
mod driver;
mod error;
mod event;
mod extensions;
mod extract;
mod handler;
pub mod hash;
mod health;
pub mod id;
mod json;
mod lane_queue;
mod message;
mod message_id;
mod monitor;
pub mod names;
mod pause;
mod publisher;
pub mod reach;
mod reader;
pub mod request;
mod runner;
mod scheduler;
mod settle;
mod shutdown;
pub mod testing;
mod topic;
pub mod transaction;
pub mod unix_time;
mod writer;

pub use admin::{Admin, PartitionLag};
pub use batch::{batch_handler_fn, BatchError, BatchHandler, BatchResult, BatchSpec, FnBatchHandler};
pub use bus::Bus;
pub use codec::{Codec, JsonCodec};
pub use commit::{PartitionCommits, Ticket};
pub use dead_letter::{DeadLetter, Redrive, RedriveRefusal};
pub use delivery::{DeliveredMessage, Delivery, DeliveryModel, DispatchNote, Position, Settlement};
pub use driver::Driver;
pub use error::{Attempts, Error, ErrorKind, HandlerError, Recovery, Result};
pub use event::{Event, EventRegistry};
pub use extensions::Extensions;
pub use extract::{EventFn, FromDelivery, HandlerResult, State};
pub use handler::{
    apply_chain, handler_fn, middleware_fn, Around, BoxHandler, DynHandler, FnHandler, FnMiddleware, Handler, Inner,
    Layered, Middleware, Next, Stack, TaskHandler,
};
pub use health::{Health, TaskHealth};
pub use id::{IdFactory, KsuidIds, UuidV7Ids};
pub use message::{wire, Headers, Message};
pub use message_id::MessageId;
pub use monitor::{Monitor, TaskLag};
pub use pause::PauseSwitch;
pub use publisher::Publisher;
pub use reader::{ReadContext, ReadTask, Reader, ReadySignal, Source, StartFrom, TaskReport, TaskStats, MOST_A_FETCH};
pub use request::{NativeRequests, Requester};
pub use runner::{panic_message, run_source};
pub use scheduler::{ShutdownReport, SubscriberScheduler, TaskSpec};
pub use settle::{Incoming, Settle, Settler, SharedSettle};
pub use shutdown::{stop_pair, StopHandle, StopSignal};
pub use topic::TopicName;
pub use transaction::{Transaction, Transactions};
pub use writer::{await_receipts, BrokerWriter, Closable, WriteNow, Writer};
