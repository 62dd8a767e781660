//! The core of tidewater: one API to publish and consume messages on any broker.
//!
//! - [`Message`] is the envelope; a [`Delivery`] is a message as a handler receives it,
//!   with its attempt count and [`Position`], which says whether the broker settles
//!   messages one by one ([`DeliveryModel::Queue`]) or by committing offsets
//!   ([`DeliveryModel::Log`]).
//! - [`Writer`] and [`Reader`] are what drivers implement; [`run_source`] is the shared
//!   loop that runs handlers over a driver's [`Source`], so concurrency, per-key order,
//!   panics and shutdown behave the same on every broker.
//! - [`Publisher`] turns typed [`Event`]s into messages through an [`EventRegistry`], a
//!   [`Codec`] and an [`IdFactory`]; [`SubscriberScheduler`] runs one worker per read task
//!   and shuts down gracefully; [`Bus`] puts them together.
//! - [`Error`] (transport) and [`HandlerError`] (handlers) say what went wrong and
//!   whether a retry can help.

mod admin;
mod bus;
mod codec;
mod commit;
pub mod context;
pub mod dead_letter;
mod delivery;
mod driver;
mod error;
mod event;
mod extensions;
mod extract;
mod handler;
pub mod hash;
mod health;
pub mod id;
mod message;
mod monitor;
pub mod names;
mod publisher;
mod reader;
mod runner;
mod scheduler;
mod shutdown;
pub mod testing;
mod writer;

pub use admin::{Admin, PartitionLag};
pub use bus::Bus;
pub use codec::{Codec, JsonCodec};
pub use commit::{PartitionCommits, Ticket};
pub use dead_letter::{DeadLetter, Redrive};
pub use delivery::{Delivery, DeliveryModel, Position, Settlement};
pub use driver::Driver;
pub use error::{Attempts, Error, ErrorKind, HandlerError, Recovery, Result};
pub use event::{Event, EventRegistry};
pub use extensions::Extensions;
pub use extract::{EventFn, FromDelivery, HandlerResult, State};
pub use handler::{
    apply_chain, handler_fn, middleware_fn, BoxHandler, FnHandler, FnMiddleware, Handler, Middleware, Next,
};
pub use health::{Health, TaskHealth};
pub use id::{IdFactory, KsuidIds, UuidV7Ids};
pub use message::{wire, Headers, Message};
pub use monitor::{Monitor, TaskLag};
pub use publisher::Publisher;
pub use reader::{
    Incoming, ReadContext, ReadTask, Reader, ReadySignal, Settle, Source, StartFrom, TaskReport, TaskStats,
};
pub use runner::{panic_message, run_source};
pub use scheduler::{ShutdownReport, SubscriberScheduler, TaskSpec};
pub use shutdown::{stop_pair, StopHandle, StopSignal};
pub use writer::{CloseFlag, Writer};
