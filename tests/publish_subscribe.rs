//! The publisher and typed subscriptions, through the facade crate, on the memory driver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewater::memory::MemoryBroker;
use tidewater::middleware::{dlq_headers, DeadLetter};
use tidewater::testing::Recorder;
use tidewater::{wire, Bus, Delivery, ErrorKind, Event, EventRegistry, HandlerError, KsuidIds, Message, Publisher};

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    id: u32,
}

impl Event for OrderPlaced {
    const TYPE: &'static str = "order.placed";
    fn key(&self) -> Option<String> {
        Some(format!("order-{}", self.id))
    }
    fn headers(&self) -> tidewater::Headers {
        [("source", "tests")].into_iter().collect()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Unrouted;

impl Event for Unrouted {
    const TYPE: &'static str = "unrouted";
}

#[tokio::test]
async fn typed_events_are_encoded_routed_and_decoded() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new().route::<OrderPlaced>("orders"));
    let got = Recorder::new();
    let sink = got.clone();
    bus.subscribe_event(move |order: OrderPlaced, d: Delivery| {
        let sink = sink.clone();
        async move {
            assert_eq!(order.id, 7);
            sink.record(d);
            Ok::<_, HandlerError>(())
        }
    })
    .group("g");
    bus.start().await.unwrap();
    let id = bus.publisher().publish(&OrderPlaced { id: 7 }).await.unwrap();
    let d = &got.wait_for(1, WAIT).await.unwrap()[0];
    bus.shutdown(WAIT).await.unwrap();
    let m = d.message();
    assert_eq!(m.id, id);
    assert_eq!(m.stream, "orders");
    assert_eq!(m.key_str(), Some("order-7"));
    assert_eq!(m.content_type.as_deref(), Some("application/json"));
    assert_eq!(m.headers.get(wire::EVENT_TYPE), Some("order.placed"));
    assert_eq!(m.headers.get("source"), Some("tests"));
    assert_eq!(&m.payload[..], br#"{"id":7}"#);
    assert!(uuid_v7(&id), "default ids are UUID v7: {id}");
}

fn uuid_v7(id: &str) -> bool {
    id.len() == 36 && id.as_bytes()[14] == b'7'
}

#[tokio::test]
async fn unknown_event_types_are_errors_on_both_sides() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new());
    let err = bus.publisher().publish(&Unrouted).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownEventType);
    assert!(err.to_string().contains("\"unrouted\""), "{err}");
    bus.subscribe_event(|_e: Unrouted, _d: Delivery| async { Ok::<_, HandlerError>(()) });
    let err = bus.start().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownEventType);
}

