//! What the Pulsar driver promises beyond the conformance suite, against the Apache
//! Pulsar standalone that `scripts/test` starts, and against a private one with TLS and
//! token authentication.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use tidewater_conformance::{fresh_topic, seq, subscribe_reader as subscribe};
use tidewater_core::testing::{Gate, Recorder};
use tidewater_core::{
    handler_fn, Delivery, Driver, ErrorKind, HandlerError, IdFactory, Message, Position, ReadTask, StartFrom, UuidV7Ids,
};
use tidewater_pulsar::{DeadLetter, Pulsar, PulsarConfig, SubscriptionType};
use tidewater_testkit::{PulsarOptions, PulsarStandalone};

const PATIENCE: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_round_trips() {
    let pulsar = support::shared().await;
    let topic = fresh_topic("fields");
    let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let text = Message::new(&topic, "text key")
        .with_id("m-1")
        .with_key("customer-7")
        .with_content_type("application/json")
        .with_header("trace", "abc")
        .with_header("seq", "0")
        .with_timestamp(at);
    let binary = Message::new(&topic, Bytes::from_static(&[0, 159, 255]))
        .with_id("m-2")
        .with_key(Bytes::from_static(&[0xff, 0x00, 0x7f]))
        .with_header("seq", "1");
    pulsar.writer().write(vec![text.clone(), binary.clone()]).await.unwrap();
    let recorder = Recorder::new();
    let mut sub = subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("fields"), recorder.clone()).await;
    let got = recorder.wait_for(2, PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    let by_id: HashMap<tidewater_core::MessageId, Message> =
        got.iter().map(|d| (d.message().id.clone(), d.message().clone())).collect();
    let m1 = &by_id["m-1"];
    assert_eq!(m1.stream, topic);
    assert_eq!(m1.payload, text.payload);
    assert_eq!(m1.key, text.key);
    assert_eq!(m1.content_type.as_deref(), Some("application/json"));
    assert_eq!(m1.headers, text.headers, "user headers come back as they were, without the driver's own");
    assert_eq!(m1.timestamp, at, "the timestamp travels as the event time");
    let m2 = &by_id["m-2"];
    assert_eq!(m2.payload, binary.payload);
    assert_eq!(m2.key, binary.key, "a key that is not UTF-8 comes back byte for byte");
    assert_eq!(m2.content_type, None);
    for d in &got {
        assert_eq!(d.attempt(), 1);
        assert_eq!(d.group(), Some("fields"));
        assert!(matches!(d.position(), Position::Queue { sequence: Some(_), .. }), "{:?}", d.position());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_typed_error_and_sends_nothing() {
    let pulsar = support::shared().await;
    let topic = fresh_topic("bad");
    let writer = pulsar.writer();
    let big = Message::new(&topic, vec![0u8; pulsar.config().max_message_bytes + 1]);
    let good = Message::new(&topic, "fine").with_header("seq", "0");
    let err = writer.write(vec![good.clone(), big]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    let err = writer.write(vec![Message::new("orders/eu", "x")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");
    let err = writer.write(vec![Message::new(&topic, "x").with_header("tw-id", "mine")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    // Nothing of the refused writes reached the topic: the next message is the first.
    writer.write(vec![good.clone().with_id("after")]).await.unwrap();
    let recorder = Recorder::new();
    let mut sub = subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("bad"), recorder.clone()).await;
    let got = recorder.wait_for(1, PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message().id, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_not_there_is_a_connection_error() {
    // Free, and never given to a broker this test process starts.
    let port = tidewater_testkit::free_port();
    let mut config = PulsarConfig::new(format!("pulsar://127.0.0.1:{port}"));
    config.request_timeout = Duration::from_secs(2);
    let err = Pulsar::connect(config).await.unwrap_err();
    // The pulsar crate retries a refused connection until the timeout without saying
    // why; the error still says it.
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(err.kind().is_retryable());
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")) && text.contains("refused"), "the error says why: {err}");
    tidewater_conformance::assert_each_cause_said_once(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_starts_after_what_was_there() {
    let pulsar = support::shared().await;
    let topic = fresh_topic("latest");
    let writer = pulsar.writer();
    writer.write(vec![Message::new(&topic, "before").with_id("before")]).await.unwrap();
    let recorder = Recorder::new();
    let task = ReadTask::new(&topic).with_group("latest").with_start(StartFrom::Latest);
    let mut sub = subscribe(pulsar.reader(), task, recorder.clone()).await;
    writer.write(vec![Message::new(&topic, "after").with_id("after")]).await.unwrap();
    let got = recorder.wait_for(1, PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    let ids: Vec<tidewater_core::MessageId> = recorder.deliveries().iter().map(|d| d.message().id.clone()).collect();
    assert_eq!(got[0].message().id, "after");
    assert!(
        !ids.iter().any(|id| id == "before"),
        "a new group starting at the latest message got an older one: {ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_with_a_delay_comes_back_after_it() {
    const DELAY: Duration = Duration::from_millis(700);
    let mut config = support::config(&support::shared_url());
    // One message per entry, so only the nacked message comes again.
    config.batching = None;
    let pulsar = support::connect(config).await;
    let topic = fresh_topic("nack-delay");
    let recorder = Recorder::new();
    let times = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (seen, at) = (recorder.clone(), Arc::clone(&times));
    let handler = handler_fn(move |d: Delivery| {
        let (seen, at) = (seen.clone(), Arc::clone(&at));
        async move {
            let first = d.attempt() == 1;
            at.lock().unwrap().push(Instant::now());
            seen.record(d);
            if first {
                Err(HandlerError::transient("not yet").retry_after(DELAY))
            } else {
                Ok(())
            }
        }
    });
    let mut sub = subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("nack"), handler).await;
    pulsar.writer().write(vec![Message::new(&topic, "x").with_id("n-1")]).await.unwrap();
    let got = recorder.wait_for(2, PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    assert_eq!(got[0].attempt(), 1);
    assert_eq!(got[1].attempt(), 2, "the reader counts the redelivery");
    let times = times.lock().unwrap().clone();
    let gap = times[1].duration_since(times[0]);
    assert!(gap >= DELAY, "redelivered after {gap:?}, before the {DELAY:?} the handler asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_in_a_batch_does_not_hand_out_the_acked_messages_again() {
    const N: usize = 10;
    let pulsar = support::shared().await; // batching on: one write of ten is one broker entry
    let topic = fresh_topic("batch-nack");
    let calls = Recorder::new();
    let seen = calls.clone();
    let handler = handler_fn(move |d: Delivery| {
        let seen = seen.clone();
        async move {
            let fail = seq(&d) == 4 && d.attempt() == 1;
            seen.record(d);
            if fail {
                Err(HandlerError::transient("fails once"))
            } else {
                Ok(())
            }
        }
    });
    let messages: Vec<Message> =
        (0..N).map(|i| Message::new(&topic, "b").with_id(format!("b-{i}")).with_header("seq", i.to_string())).collect();
    pulsar.writer().write(messages).await.unwrap();
    let mut sub = subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("batch"), handler).await;
    let got = calls.wait_until(|s| s.iter().any(|d| seq(d) == 4 && d.attempt() == 2), PATIENCE).await.unwrap();
    // Let a wrong redelivery of the others show itself: wait for a marker published after.
    pulsar.writer().write(vec![Message::new(&topic, "m").with_id("marker").with_header("seq", "99")]).await.unwrap();
    calls.wait_until(|s| s.iter().any(|d| d.message().id == "marker"), PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    let all = calls.deliveries();
    let mut count: HashMap<usize, usize> = HashMap::new();
    for d in &all {
        *count.entry(seq(d)).or_default() += 1;
    }
    assert_eq!(count[&4], 2, "the nacked message comes once more");
    for i in (0..N).filter(|i| *i != 4) {
        assert_eq!(count[&i], 1, "message {i} was acked and must not be handled again: {count:?}");
    }
    assert!(got.len() > N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_policy_moves_a_failing_message_where_the_middleware_would() {
    let mut config = support::config(&support::shared_url());
    config.batching = None;
    config.dead_letter = Some(DeadLetter::after(3));
    let pulsar = support::connect(config).await;
    let topic = fresh_topic("dlq");
    let attempts = Recorder::new();
    let seen = attempts.clone();
    let failing = handler_fn(move |d: Delivery| {
        let seen = seen.clone();
        async move {
            seen.record(d);
            Err(HandlerError::transient("always fails"))
        }
    });
    let mut sub = subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("dlq"), failing).await;
    let letter = Recorder::new();
    let mut dlq =
        subscribe(pulsar.reader(), ReadTask::new(format!("{topic}.dlq")).with_group("ops"), letter.clone()).await;
    pulsar
        .writer()
        .write(vec![Message::new(&topic, "poison").with_id("p-1").with_key("k-1").with_content_type("text/plain")])
        .await
        .unwrap();
    let dead = letter.wait_for(1, PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    dlq.shutdown(GRACE).await;
    let tries: Vec<u32> = attempts.deliveries().iter().map(|d| d.attempt()).collect();
    assert_eq!(tries, vec![1, 2, 3], "three deliveries, then the dead-letter topic");
    let m = dead[0].message();
    assert_eq!((m.id.as_str(), m.key_str(), m.content_type.as_deref()), ("p-1", Some("k-1"), Some("text/plain")));
    use tidewater_middleware::dlq_headers as h;
    assert_eq!(m.headers.get(h::ORIGINAL_TOPIC), Some(topic.as_str()), "{:?}", m.headers);
    assert_eq!(m.headers.get(h::RECOVERY), Some("transient"));
    assert!(m.headers.get(h::ERROR).is_some());
    assert_eq!(m.headers.get(h::ORIGINAL_KEY), Some("k-1"));
}

#[test]
fn dead_letter_header_names_match_the_middleware() {
    use tidewater_middleware::dlq_headers as middleware;
    use tidewater_pulsar::dead_letter_headers as ours;
    assert_eq!(ours::ORIGINAL_TOPIC, middleware::ORIGINAL_TOPIC);
    assert_eq!(ours::ORIGINAL_KEY, middleware::ORIGINAL_KEY);
    assert_eq!(ours::ERROR, middleware::ERROR);
    assert_eq!(ours::RECOVERY, middleware::RECOVERY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_shared_keeps_each_key_on_one_member_in_order() {
    const KEYS: usize = 6;
    const EACH: usize = 40;
    let mut config = support::config(&support::shared_url());
    config.subscription = SubscriptionType::KeyShared;
    config.batching = None;
    let pulsar = support::connect(config).await;
    let topic = fresh_topic("key-shared");
    let union = Recorder::new();
    let members: Vec<Recorder> = vec![Recorder::new(), Recorder::new()];
    let mut subs = Vec::new();
    for member in &members {
        let (member, union) = (member.clone(), union.clone());
        let handler = handler_fn(move |d: Delivery| {
            let (member, union) = (member.clone(), union.clone());
            async move {
                member.record(d.clone());
                union.record(d);
                Ok(())
            }
        });
        subs.push(
            subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("ks").with_concurrency(4), handler).await,
        );
    }
    let messages: Vec<Message> = (0..KEYS * EACH)
        .map(|i| {
            Message::new(&topic, "k").with_key(format!("key-{}", i % KEYS)).with_header("seq", (i / KEYS).to_string())
        })
        .collect();
    let writer = pulsar.writer();
    for m in messages {
        writer.write(vec![m]).await.unwrap();
    }
    union.wait_for(KEYS * EACH, PATIENCE).await.unwrap();
    for mut sub in subs {
        sub.shutdown(GRACE).await;
    }
    let mut owner: HashMap<String, usize> = HashMap::new();
    for (i, member) in members.iter().enumerate() {
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
        for d in member.deliveries() {
            let key = d.message().key_str().unwrap().to_owned();
            if let Some(other) = owner.insert(key.clone(), i) {
                assert_eq!(other, i, "{key} went to both members");
            }
            by_key.entry(key).or_default().push(seq(&d));
        }
        for (key, seqs) in by_key {
            assert_eq!(seqs, (0..EACH).collect::<Vec<_>>(), "order of {key} on member {i}");
        }
    }
    assert_eq!(owner.len(), KEYS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_topics_spread_keys_and_keep_them_in_order() {
    const KEYS: usize = 12;
    const EACH: usize = 20;
    let pulsar = support::shared().await;
    let topic = fresh_topic("partitioned");
    let made = topic.clone();
    tokio::task::spawn_blocking(move || support::create_partitioned_topic(&made, 3)).await.unwrap();
    let recorder = Recorder::new();
    let mut sub =
        subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("p").with_concurrency(4), recorder.clone()).await;
    let writer = pulsar.writer();
    let messages: Vec<Message> = (0..KEYS * EACH)
        .map(|i| {
            Message::new(&topic, "p").with_key(format!("key-{}", i % KEYS)).with_header("seq", (i / KEYS).to_string())
        })
        .collect();
    writer.write(messages).await.unwrap();
    let got = recorder.wait_for(KEYS * EACH, PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    let mut partitions = HashSet::new();
    let mut key_partition: HashMap<String, Option<u32>> = HashMap::new();
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for d in &got {
        let Position::Queue { partition, .. } = d.position() else { panic!("{:?}", d.position()) };
        partitions.insert(partition);
        let key = d.message().key_str().unwrap().to_owned();
        assert_eq!(*key_partition.entry(key.clone()).or_insert(partition), partition, "{key} on two partitions");
        by_key.entry(key).or_default().push(seq(d));
    }
    assert!(partitions.len() > 1, "twelve keys all went to one partition: {partitions:?}");
    for (key, seqs) in by_key {
        assert_eq!(seqs, (0..EACH).collect::<Vec<_>>(), "order of {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_a_producer_and_lose_nothing() {
    const WRITERS: usize = 20;
    const EACH: usize = 50;
    let pulsar = support::shared().await;
    let topic = fresh_topic("writers");
    let sent = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (writer, topic, sent) = (pulsar.writer(), topic.clone(), Arc::clone(&sent));
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                writer.write(vec![Message::new(&topic, "w").with_id(format!("w{w}-{i}"))]).await.unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!("{} acknowledged writes from {WRITERS} writers in {:?}", sent.load(Ordering::Relaxed), started.elapsed());
    let recorder = Recorder::new();
    let mut sub = subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("w"), recorder.clone()).await;
    let got = recorder.wait_for(WRITERS * EACH, PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    let ids: HashSet<tidewater_core::MessageId> = got.iter().map(|d| d.message().id.clone()).collect();
    assert_eq!(ids.len(), WRITERS * EACH);
}

/// A private broker with a TLS port and token authentication: the right CA and token
/// get through, a wrong token or an untrusted CA are refused, and neither the token nor
/// anything secret shows in `Debug` output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_token_authentication_on_a_secured_broker() {
    let dir = std::env::temp_dir().join(format!("tidewater-pulsar-tls-{}", UuidV7Ids.next_id()));
    tidewater_conformance::certs::test_certificates(&dir);
    let broker = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            PulsarStandalone::start_with(PulsarOptions {
                tls: Some((dir.join("server.pem"), dir.join("server.key"))),
                token_auth: true,
                ..PulsarOptions::default()
            })
        }
    })
    .await
    .unwrap();
    let url = broker.tls_url().expect("a TLS port");
    let token = broker.token("service-a");
    let secured = |token: &str| {
        let mut config = support::config(&url).token(token);
        config.tls = Some(tidewater_pulsar::Tls::new().ca_file(dir.join("ca.pem")));
        config.request_timeout = Duration::from_secs(10);
        config
    };

    let pulsar = support::connect(secured(&token)).await;
    let redacted = format!("{:?}", pulsar.config());
    assert!(!redacted.contains(&token), "the token shows in Debug output: {redacted}");
    let topic = fresh_topic("tls");
    pulsar.writer().write(vec![Message::new(&topic, "over TLS").with_id("tls-1")]).await.unwrap();
    let recorder = Recorder::new();
    let mut sub = subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("tls"), recorder.clone()).await;
    let got = recorder.wait_for(1, PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    assert_eq!(got[0].message().id, "tls-1");

    // The signature's first character changed. Not its last: in base64 the last character
    // of a 32-byte signature carries 2 padding bits, so some changes there decode to the
    // same signature and the broker rightly takes the token (one run in 16 failed so).
    let at = token.rfind('.').expect("a JWT") + 1;
    let other = if token[at..].starts_with('A') { "B" } else { "A" };
    let forged = format!("{}{other}{}", &token[..at], &token[at + 1..]);
    let err = match Pulsar::connect(secured(&forged)).await {
        Err(err) => err,
        Ok(p) => p.writer().write(vec![Message::new(&topic, "x")]).await.unwrap_err(),
    };
    tidewater_conformance::assert_refused_for_good(&err, "refused token");

    let mut plain = support::config(&broker.url());
    plain.request_timeout = Duration::from_secs(10);
    let err = match Pulsar::connect(plain).await {
        Err(err) => err,
        Ok(p) => p.writer().write(vec![Message::new(&topic, "x")]).await.unwrap_err(),
    };
    println!("no token: {err}");
    tidewater_conformance::assert_refused_for_good(&err, "");

    let mut untrusted = secured(&token);
    untrusted.tls = Some(tidewater_pulsar::Tls::new());
    untrusted.request_timeout = Duration::from_secs(3);
    let err = Pulsar::connect(untrusted).await.unwrap_err();
    println!("an untrusted CA: {err}");
    tidewater_conformance::assert_refused_for_good(&err, "");
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_gives_everything_to_one_member() {
    let mut config = support::config(&support::shared_url());
    config.subscription = SubscriptionType::Failover;
    let pulsar = support::connect(config).await;
    let topic = fresh_topic("failover");
    let union = Recorder::new();
    let member = |own: &Recorder| {
        let (own, union) = (own.clone(), union.clone());
        handler_fn(move |d: Delivery| {
            let (own, union) = (own.clone(), union.clone());
            async move {
                own.record(d.clone());
                union.record(d);
                Ok(())
            }
        })
    };
    let (first, second) = (Recorder::new(), Recorder::new());
    let mut sub_1 = subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("fo"), member(&first)).await;
    let mut sub_2 = subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("fo"), member(&second)).await;
    let messages: Vec<Message> = (0..50).map(|i| Message::new(&topic, "f").with_id(format!("f-{i}"))).collect();
    pulsar.writer().write(messages).await.unwrap();
    union.wait_for(50, PATIENCE).await.unwrap();
    sub_1.shutdown(GRACE).await;
    sub_2.shutdown(GRACE).await;
    let (a, b) = (first.len(), second.len());
    assert!(a == 0 || b == 0, "a Failover subscription has one active member, but both got messages: {a} and {b}");
    assert_eq!(a + b, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ack_timeout_does_not_run_a_slow_handler_twice_on_one_consumer() {
    const ACK_TIMEOUT: Duration = Duration::from_millis(500);
    let mut config = support::config(&support::shared_url());
    config.batching = None;
    config.ack_timeout = Some(ACK_TIMEOUT);
    let pulsar = support::connect(config).await;
    let topic = fresh_topic("ack-timeout");
    let calls = Recorder::new();
    let seen = calls.clone();
    let handler = handler_fn(move |d: Delivery| {
        let seen = seen.clone();
        async move {
            let slow = d.message().id == "slow";
            seen.record(d);
            if slow {
                // A handler that outlives the ack timeout several times over.
                tokio::time::sleep(ACK_TIMEOUT * 4).await;
            }
            Ok(())
        }
    });
    let mut sub =
        subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("slow").with_concurrency(2), handler).await;
    let writer = pulsar.writer();
    writer.write(vec![Message::new(&topic, "s").with_id("slow")]).await.unwrap();
    calls.wait_until(|s| s.iter().any(|d| d.message().id == "slow"), PATIENCE).await.unwrap();
    // By the time this marker is handled the slow one has been finishing for a while.
    tokio::time::sleep(ACK_TIMEOUT * 5).await;
    writer.write(vec![Message::new(&topic, "m").with_id("marker")]).await.unwrap();
    calls.wait_until(|s| s.iter().any(|d| d.message().id == "marker"), PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    let slow = calls.deliveries().iter().filter(|d| d.message().id == "slow").count();
    assert_eq!(slow, 1, "the broker redelivered after the ack timeout, but the handler still ran");
}

/// Messages the shared broker has sent the consumers of `subscription` on `topic` and
/// not had acked, by its admin API.
fn dispatched_unacked(topic: &str, subscription: &str) -> u64 {
    let path = format!("/admin/v2/persistent/public/default/{topic}/stats");
    let port = tidewater_testkit::shared::pulsar_admin_port();
    let (status, body) = tidewater_testkit::process::http(port, "GET", &path, None, "").expect("the admin API");
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).expect("JSON stats");
    let consumers = stats["subscriptions"][subscription]["consumers"].as_array().cloned().unwrap_or_default();
    consumers.iter().filter_map(|c| c["unackedMessages"].as_u64()).sum()
}

/// The view of a topic that the conformance suite adds to a failed wait for a closed
/// consumer's messages names each partition's subscription with its cursor, and the
/// consumer that holds the messages unacked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_view_shows_which_consumer_holds_what() {
    const SENT: usize = 10;
    let pulsar = support::shared().await;
    let topic = fresh_topic("view");
    support::create_partitioned_topic(&topic, 2);
    let messages: Vec<Message> =
        (0..SENT).map(|i| Message::new(&topic, "v").with_id(format!("v-{i}")).with_key(format!("k{i}"))).collect();
    pulsar.writer().write(messages).await.unwrap();

    let gate = Gate::new();
    let calls = gate.recorder();
    let mut sub = subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("viewed"), gate.clone()).await;
    calls.wait_until(|s| !s.is_empty(), PATIENCE).await.unwrap();
    let of = topic.clone();
    let view = tokio::task::spawn_blocking(move || support::topic_view(&of)).await.unwrap();
    gate.open();
    sub.shutdown(GRACE).await;

    let view = view.expect("the admin API answers for a partitioned topic");
    for partition in 0..2 {
        let line = format!("partition {partition}, subscription viewed (\"Shared\"): backlog ");
        assert!(view.contains(&line) && view.contains("cursor: mark-delete \""), "{view}");
    }
    let consumers: Vec<&str> = view.lines().filter(|l| l.starts_with("  consumer \"tidewater-")).collect();
    assert_eq!(consumers.len(), 2, "one consumer a partition: {view}");
    let held: u64 =
        consumers.iter().filter_map(|l| l.split("unacked ").nth(1)?.split(',').next()?.parse::<u64>().ok()).sum();
    assert!(held >= 1, "the stuck handler's message is held unacked: {view}");
}

/// A reader whose handlers hold all it may take, with the pulsar crate's queue full
/// behind them, gets its last acks to the broker before it closes. The crate's engine
/// serves acks and the close after the messages that arrived before them, and waits
/// while its queue is full: the acks and the close waited there until the close timed
/// out, the acks were lost, and the group got those messages again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_behind_a_full_client_queue_reach_the_broker_before_the_close() {
    // More than the crate's queue of 1,000 and the permits can hold between them.
    const BACKLOG: usize = 2_500;
    const RUNNING: usize = 4;
    let mut config = support::config(&support::shared_url());
    // An entry a message, so that each is acked on its own.
    config.batching = None;
    let pulsar = support::connect(config).await;
    let topic = fresh_topic("full-queue");
    let messages: Vec<Message> = (0..BACKLOG).map(|i| Message::new(&topic, "q").with_id(format!("q-{i}"))).collect();
    pulsar.writer().write(messages).await.unwrap();

    let gate = Gate::new();
    let calls = gate.recorder();
    let task = ReadTask::new(&topic).with_group("full").with_concurrency(RUNNING).with_prefetch(1);
    let mut sub = subscribe(pulsar.reader(), task, gate.clone()).await;
    calls.wait_until(|s| s.len() >= RUNNING, PATIENCE).await.unwrap();
    // The broker keeps sending until the crate's queue is full and its engine waits:
    // past the queue, what the runner took and the one the engine holds.
    let deadline = Instant::now() + PATIENCE;
    while dispatched_unacked(&topic, "full") < 1_000 + RUNNING as u64 + 10 {
        assert!(Instant::now() < deadline, "the broker never filled the consumer's queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The running handlers finish: their acks queue up behind the full queue, and the
    // next ones start and wait.
    gate.release(RUNNING);
    let acked = calls.wait_until(|s| s.len() >= 2 * RUNNING, PATIENCE).await.unwrap();
    let acked: HashSet<String> = acked[..RUNNING].iter().map(|d| d.message().id.to_string()).collect();
    let started = Instant::now();
    sub.shutdown(Duration::from_millis(200)).await;
    gate.open();
    assert!(started.elapsed() < GRACE, "the close waited {:?}", started.elapsed());

    let again = Recorder::new();
    let mut sub = subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("full"), again.clone()).await;
    let got = again.wait_until(|s| s.len() >= BACKLOG - RUNNING, PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    let redelivered: Vec<&Delivery> = got.iter().filter(|d| acked.contains(d.message().id.as_str())).collect();
    assert!(redelivered.is_empty(), "{} acked messages came again", redelivered.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_receiver_queue_is_read_whole_and_warned_of_once() {
    const QUEUE: u32 = 8;
    const SENT: usize = 60;
    let warnings = support::warnings();
    let mut config = support::config(&support::shared_url());
    config.receiver_queue = QUEUE;
    let pulsar = support::connect(config).await;
    let topic = fresh_topic("small-queue");
    // One write: the producer batches it into one or a few entries, at least one of
    // them larger than the queue.
    let messages: Vec<Message> = (0..SENT).map(|i| Message::new(&topic, "b").with_id(format!("b-{i}"))).collect();
    pulsar.writer().write(messages).await.unwrap();

    let recorder = Recorder::new();
    let mut sub = subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("small"), recorder.clone()).await;
    let got = recorder.wait_for(SENT, PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    let ids: HashSet<String> = got.iter().map(|d| d.message().id.to_string()).collect();
    assert_eq!(ids.len(), SENT, "every message of the batches is handed out");

    let about_this_topic: Vec<String> =
        warnings.lock().unwrap().iter().filter(|line| line.contains(topic.as_str())).cloned().collect();
    assert_eq!(about_this_topic.len(), 1, "one warning for the reader: {about_this_topic:?}");
    let warning = &about_this_topic[0];
    assert!(
        warning.contains(&format!("more than the receiver queue of {QUEUE}"))
            && warning.contains("PulsarConfig::receiver_queue"),
        "the warning names the queue and what to set: {warning}"
    );
}

/// The readers' client asks the broker whether it is reached (a topic lookup a second)
/// while a reader reads, and stops some seconds after the last one has stopped: it once
/// asked for as long as the driver lived. A reader opened later starts it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_is_watched_while_readers_read_and_not_after() {
    // Past the scheduler's longest wait between two subscriptions of a failed reader.
    const AFTER_THE_LAST: Duration = Duration::from_secs(10);
    let pulsar = support::shared().await;
    let reader = pulsar.reader();
    assert_eq!(reader.connected(), None, "nothing is asked before a reader subscribes");
    let connected_within = |want: Option<bool>, patience: Duration| {
        let reader = reader.clone();
        async move {
            let deadline = Instant::now() + patience;
            while reader.connected() != want {
                assert!(Instant::now() < deadline, "connected() is {want:?} within {patience:?}");
                // Polled as a probe would: the state changes with no event to wait on.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    let topic = fresh_topic("link");
    let mut sub = subscribe(reader.clone(), ReadTask::new(&topic).with_group("link"), Recorder::new()).await;
    connected_within(Some(true), PATIENCE).await;
    sub.shutdown(GRACE).await;
    let stopped = Instant::now();
    connected_within(None, AFTER_THE_LAST + Duration::from_secs(5)).await;
    assert!(
        stopped.elapsed() >= AFTER_THE_LAST - Duration::from_millis(100),
        "the lookups go on for {AFTER_THE_LAST:?} after the last reader, through a failed reader's restarts; \
         they stopped after {:?}",
        stopped.elapsed()
    );

    let mut sub = subscribe(reader.clone(), ReadTask::new(&topic).with_group("link"), Recorder::new()).await;
    connected_within(Some(true), PATIENCE).await;
    sub.shutdown(GRACE).await;
}

/// A topic unloaded from its broker, as Pulsar's load balancer does to move a bundle and
/// an operator's `pulsar-admin topics unload` does, while a reader reads and a writer
/// writes: the broker closes their producers and consumers, and both follow the topic to
/// where it is loaded again. Every write is acknowledged and every message arrives
/// (duplicates allowed: delivery is at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_unloaded_under_a_reader_and_a_writer_loses_nothing() {
    const UNLOADS: usize = 3;
    const EACH: usize = 100;
    let pulsar = support::shared().await;
    let topic = fresh_topic("unload");
    support::create_partitioned_topic(&topic, 2);
    let recorder = Recorder::new();
    let mut sub = subscribe(pulsar.reader(), ReadTask::new(&topic).with_group("moved"), recorder.clone()).await;
    let writer = pulsar.writer();
    let distinct = |deliveries: &[Delivery]| deliveries.iter().map(|d| d.message().id.clone()).collect::<HashSet<_>>();
    let mut rounds = Vec::new();
    for round in 0..UNLOADS {
        // The unload runs while this round's writes go out, and the round's messages
        // are read before the next unload: each unload finds the consumer reading.
        let started = Instant::now();
        let unloading = tokio::task::spawn_blocking({
            let path = format!("/admin/v2/persistent/public/default/{topic}/unload");
            let port = tidewater_testkit::shared::pulsar_admin_port();
            move || tidewater_testkit::process::http(port, "PUT", &path, None, "")
        });
        for i in round * EACH..(round + 1) * EACH {
            let message = Message::new(&topic, "u").with_id(format!("u-{i}")).with_key(format!("k{i}"));
            if let Err(err) = writer.write(vec![message]).await {
                panic!("write {i} in unload round {round} failed: {err}");
            }
        }
        let (status, body) = unloading.await.unwrap().expect("the admin API");
        assert!(status == 204 || status == 200, "unloading {topic}: {status} {body}");
        let read = (round + 1) * EACH;
        if let Err(err) = recorder.wait_until(|s| distinct(s).len() >= read, PATIENCE).await {
            panic!("{} of {read} messages read after unload {round}: {err}", distinct(&recorder.deliveries()).len());
        }
        rounds.push(started.elapsed());
    }
    sub.shutdown(GRACE).await;
    let got = recorder.deliveries();
    let expected: HashSet<tidewater_core::MessageId> = (0..UNLOADS * EACH).map(|i| format!("u-{i}").into()).collect();
    assert_eq!(distinct(&got), expected);
    println!(
        "{} deliveries of {} messages across {UNLOADS} unloads; each round's unload, {EACH} writes and reads took \
         {rounds:?}",
        got.len(),
        expected.len()
    );
}
