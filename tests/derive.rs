//! `#[derive(Event)]` writes the impl a person would.

use serde::{Deserialize, Serialize};
use tidewater::memory::MemoryBroker;
use tidewater::{Bus, Event, EventRegistry};

#[derive(Serialize, Deserialize, Event)]
#[event(type = "order.placed", key = order_id)]
struct OrderPlaced {
    order_id: String,
    cents: i64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(type = "sensor.read", key = sensor)]
struct Reading {
    sensor: u32,
}

#[derive(Serialize, Deserialize, Event)]
#[event(type = "audit.noted")]
struct Noted;

#[test]
fn the_type_name_and_the_key_come_from_the_attribute() {
    assert_eq!(OrderPlaced::TYPE, "order.placed");
    let order = OrderPlaced { order_id: "o-7".into(), cents: 5 };
    assert_eq!(order.key().as_deref(), Some("o-7"));
    assert_eq!(order.cents, 5);
    assert_eq!(Reading { sensor: 42 }.key().as_deref(), Some("42"), "any field that is ToString");
    assert_eq!(Noted::TYPE, "audit.noted");
    assert_eq!(Noted.key(), None, "without `key`, no key");
    assert!(Noted.headers().is_empty());
}

#[tokio::test]
async fn a_derived_event_is_published_with_its_type_and_key() {
    let broker = MemoryBroker::new();
    let bus = Bus::new(&broker, EventRegistry::new().route::<OrderPlaced>("orders"));
    bus.publisher().publish(&OrderPlaced { order_id: "o-9".into(), cents: 100 }).await.unwrap();
    let stored = broker.published("orders");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].key_str(), Some("o-9"));
    assert_eq!(stored[0].headers.get(tidewater::wire::EVENT_TYPE), Some("order.placed"));
}
