//! Storing messages in the caller's transaction.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::PgConnection;
use tidewater_core::{hash, Codec, Error, ErrorKind, Event, Message, MessageId, Publisher, Result};

use crate::BUCKETS;

/// The outbox table and how to write to it.
#[derive(Clone, Debug)]
pub struct Outbox {
    table: String,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

/// The columns a stored message fills, in both the outbox table and its refused rows'.
pub(crate) const STORED: &str = "bucket, topic, id, key, content_type, headers, payload, created_at";

/// `created_at` is nullable: tables made before it existed gain it empty, and their rows
/// go out with the time they were stored (see [`Relay`](crate::Relay)).
const CREATED_AT: &str = "created_at TIMESTAMPTZ";

pub(crate) fn db_error(what: &str, err: sqlx::Error) -> Error {
    table_error("outbox", what, err)
}

/// A database error of the outbox's or the inbox's (`of`), doing `what`: a `Connection`
/// error when the database could not be reached, else a transient one.
pub(crate) fn table_error(of: &'static str, what: &str, err: sqlx::Error) -> Error {
    let kind = match &err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => ErrorKind::Connection,
        _ => ErrorKind::BrokerTransient,
    };
    Error::new(kind, format!("{of}: {what}")).with_source(err).with_driver(of)
}

/// A name checked by [`check_table`] (or made from one) as SQL: quoted, so that a name
/// that is also a keyword (`order`) works; it has only lowercase letters, digits and
/// underscores, so the quoted name is the one PostgreSQL would fold an unquoted one to.
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// Checks a table name that names are made from (`<name>_refused`, `<name>_bucket_seq`):
/// lowercase letters, digits and underscores, at most [`Outbox::MAX_TABLE_NAME`] bytes.
pub(crate) fn check_table(what: &str, name: &str) -> Result<()> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let why = if !valid {
        "use lowercase letters, digits and underscores, and start with a letter or an underscore".to_owned()
    } else if name.len() > Outbox::MAX_TABLE_NAME {
        // PostgreSQL cuts longer names to 63 bytes without an error, so two long names
        // could share a table, or the table's index or its refused table.
        format!("at most {} bytes, so that the names made from it fit PostgreSQL's 63", Outbox::MAX_TABLE_NAME)
    } else {
        return Ok(());
    };
    Err(Error::new(ErrorKind::InvalidName, format!("{what} table {name:?}: {why}")))
}

impl Outbox {
    /// The table `tidewater_outbox`.
    pub fn new() -> Self {
        Self { table: "tidewater_outbox".to_owned() }
    }

    /// Another table name: lowercase letters, digits and underscores, starting with a
    /// letter or an underscore, at most [`Outbox::MAX_TABLE_NAME`] bytes.
    ///
    /// ```
    /// use tidewater_outbox::Outbox;
    ///
    /// assert!(Outbox::with_table("billing_outbox").is_ok());
    /// assert!(Outbox::with_table("Billing").is_err());
    /// ```
    pub fn with_table(name: &str) -> Result<Self> {
        check_table("outbox", name)?;
        Ok(Self { table: name.to_owned() })
    }

    /// The longest table name [`Outbox::with_table`] takes: its index (`<name>_bucket_seq`),
    /// its refused rows' table (`<name>_refused`) and its scheduled rows' table and
    /// indexes (`<name>_scheduled_due`, the longest) are named from it, and PostgreSQL
    /// names have at most 63 bytes.
    pub const MAX_TABLE_NAME: usize = 48;

    /// The table's name, as given.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The table's name as SQL ([`quoted`]).
    pub(crate) fn sql_name(&self) -> String {
        quoted(&self.table)
    }

    /// The table that keeps the messages stored for later, as SQL.
    pub(crate) fn scheduled_sql_name(&self) -> String {
        quoted(&format!("{}_scheduled", self.table))
    }

    /// The table that keeps the rows the broker refused, as SQL.
    pub(crate) fn refused_sql_name(&self) -> String {
        quoted(&format!("{}_refused", self.table))
    }

