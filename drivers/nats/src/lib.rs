//! The NATS driver of tidewater, on async-nats: [`NatsCore`] for core NATS (at most
//! once, queue groups) and [`JetStream`] (at least once: streams, acknowledged
//! publishes, durable pull consumers with explicit acks).
//!
//! Message fields travel as NATS headers (see the `headers` table below), so a plain
//! NATS client sees sensible headers, and a message from a plain client without them is
//! still read: its id is `Nats-Msg-Id` if set, else `<stream>-<sequence>` on JetStream
//! (stable across redeliveries, so deduplication works) or a new UUID on core NATS; its
//! time is that of a UUIDv7 id, else the server's receive time on JetStream, else the
//! time it arrived on core NATS.
//!
//! | Message field  | NATS header      |
//! |----------------|------------------|
//! | id             | `Nats-Msg-Id` (JetStream de-duplicates by it) |
//! | key            | `tw-key` (must be UTF-8) |
//! | content type   | `Content-Type`   |
//! | timestamp      | `tw-time` (ms since the Unix epoch), left out when the id is a UUIDv7 made in the same millisecond (tidewater's default ids), whose first 48 bits hold it |
//! | headers        | as they are (no line breaks in values) |
//!
//! Writes fail with typed errors: `InvalidName` for a subject NATS cannot publish to,
//! `InvalidInput` for a header it cannot carry, `TooLarge` for a message over the
//! server's `max_payload` (headers included), `UnknownTopic` for a JetStream subject no
//! stream covers when auto-create is off, and `Connection` or `Timeout`, which a retry
//! can fix, when the server is gone or slow. A batch is checked whole before any of it
//! is sent, so a bad message in it writes none.
#![warn(missing_docs)]

mod config;
mod core_nats;
mod headers;
mod jetstream;
mod subjects;

pub use config::{Auth, NatsConfig, Tls};
pub use core_nats::NatsCore;
pub use jetstream::{JetStream, JetStreamConfig};

/// Re-exported so configurations can name stream settings.
pub use async_nats::jetstream::stream::{RetentionPolicy, StorageType};

pub(crate) const DRIVER: &str = "nats";

pub(crate) fn connection_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> tidewater_core::Error {
    tidewater_core::Error::new(tidewater_core::ErrorKind::Connection, what).with_source(e).with_driver(DRIVER)
}
