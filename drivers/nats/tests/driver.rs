//! NATS-specific behaviour: interop with plain async-nats clients both ways, JetStream
//! de-duplication by message id, in-progress acks, and typed errors, on Debian's
//! nats-server 2.9 (the conformance suite runs on the current release).

mod support;

use std::time::Duration;

use futures::StreamExt;
use tidewater_core::testing::Recorder;
use tidewater_core::{
    handler_fn, DeadLetter, Delivery, Driver, ErrorKind, EventRegistry, Handler, HandlerError, IdFactory, Message,
    Publisher, Redrive, SubscriberScheduler, UuidV7Ids,
};
use tidewater_nats::{JetStream, JetStreamConfig, NatsConfig, NatsCore};

const WAIT: Duration = Duration::from_secs(20);

fn subject(prefix: &str) -> String {
    format!("{prefix}.{}", UuidV7Ids.next_id().replace('-', ""))
}

async fn js(config: JetStreamConfig) -> JetStream {
    JetStream::connect(&NatsConfig::new(support::driver_url()), config).await.unwrap()
}

async fn plain() -> async_nats::Client {
    async_nats::connect(support::driver_url()).await.unwrap()
}

/// A fresh subject under `prefix` and a plain client's subscription to it, in place on
/// the server: a flush only empties the client's buffer, so the subscriber's own probe
/// message, which the server handles after the subscription, is waited for.
async fn plain_subscription(prefix: &str) -> (String, async_nats::Subscriber) {
    let topic = subject(prefix);
    let client = plain().await;
    let mut sub = client.subscribe(topic.clone()).await.unwrap();
    client.publish(topic.clone(), "probe".into()).await.unwrap();
    client.flush().await.unwrap();
    let probe = tokio::time::timeout(WAIT, sub.next()).await.unwrap().unwrap();
    assert_eq!(&probe.payload[..], b"probe");
    (topic, sub)
}

#[tokio::test]
async fn a_plain_client_reads_what_tidewater_publishes() {
    let (topic, mut sub) = plain_subscription("interop.out").await;

    let js = js(JetStreamConfig::default()).await;
    let sent = Message::new(&topic, "hello")
        .with_id("id-42")
        .with_key("customer-7")
        .with_content_type("text/plain")
        .with_header("tenant", "acme");
    js.writer().write(vec![sent.clone()]).await.unwrap();

    let got = tokio::time::timeout(WAIT, sub.next()).await.unwrap().unwrap();
    let h = got.headers.expect("headers");
    let header = |name: &str| h.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(&got.payload[..], b"hello");
    assert_eq!(header("Nats-Msg-Id").as_deref(), Some("id-42"));
    assert_eq!(header("tw-key").as_deref(), Some("customer-7"));
    assert_eq!(header("Content-Type").as_deref(), Some("text/plain"));
    assert_eq!(header("tenant").as_deref(), Some("acme"));
    assert!(header("tw-time").unwrap().parse::<u64>().is_ok());

    // With a UUIDv7 id (the default), the id carries the time and the header is left out.
    let id = UuidV7Ids.next_id();
    let ms = tidewater_core::id::uuid_v7_millis(&id).unwrap();
    let mut sent = Message::new(&topic, "v7").with_id(id.clone());
    sent.timestamp = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    js.writer().write(vec![sent]).await.unwrap();
    let got = tokio::time::timeout(WAIT, sub.next()).await.unwrap().unwrap();
    let h = got.headers.expect("headers");
    assert_eq!(h.get("Nats-Msg-Id").map(|v| v.as_str()), Some(id.as_str()));
    assert!(h.get("tw-time").is_none());
}

