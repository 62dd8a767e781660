//! Rows the broker refused for good, kept aside so that the rest of the outbox flows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{PgConnection, PgPool, Row};
use tidewater_core::{MessageId, Result};

use crate::store::{db_error, STORED};
use crate::Outbox;

/// A row the relay set aside because the broker refused it for a reason that retrying
/// will not fix: too large, a topic that does not exist, an invalid name, headers that
/// cannot be read. Its whole row is kept in `<table>_refused`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Refused {
    /// Its place in the outbox: rows were stored in this order.
    pub seq: i64,
    /// The message id.
    pub id: MessageId,
    /// The topic it was stored for.
    pub topic: String,
    /// Why it was refused: the error's text.
    pub error: String,
    /// When the relay set it aside.
    pub refused_at: SystemTime,
}

impl Outbox {
    /// The rows the relay set aside, oldest first.
    pub async fn refused(&self, pool: &PgPool) -> Result<Vec<Refused>> {
        let select = format!(
            "SELECT seq, id, topic, error, extract(epoch FROM refused_at)::float8 AS at FROM {} ORDER BY seq",
            self.refused_sql_name()
        );
        let failed = |e| db_error("reading the refused rows", e);
        let rows = sqlx::query(&select).fetch_all(pool).await.map_err(failed)?;
        rows.iter()
            .map(|row| {
                let at: f64 = row.try_get("at").map_err(failed)?;
                Ok(Refused {
                    seq: row.try_get("seq").map_err(failed)?,
                    id: MessageId::from(row.try_get::<String, _>("id").map_err(failed)?),
                    topic: row.try_get("topic").map_err(failed)?,
                    error: row.try_get("error").map_err(failed)?,
                    refused_at: UNIX_EPOCH + Duration::from_secs_f64(at.max(0.0)),
                })
            })
            .collect()
    }

    /// Puts refused rows back in the outbox, after whatever it holds now, for the relay
    /// to try again: all of them, or those of `topic`. Returns how many. For after the
    /// cause is fixed (the topic created, the broker's size limit raised); a row refused
    /// again is set aside again.
    ///
    /// A requeued row goes after the rows of its key stored since it was refused, so
    /// those reached the broker before it.
    pub async fn requeue_refused(&self, pool: &PgPool, topic: Option<&str>) -> Result<u64> {
        // A new `seq`: after what the outbox holds now.
        let columns = format!("{STORED}, stored_at");
        let statement = format!(
            "WITH moved AS (DELETE FROM {refused} WHERE $1::text IS NULL OR topic = $1 RETURNING seq, {columns})
             INSERT INTO {table} ({columns}) SELECT {columns} FROM moved ORDER BY seq",
            refused = self.refused_sql_name(),
            table = self.sql_name(),
        );
        let done = sqlx::query(&statement)
            .bind(topic)
            .execute(pool)
            .await
            .map_err(|e| db_error("requeueing the refused rows", e))?;
        Ok(done.rows_affected())
    }

    /// Moves the row `seq` to the refused rows with `error`, in the relay's transaction.
    pub(crate) async fn set_aside(&self, connection: &mut PgConnection, seq: i64, error: &str) -> Result<()> {
        let columns = format!("seq, {STORED}, stored_at");
        let statement = format!(
            "WITH moved AS (DELETE FROM {table} WHERE seq = $1 RETURNING {columns})
             INSERT INTO {refused} ({columns}, error) SELECT {columns}, $2 FROM moved",
            table = self.sql_name(),
            refused = self.refused_sql_name(),
        );
        sqlx::query(&statement)
            .bind(seq)
            .bind(error)
            .execute(connection)
            .await
            .map_err(|e| db_error("setting a refused row aside", e))?;
        Ok(())
    }
}
