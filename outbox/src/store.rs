//! Storing messages in the caller's transaction.

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

pub(crate) fn db_error(what: &str, err: sqlx::Error) -> Error {
    let kind = match &err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => ErrorKind::Connection,
        _ => ErrorKind::BrokerTransient,
    };
    Error::new(kind, format!("outbox: {what}")).with_source(err).with_driver("outbox")
}

impl Outbox {
    /// The table `tidewater_outbox`.
    pub fn new() -> Self {
        Self { table: "tidewater_outbox".to_owned() }
    }

    /// Another table name: lowercase letters, digits and underscores.
    pub fn with_table(name: &str) -> Result<Self> {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!("outbox table {name:?}: use lowercase letters, digits and underscores"),
            ));
        }
        Ok(Self { table: name.to_owned() })
    }

    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table and its index if they are missing.
    pub async fn create_table(&self, pool: &sqlx::PgPool) -> Result<()> {
        let t = &self.table;
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    seq BIGSERIAL PRIMARY KEY,
                    bucket INT NOT NULL,
                    topic TEXT NOT NULL,
                    id TEXT NOT NULL,
                    key BYTEA,
                    content_type TEXT,
                    headers TEXT NOT NULL,
                    payload BYTEA NOT NULL,
                    stored_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ),
            format!("CREATE INDEX IF NOT EXISTS {t}_bucket_seq ON {t} (bucket, seq)"),
        ];
        for statement in statements {
            sqlx::query(&statement).execute(pool).await.map_err(|e| db_error("creating the table", e))?;
        }
        Ok(())
    }

    /// Stores `message` through `connection`, which is the caller's open transaction
    /// (`&mut tx`): it is relayed once that commits, and never if it rolls back. The
    /// message needs its id (a [`Publisher`] fills one in: see [`Outbox::store_event`]).
    pub async fn store(&self, connection: &mut PgConnection, message: &Message) -> Result<()> {
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
        let statement = format!(
            "INSERT INTO {} (bucket, topic, id, key, content_type, headers, payload) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            self.table
        );
        sqlx::query(&statement)
            .bind(bucket)
            .bind(message.stream.as_str())
            .bind(message.id.as_str())
            .bind(message.key.as_deref())
            .bind(message.content_type.as_deref())
            .bind(serde_json::Value::Object(headers).to_string())
            .bind(&message.payload[..])
            .execute(connection)
            .await
            .map_err(|e| db_error("storing a message", e).with_topic(&message.stream))?;
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