#[tokio::test]
async fn tidewater_reads_what_a_plain_client_publishes() {
    // JetStream: a plain publish without tidewater headers, and one with a header.
    let topic = subject("interop.in");
    let js = js(JetStreamConfig::default()).await;
    js.create_stream(&topic.replace('.', "_"), &[topic.as_str()]).await.unwrap();
    let client = plain().await;
    let context = async_nats::jetstream::new(client.clone());
    context.publish(topic.clone(), "bare".into()).await.unwrap().await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("x-trace", "t-1");
    context.publish_with_headers(topic.clone(), headers, "with header".into()).await.unwrap().await.unwrap();

    let seen = Recorder::new();
    let mut s = SubscriberScheduler::new(js.reader(), EventRegistry::new());
    s.subscribe(topic.clone(), seen.clone()).group("g");
    s.start().await.unwrap();
    let got = seen.wait_for(2, WAIT).await.unwrap();
    s.shutdown(WAIT).await;
    let stream = topic.replace('.', "_");
    assert_eq!(&got[0].message().payload[..], b"bare");
    assert_eq!(got[0].message().id, format!("{stream}-1"), "the stream sequence stands in for a missing id");
    assert!(got[0].message().key.is_none());
    let age = std::time::SystemTime::now().duration_since(got[0].message().timestamp).unwrap();
    assert!(age < WAIT, "the server's receive time stands in for a missing timestamp: {age:?}");
    assert_eq!(got[1].message().headers.get("x-trace"), Some("t-1"));

    // Core NATS.
    let topic = subject("interop.core");
    let core = NatsCore::connect(&NatsConfig::new(support::driver_url())).await.unwrap();
    let seen = Recorder::new();
    let mut s = SubscriberScheduler::new(core.reader(), EventRegistry::new());
    s.subscribe(topic.clone(), seen.clone());
    s.start().await.unwrap();
    client.publish(topic.clone(), "plain core".into()).await.unwrap();
    client.flush().await.unwrap();
    let got = seen.wait_for(1, WAIT).await.unwrap();
    s.shutdown(WAIT).await;
    assert_eq!(&got[0].message().payload[..], b"plain core");
    assert_eq!(got[0].message().id.len(), 36, "a fresh UUID stands in for a missing id");
}

#[tokio::test]
async fn core_can_leave_out_the_id_and_an_implied_content_type() {
    let (topic, mut sub) = plain_subscription("interop.bare").await;
    let config = NatsConfig::new(support::driver_url());
    let bare =
        NatsCore::connect(&config).await.unwrap().without_message_ids().with_implied_content_type("application/json");
    let publisher = Publisher::new(bare.writer(), EventRegistry::new());

    // Nothing but the payload: a plain PUB, which async-nats reads as no headers at all.
    publisher.publish_bytes(&topic, "{}", "application/json").await.unwrap();
    // What the implied type and the left-out id do not cover still goes.
    let keyed = Message::new(&topic, "k").with_key("customer-7").with_content_type("text/plain");
    publisher.publish_message(keyed).await.unwrap();
    publisher.flush().await.unwrap();

    let got = tokio::time::timeout(WAIT, sub.next()).await.unwrap().unwrap();
    assert_eq!(&got.payload[..], b"{}");
    assert!(got.headers.is_none(), "sent as a plain PUB: {:?}", got.headers);
    let got = tokio::time::timeout(WAIT, sub.next()).await.unwrap().unwrap();
    let h = got.headers.expect("headers");
    let names: Vec<String> = h.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(h.get("tw-key").map(|v| v.as_str()), Some("customer-7"));
    assert_eq!(h.get("Content-Type").map(|v| v.as_str()), Some("text/plain"));

    // A reader that implies the type reads it into messages without the header; one
    // that does not, and gets no id from the wire, makes one when the message arrives.
    let default = NatsCore::connect(&config).await.unwrap();
    let (implied, plain_read) = (Recorder::new(), Recorder::new());
    let mut s = SubscriberScheduler::new(bare.reader(), EventRegistry::new());
    s.subscribe(topic.clone(), implied.clone());
    let mut d = SubscriberScheduler::new(default.reader(), EventRegistry::new());
    d.subscribe(topic.clone(), plain_read.clone());
    s.start().await.unwrap();
    d.start().await.unwrap();
    let sent = publisher.publish_bytes(&topic, "[]", "application/json").await.unwrap();
    publisher.flush().await.unwrap();
    let got = implied.wait_for(1, WAIT).await.unwrap();
    let other = plain_read.wait_for(1, WAIT).await.unwrap();
    s.shutdown(WAIT).await;
    d.shutdown(WAIT).await;
    let (got, other) = (got[0].message(), other[0].message());
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(other.content_type, None);
    assert_eq!(got.id.len(), 36);
    assert_ne!(got.id, sent, "the publisher's id stayed with the publisher");
    assert_ne!(got.id, other.id, "each reader made its own id");
}