#[tokio::test]
async fn undecodable_payloads_and_unknown_event_types_go_to_the_dlq_routed_ones_are_skipped() {
    // No middleware: the bus dead-letters to <topic>.dlq by itself.
    let broker = MemoryBroker::new();
    let registry = EventRegistry::new().route::<OrderPlaced>("orders").route::<OrderCancelled>("orders");
    let mut bus = Bus::new(&broker, registry);
    bus.subscribe_event(|_o: OrderPlaced, _d: Delivery| async { panic!("must not be called") }).group("g");
    bus.start().await.unwrap();
    let p = bus.publisher();
    p.publish_message(Message::new("orders", "{not json").with_content_type("application/json")).await.unwrap();
    p.publish_bytes("orders", r#"{"id":1}"#, "application/xml").await.unwrap();
    // A type this service does not know may be one a newer version of it handles, in
    // the same group: dead-lettered, it can be redriven.
    p.publish_message(Message::new("orders", r#"{"id":1}"#).with_header(wire::EVENT_TYPE, "order.refunded"))
        .await
        .unwrap();
    // One the registry routes to the topic is there on purpose: passed over, not
    // dead-lettered, and never decoded as an OrderPlaced, which its payload would be.
    p.publish(&OrderCancelled { id: 1 }).await.unwrap();
    let dead = broker.wait_published("orders.dlq", 3, WAIT).await.unwrap();
    broker.wait_acked("orders", "g", 4, WAIT).await.unwrap();
    let report = bus.shutdown(WAIT).await.unwrap();
    assert_eq!((report.dead_lettered(), report.skipped(), report.acked()), (3, 1, 0), "{report:?}");
    assert_eq!(broker.published("orders.dlq").len(), 3);
    // Keyless messages spread over the partitions, so they may be handled in any order.
    let errors: Vec<&str> = dead.iter().map(|m| m.headers.get(dlq_headers::ERROR).unwrap()).collect();
    for why in ["not valid JSON", "application/xml", "\"order.refunded\" event, which this service's registry"] {
        assert_eq!(errors.iter().filter(|e| e.contains(why)).count(), 1, "one dead letter for {why}: {errors:?}");
    }
    assert!(dead.iter().all(|m| m.headers.get(dlq_headers::RECOVERY) == Some("permanent")));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderCancelled {
    id: u32,
}

impl Event for OrderCancelled {
    const TYPE: &'static str = "order.cancelled";
    fn key(&self) -> Option<String> {
        Some(format!("order-{}", self.id))
    }
}

/// Two event types routed to one topic, each with a handler in the same group. Before,
/// each handler was a member of the group of its own, so each got about half of the
/// topic's messages, of both types, and dead-lettered the other type's: here all 40.
/// Now they are one subscription, and an order's events keep their order across types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_typed_handlers_of_one_topic_each_get_their_own_events_in_order() {
    let broker = MemoryBroker::new();
    let registry = EventRegistry::new().route::<OrderPlaced>("orders").route::<OrderCancelled>("orders");
    let mut bus = Bus::new(&broker, registry);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (placed, cancelled) = (Arc::clone(&seen), Arc::clone(&seen));
    bus.subscribe_event(move |o: OrderPlaced| {
        placed.lock().unwrap().push(format!("placed {}", o.id));
        async { Ok::<_, HandlerError>(()) }
    })
    .group("billing")
    .concurrency(4);
    bus.subscribe_event(move |o: OrderCancelled| {
        cancelled.lock().unwrap().push(format!("cancelled {}", o.id));
        async { Ok::<_, HandlerError>(()) }
    })
    .group("billing")
    .concurrency(4);
    bus.start().await.unwrap();
    let p = bus.publisher();
    for id in 0..20 {
        p.publish(&OrderPlaced { id }).await.unwrap();
        p.publish(&OrderCancelled { id }).await.unwrap();
    }
    broker.wait_acked("orders", "billing", 40, WAIT).await.unwrap();
    let report = bus.shutdown(WAIT).await.unwrap();
    assert_eq!(report.tasks.len(), 1, "one subscription: {report:?}");
    assert_eq!((report.acked(), report.dead_lettered(), report.skipped()), (40, 0, 0), "{report:?}");
    let seen = seen.lock().unwrap();
    for id in 0..20 {
        let at = |what: &str| seen.iter().position(|s| *s == format!("{what} {id}"));
        let (placed, cancelled) = (at("placed"), at("cancelled"));
        assert!(placed.is_some() && placed < cancelled, "order {id}: placed, then cancelled: {seen:?}");
    }
}

/// Joined, each handler keeps the middleware given to its own task.
#[tokio::test]
async fn joined_typed_handlers_keep_their_own_middleware() {
    let broker = MemoryBroker::new();
    let registry = EventRegistry::new().route::<OrderPlaced>("orders").route::<OrderCancelled>("orders");
    let mut bus = Bus::new(&broker, registry);
    bus.subscribe_event(|_o: OrderPlaced, d: Delivery| async move {
        match d.attempt() {
            1 => Err(HandlerError::transient("the database blinked")),
            _ => Ok(()),
        }
    })
    .group("billing")
    .middleware(tidewater::middleware::Retry::new().max_attempts(2).min_delay(Duration::from_millis(1)));
    bus.subscribe_event(|_o: OrderCancelled| async { Err::<(), _>(HandlerError::permanent("no such order")) })
        .group("billing");
    bus.start().await.unwrap();
    let p = bus.publisher();
    p.publish(&OrderPlaced { id: 1 }).await.unwrap();
    p.publish(&OrderCancelled { id: 1 }).await.unwrap();
    broker.wait_acked("orders", "billing", 2, WAIT).await.unwrap();
    let report = bus.shutdown(WAIT).await.unwrap();
    let task = &report.tasks[0];
    assert_eq!((task.acked, task.retried, task.dead_lettered), (1, 1, 1), "{report:?}");
    let dead = broker.published("orders.dlq");
    assert_eq!(dead[0].headers.get(wire::EVENT_TYPE), Some("order.cancelled"), "the default dead letter took it");
}

/// Handlers of two event types on one topic, in groups of their own: each gets every
/// message and passes over the other type's. Before, each dead-lettered the other's.
#[tokio::test]
async fn typed_handlers_in_groups_of_their_own_pass_over_the_other_types() {
    let broker = MemoryBroker::new();
    let registry = EventRegistry::new().route::<OrderPlaced>("orders").route::<OrderCancelled>("orders");
    let mut bus = Bus::new(&broker, registry);
    let (placed, cancelled) = (Recorder::new(), Recorder::new());
    let (a, b) = (placed.clone(), cancelled.clone());
    bus.subscribe_event(move |_o: OrderPlaced, d: Delivery| {
        a.record(d);
        async { Ok::<_, HandlerError>(()) }
    })
    .group("billing");
    bus.subscribe_event(move |_o: OrderCancelled, d: Delivery| {
        b.record(d);
        async { Ok::<_, HandlerError>(()) }
    })
    .group("refunds");
    bus.start().await.unwrap();
    let p = bus.publisher();
    for id in 0..10 {
        p.publish(&OrderPlaced { id }).await.unwrap();
        p.publish(&OrderCancelled { id }).await.unwrap();
    }
    broker.wait_acked("orders", "billing", 20, WAIT).await.unwrap();
    broker.wait_acked("orders", "refunds", 20, WAIT).await.unwrap();
    let report = bus.shutdown(WAIT).await.unwrap();
    assert_eq!((placed.len(), cancelled.len()), (10, 10));
    assert_eq!((report.acked(), report.skipped(), report.dead_lettered()), (20, 20, 0), "{report:?}");
    assert!(broker.published("orders.dlq").is_empty());
}

/// A group's typed handlers of one topic are one subscription, so what cannot be one is
/// refused at the start, saying why, and nothing starts.
#[tokio::test]
async fn typed_handlers_that_cannot_share_a_subscription_are_refused() {
    let broker = MemoryBroker::new();
    let registry = || EventRegistry::new().route::<OrderPlaced>("orders").route::<OrderCancelled>("orders");
    let ok = |_o: OrderPlaced| async { Ok::<_, HandlerError>(()) };
    let ok_too = |_o: OrderCancelled| async { Ok::<_, HandlerError>(()) };

    let mut bus = Bus::new(&broker, registry());
    bus.subscribe_event(ok).group("billing").concurrency(4);
    bus.subscribe_event(ok_too).group("billing");
    let err = bus.start().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("other settings") && err.to_string().contains("\"order.cancelled\""), "{err}");
    let again = bus.start().await.unwrap_err();
    assert_eq!(again.to_string(), err.to_string(), "a refusal leaves the tasks as they were");

    let mut bus = Bus::new(&broker, registry());
    bus.subscribe_event(ok).group("billing");
    bus.subscribe_event(ok).group("billing");
    let err = bus.start().await.unwrap_err();
    assert!(err.to_string().contains("two of them take \"order.placed\""), "{err}");

    // Beside a task it cannot join, as two members of the group, it would pass over
    // the other's events.
    let mut bus = Bus::new(&broker, registry());
    bus.subscribe_event(ok).group("billing");
    bus.subscribe("orders", tidewater::handler_fn(|_d: Delivery| async { Ok::<_, HandlerError>(()) })).group("billing");
    let err = bus.start().await.unwrap_err();
    assert!(err.to_string().contains("beside a handler of its raw messages"), "{err}");
    let mut bus = Bus::new(&broker, registry());
    bus.subscribe_event(ok).group("billing");
    bus.subscribe_event_batch(10, Duration::from_millis(5), |_b: Vec<OrderCancelled>| async {
        Ok::<_, tidewater::BatchError>(())
    })
    .group("billing");
    let err = bus.start().await.unwrap_err();
    assert!(err.to_string().contains("beside a typed batch handler of \"order.cancelled\""), "{err}");

    let mut bus = Bus::new(&broker, registry());
    bus.subscribe_event(ok).group("billing");
    bus.start().await.unwrap();
    bus.subscribe_event(ok_too).group("billing");
    let err = bus.start().await.unwrap_err();
    assert!(err.to_string().contains("a running task already reads"), "{err}");
    bus.shutdown(WAIT).await.unwrap();
}

/// A typed batch handler passes over other event types too. Before, it decoded them as
/// its own type, so an `OrderCancelled` reached it as an `OrderPlaced`.
#[tokio::test]
async fn a_typed_batch_handler_passes_over_other_event_types() {
    let broker = MemoryBroker::new();
    let registry = EventRegistry::new().route::<OrderPlaced>("orders").route::<OrderCancelled>("orders");
    let mut bus = Bus::new(&broker, registry);
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    bus.subscribe_event_batch(10, Duration::from_millis(20), move |orders: Vec<OrderPlaced>| {
        sink.lock().unwrap().extend(orders.into_iter().map(|o| o.id));
        async { Ok::<_, tidewater::BatchError>(()) }
    })
    .group("g");
    bus.start().await.unwrap();
    let p = bus.publisher();
    p.publish(&OrderPlaced { id: 1 }).await.unwrap();
    p.publish(&OrderCancelled { id: 2 }).await.unwrap();
    broker.wait_acked("orders", "g", 2, WAIT).await.unwrap();
    let report = bus.shutdown(WAIT).await.unwrap();
    assert_eq!(*got.lock().unwrap(), [1]);
    assert_eq!((report.acked(), report.skipped()), (1, 1), "{report:?}");
}

#[tokio::test]
async fn ksuid_ids_and_explicit_topics_and_batches() {
    let broker = MemoryBroker::new();
    let publisher =
        Publisher::new(broker.writer(), EventRegistry::new().route::<OrderPlaced>("orders")).with_ids(KsuidIds);
    let id = publisher.publish_to("elsewhere", &OrderPlaced { id: 1 }).await.unwrap();
    assert_eq!(id.len(), 27, "KSUIDs are 27 characters: {id}");
    assert_eq!(broker.published("elsewhere")[0].id, id);

    let ids = publisher.publish_batch(&[OrderPlaced { id: 1 }, OrderPlaced { id: 2 }]).await.unwrap();
    let stored: Vec<tidewater::MessageId> = broker.published("orders").into_iter().map(|m| m.id).collect();
    assert_eq!(stored, ids);

    let mut given = Message::new("raw", "bytes").with_id("mine");
    given.content_type = None;
    assert_eq!(publisher.publish_message(given).await.unwrap(), "mine", "a given id is kept");
}

/// Publishes one message to `t` on `bus`, whose task (group `g`) fails it, and checks
/// that it went to `dead.t`, the task's own dead letter, and not to the default `t.dlq`.
async fn one_message_goes_to_its_own_dead_letter(broker: &MemoryBroker, mut bus: Bus) {
    bus.start().await.unwrap();
    bus.publisher().publish_bytes("t", "x", "text/plain").await.unwrap();
    broker.wait_published("dead.t", 1, WAIT).await.unwrap();
    broker.wait_acked("t", "g", 1, WAIT).await.unwrap();
    let report = bus.shutdown(WAIT).await.unwrap();
    assert!(broker.published("t.dlq").is_empty(), "the default dead letter stays out");
    assert_eq!(report.dead_lettered(), 1);
}

#[tokio::test]
async fn a_dead_letter_middleware_of_your_own_replaces_the_default() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new());
    let mine = DeadLetter::new(bus.writer()).topic_name(|topic| format!("dead.{topic}"));
    bus.with_middleware(mine);
    bus.subscribe("t", tidewater::handler_fn(|_d: Delivery| async { Err(HandlerError::permanent("no")) })).group("g");
    one_message_goes_to_its_own_dead_letter(&broker, bus).await;
}

