//! Consume, transform, produce, all or nothing: billing turns each order into an invoice
//! and a ledger entry in one transaction that also commits the order's position, so a
//! crash between the two writes leaves neither, and a restart bills no order twice. An
//! order in a currency billing cannot book fails after its invoice was written: the
//! transaction is dropped, and no reader ever sees that invoice.
//!
//! ```sh
//! cargo run --example transactions                                      # in-memory
//! cargo run --example transactions --features kafka -- kafka 127.0.0.1:9092
//! ```
//!
//! Kafka and the memory driver have transactions; the others answer `Unsupported`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tidewater::{
    Bus, Delivery, Driver, Event, EventRegistry, HandlerError, HandlerResult, Publisher, StartFrom, State, Transactions,
};
use tokio::sync::Notify;

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(type = "order.placed", key = customer)]
struct OrderPlaced {
    order_id: String,
    customer: String,
    cents: i64,
    currency: String,
}

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(type = "invoice.issued", key = customer)]
struct Invoiced {
    order_id: String,
    customer: String,
    cents: i64,
}

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(type = "ledger.booked")]
struct Booked {
    order_id: String,
    cents: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map_or("memory", String::as_str) {
        "memory" => run(&tidewater::memory::MemoryBroker::new()).await,
        #[cfg(feature = "kafka")]
        "kafka" => {
            use tidewater::kafka::{Kafka, KafkaConfig};
            let brokers = args.get(1).map_or("127.0.0.1:9092", String::as_str);
            run(&Kafka::connect(KafkaConfig::new(brokers)).await?).await
        }
        other => Err(format!("no {other:?} here: memory, or kafka with --features kafka").into()),
    }
}

/// Bills an order: the invoice, then the ledger entry, then the order's position, then
/// the commit. Any `?` before the commit drops the transaction, which aborts it.
async fn bill(
    order: OrderPlaced,
    delivery: Delivery,
    State(transactions): State<Arc<dyn Transactions>>,
    State(publisher): State<Publisher>,
) -> HandlerResult {
    let mut tx = transactions.begin().await?;
    let invoice = Invoiced { order_id: order.order_id.clone(), customer: order.customer.clone(), cents: order.cents };
    tx.publish(&publisher, &invoice).await?;
    if order.currency != "EUR" {
        return Err(HandlerError::permanent(format!("order {}: cannot book {}", order.order_id, order.currency)));
    }
    tx.publish(&publisher, &Booked { order_id: order.order_id.clone(), cents: order.cents }).await?;
    tx.consumed(&delivery)?;
    tx.commit().await?;
    println!("billing:  invoiced and booked {} ({} cents)", order.order_id, order.cents);
    Ok(())
}

async fn run(driver: &impl Driver) -> Result<(), Box<dyn std::error::Error>> {
    let run_id = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let registry = EventRegistry::new()
        .route::<OrderPlaced>(format!("orders-{run_id}"))
        .route::<Invoiced>(format!("invoices-{run_id}"))
        .route::<Booked>(format!("ledger-{run_id}"));
    let mut bus = Bus::new(driver, registry);
    // One transactional id per billing instance, the same after a restart.
    let transactions = driver.transactions(&format!("billing-{run_id}"))?;
    let publisher = bus.publisher().clone();
    bus.with_state(transactions).with_state(publisher.clone());
    bus.subscribe_event(bill).group("billing").start_from(StartFrom::Earliest);

    // What a reader of the invoices sees (reading committed data only, as Kafka's
    // readers do by default).
    let seen = Arc::new((Mutex::new(Vec::new()), Notify::new()));
    let watched = Arc::clone(&seen);
    bus.subscribe_event(move |invoice: Invoiced, _d: Delivery| {
        let seen = Arc::clone(&watched);
        async move {
            println!("invoices: {} for {} cents", invoice.order_id, invoice.cents);
            seen.0.lock().unwrap().push(invoice.order_id);
            seen.1.notify_one();
            Ok::<_, HandlerError>(())
        }
    })
    .group("accounting")
    .start_from(StartFrom::Earliest);
    bus.start().await?;

    // One customer, so one partition: the refused order's invoice, had it landed,
    // would come before the two after it.
    for (order_id, cents, currency) in [("o-1", 1200, "CHF"), ("o-2", 800, "EUR"), ("o-3", 450, "EUR")] {
        let order = OrderPlaced { order_id: order_id.into(), customer: "c-7".into(), cents, currency: currency.into() };
        publisher.publish(&order).await?;
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.0.lock().unwrap().len() < 2 {
            seen.1.notified().await;
        }
    })
    .await
    .map_err(|_| "the two invoices did not arrive within 30 s")?;
    bus.shutdown(Duration::from_secs(10)).await?;

    let invoiced = seen.0.lock().unwrap().clone();
    println!("done:     invoices seen {invoiced:?}; o-1 was refused and its invoice never landed");
    if invoiced != ["o-2", "o-3"] {
        return Err(format!("expected the invoices of o-2 and o-3 only, saw {invoiced:?}").into());
    }
    Ok(())
}
