//! The write side: a key-hash partitioner and a batch accumulator by size and linger.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use futures::future::join_all;
use tidewater_core::{hash::fnv1a_64, CloseFlag, Error, ErrorKind, Message, Result, Writer};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::client::Client;
use crate::counters::{Counters, ProduceInfo};
use crate::errors::{broker_code, BrokerError};
use crate::protocol::frame::{MAX_FRAME, REQUEST_OVERHEAD};
use crate::protocol::{ErrorCode, ProduceRequest, Record, Request, Response};
use crate::record;
use crate::DRIVER;

/// The partition of a key among `partitions`: FNV-1a (64-bit) of the key bytes,
/// modulo the count. Written down so other StreamBus clients can agree (the Go SDK
/// sends everything to partition 0).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    (fnv1a_64(key) % u64::from(partitions.max(1))) as u32
}

pub(crate) type PartitionKey = (String, u32);

/// The records of `batch` by topic and partition, in first-seen order, every message
/// checked (name, reserved headers, frame size) before any is sent. A key picks its
/// partition; keyless messages all go to partition `keyless` modulo the count.
pub(crate) async fn by_partition(
    client: &Client,
    batch: &[Message],
    envelope: bool,
    keyless: u64,
) -> Result<Vec<(PartitionKey, Vec<Record>)>> {
    let mut groups: Vec<(PartitionKey, Vec<Record>)> = Vec::new();
    for message in batch {
        record::check_topic(&message.stream)?;
        let partitions = client.partitions(&message.stream, true).await?;
        let record = record::to_record(message, envelope)?;
        let size = record.encoded_len() + message.stream.len() + REQUEST_OVERHEAD + 12;
        if size > MAX_FRAME {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("message {} needs {size} bytes, over the broker's {MAX_FRAME}-byte frame limit", message.id),
            )
            .with_driver(DRIVER)
            .with_topic(message.stream.clone()));
        }
        let partition = match &message.key {
            Some(key) if !key.is_empty() => partition_for_key(key, partitions),
            _ => (keyless % u64::from(partitions)) as u32,
        };
        let key = (message.stream.clone(), partition);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, records)) => records.push(record),
            None => groups.push((key, vec![record])),
        }
    }
    Ok(groups)
}
type Waiter = oneshot::Sender<Result<()>>;

struct Batch {
    records: Vec<Record>,
    bytes: usize,
    waiters: Vec<Waiter>,
    opened: Instant,
}

/// Writes to one StreamBus broker.
///
/// A write returns once the broker acknowledged every message of it. Messages go to
/// their key's partition ([`partition_for_key`]); keyless messages of one write go
/// to one partition, the next write's to the next. Records for one partition are
/// gathered into a batch until it holds `batch_records` records or `batch_bytes`
/// bytes, or `linger` passed since its first record, so concurrent writers share
/// produce requests. One produce request per partition is in flight at a time, so
/// the order of writes to a partition is kept, retries included.
///
/// Retries: a produce that failed on the connection or timed out is sent again (when
/// `retry_produce` is on). StreamBus has no idempotent produce, so if the broker had
/// appended the first one, the records are in the log twice: at least once, never
/// lost. Pair it with the dedup middleware, which keys on the message id.
pub struct StreamBusWriter {
    inner: Arc<Inner>,
}

struct Inner {
    client: Arc<Client>,
    envelope: bool,
    closed: CloseFlag,
    pending: Mutex<HashMap<PartitionKey, Batch>>,
    in_flight: Mutex<HashMap<PartitionKey, Arc<tokio::sync::Mutex<()>>>>,
    wake: Notify,
    next_keyless: AtomicU64,
}

impl std::fmt::Debug for StreamBusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamBusWriter").field("broker", &self.inner.client.config.broker).finish_non_exhaustive()
    }
}

impl StreamBusWriter {
    pub(crate) fn new(client: Arc<Client>, envelope: bool) -> Self {
        let inner = Arc::new(Inner {
            client,
            envelope,
            closed: CloseFlag::new(),
            pending: Mutex::default(),
            in_flight: Mutex::default(),
            wake: Notify::new(),
            next_keyless: AtomicU64::new(0),
        });
        if !inner.client.config.linger.is_zero() {
            tokio::spawn(linger_loop(Arc::downgrade(&inner)));
        }
        Self { inner }
    }
}

