//! Forwarding stored messages to a broker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sqlx::{PgPool, Row};
use tidewater_core::{Headers, Message, Result, Writer};

use crate::store::db_error;
use crate::{Outbox, BUCKETS};

/// Forwards what the outbox holds to a writer, then deletes it. Run one or several.
pub struct Relay {
    pool: PgPool,
    outbox: Outbox,
    writer: Arc<dyn Writer>,
    batch: i64,
    poll: Duration,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("outbox", &self.outbox).field("batch", &self.batch).finish_non_exhaustive()
    }
}

/// What a relay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// Messages forwarded and deleted.
    pub forwarded: u64,
    /// Passes over the buckets.
    pub passes: u64,
}

impl Relay {
    /// Relays the default table through `writer`, 100 rows of a bucket at a time,
    /// looking again every 100 ms when it finds nothing.
    pub fn new(pool: PgPool, writer: Arc<dyn Writer>) -> Self {
        Self { pool, outbox: Outbox::new(), writer, batch: 100, poll: Duration::from_millis(100) }
    }

    /// Relays another outbox table.
    pub fn outbox(mut self, outbox: Outbox) -> Self {
        self.outbox = outbox;
        self
    }

    /// Rows of a bucket forwarded in one write (at least 1).
    pub fn batch(mut self, rows: usize) -> Self {
        self.batch = rows.max(1) as i64;
        self
    }

    /// How long to wait before looking again when the outbox was empty.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll = interval;
        self
    }

    /// One pass over every bucket no other relay holds: forwards up to a batch of each
    /// in order and deletes what the broker took. Returns how many it forwarded.
    pub async fn relay_once(&self) -> Result<u64> {
        let mut forwarded = 0;
        for bucket in 0..BUCKETS {
            forwarded += self.relay_bucket(bucket).await?;
        }
        Ok(forwarded)
    }

    async fn relay_bucket(&self, bucket: i32) -> Result<u64> {
        let table = self.outbox.table();
        let mut tx = self.pool.begin().await.map_err(|e| db_error("beginning a transaction", e))?;
        // Held until the commit: one relay a bucket, so a key's rows go in order.
        let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1), $2)")
            .bind(table)
            .bind(bucket)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error("locking a bucket", e))?;
        if !mine {
            return Ok(0);
        }
        let select = format!(
            "SELECT seq, topic, id, key, content_type, headers, payload FROM {table} WHERE bucket = $1 ORDER BY seq LIMIT $2"
        );
        let rows = sqlx::query(&select)
            .bind(bucket)
            .bind(self.batch)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_error("reading the outbox", e))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut seqs = Vec::with_capacity(rows.len());
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            seqs.push(row.get::<i64, _>("seq"));
            messages.push(to_message(&row)?);
        }
        let n = messages.len() as u64;
        // The broker first: a relay that dies after this and before the commit leaves
        // the rows, which are forwarded again (at least once).
        self.writer.write(messages).await?;
        let delete = format!("DELETE FROM {table} WHERE seq = ANY($1)");
        sqlx::query(&delete).bind(&seqs).execute(&mut *tx).await.map_err(|e| db_error("deleting what was sent", e))?;
        tx.commit().await.map_err(|e| db_error("committing", e))?;
        Ok(n)
    }

    /// Relays until `stop` completes, looking again every poll interval when the
    /// outbox is empty; a failed pass is logged and tried again after the interval.
    pub async fn run_until(&self, stop: impl Future<Output = ()>) -> Result<RelayReport> {
        let mut report = RelayReport::default();
        tokio::pin!(stop);
        loop {
            let pass = tokio::select! {
                biased;
                _ = &mut stop => return Ok(report),
                pass = self.relay_once() => pass,
            };
            report.passes += 1;
            let wait = match pass {
                Ok(0) => self.poll,
                Ok(n) => {
                    report.forwarded += n;
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "an outbox relay pass failed; trying again");
                    self.poll
                }
            };
            tokio::select! {
                _ = &mut stop => return Ok(report),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn to_message(row: &sqlx::postgres::PgRow) -> Result<Message> {
    let topic: String = row.get("topic");
    let payload: Vec<u8> = row.get("payload");
    let mut message = Message::new(topic, Bytes::from(payload)).with_id(row.get::<String, _>("id"));
    message.key = row.get::<Option<Vec<u8>>, _>("key").map(Bytes::from);
    if let Some(content_type) = row.get::<Option<String>, _>("content_type") {
        message.set_content_type(content_type);
    }
    let headers: String = row.get("headers");
    let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&headers).map_err(|e| {
        tidewater_core::Error::new(tidewater_core::ErrorKind::Decode, "an outbox row's headers are not a JSON object")
            .with_source(e)
    })?;
    let mut out = Headers::default();
    for (name, value) in parsed {
        if let serde_json::Value::String(value) = value {
            out.insert(name, value);
        }
    }
    message.headers = out;
    Ok(message)
}
