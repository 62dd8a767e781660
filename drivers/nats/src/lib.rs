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
//! | id             | `Nats-Msg-Id` (JetStream de-duplicates by it); a dead letter and a redriven message, which repeat their original's id, go out under `<id>:dead-letter:<first failure>` or `<id>:redrive:<the dead letter's last failure>` with the id in `tw-id`, so JetStream does not drop them as repeats (but still drops a retried write of either) |
//! | key            | `tw-key` (must be UTF-8) |
//! | content type   | `Content-Type`   |
//! | timestamp      | `tw-time` (ms since the Unix epoch), left out when the id is a UUIDv7 made in the same millisecond (tidewater's default ids), whose first 48 bits hold it |
//! | headers        | as they are (no line breaks in values) |
//!
//! On core NATS, which de-duplicates nothing, [`NatsCore::without_message_ids`] leaves the
//! id and the time out, and [`NatsCore::with_implied_content_type`] a content type that
//! goes without saying: a message with nothing else to carry then goes out as a plain
//! `PUB` with no headers, as a plain client sends it.
//!
//! Writes fail with typed errors: `InvalidName` for a subject NATS cannot publish to,
//! `InvalidInput` for a header it cannot carry, `TooLarge` for a message over the
//! server's `max_payload` (headers included), `UnknownTopic` for a JetStream subject no
//! stream covers when auto-create is off, and `Connection` or `Timeout`, which a retry
//! can fix, when the server is gone or slow. A batch is checked whole before any of it
//! is sent, so a bad message in it writes none.

#![forbid(unsafe_code)]

mod config;
mod core_nats;
mod headers;
mod jetstream;
mod requests;
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

/// `e`, the error of message `i` of a batch of `total`, saying that the ones before it
/// were sent: a write that fails part way must say which message failed.
pub(crate) fn failed_in_batch(e: tidewater_core::Error, i: usize, total: usize) -> tidewater_core::Error {
    if total == 1 {
        return e;
    }
    tidewater_core::Error::new(
        e.kind(),
        format!("message {i} of the batch of {total} was not sent; the {i} before it were"),
    )
    .with_driver(DRIVER)
    .with_source(e)
}

#[cfg(test)]
mod tests {
    use tidewater_core::{Error, ErrorKind};

    use super::failed_in_batch;

    #[test]
    fn a_failure_part_way_names_the_message_and_keeps_the_kind() {
        let alone = failed_in_batch(Error::new(ErrorKind::TooLarge, "too big"), 0, 1);
        assert_eq!((alone.kind(), alone.to_string().contains("batch")), (ErrorKind::TooLarge, false), "{alone}");

        let e = failed_in_batch(Error::new(ErrorKind::Connection, "gone"), 2, 5);
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert!(e.is_retryable());
        assert!(e.to_string().contains("message 2 of the batch of 5 was not sent; the 2 before it were"), "{e}");
        let source = e.get_ref().expect("the failure is the source").to_string();
        assert!(source.contains("gone"), "{source}");
    }
}