#[async_trait]
impl Writer for StreamBusWriter {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    async fn write(&self, batch: Vec<Message>) -> Result<()> {
        self.inner.closed.check(DRIVER)?;
        let inner = &self.inner;
        let config = &inner.client.config;
        // Everything is checked before anything is queued, so a bad message fails the
        // write without half of it written.
        let keyless = inner.next_keyless.fetch_add(1, Ordering::Relaxed);
        let groups = by_partition(&inner.client, &batch, inner.envelope, keyless).await?;
        let mut receivers = Vec::with_capacity(groups.len());
        let mut ready = Vec::new();
        {
            let mut pending = inner.pending.lock().unwrap();
            for (key, records) in groups {
                let (tx, rx) = oneshot::channel();
                receivers.push((key.0.clone(), rx));
                let batch = pending.entry(key.clone()).or_insert_with(|| Batch {
                    records: Vec::new(),
                    bytes: 0,
                    waiters: Vec::new(),
                    opened: Instant::now(),
                });
                batch.bytes += records.iter().map(Record::encoded_len).sum::<usize>();
                batch.records.extend(records);
                batch.waiters.push(tx);
                let full = batch.records.len() >= config.batch_records || batch.bytes >= config.batch_bytes;
                if full || config.linger.is_zero() {
                    ready.push((key.clone(), pending.remove(&key).expect("present")));
                }
            }
        }
        if receivers.len() > ready.len() {
            inner.wake.notify_one();
        }
        for (key, batch) in ready {
            tokio::spawn(send(Arc::clone(inner), key, batch));
        }
        let mut failures = Vec::new();
        for (topic, rx) in receivers {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(_) => failures.push(
                    Error::new(ErrorKind::Closed, "the writer stopped before the batch was sent")
                        .with_driver(DRIVER)
                        .with_topic(topic),
                ),
            }
        }
        summarize(failures, batch.len())
    }

    async fn flush(&self) -> Result<()> {
        let inner = &self.inner;
        let batches: Vec<(PartitionKey, Batch)> = inner.pending.lock().unwrap().drain().collect();
        let mut receivers = Vec::new();
        for (key, mut batch) in batches {
            let (tx, rx) = oneshot::channel();
            batch.waiters.push(tx);
            receivers.push(rx);
            tokio::spawn(send(Arc::clone(inner), key, batch));
        }
        let results = join_all(receivers).await;
        // Batches sent before this flush finish before their partition's lock is free.
        let locks: Vec<_> = inner.in_flight.lock().unwrap().values().cloned().collect();
        for lock in locks {
            drop(lock.lock().await);
        }
        let failures: Vec<Error> = results.into_iter().filter_map(|r| r.ok().and_then(Result::err)).collect();
        summarize(failures, 0)
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.close();
        self.flush().await
    }
}

fn summarize(mut failures: Vec<Error>, total: usize) -> Result<()> {
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => {
            let first = failures.remove(0);
            let of = if total > 0 { format!(" of a write of {total} messages") } else { String::new() };
            Err(Error::new(first.kind(), format!("{n} produce requests{of} failed; the first: {first}"))
                .with_driver(DRIVER)
                .with_source(first))
        }
    }
}

/// A copy of `err` for another waiter of the same batch: same kind, text and broker code.
fn replicate(err: &Error, topic: &str) -> Error {
    let copy = Error::new(err.kind(), err.message()).with_driver(DRIVER).with_topic(topic);
    match broker_code(err) {
        Some(code) => copy.with_source(BrokerError { code, message: String::new() }),
        None => copy,
    }
}

async fn send(inner: Arc<Inner>, key: PartitionKey, batch: Batch) {
    let lock = Arc::clone(inner.in_flight.lock().unwrap().entry(key.clone()).or_default());
    let _turn = lock.lock().await;
    let (topic, partition) = key;
    let bytes: usize = batch.records.iter().map(|r| r.key.len() + r.value.len()).sum();
    let count = batch.records.len();
    let info = ProduceInfo { topic: &topic, partition, records: count, bytes };
    let config = &inner.client.config;
    for i in &config.interceptors {
        i.on_send(&info);
    }
    let request =
        Request::Produce(ProduceRequest { topic: topic.clone(), partition, records: batch.records, producer: None });
    let outcome = match inner.client.call(request).await {
        Ok(Response::Produce(r)) => Ok(r.base_offset),
        Ok(_) => unreachable!("a produce is answered with a produce response"),
        Err(e) => {
            if broker_code(&e) == Some(ErrorCode::TOPIC_NOT_FOUND) {
                // The topic was deleted or its partitions changed: ask again next time.
                inner.client.forget_topic(&topic);
            }
            Err(e.with_topic(topic.clone()))
        }
    };
    for i in &config.interceptors {
        i.on_acknowledgement(&info, outcome.as_ref().copied());
    }
    let counters: &Counters = &inner.client.counters;
    match &outcome {
        Ok(_) => {
            Counters::add(&counters.sent, count as u64);
            Counters::add(&counters.batches, 1);
            Counters::add(&counters.bytes, bytes as u64);
        }
        Err(_) => Counters::add(&counters.failed, count as u64),
    }
    for waiter in batch.waiters {
        let result = match &outcome {
            Ok(_) => Ok(()),
            Err(e) => Err(replicate(e, &topic)),
        };
        let _ = waiter.send(result);
    }
}

/// Sends batches whose linger passed; ends with the writer.
async fn linger_loop(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let linger = strong.client.config.linger;
        let now = Instant::now();
        let (due, next) = {
            let mut pending = strong.pending.lock().unwrap();
            let due_keys: Vec<PartitionKey> =
                pending.iter().filter(|(_, b)| b.opened + linger <= now).map(|(k, _)| k.clone()).collect();
            let due: Vec<_> = due_keys
                .into_iter()
                .map(|k| {
                    let b = pending.remove(&k).expect("present");
                    (k, b)
                })
                .collect();
            let next = pending.values().map(|b| b.opened + linger).min();
            (due, next)
        };
        for (key, batch) in due {
            tokio::spawn(send(Arc::clone(&strong), key, batch));
        }
        let wake = async { strong.wake.notified().await };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = wake => {}
                }
            }
            None => {
                // Hold no strong reference while idle, so a dropped writer ends the loop.
                let weak_wait = tokio::time::timeout(std::time::Duration::from_millis(500), wake);
                let _ = weak_wait.await;
            }
        }
        drop(strong);
    }
}
