//! An order service on the in-memory driver.
//!
//! Billing charges each placed order and publishes `PaymentCaptured`; shipping ships each
//! paid order. Along the way: the payment gateway fails once (retry recovers), a producer
//! sends one order twice (dedup skips the copy), and one order can never be charged (it
//! goes to the dead-letter queue, and the stream moves on).
//!
//! Run it with `cargo run --example quickstart`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewater::memory::MemoryBroker;
use tidewater::middleware::{dlq_headers, CorrelationId, DeadLetter, Deduplicate, Retry, Timeout, Trace};
use tidewater::{wire, Around, Bus, Delivery, Event, EventRegistry, HandlerError};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(type = "order.placed", key = customer)]
struct OrderPlaced {
    order_id: String,
    customer: String,
    cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(type = "payment.captured", key = order_id)]
struct PaymentCaptured {
    order_id: String,
    cents: i64,
}

/// A payment gateway that times out on its first call for order o-2.
#[derive(Default)]
struct Gateway {
    failed_once: Mutex<HashSet<String>>,
    charges: Mutex<Vec<String>>,
}

impl Gateway {
    fn charge(&self, order: &OrderPlaced) -> Result<(), HandlerError> {
        if order.cents <= 0 {
            return Err(HandlerError::permanent(format!("order {} has no amount to charge", order.order_id)));
        }
        if order.order_id == "o-2" && self.failed_once.lock().unwrap().insert(order.order_id.clone()) {
            println!("billing:  gateway timed out charging {} (will retry)", order.order_id);
            return Err(HandlerError::transient("payment gateway timed out"));
        }
        self.charges.lock().unwrap().push(order.order_id.clone());
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = MemoryBroker::new();
    let registry = EventRegistry::new().route::<OrderPlaced>("orders").route::<PaymentCaptured>("payments");
    let mut bus = Bus::new(&broker, registry);

    // The chain every subscriber runs through, outermost first; see tidewater_middleware
    // for the order. Joined with `then`, the layers run as one future: one allocation a
    // message for the whole chain, where a `with_middleware` call for each boxes six.
    let dead_letter = DeadLetter::new(bus.writer());
    bus.with_middleware(
        Trace
            .then(CorrelationId)
            .then(dead_letter)
            .then(Deduplicate::in_memory())
            .then(Retry::new().max_attempts(3).min_delay(Duration::from_millis(20)))
            .then(Timeout(Duration::from_secs(5))),
    );

    let gateway = Arc::new(Gateway::default());
    let publisher = bus.publisher().clone();
    let billing_gateway = Arc::clone(&gateway);
    bus.subscribe_event(move |order: OrderPlaced, _delivery: Delivery| {
        let (gateway, publisher) = (Arc::clone(&billing_gateway), publisher.clone());
        async move {
            gateway.charge(&order)?;
            println!("billing:  charged {} {} cents", order.order_id, order.cents);
            publisher.publish(&PaymentCaptured { order_id: order.order_id, cents: order.cents }).await?;
            Ok(())
        }
    })
    .group("billing")
    .concurrency(2);

    bus.subscribe_event(|paid: PaymentCaptured, delivery: Delivery| async move {
        let correlation = delivery.message().headers.get(wire::CORRELATION_ID).unwrap_or("-").to_owned();
        println!("shipping: shipping {} (correlation {correlation})", paid.order_id);
        Ok::<_, HandlerError>(())
    })
    .group("shipping");

    bus.start().await?;

    let publisher = bus.publisher();
    let orders = [
        OrderPlaced { order_id: "o-1".into(), customer: "ada".into(), cents: 1250 },
        OrderPlaced { order_id: "o-2".into(), customer: "grace".into(), cents: 990 },
        OrderPlaced { order_id: "o-3".into(), customer: "alan".into(), cents: 0 },
    ];
    publisher.publish_batch(&orders).await?;
    // A producer that retries after a lost acknowledgement sends the same message again.
    let resent =
        publisher.encode("orders", &OrderPlaced { order_id: "o-4".into(), customer: "ada".into(), cents: 400 })?;
    publisher.publish_message(resent.clone()).await?;
    publisher.publish_message(resent).await?;

    let wait = Duration::from_secs(10);
    broker.wait_acked("orders", "billing", 5, wait).await?;
    broker.wait_acked("payments", "shipping", 3, wait).await?;

    for dead in broker.published("orders.dlq") {
        println!(
            "dlq:      {} from {} after {} attempt(s): {}",
            dead.id,
            dead.headers.get(dlq_headers::ORIGINAL_TOPIC).unwrap_or("?"),
            dead.headers.get(dlq_headers::ATTEMPTS).unwrap_or("?"),
            dead.headers.get(dlq_headers::ERROR).unwrap_or("?"),
        );
    }

    let report = bus.shutdown(Duration::from_secs(5)).await?;
    for task in &report.tasks {
        println!(
            "report:   {} / {}: {} delivered, {} acked, {} dead-lettered, {} nacked",
            task.topic,
            task.group.as_deref().unwrap_or("-"),
            task.delivered,
            task.acked,
            task.dead_lettered,
            task.nacked
        );
    }
    let charges = gateway.charges.lock().unwrap().clone();
    let o4 = charges.iter().filter(|id| *id == "o-4").count();
    println!("dedup:    o-4 was delivered twice and charged {o4} time(s)");
    let charged = broker.published("payments").len();
    println!("done:     {charged} payments captured, {} order(s) dead-lettered", broker.published("orders.dlq").len());
    if charged != 3 || o4 != 1 || !report.is_clean() {
        return Err("the order flow did not end as expected".into());
    }
    Ok(())
}