#[tokio::test]
async fn core_publishes_that_find_the_client_busy_are_sent_once_in_order() {
    // A command channel of one: with this test's single thread, nearly every publish
    // finds it full, so the writer's attempt to publish without waiting gives the message
    // back and the waiting write sends it.
    let client = async_nats::ConnectOptions::new().client_capacity(1).connect(support::driver_url()).await.unwrap();
    let (topic, mut sub) = plain_subscription("busy").await;
    let core = NatsCore::from_client(client).without_message_ids();
    let publisher = Publisher::new(core.writer(), EventRegistry::new());
    let sent: Vec<String> = (0..500).map(|i| i.to_string()).chain(["end".to_owned()]).collect();
    for payload in &sent {
        publisher.publish_bytes(&topic, payload.clone(), "text/plain").await.unwrap();
    }
    publisher.flush().await.unwrap();
    // One connection's messages arrive in the order it sent them, so a message sent
    // twice would come before "end".
    for payload in &sent {
        let got = tokio::time::timeout(WAIT, sub.next()).await.unwrap().unwrap();
        assert_eq!(std::str::from_utf8(&got.payload).unwrap(), payload);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_publishes_from_tasks_at_once_each_arrive_whole() {
    // Four tasks on two threads share one writer, whose command channel is one long:
    // publishes find the writer's own sink busy with another thread's, or the channel
    // full, and take the other ways. Each payload must arrive once and whole.
    let client = async_nats::ConnectOptions::new().client_capacity(1).connect(support::driver_url()).await.unwrap();
    let (topic, mut sub) = plain_subscription("busy.tasks").await;
    let core = NatsCore::from_client(client).without_message_ids();
    let publisher = Publisher::new(core.writer(), EventRegistry::new());
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (publisher, topic) = (publisher.clone(), topic.clone());
            tokio::spawn(async move {
                for i in 0..300 {
                    publisher.publish_bytes(&topic, format!("{t}-{i}"), "text/plain").await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    publisher.flush().await.unwrap();
    let mut got = std::collections::BTreeSet::new();
    for _ in 0..1_200 {
        let m = tokio::time::timeout(WAIT, sub.next()).await.unwrap().unwrap();
        let payload = String::from_utf8(m.payload.to_vec()).unwrap();
        assert!(got.insert(payload.clone()), "{payload:?} arrived twice");
    }
    let expected: std::collections::BTreeSet<String> =
        (0..4).flat_map(|t| (0..300).map(move |i| format!("{t}-{i}"))).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn jetstream_drops_a_republished_message_id() {
    let topic = subject("dedup");
    let js = js(JetStreamConfig::default()).await;
    let w = js.writer();
    for _ in 0..3 {
        w.write(vec![Message::new(&topic, "once").with_id("same")]).await.unwrap();
    }
    w.write(vec![Message::new(&topic, "other").with_id("different")]).await.unwrap();
    let mut stream = js.context().get_stream(topic.replace('.', "_")).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 2, "Nats-Msg-Id de-duplicated the retries");
}

/// A stream over a whole subtree holds a topic and its dead-letter topic: the dead letter
/// and the message redriven from it carry the original's id, and each is stored, not
/// dropped as a repeat of the original within the duplicate window.
#[tokio::test]
async fn dead_letters_and_redrives_in_the_originals_stream_are_kept() {
    let js = js(JetStreamConfig::default()).await;
    let base = subject("shop");
    js.create_stream(&base.replace('.', "_"), &[format!("{base}.>").as_str()]).await.unwrap();
    let topic = format!("{base}.orders");
    let dead_letters = Recorder::new();
    let mut s = SubscriberScheduler::new(js.reader(), EventRegistry::new());
    s.subscribe(topic.clone(), handler_fn(|_d: Delivery| async { Err::<(), _>(HandlerError::permanent("bug")) }))
        .group("billing")
        .middleware(DeadLetter::new(js.writer()));
    s.subscribe(format!("{topic}.dlq"), dead_letters.clone()).group("dlq");
    s.start().await.unwrap();
    js.writer().write(vec![Message::new(&topic, "p").with_id("order-1")]).await.unwrap();
    let dead = dead_letters.wait_for(1, WAIT).await.unwrap();
    s.shutdown(WAIT).await;
    assert_eq!(dead[0].message().id, "order-1");

    Redrive::new(js.writer()).handle(dead[0].clone()).await.unwrap();
    let mut stream = js.context().get_stream(base.replace('.', "_")).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 3, "the original, its dead letter and its redrive");
}

#[tokio::test]
async fn a_handler_outliving_the_ack_wait_is_not_redelivered() {
    let topic = subject("slow");
    let js = js(JetStreamConfig { ack_wait: Duration::from_secs(1), ..JetStreamConfig::default() }).await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = std::sync::Arc::clone(&calls);
    let mut s = SubscriberScheduler::new(js.reader(), EventRegistry::new());
    s.subscribe(
        topic.clone(),
        handler_fn(move |_d: Delivery| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {
                // Work that takes longer than the ack wait; in-progress acks keep it ours.
                tokio::time::sleep(Duration::from_millis(2_500)).await;
                Ok::<_, HandlerError>(())
            }
        }),
    )
    .group("slow")
    // The reader keeps a pull request open while the handler runs, as it would under
    // load, so a redelivery would have somewhere to go.
    .concurrency(2);
    s.start().await.unwrap();
    js.writer().write(vec![Message::new(&topic, "x")]).await.unwrap();
    let stream = js.context().get_stream(topic.replace('.', "_")).await.unwrap();
    let consumer = format!("slow__{}", topic.replace('.', "_"));
    let deadline = tokio::time::Instant::now() + WAIT;
    // The server's ack floor is the signal; it has no push notification, so poll it.
    loop {
        let info = stream.consumer_info(&consumer).await.unwrap();
        if info.ack_floor.stream_sequence >= 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slow message was never acked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Without in-progress acks the server redelivers at 1 s to the open pull request, and
    // the second lane starts the copy while the first call still runs.
    let calls = calls.load(std::sync::atomic::Ordering::SeqCst);
    s.shutdown(WAIT).await;
    assert_eq!(calls, 1, "in-progress acks prevented a redelivery");
}

#[tokio::test]
async fn bad_input_and_unknown_topics_are_typed_errors() {
    let js = js(JetStreamConfig { auto_create_streams: false, ..JetStreamConfig::default() }).await;
    let w = js.writer();
    let err = w.write(vec![Message::new("has space", "x")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");
    let err = w.write(vec![Message::new("orders.*", "x")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");
    let err = w.write(vec![Message::new(subject("nostream"), "x")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownTopic, "{err}");
    let err = w.write(vec![Message::new(subject("t"), "x").with_header("h", "a\nb")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    let err = NatsCore::connect(&NatsConfig::new("nats://127.0.0.1:1")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("refused"), "the text says the cause: {err}");
    tidewater_conformance::assert_each_cause_said_once(&err);
    let err = NatsCore::connect(&NatsConfig::new("htp:/nope")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

/// A subject under a stream's wildcard exists, though `topics` lists only plain subjects;
/// asking creates no stream, even where streams are made on first use.
#[tokio::test]
async fn a_subject_under_a_wildcard_stream_exists() {
    let js = js(JetStreamConfig::default()).await;
    let base = subject("wild");
    js.create_stream(&base.replace('.', "_"), &[format!("{base}.>").as_str()]).await.unwrap();
    let admin = js.admin();
    assert!(admin.topic_exists(&format!("{base}.eu.orders")).await.unwrap());
    assert!(!admin.topic_exists(&base).await.unwrap(), "the wildcard holds only subjects below {base}");
    let elsewhere = subject("wild");
    assert!(!admin.topic_exists(&elsewhere).await.unwrap());
    assert!(!admin.topic_exists(&elsewhere).await.unwrap(), "asking made no stream for {elsewhere}");
}

/// Topics that differ only in '.' and '_' map to one stream name; the second is refused
/// with an error that names the stream it clashes with, not a "no stream found" later.
#[tokio::test]
async fn topics_that_share_a_stream_name_clash_clearly() {
    let js = js(JetStreamConfig::default()).await;
    let w = js.writer();
    let dotted = subject("clash");
    let underscored = dotted.replace('.', "_");
    w.write(vec![Message::new(&dotted, "x")]).await.expect("the first topic gets the stream");
    let err = w.write(vec![Message::new(&underscored, "x")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("stream {underscored}")) && text.contains(&dotted), "{text}");
    assert!(!err.is_retryable());
}

/// Groups whose names differ only where JetStream names cannot (`billing.eu`,
/// `billing_eu`) map to one durable consumer: the second group is refused, naming the
/// first, rather than sharing the first group's messages; a second member of a group
/// binds its consumer as before.
#[tokio::test]
async fn groups_that_share_a_consumer_name_clash_clearly() {
    let js = js(JetStreamConfig::default()).await;
    let topic = subject("groups");
    js.admin().create_topic(&topic, 1).await.unwrap();
    let scheduler = |group: &str| {
        let mut scheduler = SubscriberScheduler::new(js.reader(), EventRegistry::new());
        scheduler.subscribe(topic.clone(), Recorder::new()).group(group);
        scheduler
    };
    let mut first = scheduler("billing.eu");
    first.start().await.unwrap();
    let mut member = scheduler("billing.eu");
    member.start().await.expect("a second member of the group binds its consumer");

    let mut other = scheduler("billing_eu");
    let err = other.start().await.expect_err("another group of the same consumer name is refused");
    assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains(r#"group "billing_eu""#) && text.contains(r#"belongs to group "billing.eu""#), "{text}");
    tidewater_conformance::assert_each_cause_said_once(&err);
    for mut scheduler in [first, member, other] {
        scheduler.shutdown(WAIT).await;
    }
    js.admin().delete_topic(&topic).await.unwrap();
}

/// A message over the server's `max_payload` is a `TooLarge` error that no retry will fix,
/// on core NATS and JetStream; a batch holding one writes none of its messages.
#[tokio::test]
async fn an_oversize_message_is_too_large_and_its_batch_writes_nothing() {
    let core = NatsCore::connect(&NatsConfig::new(support::driver_url())).await.unwrap();
    let max = core.client().max_payload();
    let topic = subject("oversize.core");
    let big = |topic: &str| Message::new(topic, vec![0u8; max + 1]);
    // The same connection as the writer's, so the server has the subscription first.
    let mut sub = core.client().subscribe(topic.clone()).await.unwrap();
    let w = core.writer();
    let err = w.write_one(big(&topic)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(!err.is_retryable());
    let err =
        w.write(vec![Message::new(&topic, "first"), big(&topic), Message::new(&topic, "third")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(err.to_string().contains("message 1 of the batch"), "{err}");
    w.write_one(Message::new(&topic, "after")).await.unwrap();
    w.flush().await.unwrap();
    let first = tokio::time::timeout(WAIT, sub.next()).await.unwrap().unwrap();
    assert_eq!(first.payload, "after", "nothing of the refused batch was sent");

    // At exactly max_payload a batch is sent; at one byte more this driver refuses it
    // itself ("message 0 of the batch"), so it counts the header bytes as the client does.
    // The header block: "NATS/1.0\r\n", "Nats-Msg-Id: edge-1\r\n", "tw-time: <13 digits>\r\n", "\r\n".
    let header_bytes = 10 + 21 + 24 + 2;
    let sized = |extra: usize| Message::new(&topic, vec![1u8; max - header_bytes + extra]).with_id("edge-1");
    let err = w.write(vec![sized(1)]).await.unwrap_err();
    assert!(err.to_string().contains("message 0 of the batch"), "{err}");
    w.write(vec![sized(0)]).await.unwrap();
    w.flush().await.unwrap();
    let edge = tokio::time::timeout(WAIT, sub.next()).await.unwrap().unwrap();
    assert_eq!(edge.payload.len(), max - header_bytes, "the message of exactly max_payload arrived");

    let js = js(JetStreamConfig::default()).await;
    let topic = subject("oversize.js");
    let stream = topic.replace('.', "_");
    js.create_stream(&stream, &[topic.as_str()]).await.unwrap();
    let w = js.writer();
    let err =
        w.write(vec![Message::new(&topic, "first"), big(&topic), Message::new(&topic, "third")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("message 1 of the batch"), "{err}");
    w.write(vec![Message::new(&topic, "after")]).await.unwrap();
    let mut info = js.context().get_stream(&stream).await.unwrap();
    assert_eq!(info.info().await.unwrap().state.messages, 1, "only the message after the refused batch is stored");
}

#[tokio::test]
async fn token_auth_connects_with_the_token_and_fails_clearly_without() {
    let server = support::private_server(&["--auth", "t0ken-for-tests"]);
    round_trip_with(&server, tidewater_nats::Auth::Token("t0ken-for-tests".into())).await;
    // A token alone in the URL's user part, as NATS's own tools take it.
    round_trip_on(NatsConfig::new(server.url().replacen("nats://", "nats://t0ken-for-tests@", 1))).await;

    let wrong = NatsConfig::new(server.url()).auth(tidewater_nats::Auth::Token("wrong".into()));
    let err = NatsCore::connect(&wrong).await.unwrap_err();
    tidewater_conformance::assert_refused_for_good(&err, "refused the credentials");
    assert!(!format!("{wrong:?}").contains("wrong\""), "the token stays out of Debug output: {wrong:?}");
}

#[tokio::test]
async fn tls_connects_with_the_configured_roots_and_refuses_an_unknown_ca() {
    let dir = std::env::temp_dir().join(format!("tidewater-tls-{}", UuidV7Ids.next_id()));
    tidewater_conformance::certs::test_certificates(&dir);
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let server =
        support::private_server(&["--tls", "--tlscert", cert.to_str().unwrap(), "--tlskey", key.to_str().unwrap()]);
    let tls =
        tidewater_nats::Tls { required: true, root_certificates: Some(dir.join("ca.pem")), client_certificate: None };
    let core = NatsCore::connect(&NatsConfig::new(server.url()).tls(tls)).await.expect("TLS with our CA connects");
    core.writer().write(vec![Message::new("tls.check", "ok")]).await.unwrap();
    core.writer().flush().await.unwrap();

    let err = NatsCore::connect(&NatsConfig::new(server.url())).await.unwrap_err();
    tidewater_conformance::assert_refused_for_good(&err, "TLS with the NATS server failed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server that verifies client certificates takes ours, signed by its CA, and refuses
/// a client without one or with one of another CA.
#[tokio::test]
async fn mutual_tls_takes_a_client_certificate_of_its_ca_and_refuses_others() {
    let dir = std::env::temp_dir().join(format!("tidewater-mtls-{}", UuidV7Ids.next_id()));
    tidewater_conformance::certs::mutual_tls_certificates(&dir);
    let stranger = dir.join("stranger");
    let path = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
    let server = support::private_server(&[
        "--tlsverify",
        "--tlscert",
        &path(dir.join("server.pem")),
        "--tlskey",
        &path(dir.join("server.key")),
        "--tlscacert",
        &path(dir.join("ca.pem")),
    ]);
    let with = |client: Option<(std::path::PathBuf, std::path::PathBuf)>| {
        let tls = tidewater_nats::Tls {
            required: true,
            root_certificates: Some(dir.join("ca.pem")),
            client_certificate: client,
        };
        NatsConfig::new(server.url()).tls(tls)
    };
    let core = NatsCore::connect(&with(Some((dir.join("service-a.pem"), dir.join("service-a.key")))))
        .await
        .expect("our client certificate is taken");
    core.writer().write(vec![Message::new("mtls.check", "ok")]).await.unwrap();
    core.writer().flush().await.unwrap();

    let refused = [
        ("no client certificate", with(None)),
        ("a certificate of another CA", with(Some((stranger.join("intruder.pem"), stranger.join("intruder.key"))))),
    ];
    for (what, config) in refused {
        let err = NatsCore::connect(&config).await.err().unwrap_or_else(|| panic!("{what} was let in"));
        println!("{what}: {err}");
        tidewater_conformance::assert_refused_for_good(&err, "TLS with the NATS server failed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connects with `auth` to `server`, publishes and reads one message back.
async fn round_trip_with(server: &support::NatsServer, auth: tidewater_nats::Auth) {
    round_trip_on(NatsConfig::new(server.url()).auth(auth)).await;
}

/// Connects as `config` says, publishes and reads one message back.
async fn round_trip_on(config: NatsConfig) {
    let core = NatsCore::connect(&config).await.expect("the right credentials connect");
    let seen = Recorder::new();
    let mut s = SubscriberScheduler::new(core.reader(), EventRegistry::new());
    s.subscribe("auth.check", seen.clone());
    s.start().await.unwrap();
    core.writer().write(vec![Message::new("auth.check", "ok")]).await.unwrap();
    seen.wait_for(1, WAIT).await.unwrap();
    s.shutdown(WAIT).await;
}

#[tokio::test]
async fn user_and_password_auth_connects_and_a_wrong_password_fails_clearly() {
    let server = support::private_server(&["--user", "svc", "--pass", "s3cret-pass"]);
    round_trip_with(&server, tidewater_nats::Auth::UserPassword { user: "svc".into(), password: "s3cret-pass".into() })
        .await;
    let wrong = NatsConfig::new(server.url())
        .auth(tidewater_nats::Auth::UserPassword { user: "svc".into(), password: "not-it".into() });
    let err = NatsCore::connect(&wrong).await.unwrap_err();
    tidewater_conformance::assert_refused_for_good(&err, "refused the credentials");
    assert!(!format!("{wrong:?}").contains("not-it"), "the password stays out of Debug output: {wrong:?}");
    let none = NatsCore::connect(&NatsConfig::new(server.url())).await.unwrap_err();
    tidewater_conformance::assert_refused_for_good(&none, "refused the credentials");

    // In the URL, as NATS's own tools take them; never shown. Before, the client let
    // them go unused, and the error printed the password.
    let with = |userinfo: &str| server.url().replacen("nats://", &format!("nats://{userinfo}@"), 1);
    round_trip_on(NatsConfig::new(with("svc:s3cret-pass"))).await;
    let err = NatsCore::connect(&NatsConfig::new(with("svc:not-it"))).await.unwrap_err();
    tidewater_conformance::assert_refused_for_good(&err, "refused the credentials");
    assert!(!tidewater_core::testing::reported(&err).contains("not-it"), "the password is not shown: {err}");
}

#[tokio::test]
async fn nkey_auth_signs_the_challenge_and_an_unknown_key_fails() {
    let user = nkeys::KeyPair::new_user();
    let dir = std::env::temp_dir().join(format!("tidewater-nkey-{}", UuidV7Ids.next_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("server.conf");
    std::fs::write(&conf, format!("authorization {{\n  users = [ {{ nkey: {} }} ]\n}}\n", user.public_key())).unwrap();
    let server = support::private_server(&["-c", conf.to_str().unwrap()]);
    round_trip_with(&server, tidewater_nats::Auth::NKey(user.seed().unwrap())).await;

    let stranger = nkeys::KeyPair::new_user();
    let wrong = NatsConfig::new(server.url()).auth(tidewater_nats::Auth::NKey(stranger.seed().unwrap()));
    let err = NatsCore::connect(&wrong).await.unwrap_err();
    tidewater_conformance::assert_refused_for_good(&err, "refused the credentials");
    assert!(!format!("{wrong:?}").contains(&stranger.seed().unwrap()), "the seed stays out of Debug output");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A NATS JWT (`ed25519-nkey`) for `subject`, signed by `issuer`, with `nats` as its
/// NATS-specific claims; what `nsc` writes, made here because no `nsc` can be installed.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": UuidV7Ids.next_id().replace('-', "").to_uppercase(),
        "iat": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let claims = b64.encode(claims.to_string());
    let signed = format!("{header}.{claims}");
    let signature = b64.encode(issuer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{signature}")
}

#[tokio::test]
async fn a_credentials_file_connects_in_operator_mode_and_a_foreign_one_fails() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let unlimited = serde_json::json!({"subs": -1, "data": -1, "payload": -1});
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "test-operator",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let account_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "test-account",
        serde_json::json!({
            "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1},
            "type": "account", "version": 2,
        }),
    );
    let mut user_claims = unlimited.clone();
    user_claims["pub"] = serde_json::json!({});
    user_claims["sub"] = serde_json::json!({});
    user_claims["type"] = "user".into();
    user_claims["version"] = 2.into();
    let user_jwt = nats_jwt(&account, &user.public_key(), "test-user", user_claims);

    let dir = std::env::temp_dir().join(format!("tidewater-creds-{}", UuidV7Ids.next_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("server.conf");
    std::fs::write(
        &conf,
        format!(
            "operator: {operator_jwt}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {account_jwt}\n}}\n",
            account.public_key()
        ),
    )
    .unwrap();
    let creds = |jwt: &str, seed: &str| {
        format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        )
    };
    let good = dir.join("user.creds");
    std::fs::write(&good, creds(&user_jwt, &user.seed().unwrap())).unwrap();
    // Signed by an account the server does not know.
    let stranger = nkeys::KeyPair::new_account();
    let foreign_jwt =
        nats_jwt(&stranger, &user.public_key(), "foreign", serde_json::json!({"type": "user", "version": 2}));
    let foreign = dir.join("foreign.creds");
    std::fs::write(&foreign, creds(&foreign_jwt, &user.seed().unwrap())).unwrap();

    let server = support::private_core_server(&["-c", conf.to_str().unwrap()]);
    round_trip_with(&server, tidewater_nats::Auth::CredentialsFile(good)).await;
    let wrong = NatsConfig::new(server.url()).auth(tidewater_nats::Auth::CredentialsFile(foreign));
    let err = NatsCore::connect(&wrong).await.unwrap_err();
    tidewater_conformance::assert_refused_for_good(&err, "refused the credentials");
    let missing = NatsConfig::new(server.url()).auth(tidewater_nats::Auth::CredentialsFile(dir.join("none.creds")));
    let err = NatsCore::connect(&missing).await.unwrap_err();
    tidewater_conformance::assert_refused_for_good(&err, "cannot read credentials file");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A group's durable consumer left behind goes away after `group_expiry` with no member
/// (on the current server; 2.9 keeps durables regardless), so test runs and retired
/// services do not pile consumers up.
#[tokio::test]
async fn a_durable_consumer_left_behind_expires() {
    let config = JetStreamConfig { group_expiry: Some(Duration::from_secs(1)), ..JetStreamConfig::default() };
    let url = tidewater_testkit::shared::nats_url();
    let js = JetStream::connect(&NatsConfig::new(url), config).await.unwrap();
    let topic = subject("expiry");
    js.admin().create_topic(&topic, 1).await.unwrap();
    let mut scheduler = SubscriberScheduler::new(js.reader(), EventRegistry::new());
    scheduler.subscribe(topic.clone(), Recorder::new()).group("left-behind");
    scheduler.start().await.unwrap();
    scheduler.shutdown(WAIT).await;

    let stream = js.context().get_stream(topic.replace('.', "_")).await.unwrap();
    let durable = format!("left-behind__{topic}").replace('.', "_");
    assert!(stream.consumer_info(&durable).await.is_ok(), "the group's consumer is there after the run");
    let deadline = tokio::time::Instant::now() + WAIT;
    // The server's own timer decides; ask until it has, or give up at the deadline.
    while stream.consumer_info(&durable).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the consumer was still there after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    js.admin().delete_topic(&topic).await.unwrap();
}
