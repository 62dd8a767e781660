//! Forwarding stored messages to a broker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tidewater_core::{Error, ErrorKind, Headers, Message, Result, Writer};

use crate::store::db_error;
use crate::{Outbox, BUCKETS};

/// Forwards what the outbox holds to a writer, then deletes it. Run one or several.
///
/// Each message goes out with the timestamp it was stored with, to the microsecond, not
/// the time of the pass that forwards it; a row stored by a version before message times
/// were kept goes out with the time it was stored.
///
/// **Rows the broker refuses.** A row whose message the broker refuses for a reason that
/// retrying will not fix (too large, a topic that does not exist, an invalid name, or
/// headers that cannot be read: [`ErrorKind::refuses_the_message`]) is moved to
/// `<table>_refused` with the error, logged, and counted in [`RelayReport::refused`]; the
/// rows after it go on. Without that, one such row would stop its bucket, and every key
/// in it, for good. List them with [`Outbox::refused`] and put them back with
/// [`Outbox::requeue_refused`] once the cause is fixed. A key whose row was set aside goes on without it, as a consumer's dead
/// letter does.
///
/// **Scheduled messages** ([`Outbox::store_at`]) are moved into the outbox at the start
/// of a pass once they are due (at most once a poll interval), then forwarded like the
/// rest.
///
/// **Failures that retrying can fix** (the broker gone, a timeout) leave the rows where
/// they are. [`Relay::run_until`] then waits before its next pass, twice as long after
/// each failed pass, from the poll interval up to [`Relay::max_retry_wait`].
pub struct Relay {
    pool: PgPool,
    outbox: Outbox,
    writer: Arc<dyn Writer>,
    batch: i64,
    poll: Duration,
    max_retry_wait: Duration,
    /// When to look for scheduled messages that fell due next.
    due_check: std::sync::Mutex<DueCheck>,
}

/// When a relay looks for scheduled messages that fell due: at most once a poll
/// interval, which is as often as an idle relay passes, so that a busy relay, which
/// passes back to back, does not add a transaction to each pass; and once a minute
/// while the table of scheduled messages is missing (an outbox made by an earlier
/// version), having said so once.
#[derive(Debug, Default)]
struct DueCheck {
    next: Option<tokio::time::Instant>,
    missing: bool,
}

/// How long a relay goes without looking for a missing table of scheduled messages.
const LOOK_AGAIN: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("outbox", &self.outbox).field("batch", &self.batch).finish_non_exhaustive()
    }
}

/// What a relay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayReport {
    /// Messages forwarded and deleted.
    pub forwarded: u64,
    /// Rows the broker refused for good, moved to the refused rows' table.
    pub refused: u64,
    /// Passes over the buckets.
    pub passes: u64,
    /// Passes that ended with an error.
    pub failed_passes: u64,
    /// Scheduled messages ([`Outbox::store_at`]) that fell due and were moved into the
    /// outbox, to be forwarded (and counted in `forwarded`) like the rest.
    pub due: u64,
}

impl RelayReport {
    /// The rows taken out of the outbox: forwarded or refused. A pass that took none
    /// found nothing to do (or every bucket taken by another relay).
    pub fn rows(&self) -> u64 {
        self.forwarded + self.refused
    }
}

impl Relay {
    /// Relays the default table through `writer`, 100 rows of a bucket at a time,
    /// looking again every 100 ms when it finds nothing, and waiting at most 10 s
    /// between passes that fail.
    pub fn new(pool: PgPool, writer: Arc<dyn Writer>) -> Self {
        Self {
            pool,
            outbox: Outbox::new(),
            writer,
            batch: 100,
            poll: Duration::from_millis(100),
            max_retry_wait: Duration::from_secs(10),
            due_check: std::sync::Mutex::new(DueCheck::default()),
        }
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

    /// How long to wait before looking again when the outbox was empty; also the first
    /// wait after a failed pass.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll = interval;
        self
    }