#[tokio::test]
async fn a_dead_letter_layered_around_the_handler_replaces_the_default_too() {
    use tidewater::Around;
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new());
    // A default that dead-letters any failure at once, and a handler whose own dead
    // letter lets a transient failure come back once: the default must stay out.
    bus.dead_letter(Some(DeadLetter::new(bus.writer())));
    let mine = DeadLetter::new(bus.writer()).max_deliveries(2).topic_name(|topic| format!("dead.{topic}"));
    let fails = tidewater::handler_fn(|_d: Delivery| async { Err(HandlerError::transient("not yet")) });
    bus.subscribe("t", mine.wrapping(fails)).group("g").nack_delay(Some(Duration::from_millis(10)));
    one_message_goes_to_its_own_dead_letter(&broker, bus).await;
}

#[tokio::test]
async fn a_failing_handler_never_ends_its_worker() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new());
    bus.subscribe(
        "t",
        tidewater::handler_fn(|d: Delivery| async move {
            if d.attempt() == 1 {
                Err(HandlerError::transient("first time fails"))
            } else {
                Ok(())
            }
        }),
    )
    .group("g")
    .concurrency(3)
    .nack_delay(Some(Duration::from_millis(1)));
    bus.start().await.unwrap();
    for i in 0..50 {
        bus.publisher().publish_bytes("t", format!("{i}"), "text/plain").await.unwrap();
    }
    broker.wait_acked("t", "g", 50, WAIT).await.unwrap();
    let report = bus.shutdown(WAIT).await.unwrap();
    assert_eq!(report.tasks[0].failed, 50);
    assert_eq!(report.tasks[0].acked, 50);
    assert_eq!(report.tasks[0].delivered, 100, "each message twice: failed, then redelivered");
    assert!(report.tasks[0].fetched >= 100 && report.tasks[0].fetches >= 1, "{report:?}");
    assert_eq!(report.tasks[0].restarts, 0);
}

