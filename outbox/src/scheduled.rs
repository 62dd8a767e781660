//! Messages stored for later: kept in `<table>_scheduled` until they fall due, then
//! moved into the outbox by the relay.

use std::time::SystemTime;

use sqlx::{PgConnection, PgPool};
use tidewater_core::{Codec, Error, ErrorKind, Event, Message, MessageId, Publisher, Result};

use crate::store::{db_error, unix_micros, STORED};
use crate::Outbox;

impl Outbox {
    /// Stores `message` through `connection` (the caller's open transaction, as with
    /// [`Outbox::store`]) to go out at `deliver_at`, not before: a reminder a day after
    /// an order, the timeout of a payment that may never come. Once the transaction
    /// commits, the message waits in `<table>_scheduled`; the [`Relay`](crate::Relay)
    /// moves it into the outbox when it falls due (on its first pass from then, so within
    /// a poll interval when it is idle) and forwards it like any other, to any broker, in
    /// its key's order from then: a key's messages stored meanwhile for now go before it.
    /// A time already past makes it due at once. Until it is due,
    /// [`Outbox::cancel_scheduled`] takes it back.
    ///
    /// The message goes out stamped with `deliver_at`, or its own timestamp if that is
    /// later: it is published for that time, and a broker's time retention (Kafka's)
    /// counts from it, rather than deleting a message scheduled further ahead than the
    /// retention at its first check.
    ///
    /// ```no_run
    /// # async fn demo(pool: sqlx::PgPool) -> tidewater_core::Result<()> {
    /// use std::time::{Duration, SystemTime};
    /// use tidewater_core::Message;
    /// use tidewater_outbox::Outbox;
    ///
    /// let outbox = Outbox::new();
    /// let mut tx = pool.begin().await.expect("a transaction");
    /// let timeout = Message::new("payments.timeouts", "o-1").with_id("timeout-o-1").with_key("o-1");
    /// outbox.store_at(&mut tx, &timeout, SystemTime::now() + Duration::from_secs(15 * 60)).await?;
    /// tx.commit().await.expect("committed");
    ///
    /// // Later, in the transaction that records the payment:
    /// let mut tx = pool.begin().await.expect("a transaction");
    /// outbox.cancel_scheduled(&mut tx, "timeout-o-1").await?;
    /// tx.commit().await.expect("committed");
    /// # Ok(()) }
    /// ```
    ///
    /// Needs the table [`Outbox::create_table`] makes (a `Config` error says so where it
    /// is missing).
    pub async fn store_at(
        &self,
        connection: &mut PgConnection,
        message: &Message,
        deliver_at: SystemTime,
    ) -> Result<()> {
        self.insert(connection, message, Some(unix_micros(deliver_at))).await
    }

    /// Stores `event` as `publisher` would publish it, to go out at `deliver_at` (see
    /// [`Outbox::store_at`]), and returns its id, for [`Outbox::cancel_scheduled`].
    pub async fn store_event_at<E: Event, C: Codec>(
        &self,
        connection: &mut PgConnection,
        publisher: &Publisher<C>,
        event: &E,
        deliver_at: SystemTime,
    ) -> Result<MessageId> {
        let topic = publisher.registry().topic_of::<E>()?;
        let message = publisher.encode(topic, event)?;
        self.store_at(connection, &message, deliver_at).await?;
        Ok(message.id)
    }

    /// Takes back the scheduled message with `id`, through `connection` (the caller's
    /// transaction: it is taken back if that commits). True if it was still waiting, so
    /// it will not go out; false if it was due and moved into the outbox already (it goes
    /// out, or went), or no scheduled message has that id. Every scheduled message with
    /// that id is taken back.
    pub async fn cancel_scheduled(&self, connection: &mut PgConnection, id: &str) -> Result<bool> {
        let statement = format!("DELETE FROM {} WHERE id = $1", self.scheduled_sql_name());
        let done = sqlx::query(&statement)
            .bind(id)
            .execute(connection)
            .await
            .map_err(|e| scheduled_error("cancelling a scheduled message", e))?;
        Ok(done.rows_affected() > 0)
    }

    /// How many scheduled messages wait, due or not.
    pub async fn scheduled_count(&self, pool: &PgPool) -> Result<u64> {
        let statement = format!("SELECT count(*) FROM {}", self.scheduled_sql_name());
        let count: i64 = sqlx::query_scalar(&statement)
            .fetch_one(pool)
            .await
            .map_err(|e| scheduled_error("counting the scheduled messages", e))?;
        Ok(count.unsigned_abs())
    }

    /// Moves up to `limit` scheduled rows that are due into the outbox, in the order they
    /// fell due, and returns how many; `Ok(None)` if another relay is moving them now.
    /// One relay at a time moves, under an advisory lock, so that rows of a key due
    /// together keep their order.
    pub(crate) async fn move_due(&self, pool: &PgPool, limit: i64) -> std::result::Result<Option<u64>, sqlx::Error> {
        let mut tx = pool.begin().await?;
        // The buckets' locks take 0 to `BUCKETS - 1` under the same first key.
        let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1), -1)")
            .bind(self.table())
            .fetch_one(&mut *tx)
            .await?;
        if !mine {
            return Ok(None);
        }
        // New `seq`s, in the order the rows fell due: each joins its key's order then.
        let columns = "bucket, topic, id, key, content_type, headers, payload";
        let statement = format!(
            "WITH due AS (
                 DELETE FROM {scheduled} WHERE seq IN (
                     SELECT seq FROM {scheduled} WHERE deliver_at <= now() ORDER BY deliver_at, seq LIMIT $1)
                 RETURNING seq, {columns}, created_at, deliver_at)
             INSERT INTO {table} ({STORED})
             SELECT {columns}, GREATEST(created_at, deliver_at) FROM due ORDER BY deliver_at, seq",
            scheduled = self.scheduled_sql_name(),
            table = self.sql_name(),
        );
        let moved = sqlx::query(&statement).bind(limit).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(Some(moved))
    }
}

/// Whether `err` says a table is missing (SQLSTATE 42P01, `undefined_table`).
pub(crate) fn is_missing_table(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01"))
}

/// A database error doing `what` with the table of scheduled rows: the missing table
/// named as such, any other as [`db_error`] says it.
pub(crate) fn scheduled_error(what: &str, err: sqlx::Error) -> Error {
    if is_missing_table(&err) {
        missing_table_error(err)
    } else {
        db_error(what, err)
    }
}

/// The error for an outbox whose table of scheduled rows was never made: a table made
/// by an earlier version, whose migrations lack it.
pub(crate) fn missing_table_error(err: sqlx::Error) -> Error {
    Error::new(
        ErrorKind::Config,
        "the outbox has no table of scheduled messages; `Outbox::create_table` makes it (or add its statements to your migrations)",
    )
    .with_source(err)
    .with_driver("outbox")
}
