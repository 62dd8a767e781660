//! What the Kafka driver promises beyond the conformance suite, against the Apache Kafka that
//! `scripts/test` starts.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater_conformance::{fresh_topic, seq, subscribe_reader as subscribe};
use tidewater_core::testing::Recorder;
use tidewater_core::{
    handler_fn, Delivery, Driver, ErrorKind, EventRegistry, HandlerError, Message, Position, ReadTask,
    SubscriberScheduler,
};
use tidewater_kafka::{Kafka, KafkaConfig};
use tokio::sync::Semaphore;

const PATIENCE: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(10);

fn position(d: &Delivery) -> (u32, u64) {
    match d.position() {
        Position::Log { partition, offset } => (partition, offset),
        other => panic!("a Kafka delivery has a log position, not {other:?}"),
    }
}

fn partition_of(d: &Delivery) -> u32 {
    position(d).0
}

/// The Java client's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() == 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner gives a key.
fn java_partition(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

#[test]
fn murmur2_matches_kafkas_test_vectors() {
    // The vectors of Kafka's own UtilsTest.
    let cases: [(&[u8], i32); 6] = [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ];
    for (data, expected) in cases {
        assert_eq!(murmur2(data), expected, "{}", String::from_utf8_lossy(data));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_where_the_java_client_puts_them() {
    const PARTITIONS: u32 = 5;
    let kafka = support::shared().await;
    let topic = fresh_topic("partitioner");
    kafka.create_topic(&topic, PARTITIONS).await.unwrap();
    let messages: Vec<Message> =
        (0..100).map(|i| Message::new(&topic, "p").with_key(format!("customer-{i}"))).collect();
    kafka.writer().write(messages).await.unwrap();
    let recorder = Recorder::new();
    let mut sub = subscribe(kafka.reader(), ReadTask::new(&topic).with_group("p"), recorder.clone()).await;
    let got = recorder.wait_for(100, PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    let mut used = HashSet::new();
    for d in &got {
        let key = d.message().key.as_ref().unwrap();
        assert_eq!(partition_of(d), java_partition(key, PARTITIONS), "key {:?}", d.message().key_str());
        used.insert(partition_of(d));
    }
    assert_eq!(used.len(), PARTITIONS as usize, "100 keys should use every partition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors() {
    let strict =
        support::connect(KafkaConfig { auto_create_topics: None, ..support::config(&support::shared_brokers()) }).await;
    let writer = strict.writer();

    let missing = fresh_topic("missing");
    let err = writer.write(vec![Message::new(&missing, "x")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownTopic, "{err}");
    assert!(err.to_string().contains(&missing), "the error names the topic: {err}");

    let mut scheduler = SubscriberScheduler::new(strict.reader(), EventRegistry::new());
    scheduler.add(ReadTask::new(&missing).with_group("g"), Arc::new(Recorder::new()));
    let err = scheduler.start().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownTopic, "{err}");
    scheduler.shutdown(GRACE).await;

    let err = writer.write(vec![Message::new("no/slashes", "x")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");

    let existing = fresh_topic("limits");
    strict.create_topic(&existing, 1).await.unwrap();
    let big = Message::new(&existing, vec![0u8; 2_000_000]);
    let err = writer.write(vec![big]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    let text = err.to_string();
    assert!(text.contains("message 0 of the batch takes") && text.contains("message.max.bytes"), "{text}");

    // A bad message after a good one: the batch is checked before any of it is queued.
    let reserved = Message::new(&existing, "x").with_header("tw-id", "forged");
    let err = writer.write(vec![Message::new(&existing, "before").with_id("before"), reserved]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    // Nothing of the failed writes reached the topic: a good message is the only one.
    writer.write(vec![Message::new(&existing, "good").with_id("good")]).await.unwrap();
    let recorder = Recorder::new();
    let mut sub = subscribe(strict.reader(), ReadTask::new(&existing).with_group("g"), recorder.clone()).await;
    recorder.wait_for(1, PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    let ids: Vec<tidewater_core::MessageId> = recorder.deliveries().iter().map(|d| d.message().id.clone()).collect();
    assert_eq!(ids, ["good"]);
}

#[tokio::test]
async fn a_missing_broker_is_a_connection_error() {
    // Free, and never given to a broker this test process starts.
    let port = tidewater_testkit::free_port();
    let mut config = KafkaConfig::new(format!("127.0.0.1:{port}"));
    config.request_timeout = Duration::from_secs(2);
    let err = Kafka::connect(config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&port.to_string()), "the error names the address: {err}");
    // librdkafka says only "broker transport failure"; the error says why.
    assert!(err.to_string().contains("refused"), "the error says why: {err}");
    tidewater_conformance::assert_each_cause_said_once(&err);
}

/// A nack on a log rewinds the partition: the record and everything after it come
/// again, in order, and the record's attempt counts up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_rewinds_the_partition_in_order() {
    let kafka = support::shared().await;
    let topic = fresh_topic("rewind");
    kafka.create_topic(&topic, 1).await.unwrap();
    let messages: Vec<Message> =
        (0..6).map(|i| Message::new(&topic, "p").with_id(format!("m{i}")).with_header("seq", i.to_string())).collect();
    kafka.writer().write(messages).await.unwrap();

    let calls = Recorder::new();
    let failed = Arc::new(Mutex::new(false));
    let seen = calls.clone();
    let handler = handler_fn(move |d: Delivery| {
        seen.record(d.clone());
        let first_time = seq(&d) == 2 && !std::mem::replace(&mut *failed.lock().unwrap(), true);
        async move {
            if first_time {
                Err(HandlerError::transient("induced"))
            } else {
                Ok(())
            }
        }
    });
    let mut task = ReadTask::new(&topic).with_group("rewind");
    task.nack_delay = Some(Duration::from_millis(50));
    let mut sub = subscribe(kafka.reader(), task, handler).await;
    let got = calls.wait_until(|c| c.iter().filter(|d| seq(d) == 5).count() == 1, PATIENCE).await.unwrap();
    let report = sub.shutdown(GRACE).await;
    let order: Vec<(usize, u32)> = got.iter().map(|d| (seq(d), d.attempt())).collect();
    assert_eq!(order, [(0, 1), (1, 1), (2, 1), (2, 2), (3, 1), (4, 1), (5, 1)], "{report:?}");
    assert_eq!(support::committed(&support::shared_brokers(), &format!("rewind.{topic}"), &topic, 1), [Some(6)]);
}

/// Three partitions, sixteen keys, four lanes: per-key order holds, and while one record
/// is still running the commit of its partition stays below it, while the others commit
/// everything; at the end every partition is committed to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_never_pass_a_running_record() {
    const KEYS: usize = 16;
    const EACH: usize = 25;
    let brokers = support::shared_brokers();
    let mut config = support::config(&brokers);
    config.commit_interval = Duration::from_millis(100);
    let kafka = support::connect(config).await;
    let topic = fresh_topic("commits");
    kafka.create_topic(&topic, 3).await.unwrap();
    // The runner gives each of the 4 lanes the keys whose hash falls to it, and a lane
    // whose handler waits holds up its other keys. Pick the held key alone in its lane,
    // so that everything else can finish while it waits.
    let lane = |key: &str| tidewater_core::hash::lane_of(key.as_bytes(), 4);
    let candidates: Vec<String> = (0..100).map(|i| format!("key-{i}")).collect();
    let held_key = candidates.iter().find(|k| lane(k) == 0).unwrap().clone();
    let mut keys: Vec<String> = candidates.into_iter().filter(|k| lane(k) != 0).take(KEYS - 1).collect();
    keys.push(held_key.clone());
    let messages: Vec<Message> = (0..KEYS * EACH)
        .map(|i| {
            Message::new(&topic, "p")
                .with_id(format!("m{i}"))
                .with_key(keys[i % KEYS].clone())
                .with_header("seq", (i / KEYS).to_string())
        })
        .collect();
    kafka.writer().write(messages).await.unwrap();

    // Record 10 of the held key blocks until released; its key's later records wait
    // behind it.
    let gate = Arc::new(Semaphore::new(0));
    let done = Recorder::new();
    let (held, record, held_key) = (Arc::clone(&gate), done.clone(), Arc::new(held_key));
    let handler = handler_fn(move |d: Delivery| {
        let (held, record, held_key) = (Arc::clone(&held), record.clone(), Arc::clone(&held_key));
        async move {
            if d.message().key_str() == Some(held_key.as_str()) && seq(&d) == 10 {
                held.acquire().await.unwrap().forget();
            }
            // Let lanes interleave.
            tokio::task::yield_now().await;
            record.record(d);
            Ok::<_, HandlerError>(())
        }
    });
    let mut sub =
        subscribe(kafka.reader(), ReadTask::new(&topic).with_group("commits").with_concurrency(4), handler).await;
    let blocked_behind = EACH - 10;
    done.wait_for(KEYS * EACH - blocked_behind, PATIENCE).await.unwrap();
    assert_eq!(done.len(), KEYS * EACH - blocked_behind, "only the held key from record 10 on is held back");

    // The held record is the first record of its partition not processed: the held
    // key's partition is where some offsets are missing.
    let processed: HashSet<(u32, u64)> = done.deliveries().iter().map(position).collect();
    let ends = support::ends(&brokers, &topic, 3);
    let missing = |p: usize| (0..ends[p] as u64).find(|o| !processed.contains(&(p as u32, *o)));
    let held_partition = (0..3).find(|p| missing(*p).is_some()).expect("a partition with the held record");
    let held_offset = missing(held_partition).unwrap();
    // Wait for the other partitions to be committed to their ends: the same commits
    // carry the held partition's offset.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let committed = loop {
        let committed = support::committed(&brokers, &format!("commits.{topic}"), &topic, 3);
        let others_done = (0..3).filter(|p| *p != held_partition).all(|p| committed[p] == Some(ends[p]));
        if others_done && committed[held_partition].is_some() {
            break committed;
        }
        assert!(tokio::time::Instant::now() < deadline, "commits did not arrive: {committed:?} of {ends:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        committed[held_partition],
        Some(held_offset as i64),
        "the commit of partition {held_partition} stops at the record still running"
    );

    gate.add_permits(1);
    done.wait_for(KEYS * EACH, PATIENCE).await.unwrap();
    let report = sub.shutdown(GRACE).await;
    assert!(report.is_clean(), "{report:?}");
    let committed = support::committed(&brokers, &format!("commits.{topic}"), &topic, 3);
    let expected: Vec<Option<i64>> = ends.iter().map(|e| Some(*e)).collect();
    assert_eq!(committed, expected, "after the stop every partition is committed to its end");
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for d in done.deliveries() {
        by_key.entry(d.message().key_str().unwrap().to_owned()).or_default().push(seq(&d));
    }
    for (key, seqs) in by_key {
        assert_eq!(seqs, (0..EACH).collect::<Vec<_>>(), "order of {key}");
    }
}

/// A handler still running when its partition is revoked commits nothing afterwards:
/// its settlement fails and the record is read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_of_a_revoked_partition_does_not_commit() {
    let kafka = support::shared().await;
    let topic = fresh_topic("revoke");
    kafka.create_topic(&topic, 3).await.unwrap();
    // m0 alone in its lane of two: a held lane fills up to its buffer and then holds the
    // fetch loop (and with it the polling) too, so the others go to the other lane.
    let held_lane = tidewater_core::hash::lane_of(b"k0", 2);
    let others = (1..).map(|i| format!("k{i}")).filter(|k| tidewater_core::hash::lane_of(k.as_bytes(), 2) != held_lane);
    let keys: Vec<String> = std::iter::once("k0".to_owned()).chain(others.take(29)).collect();
    let messages: Vec<Message> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Message::new(&topic, "p").with_id(format!("m{i}")).with_key(k.clone()))
        .collect();
    kafka.writer().write(messages).await.unwrap();

    let gate = Arc::new(Semaphore::new(0));
    let calls = Recorder::new();
    let done = Recorder::new();
    let member = |block: bool| {
        let (gate, calls, done) = (Arc::clone(&gate), calls.clone(), done.clone());
        handler_fn(move |d: Delivery| {
            let (gate, calls, done) = (Arc::clone(&gate), calls.clone(), done.clone());
            async move {
                calls.record(d.clone());
                if block
                    && d.message().id == "m0"
                    && calls.deliveries().iter().filter(|c| c.message().id == "m0").count() == 1
                {
                    gate.acquire().await.unwrap().forget();
                }
                done.record(d);
                Ok::<_, HandlerError>(())
            }
        })
    };
    // Two lanes, so the first member keeps polling (and so takes part in the rebalance)
    // while one handler is held.
    let mut first =
        subscribe(kafka.reader(), ReadTask::new(&topic).with_group("revoke").with_concurrency(2), member(true)).await;
    calls.wait_until(|c| c.iter().any(|d| d.message().id == "m0"), PATIENCE).await.unwrap();
    // The second member's start returns once it has its partitions, which in an eager
    // rebalance is after the first member gave all of its own up.
    let mut second = subscribe(kafka.reader(), ReadTask::new(&topic).with_group("revoke"), member(false)).await;
    gate.add_permits(1);
    let ids: HashSet<String> = (0..30).map(|i| format!("m{i}")).collect();
    done.wait_until(
        |d| {
            d.iter().filter(|d| d.message().id == "m0").count() >= 2
                && ids.iter().all(|id| d.iter().any(|x| &x.message().id == id))
        },
        PATIENCE,
    )
    .await
    .unwrap();
    let first_report = first.shutdown(GRACE).await;
    second.shutdown(GRACE).await;
    assert!(first_report.tasks[0].settle_errors >= 1, "the held handler's ack came after the revoke: {first_report:?}");
}

/// With one lane, records finish in order, so a graceful stop can commit everything that
/// was handled: subscribing again brings no duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_one_lane_commits_everything_handled() {
    const TOTAL: usize = 200;
    let kafka = support::shared().await;
    let topic = fresh_topic("exact-stop");
    kafka.create_topic(&topic, 3).await.unwrap();
    let messages: Vec<Message> = (0..TOTAL)
        .map(|i| Message::new(&topic, "p").with_id(format!("m{i}")).with_key(format!("k{}", i % 7)))
        .collect();
    kafka.writer().write(messages).await.unwrap();
    let done = Recorder::new();
    for round in 0..5 {
        let before = done.len();
        let mut sub = subscribe(kafka.reader(), ReadTask::new(&topic).with_group("exact"), done.clone()).await;
        done.wait_until(|d| d.len() > before || d.len() >= TOTAL, PATIENCE).await.unwrap();
        let report = sub.shutdown(GRACE).await;
        assert!(report.is_clean(), "round {round}: {report:?}");
    }
    let mut sub = subscribe(kafka.reader(), ReadTask::new(&topic).with_group("exact"), done.clone()).await;
    done.wait_until(|d| d.iter().map(|d| d.message().id.as_str()).collect::<HashSet<_>>().len() == TOTAL, PATIENCE)
        .await
        .unwrap();
    sub.shutdown(GRACE).await;
    assert_eq!(done.len(), TOTAL, "no record came twice over 6 subscriptions");
}

/// A handler that holds its record past `max.poll.interval.ms` (7 s here): the reader
/// fetches nothing meanwhile, but its consumer goes on polling with its partitions
/// paused, so it keeps its place in the group. Before, librdkafka took it for a stuck
/// application and left the group; the record came again on the rejoin, to be handled
/// twice. A circuit breaker holding deliveries through an outage longer than the
/// interval did the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_held_past_the_poll_interval_keeps_its_place_in_the_group() {
    let brokers = support::shared_brokers();
    let config = KafkaConfig { session_timeout: Duration::from_secs(6), ..support::config(&brokers) }
        .set("max.poll.interval.ms", "7000");
    let kafka = support::connect(config).await;
    let topic = fresh_topic("held");
    kafka.create_topic(&topic, 1).await.unwrap();
    let messages: Vec<Message> = (0..3).map(|i| Message::new(&topic, "p").with_id(format!("m{i}"))).collect();
    kafka.writer().write(messages).await.unwrap();

    let gate = tidewater_core::testing::Gate::new();
    let task = ReadTask::new(&topic).with_group("held").with_prefetch(1);
    let mut sub = subscribe(kafka.reader(), task, gate.clone()).await;
    gate.recorder().wait_for(1, PATIENCE).await.unwrap();
    // The hold itself, not a wait for a signal: more than twice the poll interval.
    tokio::time::sleep(Duration::from_secs(16)).await;
    gate.open();
    let got = gate.recorder().wait_for(3, PATIENCE).await.unwrap();
    let report = sub.shutdown(GRACE).await;
    let ids: Vec<&str> = got.iter().map(|d| d.message().id.as_str()).collect();
    assert_eq!(ids, ["m0", "m1", "m2"], "each record once: {report:?}");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(support::committed(&brokers, &format!("held.{topic}"), &topic, 1), [Some(3)]);
}