    /// The longest wait between failed passes, before its jitter (which adds up to as
    /// much again, so that relays that failed together do not retry together).
    pub fn max_retry_wait(mut self, wait: Duration) -> Self {
        self.max_retry_wait = wait;
        self
    }

    /// One pass over every bucket no other relay holds: forwards up to a batch of each
    /// in order, sets aside the rows the broker refuses for good, and deletes what the
    /// broker took.
    ///
    /// Fails at once on a database error or when the writer cannot write at all (its
    /// connection is gone, it was closed). A bucket whose write fails otherwise (a
    /// timeout) is left for the next pass and the other buckets go on; the pass then
    /// returns the first such error.
    pub async fn relay_once(&self) -> Result<RelayReport> {
        let mut report = RelayReport::default();
        match self.pass(&mut report, std::pin::pin!(std::future::pending::<()>())).await {
            Some(Err(err)) => Err(err),
            Some(Ok(())) | None => Ok(report),
        }
    }

    /// Relays until `stop` completes, looking again every poll interval when the
    /// outbox is empty. A failed pass is logged and tried again after a wait that
    /// doubles with each failed pass in a row (see [`Relay::max_retry_wait`]). A pass
    /// that failed in part (a bucket failed, others moved) is followed by the next at
    /// once, and said at most once every longest retry wait, with how many failed.
    ///
    /// `stop` is heeded between buckets and while waiting, never between a bucket's write
    /// and the deletion of what it wrote: a relay stopped this way leaves no duplicates.
    /// (One killed leaves them, since the broker took rows the database still holds.)
    pub async fn run_until(&self, stop: impl Future<Output = ()>) -> Result<RelayReport> {
        let mut report = RelayReport::default();
        let mut backoff: Option<ExponentialBackoff> = None;
        // Under load one pass follows another at once, so a bucket that fails on each
        // is said at most once every longest retry wait, with how many passes failed.
        let mut in_part = (None::<tokio::time::Instant>, 0u64);
        tokio::pin!(stop);
        loop {
            let before = report.rows();
            let Some(pass) = self.pass(&mut report, stop.as_mut()).await else { return Ok(report) };
            let wait = match pass {
                Ok(()) if report.rows() > before => {
                    (backoff, in_part) = (None, (None, 0));
                    continue;
                }
                Ok(()) => {
                    (backoff, in_part) = (None, (None, 0));
                    self.poll
                }
                // Other buckets moved: the failed one was tried at the pace of real work.
                Err(err) if report.rows() > before => {
                    in_part.1 += 1;
                    if in_part.0.is_none_or(|said| said.elapsed() >= self.max_retry_wait) {
                        tracing::warn!(
                            error = %err,
                            failed_passes = in_part.1,
                            "outbox relay passes failed in part; the other buckets go on (said at most every {:?})",
                            self.max_retry_wait
                        );
                        in_part = (Some(tokio::time::Instant::now()), 0);
                    }
                    continue;
                }
                Err(err) => {
                    let wait = backoff.get_or_insert_with(|| self.backoff()).next().unwrap_or(self.max_retry_wait);
                    tracing::warn!(error = %err, retry_in = ?wait, "an outbox relay pass failed");
                    wait
                }
            };
            tokio::select! {
                biased;
                _ = &mut stop => return Ok(report),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.poll)
            .with_max_delay(self.max_retry_wait.max(self.poll))
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// One pass, counted in `report`; `None` if `stop` completed between two buckets.
    async fn pass<S: Future<Output = ()>>(
        &self,
        report: &mut RelayReport,
        mut stop: Pin<&mut S>,
    ) -> Option<Result<()>> {
        report.passes += 1;
        if let Err(err) = self.move_due(report).await {
            report.failed_passes += 1;
            return Some(Err(err));
        }
        let mut failed = None;
        for bucket in 0..BUCKETS {
            if is_done(stop.as_mut()).await {
                return None;
            }
            match self.relay_bucket(bucket, report).await {
                Ok(None) => {}
                Ok(Some(err)) => {
                    failed.get_or_insert(err);
                }
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            }
        }
        if failed.is_some() {
            report.failed_passes += 1;
        }
        Some(failed.map_or(Ok(()), Err))
    }

    /// Moves the scheduled messages that are due into the outbox, ahead of the pass over
    /// the buckets that forwards them (see [`DueCheck`] for how often). An outbox
    /// without the table of scheduled messages is said once and relayed without them.
    async fn move_due(&self, report: &mut RelayReport) -> Result<()> {
        let now = tokio::time::Instant::now();
        let missing = {
            let check = self.due_check.lock().unwrap_or_else(|e| e.into_inner());
            if check.next.is_some_and(|next| now < next) {
                return Ok(());
            }
            check.missing
        };
        let moved = self.outbox.move_due(&self.pool, self.batch * i64::from(BUCKETS)).await;
        let check = match moved {
            Ok(moved) => {
                report.due += moved.unwrap_or(0);
                DueCheck { next: Some(now + self.poll), missing: false }
            }
            Err(err) if crate::scheduled::is_missing_table(&err) => {
                if !missing {
                    tracing::warn!(
                        table = self.outbox.table(),
                        "{}; the relay forwards the rest, and looks for it again every {LOOK_AGAIN:?}",
                        crate::scheduled::missing_table_error(err)
                    );
                }
                DueCheck { next: Some(now + LOOK_AGAIN), missing: true }
            }
            Err(err) => return Err(db_error("moving the scheduled messages that are due", err)),
        };
        *self.due_check.lock().unwrap_or_else(|e| e.into_inner()) = check;
        Ok(())
    }

    /// Relays a batch of `bucket`. `Err` for a failure that ends the pass; `Ok(Some)`
    /// for a write that failed in a way the other buckets need not share.
    async fn relay_bucket(&self, bucket: i32, report: &mut RelayReport) -> Result<Option<Error>> {
        let table = self.outbox.sql_name();
        let mut tx = self.pool.begin().await.map_err(|e| db_error("beginning a transaction", e))?;
        // Held until the commit: one relay a bucket, so a key's rows go in order.
        let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1), $2)")
            .bind(self.outbox.table())
            .bind(bucket)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error("locking a bucket", e))?;
        if !mine {
            return Ok(None);
        }
        // The message's time in whole microseconds (`EXTRACT` gives an exact numeric);
        // a row stored before `created_at` existed goes out with the time it was stored.
        let select = format!(
            "SELECT seq, topic, id, key, content_type, headers, payload, \
             (EXTRACT(EPOCH FROM COALESCE(created_at, stored_at)) * 1000000)::BIGINT AS created_us \
             FROM {table} WHERE bucket = $1 ORDER BY seq LIMIT $2"
        );
        let rows = sqlx::query(&select)
            .bind(bucket)
            .bind(self.batch)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_error("reading the outbox", e))?;
        if rows.is_empty() {
            return Ok(None);
        }

        let mut refused = 0;
        let mut readable = Vec::with_capacity(rows.len());
        let mut messages = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq = seq_of(row)?;
            match to_message(row) {
                Ok(message) => {
                    readable.push((seq, row));
                    messages.push(message);
                }
                Err(err) if err.kind() == ErrorKind::Decode => {
                    self.refuse(&mut tx, seq, row, &err).await?;
                    refused += 1;
                }
                Err(err) => return Err(err),
            }
        }

        // The broker first: a relay that dies after this and before the commit leaves
        // the rows, which are forwarded again (at least once).
        let mut sent = Vec::with_capacity(readable.len());
        let mut failure = None;
        let written = if messages.is_empty() { Ok(()) } else { self.writer.write(messages).await };
        match written {
            Ok(()) => sent.extend(readable.iter().map(|(seq, _)| *seq)),
            Err(err) if !err.kind().refuses_the_message() => failure = Some(err),
            // Something in the batch was refused: one at a time, to tell which. What the
            // batch wrote before it failed is written again (at least once).
            Err(_) => {
                for (seq, row) in &readable {
                    match self.writer.write_one(to_message(row)?).await {
                        Ok(()) => sent.push(*seq),
                        Err(err) if err.kind().refuses_the_message() => {
                            self.refuse(&mut tx, *seq, row, &err).await?;
                            refused += 1;
                        }
                        Err(err) => {
                            failure = Some(err);
                            break;
                        }
                    }
                }
            }
        }

        if !sent.is_empty() {
            let delete = format!("DELETE FROM {table} WHERE seq = ANY($1)");
            sqlx::query(&delete)
                .bind(&sent)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error("deleting what was sent", e))?;
        }
        tx.commit().await.map_err(|e| db_error("committing", e))?;
        report.forwarded += sent.len() as u64;
        report.refused += refused;
        match failure {
            None => Ok(None),
            Some(err) if stops_the_pass(&err) => Err(err),
            Some(err) => Ok(Some(err)),
        }
    }

    /// Sets the row `seq` aside, in the bucket's transaction.
    async fn refuse(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        seq: i64,
        row: &PgRow,
        err: &Error,
    ) -> Result<()> {
        let id: Option<String> = row.try_get("id").ok();
        tracing::error!(
            error = %err,
            id = id.as_deref().unwrap_or_default(),
            table = self.outbox.table(),
            "the broker refused an outbox row for good; it is set aside in the table's refused rows",
        );
        self.outbox.set_aside(tx, seq, &err.to_string()).await
    }
}