    /// Creates the table, its index, the table of refused rows (`<table>_refused`, see
    /// [`Relay`](crate::Relay)) and the table of scheduled rows (`<table>_scheduled`, see
    /// [`Outbox::store_at`]) with theirs if they are missing, and adds the columns that a
    /// table made by an earlier version lacks (`created_at`, the message's own time). Run
    /// it when a service starts, or put the same statements in your migrations.
    pub async fn create_table(&self, pool: &sqlx::PgPool) -> Result<()> {
        let t = self.sql_name();
        let refused = self.refused_sql_name();
        let index = quoted(&format!("{}_bucket_seq", self.table));
        // The fields of a stored message, as both tables hold them.
        let message = format!(
            "bucket INT NOT NULL, topic TEXT NOT NULL, id TEXT NOT NULL, key BYTEA, content_type TEXT, \
             headers TEXT NOT NULL, payload BYTEA NOT NULL, {CREATED_AT}"
        );
        let scheduled = self.scheduled_sql_name();
        let due_index = quoted(&format!("{}_scheduled_due", self.table));
        let id_index = quoted(&format!("{}_scheduled_id", self.table));
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (seq BIGSERIAL PRIMARY KEY, {message}, \
                 stored_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ),
            // Messages stored for later (`store_at`), until the relay moves them into the
            // outbox when they fall due.
            format!(
                "CREATE TABLE IF NOT EXISTS {scheduled} (seq BIGSERIAL PRIMARY KEY, {message}, \
                 deliver_at TIMESTAMPTZ NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ),
            format!("CREATE INDEX IF NOT EXISTS {due_index} ON {scheduled} (deliver_at, seq)"),
            format!("CREATE INDEX IF NOT EXISTS {id_index} ON {scheduled} (id)"),
            format!("CREATE INDEX IF NOT EXISTS {index} ON {t} (bucket, seq)"),
            // A refused row keeps its place (`seq`) and its fields, with why and when.
            format!(
                "CREATE TABLE IF NOT EXISTS {refused} (seq BIGINT PRIMARY KEY, {message}, \
                 stored_at TIMESTAMPTZ NOT NULL, error TEXT NOT NULL, refused_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ),
            format!("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {CREATED_AT}"),
            format!("ALTER TABLE {refused} ADD COLUMN IF NOT EXISTS {CREATED_AT}"),
        ];
        for statement in statements {
            sqlx::query(&statement).execute(pool).await.map_err(|e| db_error("creating the table", e))?;
        }
        Ok(())
    }

    /// Stores `message` through `connection`, which is the caller's open transaction
    /// (`&mut tx`): it is relayed once that commits, and never if it rolls back. The
    /// message needs its id (a [`Publisher`] fills one in: see [`Outbox::store_event`]).
    ///
    /// The message keeps its timestamp, to the microsecond (PostgreSQL's precision): the
    /// broker gets the time the message was made, not the time the relay forwarded it.
    pub async fn store(&self, connection: &mut PgConnection, message: &Message) -> Result<()> {
        self.insert(connection, message, None).await
    }

    /// Stores `message` in the outbox table, or, given its `deliver_at` (microseconds
    /// from the epoch), in the table of scheduled rows.
    pub(crate) async fn insert(
        &self,
        connection: &mut PgConnection,
        message: &Message,
        deliver_at: Option<i64>,
    ) -> Result<()> {
        if message.id.is_empty() {
            return Err(
                Error::new(ErrorKind::InvalidInput, "an outbox message needs its id").with_topic(&message.stream)
            );
        }
        tidewater_core::names::check_topic(&message.stream)?;
        let basis: &[u8] = message.key.as_deref().unwrap_or(message.id.as_bytes());
        let bucket = (hash::fnv1a_64(basis) % BUCKETS as u64) as i32;
        let headers: serde_json::Map<String, serde_json::Value> =
            message.headers.iter().map(|(k, v)| (k.to_owned(), v.into())).collect();
        // Times as whole microseconds from the epoch, made `TIMESTAMPTZ`s by PostgreSQL:
        // exact, where a float of seconds would round.
        let statement = match deliver_at {
            None => format!(
                "INSERT INTO {} ({STORED}) VALUES ($1, $2, $3, $4, $5, $6, $7, {})",
                self.sql_name(),
                micros_sql(8)
            ),
            Some(_) => format!(
                "INSERT INTO {} ({STORED}, deliver_at) VALUES ($1, $2, $3, $4, $5, $6, $7, {}, {})",
                self.scheduled_sql_name(),
                micros_sql(8),
                micros_sql(9)
            ),
        };
        let mut query = sqlx::query(&statement)
            .bind(bucket)
            .bind(message.stream.as_str())
            .bind(message.id.as_str())
            .bind(message.key.as_deref())
            .bind(message.content_type.as_deref())
            .bind(serde_json::Value::Object(headers).to_string())
            .bind(&message.payload[..])
            .bind(unix_micros(message.timestamp));
        if let Some(at) = deliver_at {
            query = query.bind(at);
        }
        query.execute(connection).await.map_err(|e| match deliver_at {
            Some(_) if crate::scheduled::is_missing_table(&e) => crate::scheduled::missing_table_error(e),
            _ => db_error("storing a message", e).with_topic(&message.stream),
        })?;
        Ok(())
    }

    /// Stores `event` as `publisher` would publish it (its route, codec, id and
    /// correlation id) and returns its id.
    pub async fn store_event<E: Event, C: Codec>(
        &self,
        connection: &mut PgConnection,
        publisher: &Publisher<C>,
        event: &E,
    ) -> Result<MessageId> {
        let topic = publisher.registry().topic_of::<E>()?;
        let message = publisher.encode(topic, event)?;
        self.store(connection, &message).await?;
        Ok(message.id)
    }
}

/// The SQL for the `TIMESTAMPTZ` that parameter `$n`, in microseconds from the epoch, is.
fn micros_sql(n: u8) -> String {
    format!("TIMESTAMPTZ 'epoch' + ${n} * INTERVAL '1 microsecond'")
}

/// `time` in microseconds from the Unix epoch, negative before it; saturated at `i64`'s
/// ends, some 292,000 years away.
pub(crate) fn unix_micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |us| -us),
    }
}

/// The time `micros` microseconds from the Unix epoch (negative: before it).
pub(crate) fn from_unix_micros(micros: i64) -> SystemTime {
    let offset = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + offset
    } else {
        UNIX_EPOCH - offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microseconds_go_both_ways_either_side_of_the_epoch() {
        for micros in [0, 1, -1, 1_796_208_746_005_999, -86_400_000_001, i64::MAX, i64::MIN + 1] {
            assert_eq!(unix_micros(from_unix_micros(micros)), micros, "{micros}");
        }
        // Below a microsecond is dropped, towards the epoch.
        assert_eq!(unix_micros(UNIX_EPOCH + Duration::from_nanos(2_999)), 2);
        assert_eq!(unix_micros(UNIX_EPOCH - Duration::from_nanos(2_999)), -2);
    }
}
