//! Behaviour of the StreamBus driver beyond the shared suite: each v1.0.x quirk it must
//! survive, the connection pool, typed errors, static partitions, transactions.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater_core::testing::{Gate, Recorder};
use tidewater_core::{Driver, ErrorKind, EventRegistry, Message, Position, ReadTask, StartFrom, SubscriberScheduler};
use tidewater_streambus::protocol::ErrorCode;
use tidewater_streambus::*;
use tidewater_streambus_double::{BrokerDouble, DoubleConfig, Profile, GO_ZERO_TIME_NANOS};

const PATIENCE: Duration = Duration::from_secs(20);

async fn read_all(bus: &StreamBus, task: ReadTask, n: usize) -> Vec<tidewater_core::Delivery> {
    let recorder = Recorder::new();
    let mut scheduler = SubscriberScheduler::new(bus.reader(), EventRegistry::new());
    scheduler.add(task, Arc::new(recorder.clone()));
    scheduler.start().await.unwrap();
    let got = recorder.wait_for(n, PATIENCE).await.expect("deliveries");
    let report = scheduler.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
    got
}

#[tokio::test]
async fn v1_drops_headers_and_time_so_the_envelope_carries_them() {
    let double = BrokerDouble::start(Profile::V1).await;
    let mut config = support::config(double.addr());
    config.envelope = Envelope::Never;
    let raw = StreamBus::connect(config).await.unwrap();
    let enveloped = support::connect(&double).await;
    raw.create_topic("meta", 1).await.unwrap();
    let message = |id: &str| {
        Message::new("meta", "body").with_id(id).with_key("k").with_header("h", "v").with_content_type("text/plain")
    };
    raw.writer().write(vec![message("raw")]).await.unwrap();
    enveloped.writer().write(vec![message("wrapped")]).await.unwrap();

    // The broker stored neither headers nor time.
    let stored = double.storage().lock().unwrap().records("meta", 0);
    assert!(stored.iter().all(|r| r.headers.is_empty() && r.timestamp == GO_ZERO_TIME_NANOS), "{stored:?}");
    assert!(stored[1].value.starts_with(&ENVELOPE_MAGIC));

    let got = read_all(&enveloped, ReadTask::new("meta"), 2).await;
    let (raw_got, wrapped) = (got[0].message(), got[1].message());
    assert_eq!(raw_got.id, "meta-0-0", "without the envelope the id is lost and replaced by the position");
    assert!(raw_got.headers.is_empty() && raw_got.content_type.is_none());
    assert_eq!(&raw_got.payload[..], b"body");
    assert_eq!(wrapped.id, "wrapped");
    assert_eq!((wrapped.headers.get("h"), wrapped.content_type.as_deref()), (Some("v"), Some("text/plain")));
    assert_eq!(wrapped.key.as_deref(), Some(&b"k"[..]));
}

/// A reader names every message it reads with its topic's one shared name, not a copy
/// of the text per record.
#[tokio::test]
async fn read_messages_share_the_topic_name() {
    let double = BrokerDouble::start(Profile::Later).await;
    let bus = support::connect(&double).await;
    bus.create_topic("shared", 2).await.unwrap();
    let batch = (0..4).map(|i| Message::new("shared", "x").with_key(format!("k{i}"))).collect();
    bus.writer().write(batch).await.unwrap();
    let got = read_all(&bus, ReadTask::new("shared"), 4).await;
    assert!(got.iter().all(|d| d.message().stream == "shared"));
    assert!(got.windows(2).all(|w| w[0].message().stream.shares(&w[1].message().stream)));
}