#[derive(Clone, Default)]
struct Seen(std::sync::Arc<std::sync::Mutex<Vec<u32>>>);

async fn remember(order: OrderPlaced, tidewater::State(seen): tidewater::State<Seen>) -> tidewater::HandlerResult {
    seen.0.lock().unwrap().push(order.id);
    Ok(())
}

#[tokio::test]
async fn typed_handlers_take_shared_state_and_a_missing_state_fails_the_start() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new().route::<OrderPlaced>("orders"));
    bus.subscribe_event(remember).group("g");
    let err = bus.start().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("State<publish_subscribe::Seen>"), "{err}");

    let seen = Seen::default();
    let mut bus = Bus::new(&broker, EventRegistry::new().route::<OrderPlaced>("orders"));
    bus.with_state(seen.clone());
    bus.subscribe_event(remember).group("g");
    bus.subscribe_event(|order: OrderPlaced| async move {
        assert!(order.id < 10);
        Ok::<_, HandlerError>(())
    })
    .group("event-only");
    bus.start().await.unwrap();
    for id in 0..3 {
        bus.publisher().publish(&OrderPlaced { id }).await.unwrap();
    }
    broker.wait_acked("orders", "g", 3, WAIT).await.unwrap();
    broker.wait_acked("orders", "event-only", 3, WAIT).await.unwrap();
    bus.shutdown(WAIT).await.unwrap();
    let mut ids = seen.0.lock().unwrap().clone();
    ids.sort_unstable();
    assert_eq!(ids, vec![0, 1, 2], "each order once, through the shared state");
}

