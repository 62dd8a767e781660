//! An event type renamed: messages under its former names (`#[event(aliases = [...])]`)
//! are read as it, by every kind of typed handler, on the memory driver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewater::memory::MemoryBroker;
use tidewater::middleware::dlq_headers;
use tidewater::{wire, BatchError, Bus, ErrorKind, Event, EventRegistry, HandlerError, Message};

const WAIT: Duration = Duration::from_secs(10);

/// Published as `OrderPlaced` by the service's first release, then `orders.placed`; the
/// field added since has a default, so old payloads still decode.
#[derive(Debug, Serialize, Deserialize, Event)]
#[event(type = "order.placed", key = order_id, aliases = ["OrderPlaced", "orders.placed"])]
struct OrderPlaced {
    order_id: String,
    #[serde(default)]
    currency: String,
}

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(type = "order.cancelled", key = order_id)]
struct OrderCancelled {
    order_id: String,
}

/// A message as an older release of the publisher wrote it.
fn published_as(event_type: &str, order_id: &str) -> Message {
    Message::new("orders", format!(r#"{{"order_id":"{order_id}"}}"#))
        .with_content_type("application/json")
        .with_header(wire::EVENT_TYPE, event_type)
}

fn registry() -> EventRegistry {
    EventRegistry::new().route::<OrderPlaced>("orders").route::<OrderCancelled>("orders")
}

#[test]
fn the_derive_writes_the_former_names() {
    assert_eq!(OrderPlaced::ALIASES, ["OrderPlaced", "orders.placed"]);
    assert!(OrderCancelled::ALIASES.is_empty());
}

#[tokio::test]
async fn a_renamed_type_reads_messages_under_its_former_names() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, registry());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    bus.subscribe_event(move |order: OrderPlaced| {
        sink.lock().unwrap().push((order.order_id, order.currency));
        async { Ok::<_, HandlerError>(()) }
    })
    .group("billing");
    bus.start().await.unwrap();
    let p = bus.publisher();
    p.publish_message(published_as("OrderPlaced", "o-1")).await.unwrap();
    p.publish_message(published_as("orders.placed", "o-2")).await.unwrap();
    p.publish(&OrderPlaced { order_id: "o-3".into(), currency: "EUR".into() }).await.unwrap();
    // A name no type has had is not an `OrderPlaced`, though its payload would decode
    // as one.
    p.publish_message(published_as("order.placd", "o-4")).await.unwrap();
    broker.wait_acked("orders", "billing", 4, WAIT).await.unwrap();
    let report = bus.shutdown(WAIT).await.unwrap();

    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let want = [("o-1", ""), ("o-2", ""), ("o-3", "EUR")].map(|(id, c)| (id.to_owned(), c.to_owned()));
    assert_eq!(seen, want);
    assert_eq!((report.acked(), report.dead_lettered()), (3, 1), "{report:?}");
    let dead = broker.published("orders.dlq");
    assert!(dead[0].headers.get(dlq_headers::ERROR).unwrap().contains("\"order.placd\""), "{:?}", dead[0].headers);
    let written = broker.published("orders");
    assert_eq!(written[2].headers.get(wire::EVENT_TYPE), Some("order.placed"), "published under its name now");
}

#[tokio::test]
async fn a_groups_joined_handlers_take_a_former_name_as_its_type() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, registry());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (placed, cancelled) = (Arc::clone(&seen), Arc::clone(&seen));
    bus.subscribe_event(move |o: OrderPlaced| {
        placed.lock().unwrap().push(format!("placed {}", o.order_id));
        async { Ok::<_, HandlerError>(()) }
    })
    .group("billing");
    bus.subscribe_event(move |o: OrderCancelled| {
        cancelled.lock().unwrap().push(format!("cancelled {}", o.order_id));
        async { Ok::<_, HandlerError>(()) }
    })
    .group("billing");
    bus.start().await.unwrap();
    let p = bus.publisher();
    p.publish_message(published_as("OrderPlaced", "o-1")).await.unwrap();
    p.publish(&OrderCancelled { order_id: "o-1".into() }).await.unwrap();
    broker.wait_acked("orders", "billing", 2, WAIT).await.unwrap();
    let report = bus.shutdown(WAIT).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), ["placed o-1", "cancelled o-1"], "one key, in order");
    assert_eq!((report.tasks.len(), report.acked(), report.skipped()), (1, 2, 0), "{report:?}");
}

/// A group that takes only cancellations passes over an order placed under a former
/// name, as it does one under the name now: the registry routes the type to the topic.
#[tokio::test]
async fn a_former_name_of_a_type_routed_to_the_topic_is_passed_over_by_other_groups() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, registry());
    bus.subscribe_event(|_o: OrderCancelled| async { Ok::<_, HandlerError>(()) }).group("refunds");
    bus.start().await.unwrap();
    bus.publisher().publish_message(published_as("OrderPlaced", "o-1")).await.unwrap();
    broker.wait_acked("orders", "refunds", 1, WAIT).await.unwrap();
    let report = bus.shutdown(WAIT).await.unwrap();
    assert_eq!((report.skipped(), report.dead_lettered()), (1, 0), "{report:?}");
    assert!(broker.published("orders.dlq").is_empty());
}

#[tokio::test]
async fn a_typed_batch_handler_reads_former_names() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, registry());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    bus.subscribe_event_batch(10, Duration::from_millis(20), move |orders: Vec<OrderPlaced>| {
        sink.lock().unwrap().extend(orders.into_iter().map(|o| o.order_id));
        async { Ok::<_, BatchError>(()) }
    })
    .group("g");
    bus.start().await.unwrap();
    let p = bus.publisher();
    p.publish_message(published_as("OrderPlaced", "o-1")).await.unwrap();
    p.publish(&OrderCancelled { order_id: "o-2".into() }).await.unwrap();
    broker.wait_acked("orders", "g", 2, WAIT).await.unwrap();
    let report = bus.shutdown(WAIT).await.unwrap();
    assert_eq!(*got.lock().unwrap(), ["o-1"]);
    assert_eq!((report.acked(), report.skipped()), (1, 1), "{report:?}");
}

/// The type that now has another's former name as its own.
#[derive(Debug, Serialize, Deserialize, Event)]
#[event(type = "OrderPlaced")]
struct LegacyOrder {
    order_id: String,
}

#[tokio::test]
async fn two_handlers_of_a_group_that_would_both_take_a_name_are_refused() {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, registry().route::<LegacyOrder>("orders"));
    bus.subscribe_event(|_o: OrderPlaced| async { Ok::<_, HandlerError>(()) }).group("billing");
    bus.subscribe_event(|_o: LegacyOrder| async { Ok::<_, HandlerError>(()) }).group("billing");
    let err = bus.start().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("two of them take \"OrderPlaced\""), "{err}");
}