/// A produce the broker refuses says the broker's answer once, with its text, on each
/// message's error: those of a batch's other messages once carried the code alone, and
/// every error said the code twice.
#[tokio::test]
async fn a_refused_produce_says_the_brokers_answer_once() {
    let mut config = DoubleConfig::new(Profile::Later);
    config.unwritable_topics = vec!["locked".to_owned()];
    let double = BrokerDouble::start_with(config).await;
    let bus = support::connect(&double).await;
    bus.create_topic("locked", 2).await.unwrap();
    let writer = bus.writer();
    let batch = (0..6).map(|i| Message::new("locked", "x").with_key(format!("k{i}"))).collect();
    let alone = Message::new("locked", "x").with_key("k0");
    let (batched, alone) = tokio::join!(writer.write(batch), writer.write(vec![alone]));
    for err in [batched.unwrap_err(), alone.unwrap_err()] {
        assert_eq!(err.kind(), ErrorKind::BrokerPermanent, "{err}");
        assert_eq!(broker_code(&err), Some(ErrorCode::AUTHORIZATION_FAILED), "{err}");
        let text = tidewater_core::testing::reported(&err);
        assert_eq!(text.matches("AUTHORIZATION_FAILED").count(), 1, "{text}");
        assert!(text.contains("not authorized to write to topic locked"), "{text}");
    }
}

#[tokio::test]
async fn v1_auto_create_is_not_left_to_the_broker() {
    let double = BrokerDouble::start(Profile::V1).await;
    let mut config = support::config(double.addr());
    config.auto_create_partitions = None;
    let bus = StreamBus::connect(config).await.unwrap();
    let err = bus.writer().write(vec![Message::new("nosuch", "x")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownTopic, "{err}");
    assert_eq!(double.storage().lock().unwrap().partitions("nosuch"), None, "the broker was not asked to create it");

    // With auto-create on, the driver creates the topic with the configured partitions,
    // not the broker's one.
    let bus = support::connect(&double).await;
    bus.writer().write(vec![Message::new("made", "x")]).await.unwrap();
    assert_eq!(double.storage().lock().unwrap().partitions("made"), Some(3));
}

#[tokio::test]
async fn empty_fetches_back_off() {
    let double = BrokerDouble::start(Profile::V1).await;
    let bus = support::connect(&double).await;
    bus.create_topic("quiet", 1).await.unwrap();
    let mut scheduler = SubscriberScheduler::new(bus.reader(), EventRegistry::new());
    scheduler.add(ReadTask::new("quiet"), Arc::new(Recorder::new()));
    scheduler.start().await.unwrap();
    let before = double.counters().fetches.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fetches = double.counters().fetches.load(Ordering::Relaxed) - before;
    scheduler.shutdown(Duration::from_secs(5)).await;
    // The broker answers empty at once; without back-off this is thousands per second.
    // Pauses double from 1 ms to 50 ms: about 26 fetches in a second.
    assert!((10..=60).contains(&fetches), "{fetches} empty fetches in one second");
}

#[tokio::test]
async fn latest_starts_at_the_end_not_at_minus_one() {
    let double = BrokerDouble::start(Profile::V1).await;
    let bus = support::connect(&double).await;
    bus.create_topic("late", 1).await.unwrap();
    let writer = bus.writer();
    writer.write(vec![Message::new("late", "old").with_id("old")]).await.unwrap();
    let recorder = Recorder::new();
    let mut scheduler = SubscriberScheduler::new(bus.reader(), EventRegistry::new());
    scheduler.add(ReadTask::new("late").with_group("g").with_start(StartFrom::Latest), Arc::new(recorder.clone()));
    scheduler.start().await.unwrap();
    writer.write(vec![Message::new("late", "new").with_id("new")]).await.unwrap();
    let got = recorder.wait_for(1, PATIENCE).await.unwrap();
    scheduler.shutdown(Duration::from_secs(5)).await;
    assert_eq!(got[0].message().id, "new");
    assert_eq!(recorder.len(), 1, "the record from before the start is not read");
}

#[tokio::test]
async fn v1_closes_on_group_requests_and_the_driver_says_unsupported() {
    let double = BrokerDouble::start(Profile::V1).await;
    let bus = support::connect(&double).await;
    let rejected = double.counters().rejected.load(Ordering::Relaxed);
    assert_eq!(rejected, 1, "the probe's FindCoordinator closed one connection");
    let err = bus.transactional_writer("tx").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    // The connection the probe lost does not break anything after it.
    bus.writer().write(vec![Message::new("after", "x")]).await.unwrap();
}

/// A double whose connections go silent once idle for `silent_after`, and a config for it
/// that closes connections idle for `idle_close`.
async fn silent_when_idle(silent_after: Duration, idle_close: Duration) -> (BrokerDouble, StreamBusConfig) {
    let mut faulty = DoubleConfig::new(Profile::V1);
    faulty.idle_fault = Some(silent_after);
    let double = BrokerDouble::start_with(faulty).await;
    let mut config = support::config(double.addr());
    config.idle_close = idle_close;
    (double, config)
}

#[tokio::test]
async fn idle_connections_are_closed_before_the_broker_goes_silent() {
    let (double, config) = silent_when_idle(Duration::from_millis(400), Duration::from_millis(200)).await;
    let bus = StreamBus::connect(config).await.unwrap();
    bus.create_topic("idle", 1).await.unwrap();
    assert!(bus.idle_connections() > 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(bus.idle_connections(), 0, "idle connections were closed");
    let started = tokio::time::Instant::now();
    bus.writer().write(vec![Message::new("idle", "x")]).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500), "answered on a fresh connection");
    assert_eq!(double.counters().idle_hung.load(Ordering::Relaxed), 0, "no connection reached the idle fault");
}

