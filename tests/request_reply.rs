//! Request/reply on every driver: the typed reply comes back; a request nobody answers
//! is a `Timeout` error in its time, not a hang (on core NATS, which knows, a
//! `NoResponders` error at once); a reply that comes too late is dropped and counted,
//! never handed to another request; the reply topic goes at `close`. On memory, the
//! real brokers `scripts/test` starts, and the StreamBus double.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewater::{Bus, Delivery, Driver, ErrorKind, Event, EventRegistry, HandlerError, Publisher, Requester, State};

#[derive(Serialize, Deserialize)]
struct Quote {
    sku: String,
    /// How long the pricing service takes.
    think_ms: u64,
}

impl Event for Quote {
    const TYPE: &'static str = "quote.requested";
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Price {
    sku: String,
    cents: u64,
}

async fn price(quote: Quote, request: Delivery, State(publisher): State<Publisher>) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(quote.think_ms)).await;
    let cents = quote.sku.len() as u64 * 100;
    publisher.reply(&request, &Price { sku: quote.sku, cents }).await?;
    Ok(())
}

/// How replies come back.
#[derive(PartialEq)]
enum Replies {
    /// Through a reply topic of the requester's own.
    Topic,
    /// Through the broker's own request/reply.
    Native,
}

async fn request_reply(driver: impl Driver, name: &str, replies: Replies) {
    let run = std::process::id();
    let (quotes, nobody) = (format!("rr{run}-{name}.quotes"), format!("rr{run}-{name}.nobody"));
    for topic in [&quotes, &nobody] {
        // Brokers that make topics on first use need no admin here.
        let _ = driver.admin().create_topic(topic, 1).await;
    }
    let mut bus = Bus::new(&driver, EventRegistry::new().route::<Quote>(&quotes));
    bus.subscribe_event(price).group("pricing");
    bus.start().await.unwrap();
    let requester = Requester::start(&driver, bus.publisher().clone()).await.expect("the reply topic");
    if replies == Replies::Native {
        assert!(requester.inbox().starts_with("_INBOX."), "NATS's own inbox: {}", requester.inbox());
    }

    let patience = Duration::from_secs(20);
    let reply: Price = requester.request(&Quote { sku: "apple".into(), think_ms: 0 }, patience).await.unwrap();
    assert_eq!(reply, Price { sku: "apple".into(), cents: 500 });

    let started = tokio::time::Instant::now();
    let err = requester
        .request_to::<_, Price>(&nobody, &Quote { sku: "pear".into(), think_ms: 0 }, Duration::from_millis(500))
        .await
        .expect_err("nobody answers");
    match replies {
        Replies::Topic => {
            assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
            assert!(started.elapsed() < Duration::from_secs(5), "the timeout is kept: {:?}", started.elapsed());
        }
        Replies::Native => {
            assert_eq!(err.kind(), ErrorKind::NoResponders, "{err}");
            assert!(started.elapsed() < Duration::from_millis(500), "told at once: {:?}", started.elapsed());
        }
    }

    // Answered after its request gave up: counted, and not taken for the next reply.
    let slow = Quote { sku: "plum".into(), think_ms: 1500 };
    let err = requester.request::<_, Price>(&slow, Duration::from_millis(300)).await.expect_err("too slow");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let deadline = tokio::time::Instant::now() + patience;
    while requester.late_replies() < 1 {
        assert!(tokio::time::Instant::now() < deadline, "the late reply is counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply: Price = requester.request(&Quote { sku: "fig".into(), think_ms: 0 }, patience).await.unwrap();
    assert_eq!(reply.sku, "fig", "each request gets its own reply");

    let inbox = requester.inbox().to_owned();
    requester.close().await.unwrap();
    if let Ok(topics) = driver.admin().topics().await {
        assert!(!topics.contains(&inbox), "the reply topic is deleted at close");
    }
    bus.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() {
    request_reply(tidewater::memory::MemoryBroker::new(), "memory", Replies::Topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_jetstream() {
    use tidewater::nats::{JetStream, JetStreamConfig, NatsConfig};
    let nats = NatsConfig::new(tidewater_testkit::shared::nats_url());
    request_reply(JetStream::connect(&nats, JetStreamConfig::default()).await.unwrap(), "jetstream", Replies::Topic)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka() {
    use tidewater::kafka::{Kafka, KafkaConfig};
    request_reply(
        Kafka::connect(KafkaConfig::new(tidewater_testkit::shared::kafka_brokers())).await.unwrap(),
        "kafka",
        Replies::Topic,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_pulsar() {
    use tidewater::pulsar::{Pulsar, PulsarConfig};
    let config = PulsarConfig::new(tidewater_testkit::shared::pulsar_url())
        .admin_url(tidewater_testkit::shared::pulsar_admin_url());
    request_reply(Pulsar::connect(config).await.unwrap(), "pulsar", Replies::Topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_streambus() {
    use tidewater::streambus::{StreamBus, StreamBusConfig};
    let double = tidewater_streambus_double::BrokerDouble::start(tidewater_streambus_double::Profile::Later).await;
    request_reply(
        StreamBus::connect(StreamBusConfig::new(double.addr().to_string())).await.unwrap(),
        "streambus",
        Replies::Topic,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_core_nats() {
    use tidewater::nats::{NatsConfig, NatsCore};
    let nats = NatsConfig::new(tidewater_testkit::shared::nats_url());
    request_reply(NatsCore::connect(&nats).await.unwrap(), "core", Replies::Native).await;
}

/// The same with a connection that sends no ids and implies JSON: requests and replies
/// match by their reply subjects, not by ids, and a reply read without its content type
/// header still decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_core_nats_without_ids_or_content_types() {
    use tidewater::nats::{NatsConfig, NatsCore};
    let nats = NatsConfig::new(tidewater_testkit::shared::nats_url());
    let driver =
        NatsCore::connect(&nats).await.unwrap().without_message_ids().with_implied_content_type("application/json");
    request_reply(driver, "core-bare", Replies::Native).await;
}

/// Interop both ways with plain NATS clients: a plain `request` is answered by a
/// tidewater handler through `Publisher::reply`, and a plain responder answers a
/// `Requester`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_nats_clients_on_either_side() {
    use futures::StreamExt;
    use tidewater::nats::{NatsConfig, NatsCore};
    let nats = NatsConfig::new(tidewater_testkit::shared::nats_url());
    let driver = NatsCore::connect(&nats).await.unwrap();
    let plain = nats.connect().await.unwrap();
    let run = std::process::id();
    let (quotes, echo) = (format!("rr{run}-plain.quotes"), format!("rr{run}-plain.echo"));

    let mut bus = Bus::new(&driver, EventRegistry::new().route::<Quote>(&quotes));
    bus.subscribe_event(price).group("pricing");
    bus.start().await.unwrap();
    let asked = serde_json::to_vec(&Quote { sku: "kiwi".into(), think_ms: 0 }).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), plain.request(quotes.clone(), asked.into()))
        .await
        .expect("answered in time")
        .expect("a reply");
    let price: Price = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(price, Price { sku: "kiwi".into(), cents: 400 });

    let mut responder = plain.subscribe(echo.clone()).await.unwrap();
    // A flush only empties the client's buffer: wait until the server has the
    // subscription (its own message comes back), or the request may find no responder.
    let inbox = plain.new_inbox();
    let mut back = plain.subscribe(inbox.clone()).await.unwrap();
    plain.publish(inbox, "".into()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), back.next()).await.expect("the server answers").expect("echo");
    let answering = tokio::spawn({
        let plain = plain.clone();
        async move {
            let request = responder.next().await.expect("a request");
            let reply = request.reply.expect("a reply subject");
            let price = serde_json::to_vec(&Price { sku: "echo".into(), cents: 1 }).unwrap();
            plain.publish(reply, price.into()).await.unwrap();
            plain.flush().await.unwrap();
        }
    });
    let requester = Requester::start(&driver, bus.publisher().clone()).await.unwrap();
    let quote = Quote { sku: "echo".into(), think_ms: 0 };
    let reply: Price = requester.request_to(&echo, &quote, Duration::from_secs(10)).await.unwrap();
    assert_eq!(reply, Price { sku: "echo".into(), cents: 1 });
    answering.await.unwrap();
    requester.close().await.unwrap();
    bus.shutdown(Duration::from_secs(10)).await.unwrap();
}
