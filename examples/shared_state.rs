//! Handlers that share state: a connection pool, a cache, the publisher. Give each with
//! `with_state` once; every typed handler takes what it needs as `State<T>`, as axum
//! handlers do, and the bus's own `Publisher` is always there.
//!
//! ```sh
//! cargo run --example shared_state
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewater::memory::MemoryBroker;
use tidewater::{Bus, Event, EventRegistry, HandlerResult, Publisher, State};

#[derive(Serialize, Deserialize, Event)]
#[event(type = "stock.received", key = sku)]
struct StockReceived {
    sku: String,
    units: u32,
}

#[derive(Serialize, Deserialize, Event)]
#[event(type = "stock.low")]
struct LowStock {
    sku: String,
    units: u32,
}

/// What a database pool would be; cloning it shares it.
#[derive(Clone, Default)]
struct Inventory(Arc<Mutex<HashMap<String, u32>>>);

/// Configuration, shared the same way.
#[derive(Clone)]
struct Thresholds {
    low: u32,
}

/// Takes the event, then any state it needs, in any order after the event.
async fn receive(
    stock: StockReceived,
    State(inventory): State<Inventory>,
    State(thresholds): State<Thresholds>,
    State(publisher): State<Publisher>,
) -> HandlerResult {
    let units = {
        let mut levels = inventory.0.lock().unwrap();
        let level = levels.entry(stock.sku.clone()).or_default();
        *level += stock.units;
        *level
    };
    if units < thresholds.low {
        publisher.publish(&LowStock { sku: stock.sku, units }).await?;
    }
    Ok(())
}

async fn alert(low: LowStock, State(alerts): State<Arc<Mutex<Vec<String>>>>) -> HandlerResult {
    alerts.lock().unwrap().push(format!("{} at {} units", low.sku, low.units));
    Ok(())
}

async fn run(broker: MemoryBroker) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let registry = EventRegistry::new().route::<StockReceived>("stock").route::<LowStock>("stock.alerts");
    let mut bus = Bus::new(&broker, registry);
    let alerts = Arc::new(Mutex::new(Vec::new()));
    bus.with_state(Inventory::default()).with_state(Thresholds { low: 10 }).with_state(Arc::clone(&alerts));
    bus.subscribe_event(receive).group("inventory");
    bus.subscribe_event(alert).group("alerting");
    bus.start().await?;
    for (sku, units) in [("apple", 4), ("pear", 25), ("apple", 3)] {
        bus.publisher().publish(&StockReceived { sku: sku.into(), units }).await?;
    }
    broker.wait_acked("stock.alerts", "alerting", 2, Duration::from_secs(5)).await?;
    bus.shutdown(Duration::from_secs(5)).await?;
    let alerts = alerts.lock().unwrap().clone();
    for alert in &alerts {
        println!("low stock: {alert}");
    }
    Ok(alerts)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run(MemoryBroker::new()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_inventory_is_shared_by_every_call() {
        // 4 then 3 more apples: both under 10, and the second sees the first's 4.
        let alerts = run(MemoryBroker::new()).await.unwrap();
        assert_eq!(alerts, ["apple at 4 units", "apple at 7 units"]);
    }
}