#[tokio::test]
async fn a_silent_connection_times_out_and_the_retry_uses_a_new_one() {
    // The control case: idle close off, so a pooled connection reaches the fault.
    let (double, mut config) = silent_when_idle(Duration::from_millis(300), Duration::from_secs(60)).await;
    config.request_timeout = Duration::from_millis(500);
    config.retry.initial = Duration::from_millis(10);
    let bus = StreamBus::connect(config).await.unwrap();
    bus.create_topic("silent", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    bus.writer().write(vec![Message::new("silent", "x")]).await.unwrap();
    assert!(double.counters().idle_hung.load(Ordering::Relaxed) >= 1, "a pooled connection went silent");
    assert_eq!(double.storage().lock().unwrap().records("silent", 0).len(), 1);
}

#[tokio::test]
async fn a_full_pool_makes_requests_wait_not_fail() {
    let double = BrokerDouble::start(Profile::Later).await;
    let mut config = support::config(double.addr());
    config.pool_size = 1;
    config.linger = Duration::ZERO;
    let bus = StreamBus::connect(config).await.unwrap();
    bus.create_topic("pool", 3).await.unwrap();
    let writer = bus.writer();
    let writes = (0..50).map(|i| {
        let writer = Arc::clone(&writer);
        tokio::spawn(async move { writer.write(vec![Message::new("pool", "x").with_key(format!("k{i}"))]).await })
    });
    for w in writes {
        w.await.unwrap().expect("every write succeeds with one connection");
    }
    assert!(double.counters().connections.load(Ordering::Relaxed) <= 3, "probe, health and one pooled connection");
}

#[tokio::test]
async fn missing_broker_and_broker_errors_are_typed() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut config = support::config(unused);
    config.connect_timeout = Duration::from_millis(500);
    let err = StreamBus::connect(config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(err.to_string().contains(&unused.to_string()), "the error names the address: {err}");
    tidewater_conformance::assert_each_cause_said_once(&err);

    let double = BrokerDouble::start(Profile::Later).await;
    let bus = support::connect(&double).await;
    bus.create_topic("fixed", 2).await.unwrap();
    let err = bus.create_topic("fixed", 4).await.unwrap_err();
    assert_eq!(broker_code(&err), Some(ErrorCode::TOPIC_EXISTS), "{err}");
    tidewater_conformance::assert_each_cause_said_once(&err);
    let err = bus.writer().write(vec![Message::new("bad/name", "x")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");
    let huge = Message::new("fixed", vec![0u8; 11 * 1024 * 1024]);
    let err = bus.writer().write(vec![huge]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(err.to_string().contains("message 0 of the write (it has no id)"), "a message without id: {err}");
}

#[tokio::test]
async fn keys_keep_their_partition_and_spread_over_partitions() {
    let double = BrokerDouble::start(Profile::Later).await;
    let bus = support::connect(&double).await;
    bus.create_topic("keys", 4).await.unwrap();
    let messages: Vec<Message> = (0..200).map(|i| Message::new("keys", "x").with_key(format!("k{}", i % 20))).collect();
    bus.writer().write(messages).await.unwrap();
    let storage = double.storage();
    let storage = storage.lock().unwrap();
    let mut seen: HashMap<Vec<u8>, u32> = HashMap::new();
    for p in 0..4 {
        for r in storage.records("keys", p) {
            assert_eq!(p, partition_for_key(&r.key, 4));
            assert_eq!(*seen.entry(r.key.to_vec()).or_insert(p), p, "one key, one partition");
        }
    }
    let used: HashSet<u32> = seen.values().copied().collect();
    assert_eq!(used.len(), 4, "20 keys use every partition: {seen:?}");
}

#[tokio::test]
async fn static_partitions_split_a_v1_topic_between_processes() {
    let double = BrokerDouble::start(Profile::V1).await;
    let (a, b) = (support::connect(&double).await, support::connect(&double).await);
    a.create_topic("split", 3).await.unwrap();
    let messages: Vec<Message> =
        (0..90).map(|i| Message::new("split", "x").with_id(format!("m{i}")).with_key(format!("k{i}"))).collect();
    a.writer().write(messages).await.unwrap();
    let mut first = ReadTask::new("split").with_group("g");
    first.options.insert(StaticPartitions(vec![0]));
    let mut rest = ReadTask::new("split").with_group("g");
    rest.options.insert(StaticPartitions(vec![1, 2]));
    let in_0 = double.storage().lock().unwrap().records("split", 0).len();
    let got_a = read_all(&a, first, in_0).await;
    let got_b = read_all(&b, rest, 90 - in_0).await;
    assert!(got_a.iter().all(|d| d.position().partition() == Some(0)));
    assert!(got_b.iter().all(|d| d.position().partition() != Some(0)));
    let ids: HashSet<tidewater_core::MessageId> = got_a.iter().chain(&got_b).map(|d| d.message().id.clone()).collect();
    assert_eq!(ids.len(), 90);
}

#[tokio::test]
async fn file_offsets_survive_a_new_store() {
    let dir = std::env::temp_dir().join(format!("tw-offsets-{}", std::process::id()));
    let store = FileOffsets::new(&dir).unwrap();
    store.commit("g", "orders", &[(0, 5), (2, 9)]).await.unwrap();
    store.commit("g", "orders", &[(0, 7)]).await.unwrap();
    let again = FileOffsets::new(&dir).unwrap();
    assert_eq!(again.load("g", "orders", 0).await.unwrap(), Some(7));
    assert_eq!(again.load("g", "orders", 2).await.unwrap(), Some(9));
    assert_eq!(again.load("g", "orders", 1).await.unwrap(), None);
    assert_eq!(again.load("other", "orders", 0).await.unwrap(), None);

    // A topic may have 249 characters: its file name, hex of the names, would be too
    // long for the file system, and a digest names it instead.
    let (long, longer) = ("t".repeat(249), format!("{}u", "t".repeat(248)));
    store.commit("billing", &long, &[(0, 3)]).await.expect("a long topic's positions are stored");
    store.commit("billing", &longer, &[(0, 4)]).await.unwrap();
    let again = FileOffsets::new(&dir).unwrap();
    assert_eq!(again.load("billing", &long, 0).await.unwrap(), Some(3));
    assert_eq!(again.load("billing", &longer, 0).await.unwrap(), Some(4));
    assert_eq!(again.load("billings", &long, 0).await.unwrap(), None);

    // A deleted topic's positions go, every group's, short names and long, and only
    // that topic's.
    store.commit("shipping", &long, &[(1, 2)]).await.unwrap();
    store.forget_topic(&long).await.unwrap();
    store.forget_topic("orders").await.unwrap();
    let again = FileOffsets::new(&dir).unwrap();
    assert_eq!(again.load("billing", &long, 0).await.unwrap(), None);
    assert_eq!(again.load("shipping", &long, 1).await.unwrap(), None);
    assert_eq!(again.load("g", "orders", 0).await.unwrap(), None);
    assert_eq!(again.load("billing", &longer, 0).await.unwrap(), Some(4), "another topic's stay");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn transactions_are_seen_all_or_nothing() {
    let double = BrokerDouble::start(Profile::Later).await;
    let bus = support::connect(&double).await;
    bus.create_topic("txn", 2).await.unwrap();
    let mut tx = bus.transactional_writer("t1").await.unwrap();
    let batch = |tag: &str| {
        (0..10).map(|i| Message::new("txn", "x").with_id(format!("{tag}{i}")).with_key(format!("k{i}"))).collect()
    };

    let mut aborted = tx.begin();
    aborted.write(batch("aborted-")).await.unwrap();
    aborted.abort().await.unwrap();
    let mut open = tx.begin();
    open.write(batch("committed-")).await.unwrap();
    // While it is open, read-committed readers see nothing of it.
    let recorder = Recorder::new();
    let mut scheduler = SubscriberScheduler::new(bus.reader(), EventRegistry::new());
    scheduler.add(ReadTask::new("txn"), Arc::new(recorder.clone()));
    scheduler.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recorder.len(), 0, "nothing of an open or aborted transaction is visible");
    open.commit().await.unwrap();
    let got = recorder.wait_for(10, PATIENCE).await.unwrap();
    scheduler.shutdown(Duration::from_secs(5)).await;
    assert!(got.iter().all(|d| d.message().id.starts_with("committed-")), "only the committed transaction");
    assert_eq!(recorder.len(), 10);
    // Markers took offsets; the reader stepped over them by next_offset.
    assert!(got.iter().any(|d| matches!(d.position(), Position::Log { offset, .. } if offset >= 10)));

    // A second producer with the same id fences the first.
    let _newer = bus.transactional_writer("t1").await.unwrap();
    let mut stale = tx.begin();
    let err = stale.write(batch("stale-")).await.unwrap_err();
    assert_eq!(broker_code(&err), Some(ErrorCode::PRODUCER_FENCED), "{err}");
}

#[derive(Default)]
struct Seen {
    sends: AtomicUsize,
    acks: Mutex<Vec<i64>>,
}

impl ProduceInterceptor for Seen {
    fn on_send(&self, info: &ProduceInfo<'_>) {
        self.sends.fetch_add(info.records, Ordering::Relaxed);
    }
    fn on_acknowledgement(&self, _: &ProduceInfo<'_>, outcome: Result<i64, &tidewater_core::Error>) {
        self.acks.lock().unwrap().push(outcome.expect("acknowledged"));
    }
}

#[tokio::test]
async fn interceptors_and_counters_see_every_batch() {
    let double = BrokerDouble::start(Profile::Later).await;
    let seen = Arc::new(Seen::default());
    let mut config = support::config(double.addr());
    config.interceptors.push(seen.clone());
    let bus = StreamBus::connect(config).await.unwrap();
    bus.create_topic("counted", 1).await.unwrap();
    let writer = bus.writer();
    for i in 0..5 {
        writer.write(vec![Message::new("counted", "abc").with_key(format!("{i}"))]).await.unwrap();
    }
    writer.close().await.unwrap();
    let c = bus.counters();
    assert_eq!((c.sent, c.failed), (5, 0));
    assert!(c.batches >= 1 && c.batches <= 5);
    assert_eq!(c.bytes, 5 * 4);
    assert_eq!(seen.sends.load(Ordering::Relaxed), 5);
    let acks = seen.acks.lock().unwrap().clone();
    assert_eq!(acks.len() as u64, c.batches);
    assert_eq!(acks[0], 0, "the first batch starts at offset 0");
}

/// A fake broker that answers the first request on each connection properly and every
/// later one with the wrong request id.
async fn mismatching_broker() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use bytes::{Bytes, BytesMut};
    use tidewater_streambus::protocol::{frame, *};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                for n in 0.. {
                    let mut prefix = [0u8; 4];
                    if stream.read_exact(&mut prefix).await.is_err() {
                        return;
                    }
                    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
                    stream.read_exact(&mut body).await.unwrap();
                    let (header, payload) = frame::decode_request(Bytes::from(body)).unwrap();
                    let response = match Request::decode(header.code, payload).unwrap() {
                        Request::HealthCheck => {
                            Response::HealthCheck(HealthResponse { status: "healthy".into(), uptime_seconds: 1 })
                        }
                        Request::CreateTopic(r) => Response::CreateTopic(TopicResult { topic: r.topic, done: true }),
                        other => panic!("unexpected {other:?}"),
                    };
                    let id = if n == 0 { header.id } else { header.id + 100 };
                    let mut out = BytesMut::new();
                    encode_ok_frame(&mut out, id, &response).unwrap();
                    stream.write_all(&out).await.unwrap();
                }
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn a_response_with_the_wrong_id_drops_the_connection() {
    let (addr, connections) = mismatching_broker().await;
    let mut config = support::config(addr);
    config.generation = Generation::V1;
    config.retry.deadline = Duration::ZERO;
    let bus = StreamBus::connect(config.clone()).await.unwrap();
    // The health check's connection went back to the pool; its second answer is wrong.
    let err = bus.create_topic("t", 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let cause = err.get_ref().map(ToString::to_string).unwrap_or_default();
    assert!(cause.contains("does not match"), "the cause says what went wrong: {cause}");
    assert_eq!(bus.idle_connections(), 0, "the connection was dropped, not pooled");

    // With a retry, the request goes again on a new connection and succeeds.
    config.retry = RetryPolicy::default();
    let bus = StreamBus::connect(config).await.unwrap();
    bus.create_topic("t", 1).await.unwrap();
    assert_eq!(connections.load(Ordering::Relaxed), 3, "one per client, one for the retry");
}

/// A v1.0.x broker answers a fetch past the log's end with an empty list, not an error.
/// A stored position there (a topic recreated, a store from another broker) is found by
/// comparing with the log's end and moved to where the task starts from; the store then
/// holds the new position.
#[tokio::test]
async fn a_stored_position_past_the_log_end_moves_where_the_task_starts_from() {
    for start in [StartFrom::Earliest, StartFrom::Latest] {
        let double = BrokerDouble::start(Profile::V1).await;
        let store = Arc::new(MemoryOffsets::default());
        let mut config = support::config(double.addr());
        config.offset_store = store.clone();
        let bus = StreamBus::connect(config).await.unwrap();
        bus.create_topic("gone", 1).await.unwrap();
        let old: Vec<Message> = (0..5).map(|i| Message::new("gone", "old").with_id(format!("old-{i}"))).collect();
        bus.writer().write(old).await.unwrap();
        store.commit("g.gone", "gone", &[(0, 100)]).await.unwrap();

        let recorder = Recorder::new();
        let mut scheduler = SubscriberScheduler::new(bus.reader(), EventRegistry::new());
        scheduler.add(ReadTask::new("gone").with_group("g").with_start(start), Arc::new(recorder.clone()));
        scheduler.start().await.unwrap();
        let expected = match start {
            StartFrom::Earliest => 5,
            StartFrom::Latest => {
                // Once the reader has moved to the end, what comes next is read.
                let moved = async {
                    while store.load("g.gone", "gone", 0).await.unwrap() != Some(5) {
                        // Polls the store for the commit of the moved position.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                };
                tokio::time::timeout(PATIENCE, moved).await.expect("the position moves to the end");
                bus.writer().write(vec![Message::new("gone", "new").with_id("new")]).await.unwrap();
                1
            }
        };
        let got = recorder.wait_for(expected, PATIENCE).await.unwrap_or_else(|e| panic!("{start:?}: {e}"));
        let report = scheduler.shutdown(Duration::from_secs(5)).await;
        assert!(report.is_clean(), "{report:?}");
        let ids: Vec<&str> = got.iter().map(|d| d.message().id.as_str()).collect();
        match start {
            StartFrom::Earliest => assert_eq!(ids, ["old-0", "old-1", "old-2", "old-3", "old-4"]),
            StartFrom::Latest => assert_eq!(ids, ["new"]),
        }
        let stored = store.load("g.gone", "gone", 0).await.unwrap();
        assert_eq!(stored, Some(if start == StartFrom::Earliest { 5 } else { 6 }), "{start:?}: the store moved on");
    }
}

/// A write to a partition with nothing in flight goes at once, whatever the linger: a
/// lone awaited publish never waits for company. Writes that come while a request is in
/// flight share the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_write_goes_at_once_and_writes_behind_a_request_share_the_next() {
    let mut slow = DoubleConfig::new(Profile::V1);
    // Long enough for the first half to gather behind the first write on a busy machine.
    slow.produce_delay = Duration::from_secs(1);
    let double = BrokerDouble::start_with(slow).await;
    let mut config = support::config(double.addr());
    // Longer than the test's patience: a write that waited for it would fail the test.
    config.linger = Duration::from_secs(3600);
    let bus = StreamBus::connect(config).await.unwrap();
    bus.create_topic("natural", 1).await.unwrap();
    let writer = bus.writer();
    tokio::time::timeout(PATIENCE, writer.write(vec![Message::new("natural", "alone").with_id("alone")]))
        .await
        .expect("a lone write does not wait for the linger")
        .unwrap();
    let before = double.counters().produces.load(Ordering::Relaxed);

    // One write goes alone and the slow broker holds it; the 40 that come meanwhile
    // gather, and go as one batch (full, so the linger does not hold it either). Which
    // goes first does not matter.
    const BEHIND: usize = 40;
    let mut config = support::config(double.addr());
    config.batch_records = BEHIND;
    let bus = StreamBus::connect(config).await.unwrap();
    let writer = bus.writer();
    let first = {
        let writer = Arc::clone(&writer);
        tokio::spawn(async move { writer.write(vec![Message::new("natural", "first").with_id("first")]).await })
    };
    let writes: Vec<_> = (0..BEHIND)
        .map(|i| {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move { writer.write(vec![Message::new("natural", "x").with_id(format!("m{i}"))]).await })
        })
        .collect();
    first.await.unwrap().unwrap();
    for w in writes {
        w.await.unwrap().unwrap();
    }
    let requests = double.counters().produces.load(Ordering::Relaxed) - before;
    assert!(requests <= 3, "{} writes took {requests} produce requests", BEHIND + 1);
    let stored = double.storage().lock().unwrap().records("natural", 0).len();
    assert_eq!(stored, BEHIND + 2);
}

/// A broker that goes away for a second and comes back: writes in flight ride it out
/// with the default retry deadline, and fail naming the deadline when it is shorter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_ride_out_a_restart_within_the_retry_deadline() {
    const OUTAGE: Duration = Duration::from_millis(1500);
    for deadline in [RetryPolicy::default().deadline, Duration::from_millis(300)] {
        let double = BrokerDouble::start(Profile::V1).await;
        let mut config = support::config(double.addr());
        config.retry.deadline = deadline;
        let bus = StreamBus::connect(config).await.unwrap();
        bus.create_topic("outage", 1).await.unwrap();
        let writer = bus.writer();
        let (addr, config, storage) = double.stop().await;
        let write = {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move { writer.write(vec![Message::new("outage", "x").with_id("during")]).await })
        };
        // The broker stays away, as a restarting one does.
        tokio::time::sleep(OUTAGE).await;
        let double = BrokerDouble::restart(addr, config, storage).await;
        let outcome = write.await.unwrap();
        if deadline > OUTAGE {
            outcome.expect("the write rides out the outage");
            assert_eq!(double.storage().lock().unwrap().records("outage", 0).len(), 1);
        } else {
            let err = outcome.expect_err("the outage outlasts the deadline");
            assert!(err.is_retryable(), "{err}");
            assert!(err.to_string().contains("retry deadline of 300ms"), "the error names the deadline: {err}");
            assert_eq!(err.to_string().matches("(driver streambus").count(), 1, "{err}");
        }
    }
}

/// A batch that waits out a linger goes as soon as it fills, not when the linger ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lingering_batch_goes_once_it_is_full() {
    const HALF: usize = 20;
    let mut slow = DoubleConfig::new(Profile::V1);
    // Long enough for the first half to gather behind the first write on a busy machine.
    slow.produce_delay = Duration::from_secs(1);
    let double = BrokerDouble::start_with(slow).await;
    let mut config = support::config(double.addr());
    config.linger = Duration::from_secs(3600);
    config.batch_records = 2 * HALF;
    let bus = StreamBus::connect(config).await.unwrap();
    bus.create_topic("fills", 1).await.unwrap();
    let writer = bus.writer();
    let write = |id: String| {
        let writer = Arc::clone(&writer);
        tokio::spawn(async move { writer.write(vec![Message::new("fills", "x").with_id(id)]).await })
    };
    // The first goes at once; the broker holds it while the first half gathers behind
    // it, which then lingers, not full, once the first returns. The half is written only
    // once the broker has the first, or one of the half could be the one that goes alone.
    let first = write("first".into());
    let received = || double.counters().produces_received.load(Ordering::Relaxed);
    tokio::time::timeout(PATIENCE, async {
        while received() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the broker receives the first write");
    let mut writes: Vec<_> = (0..HALF).map(|i| write(format!("a{i}"))).collect();
    tokio::time::timeout(PATIENCE, first).await.expect("the first write returns").unwrap().unwrap();
    // The second half fills the lingering batch.
    writes.extend((0..HALF).map(|i| write(format!("b{i}"))));
    for w in writes {
        tokio::time::timeout(PATIENCE, w).await.expect("a full batch does not wait for the linger").unwrap().unwrap();
    }
    assert_eq!(double.storage().lock().unwrap().records("fills", 0).len(), 2 * HALF + 1);
}

/// A reader holds one fetch ahead of its handlers, and asks for 8 KiB a record of its
/// prefetch: with a prefetch of 4 and its handler stuck, it has fetched at most 33 of 300
/// waiting 1 KiB records (a fetch may pass its size by one record). A fetch of the
/// configured 1 MiB took all 300.
#[tokio::test]
async fn a_reader_fetches_in_proportion_to_its_prefetch() {
    const PREFETCH: usize = 4;
    let double = BrokerDouble::start(Profile::Later).await;
    let bus = support::connect(&double).await;
    bus.create_topic("ahead", 1).await.unwrap();
    let messages: Vec<Message> =
        (0..300).map(|i| Message::new("ahead", vec![b'x'; 1024]).with_id(format!("a-{i}"))).collect();
    bus.writer().write(messages).await.unwrap();
    let fetched_before = bus.counters().fetched;

    let gate = Gate::new();
    let mut scheduler = SubscriberScheduler::new(bus.reader(), EventRegistry::new());
    scheduler.add(ReadTask::new("ahead").with_prefetch(PREFETCH), Arc::new(gate.clone()));
    scheduler.start().await.unwrap();
    gate.recorder().wait_for(1, PATIENCE).await.expect("the first delivery");
    // The handler holds the runner: nothing fetches until it returns.
    let fetched = bus.counters().fetched - fetched_before;
    gate.open();
    scheduler.shutdown(Duration::from_secs(5)).await;
    assert!(fetched <= (PREFETCH * 8 + 1) as u64, "fetched {fetched} records with a prefetch of {PREFETCH}");
}
