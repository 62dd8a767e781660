//! What the Kafka benches share: the raw producer's writes and the raw consumer's loop.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use tidewater_testkit::bench::{payload, Counter};

/// Writes of this many messages, each waiting for its acknowledgements.
pub(crate) const BATCH: usize = 1000;

/// Writes `n` keyed 1 KiB messages to `topic` with raw rdkafka, each with the id header
/// tidewater's reader reads, in batches of [`BATCH`]: the time it took.
pub(crate) async fn produce_raw(producer: &FutureProducer, topic: &str, n: usize) -> Duration {
    let p = payload(1024);
    let started = Instant::now();
    for start in (0..n).step_by(BATCH) {
        let mut pending = Vec::with_capacity(BATCH);
        for i in start..(start + BATCH).min(n) {
            let key = format!("k{}", i % 64);
            let id = format!("{topic}-{i}");
            let headers = rdkafka::message::OwnedHeaders::new()
                .insert(rdkafka::message::Header { key: "tw-id", value: Some(&id) });
            let record = FutureRecord::to(topic).payload(&p[..]).key(&key).headers(headers);
            pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("queue"));
        }
        for delivery in pending {
            delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    }
    started.elapsed()
}

/// What the raw loop does with a record; returns the payload's length.
pub(crate) type ReadRecord = fn(&BorrowedMessage<'_>) -> usize;

/// As a client that only counts would: the payload's length, read in place.
pub(crate) fn length_only(record: &BorrowedMessage<'_>) -> usize {
    record.payload().map_or(0, <[u8]>::len)
}

/// Into owned values, as a message that outlives the poll needs: payload and key copied,
/// headers parsed and copied.
pub(crate) fn owned(record: &BorrowedMessage<'_>) -> usize {
    use rdkafka::message::Headers as _;
    let payload = bytes::Bytes::copy_from_slice(record.payload().unwrap_or_default());
    let key = record.key().map(bytes::Bytes::copy_from_slice);
    let headers: Vec<(String, String)> = record
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                .collect()
        })
        .unwrap_or_default();
    std::hint::black_box((&key, &headers, record.timestamp()));
    payload.len()
}

/// Reads `n` 1 KiB records with a raw `StreamConsumer::recv` loop in a new group, each
/// passed to `read`: the time from the first record to the last.
pub(crate) async fn consume_raw(brokers: &str, topic: &str, group: &str, n: usize, read: ReadRecord) -> Duration {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let counter = Counter::new(n);
    let mut bytes = 0usize;
    for _ in 0..n {
        bytes += read(&consumer.recv().await.unwrap());
        counter.hit();
    }
    assert_eq!(bytes, n * 1024);
    let elapsed = counter.wait(Duration::from_secs(300)).await;
    tokio::task::spawn_blocking(move || drop(consumer)).await.unwrap();
    elapsed
}
