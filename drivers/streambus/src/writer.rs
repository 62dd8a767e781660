//! The write side: a key-hash partitioner and a batch accumulator by size and linger.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use tidewater_core::{hash::fnv1a_64, BrokerWriter, Error, ErrorKind, Message, Result};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::client::Client;
use crate::counters::{Counters, ProduceInfo};
use crate::errors::{broker_answer, broker_code};
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
/// checked (name, reserved headers, frame size) before any is sent, and before any topic
/// is looked up: the lookup creates a missing topic, which a refused batch must not. A
/// key picks its partition; keyless messages all go to partition `keyless` modulo the
/// count.
pub(crate) async fn by_partition(
    client: &Client,
    batch: &[Message],
    envelope: bool,
    keyless: u64,
) -> Result<Vec<(PartitionKey, Vec<Record>)>> {
    let mut records = Vec::with_capacity(batch.len());
    for (index, message) in batch.iter().enumerate() {
        record::check_topic(&message.stream)?;
        let record = record::to_record(message, envelope)?;
        let size = record.encoded_len() + message.stream.len() + REQUEST_OVERHEAD + 12;
        if size > MAX_FRAME {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("{} needs {size} bytes, over the broker's {MAX_FRAME}-byte frame limit", which(message, index)),
            )
            .with_driver(DRIVER)
            .with_topic(message.stream.clone()));
        }
        records.push(record);
    }
    let mut groups: Vec<(PartitionKey, Vec<Record>)> = Vec::new();
    for (message, record) in batch.iter().zip(records) {
        let partitions = client.partitions(&message.stream, true).await?;
        let partition = match &message.key {
            Some(key) if !key.is_empty() => partition_for_key(key, partitions),
            _ => (keyless % u64::from(partitions)) as u32,
        };
        // The topic's name is copied for a new group only, not for each message.
        match groups.iter_mut().find(|((topic, p), _)| *p == partition && *topic == *message.stream) {
            Some((_, records)) => records.push(record),
            None => groups.push(((message.stream.to_string(), partition), vec![record])),
        }
    }
    Ok(groups)
}
/// How an error names the `index`-th message of a write: by its id, or by its place when
/// it has none (a raw writer's message may not).
fn which(message: &Message, index: usize) -> String {
    if message.id.is_empty() {
        format!("message {index} of the write (it has no id)")
    } else {
        format!("message {}", message.id)
    }
}

type Waiter = oneshot::Sender<Result<()>>;

struct Batch {
    records: Vec<Record>,
    bytes: usize,
    waiters: Vec<Waiter>,
    opened: Instant,
}

impl Batch {
    fn new() -> Self {
        Self { records: Vec::new(), bytes: 0, waiters: Vec::new(), opened: Instant::now() }
    }

    fn is_full(&self, config: &crate::StreamBusConfig) -> bool {
        self.records.len() >= config.batch_records || self.bytes >= config.batch_bytes
    }
}

/// The batches waiting for one partition, and whether a task is sending them.
#[derive(Default)]
struct Queue {
    batches: VecDeque<Batch>,
    sending: bool,
}

/// Writes to one StreamBus broker.
///
/// A write returns once the broker acknowledged every message of it. Messages go to
/// their key's partition ([`partition_for_key`]); keyless messages of one write go
/// to one partition, the next write's to the next.
///
/// Batching: one produce request per partition is in flight at a time, so the order of
/// writes to a partition is kept, retries included. A write to a partition with nothing
/// in flight is sent at once: a lone awaited publish never waits for company. Writes
/// that come while a request is in flight gather into the next batch (up to
/// `batch_records` records or `batch_bytes` bytes), which goes as soon as the request
/// returns, after `linger` at most if it is not full. So concurrent writers share
/// requests, and batches grow with the load.
///
/// Retries: a produce that failed on the connection or timed out is sent again (when
/// `retry_produce` is on) until the retry deadline. StreamBus has no idempotent produce,
/// so if the broker had appended the first one, the records are in the log twice: at
/// least once, never lost. Pair it with the dedup middleware, which keys on the message
/// id.
pub struct StreamBusWriter {
    inner: Arc<Inner>,
}

struct Inner {
    client: Arc<Client>,
    envelope: bool,
    queues: Mutex<HashMap<PartitionKey, Queue>>,
    /// Told when a batch fills up, so a sending task that lingers on it goes at once.
    filled: Notify,
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
            queues: Mutex::default(),
            filled: Notify::new(),
            next_keyless: AtomicU64::new(0),
        });
        Self { inner }
    }
}

