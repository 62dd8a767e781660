//! A transactional outbox on PostgreSQL: a service stores the messages it means to
//! publish in the same database transaction as its business write, so both happen or
//! neither does; a [`Relay`] forwards them to any driver afterwards, at least once, in
//! order per key, and deletes them. A message goes out with its own timestamp (to the
//! microsecond), however long it waited in the table.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool, publisher: tidewater_core::Publisher, writer: std::sync::Arc<dyn tidewater_core::Writer>) -> tidewater_core::Result<()> {
//! use tidewater_core::Message;
//! use tidewater_outbox::{Outbox, Relay};
//!
//! let outbox = Outbox::new();
//! outbox.create_table(&pool).await?;
//!
//! // In the service: the order and its event, in one transaction.
//! let mut tx = pool.begin().await.expect("a transaction");
//! sqlx::query("INSERT INTO orders (id) VALUES ('o-1')").execute(&mut *tx).await.expect("the order");
//! outbox.store(&mut tx, &Message::new("orders", "{\"id\":\"o-1\"}").with_key("o-1")).await?;
//! tx.commit().await.expect("committed");
//!
//! // Anywhere (several instances may run): forward what was committed.
//! let relay = Relay::new(pool.clone(), writer);
//! relay.run_until(std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! **Order and several relays.** Rows go to one of [`BUCKETS`] buckets by key (keyless
//! rows by id). A relay takes a bucket with a transaction-scoped advisory lock, forwards
//! its oldest rows in order, deletes them and commits; another relay skips a bucket that
//! is taken and works on the others. So relays run side by side and never reorder a key.
//!
//! **At least once.** Rows are deleted only after the broker took them. A relay that dies
//! between the two leaves them in the table; the next pass forwards them again, so the
//! consumer sees a duplicate (with the same message id: deduplicate on it). One stopped
//! through [`Relay::run_until`] finishes the bucket it is writing first, and leaves none.
//!
//! **Rows the broker refuses** for good (too large, an unknown topic) are set aside in
//! `<table>_refused` with the reason, so the rest flows; [`Outbox::refused`] lists them
//! and [`Outbox::requeue_refused`] puts them back.
//!
//! **Scheduled messages.** [`Outbox::store_at`] stores a message to go out at a later
//! time (a reminder, a timeout), in the same transaction; the relay forwards it once it
//! is due, and [`Outbox::cancel_scheduled`] takes it back until then.
//!
//! **The consuming side.** An [`Inbox`] records, in a handler's own transaction, that
//! its group processed a message, so a redelivered message changes the database once:
//! with the outbox in the same transaction, a handler's writes and what it publishes
//! happen once per message, however often the broker delivers it.

#![forbid(unsafe_code)]

mod inbox;
mod refused;
mod relay;
mod scheduled;
mod store;

pub use inbox::Inbox;
pub use refused::Refused;
pub use relay::{Relay, RelayReport};
pub use store::Outbox;

/// How many buckets rows are spread over; relays work on different buckets at once.
pub const BUCKETS: i32 = 16;
