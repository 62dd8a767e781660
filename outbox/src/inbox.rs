//! The transactional inbox: which messages a consumer group has processed, written in
//! the handler's own transaction.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tidewater_core::{Delivery, Error, ErrorKind, Result};

use crate::store::{check_table, quoted, table_error};

/// The messages each consumer group has processed, kept in a PostgreSQL table and
/// written in the handler's own transaction: so the handler's writes to the database
/// happen once per message, however often the broker delivers it.
///
/// Brokers deliver at least once: a handler whose commit reached the database but whose
/// acknowledgement did not reach the broker (a crash, a rebalance, a lost connection)
/// gets the message again. A handler that claims the message in its transaction
/// ([`Inbox::claim`]) before its business writes makes the claim and the writes one:
/// both commit or neither does, and a delivery whose claim finds the message already
/// processed by its group does nothing and succeeds. With an [`Outbox`](crate::Outbox)
/// in the same transaction, what the handler publishes goes out once per message too.
///
/// Two deliveries of one message in flight at once (a redelivery racing a slow first
/// delivery, on two members of the group) are safe as well: the second claim waits on
/// the first transaction's row, and returns `false` once that commits, or claims the
/// message once that rolls back.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool, inbox: tidewater_outbox::Inbox, delivery: tidewater_core::Delivery) -> tidewater_core::Result<()> {
/// let mut tx = pool.begin().await.expect("a transaction");
/// if !inbox.claim(&mut tx, &delivery).await? {
///     return Ok(()); // processed already: its writes are in the database
/// }
/// sqlx::query("UPDATE accounts SET cents = cents - 1250 WHERE id = 'a-1'")
///     .execute(&mut *tx)
///     .await
///     .expect("the charge");
/// tx.commit().await.expect("committed");
/// # Ok(()) }
/// ```
///
/// Unlike the middleware's `Deduplicate` (in memory, or a store beside the handler's),
/// nothing can happen between the claim and the writes: there is no moment where the
/// writes committed and the claim did not, or the other way round.
/// Rows stay until [`Inbox::forget_older_than`] removes them: keep them longer than the
/// broker may redeliver (its retention, for a log).
#[derive(Clone, Debug)]
pub struct Inbox {
    table: String,
    /// The claim's statement, made once: a handler claims every message.
    claim: Arc<str>,
}

impl Default for Inbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Inbox {
    /// The table `tidewater_inbox`.
    pub fn new() -> Self {
        Self::named("tidewater_inbox")
    }

    fn named(table: &str) -> Self {
        let claim =
            format!("INSERT INTO {} (consumer_group, id) VALUES ($1, $2) ON CONFLICT DO NOTHING", quoted(table));
        Self { table: table.to_owned(), claim: claim.into() }
    }

    /// Another table name, under the rule of [`Outbox::with_table`](crate::Outbox::with_table).
    ///
    /// ```
    /// use tidewater_outbox::Inbox;
    ///
    /// assert!(Inbox::with_table("billing_inbox").is_ok());
    /// assert!(Inbox::with_table("billing-inbox").is_err());
    /// ```
    pub fn with_table(name: &str) -> Result<Self> {
        check_table("inbox", name)?;
        Ok(Self::named(name))
    }

    /// The table's name, as given.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn sql_name(&self) -> String {
        quoted(&self.table)
    }

    /// Creates the table and its index if they are missing. Run it when a service
    /// starts, or put the same statements in your migrations.
    pub async fn create_table(&self, pool: &PgPool) -> Result<()> {
        let t = self.sql_name();
        let index = quoted(&format!("{}_processed_at", self.table));
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (consumer_group TEXT NOT NULL, id TEXT NOT NULL, \
                 processed_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (consumer_group, id))"
            ),
            // For forgetting old rows without reading the whole table.
            format!("CREATE INDEX IF NOT EXISTS {index} ON {t} (processed_at)"),
        ];
        for statement in statements {
            sqlx::query(&statement).execute(pool).await.map_err(|e| inbox_error("creating the table", e))?;
        }
        Ok(())
    }

    /// Claims `delivery`'s message for its consumer group through `connection`, which is
    /// the caller's open transaction (`&mut tx`): `true` the first time, so the handler
    /// goes on with its writes in the same transaction; `false` when a transaction that
    /// committed claimed it before, so the handler does nothing and returns `Ok`. A
    /// claim whose transaction rolls back is undone with it.
    ///
    /// A message is known by its id within its group (a task without a group counts as
    /// the group `""`). A message without an id is an `InvalidInput` error: a redelivery
    /// of it could not be told from a new message.
    pub async fn claim(&self, connection: &mut PgConnection, delivery: &Delivery) -> Result<bool> {
        let message = delivery.message();
        if message.id.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("inbox: a message of {} has no id, so its redeliveries cannot be told apart", message.stream),
            )
            .with_topic(message.stream.as_str()));
        }
        let done = sqlx::query(&self.claim)
            .bind(delivery.group().unwrap_or_default())
            .bind(message.id.as_str())
            .execute(connection)
            .await
            .map_err(|e| inbox_error("claiming a message", e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes the rows of messages processed more than `age` ago, and says how many.
    /// A message the broker delivers again after its row is gone is processed again.
    pub async fn forget_older_than(&self, pool: &PgPool, age: Duration) -> Result<u64> {
        let statement =
            format!("DELETE FROM {} WHERE processed_at < now() - make_interval(secs => $1)", self.sql_name());
        let done = sqlx::query(&statement)
            .bind(age.as_secs_f64())
            .execute(pool)
            .await
            .map_err(|e| inbox_error("forgetting old rows", e))?;
        Ok(done.rows_affected())
    }
}

fn inbox_error(what: &str, err: sqlx::Error) -> Error {
    table_error("inbox", what, err)
}