#[tokio::test]
async fn health_is_ready_once_subscribed_and_not_once_the_broker_closes() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new());
    bus.subscribe("t", Recorder::new()).group("g");
    assert!(bus.health().live && bus.health().tasks.is_empty(), "nothing to run yet");
    bus.start().await.unwrap();
    let health = bus.health();
    assert!(health.live && health.ready, "{health:?}");
    assert_eq!((health.tasks[0].running, health.tasks[0].subscribed), (true, true));
    broker.close();
    let health = bus.health();
    assert_eq!(health.connected, Some(false));
    assert!(!health.ready && health.live, "closed, but the worker runs on and retries: {health:?}");
    bus.shutdown(WAIT).await.unwrap();
}

/// Every event of a type goes out with one shared topic name (the route's), not a copy
/// of the text apiece: what a message costs is its payload, not its name again.
#[tokio::test]
async fn events_of_a_route_share_its_topic_name() {
    let broker = MemoryBroker::new();
    let bus = Bus::new(&broker, EventRegistry::new().route::<OrderPlaced>("orders"));
    for id in 0..3 {
        bus.publisher().publish(&OrderPlaced { id }).await.unwrap();
    }
    let held = broker.published("orders");
    assert_eq!(held.len(), 3);
    assert_eq!(held[0].stream, "orders");
    assert!(held[0].stream.shares(&held[1].stream) && held[1].stream.shares(&held[2].stream));
    let raw = bus.publisher().encode("orders", &OrderPlaced { id: 9 }).unwrap();
    let other = bus.publisher().encode("orders", &OrderPlaced { id: 10 }).unwrap();
    assert!(raw.stream.shares(&other.stream), "a name given as text again is shared, not copied");
}