impl Inner {
    /// Adds `waiter` to the last batch of `key`'s queue, which gets `records` too, and
    /// starts a sending task for the partition unless one runs.
    fn enqueue(self: &Arc<Self>, key: PartitionKey, records: Vec<Record>, waiter: Waiter) {
        let config = &self.client.config;
        let (start, filled) = {
            let mut queues = self.queues.lock().unwrap();
            let queue = queues.entry(key.clone()).or_default();
            if queue.batches.back().is_none_or(|b| b.is_full(config)) {
                queue.batches.push_back(Batch::new());
            }
            let batch = queue.batches.back_mut().expect("just made sure");
            batch.bytes += records.iter().map(Record::encoded_len).sum::<usize>();
            batch.records.extend(records);
            batch.waiters.push(waiter);
            (!std::mem::replace(&mut queue.sending, true), batch.is_full(config))
        };
        if filled && !config.linger.is_zero() {
            self.filled.notify_waiters();
        }
        if start {
            tokio::spawn(drain(Arc::clone(self), key));
        }
    }
}

/// Sends `key`'s batches one after the other until its queue is empty. The first goes
/// at once; a later one, which gathered while the one before was in flight, waits for
/// `linger` from its first record unless it is full.
async fn drain(inner: Arc<Inner>, key: PartitionKey) {
    let config = &inner.client.config;
    let mut first = true;
    loop {
        // Registered before the queue is looked at, so a batch that fills between the
        // look and the wait below still wakes this task.
        let filled = inner.filled.notified();
        tokio::pin!(filled);
        filled.as_mut().enable();
        let next = {
            let mut queues = inner.queues.lock().unwrap();
            let queue = queues.get_mut(&key).expect("a sending partition keeps its queue");
            match queue.batches.front() {
                None => {
                    queues.remove(&key);
                    return;
                }
                Some(b)
                    if !first
                        && !b.is_full(config)
                        && !b.records.is_empty()
                        && b.opened + config.linger > Instant::now() =>
                {
                    Err(b.opened + config.linger)
                }
                Some(_) => Ok(queue.batches.pop_front().expect("just looked")),
            }
        };
        match next {
            Ok(batch) => send(&inner, &key, batch).await,
            Err(until) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = filled => {}
                }
            }
        }
        first = false;
    }
}

impl BrokerWriter for StreamBusWriter {
    async fn write(&self, batch: Vec<Message>) -> Result<()> {
        let inner = &self.inner;
        // Everything is checked before anything is queued, so a bad message fails the
        // write without half of it written.
        let keyless = inner.next_keyless.fetch_add(1, Ordering::Relaxed);
        let groups = by_partition(&inner.client, &batch, inner.envelope, keyless).await?;
        let mut receivers = Vec::with_capacity(groups.len());
        for (key, records) in groups {
            let (tx, rx) = oneshot::channel();
            receivers.push((key.0.clone(), rx));
            inner.enqueue(key, records, tx);
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

    /// Waits until everything written before it was acknowledged or failed (each write
    /// gets its own outcome; flush fails only if it cannot wait).
    async fn flush(&self) -> Result<()> {
        let inner = &self.inner;
        let sending: Vec<PartitionKey> = {
            let queues = inner.queues.lock().unwrap();
            queues.iter().filter(|(_, q)| q.sending).map(|(k, _)| k.clone()).collect()
        };
        let mut receivers = Vec::with_capacity(sending.len());
        for key in sending {
            // An empty batch at the end of the queue, whose only waiter is this flush:
            // it is answered once everything ahead of it was sent.
            let (tx, rx) = oneshot::channel();
            receivers.push(rx);
            inner.enqueue(key, Vec::new(), tx);
        }
        for rx in join_all(receivers).await {
            if rx.is_err() {
                return Err(Error::new(ErrorKind::Closed, "the writer stopped during a flush").with_driver(DRIVER));
            }
        }
        Ok(())
    }
}

fn summarize(mut failures: Vec<Error>, total: usize) -> Result<()> {
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => {
            let first = failures.remove(0);
            let of = if total > 0 { format!(" of a write of {total} messages") } else { String::new() };
            Err(Error::new(first.kind(), format!("{n} produce requests{of} failed; the first"))
                .with_driver(DRIVER)
                .with_source(first))
        }
    }
}

/// A copy of `err` for another waiter of the same batch: same kind, text and broker
/// answer.
fn replicate(err: &Error, topic: &str) -> Error {
    let copy = Error::new(err.kind(), err.message()).with_driver(DRIVER).with_topic(topic);
    match broker_answer(err) {
        Some(answer) => copy.with_source(answer.clone()),
        None => copy,
    }
}

async fn send(inner: &Inner, key: &PartitionKey, batch: Batch) {
    if batch.records.is_empty() {
        // Only flushes wait on it.
        for waiter in batch.waiters {
            let _ = waiter.send(Ok(()));
        }
        return;
    }
    let (topic, partition) = (key.0.clone(), key.1);
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