/// Whether a failed write says that the writer can write nothing now, so that the
/// other buckets would fail the same way.
fn stops_the_pass(err: &Error) -> bool {
    matches!(err.kind(), ErrorKind::Connection | ErrorKind::Closed | ErrorKind::Config | ErrorKind::Unsupported)
}

/// Whether `stop` has completed, without waiting for it. Not polled again once it has:
/// the caller returns.
async fn is_done<S: Future<Output = ()>>(mut stop: Pin<&mut S>) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(stop.as_mut().poll(cx).is_ready())).await
}

/// An error for a row that lacks a column `create_table` makes: the table is not the
/// relay's, and every row would fail alike.
fn column_error(err: sqlx::Error) -> Error {
    Error::new(ErrorKind::Config, "the outbox table does not have the columns `Outbox::create_table` makes")
        .with_source(err)
        .with_driver("outbox")
}

fn seq_of(row: &PgRow) -> Result<i64> {
    row.try_get("seq").map_err(column_error)
}

/// The message a row holds. A `Decode` error for a row whose stored fields cannot make
/// one (its headers are not a JSON object), a `Config` error for a table that is not
/// the outbox's.
fn to_message(row: &PgRow) -> Result<Message> {
    let topic: String = row.try_get("topic").map_err(column_error)?;
    let payload: Vec<u8> = row.try_get("payload").map_err(column_error)?;
    let id: String = row.try_get("id").map_err(column_error)?;
    let created: i64 = row.try_get("created_us").map_err(column_error)?;
    let mut message =
        Message::new(topic, Bytes::from(payload)).with_id(id).with_timestamp(crate::store::from_unix_micros(created));
    message.key = row.try_get::<Option<Vec<u8>>, _>("key").map_err(column_error)?.map(Bytes::from);
    if let Some(content_type) = row.try_get::<Option<String>, _>("content_type").map_err(column_error)? {
        message.set_content_type(content_type);
    }
    let headers: String = row.try_get("headers").map_err(column_error)?;
    let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&headers).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("outbox row of message {:?}: its headers are not a JSON object", message.id),
        )
        .with_source(e)
        .with_topic(&message.stream)
        .with_driver("outbox")
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