/// A handler whose own publish is refused for good (larger than the broker takes) sends
/// its message to the dead-letter topic, once. Before, the refusal converted into a
/// transient failure: the message came back after each nack delay, for good, and never
/// reached the dead-letter topic.
#[tokio::test]
async fn a_handler_whose_publish_is_refused_for_good_dead_letters_its_message() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    let broker = MemoryBroker::with_config(tidewater::memory::MemoryConfig::default().max_message_bytes(1024));
    let mut bus = Bus::new(&broker, EventRegistry::new());
    let (publisher, calls) = (bus.publisher().clone(), Arc::new(AtomicU32::new(0)));
    let counted = Arc::clone(&calls);
    let handler = tidewater::handler_fn(move |delivery: Delivery| {
        let (publisher, counted) = (publisher.clone(), Arc::clone(&counted));
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            // An enrichment that makes it larger than the broker takes.
            publisher.publish_bytes("out", delivery.message().payload.repeat(4), "text/plain").await?;
            Ok::<(), HandlerError>(())
        }
    });
    bus.subscribe("in", handler).group("g");
    bus.start().await.unwrap();
    bus.publisher().publish_bytes("in", vec![b'x'; 400], "text/plain").await.unwrap();
    let dead = broker.wait_published("in.dlq", 1, WAIT).await.unwrap();
    broker.wait_acked("in", "g", 1, WAIT).await.unwrap();
    let report = bus.shutdown(WAIT).await.unwrap();
    assert_eq!((report.dead_lettered(), calls.load(Ordering::SeqCst)), (1, 1), "{report:?}");
    let error = dead[0].headers.get(dlq_headers::ERROR).unwrap();
    assert!(error.contains("too large") && error.contains("the limit is 1024"), "{error}");
    assert_eq!(dead[0].headers.get(dlq_headers::RECOVERY), Some("permanent"));
    assert!(broker.published("out").is_empty());
}
