//! The same order service on whichever broker you pick: only the line that connects
//! changes; the handlers, the middleware and the shutdown are written once, generic over
//! the driver.
//!
//! ```sh
//! cargo run --example any_broker                                          # in-memory
//! cargo run --example any_broker --features nats -- nats nats://127.0.0.1:4222
//! cargo run --example any_broker --features kafka -- kafka 127.0.0.1:9092
//! cargo run --example any_broker --features pulsar -- pulsar pulsar://127.0.0.1:6650
//! cargo run --example any_broker --features streambus -- streambus 127.0.0.1:9400
//! ```
//!
//! NATS runs on JetStream, which keeps messages, so nothing is lost while a handler
//! retries; the streams are created as the topics are first used. Each run uses topics
//! of its own, so runs do not see each other's messages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tidewater::middleware::Retry;
use tidewater::{handler_fn, Bus, Delivery, Driver, Event, EventRegistry, HandlerError};
use tokio::sync::Notify;

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(type = "order.placed", key = order_id)]
struct OrderPlaced {
    order_id: String,
    cents: i64,
}

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(type = "payment.captured", key = order_id)]
struct PaymentCaptured {
    order_id: String,
    cents: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let broker = args.first().map_or("memory", String::as_str);
    let given = args.get(1).map(String::as_str);
    println!("broker:   {broker} {}", given.unwrap_or("(its default address)"));
    match broker {
        "memory" => run(&tidewater::memory::MemoryBroker::new()).await,
        #[cfg(feature = "nats")]
        "nats" => {
            use tidewater::nats::{JetStream, JetStreamConfig, NatsConfig};
            let config = NatsConfig::new(given.unwrap_or("nats://127.0.0.1:4222"));
            run(&JetStream::connect(&config, JetStreamConfig::default()).await?).await
        }
        #[cfg(feature = "kafka")]
        "kafka" => {
            use tidewater::kafka::{Kafka, KafkaConfig};
            run(&Kafka::connect(KafkaConfig::new(given.unwrap_or("127.0.0.1:9092"))).await?).await
        }
        #[cfg(feature = "pulsar")]
        "pulsar" => {
            use tidewater::pulsar::{Pulsar, PulsarConfig};
            run(&Pulsar::connect(PulsarConfig::new(given.unwrap_or("pulsar://127.0.0.1:6650"))).await?).await
        }
        #[cfg(feature = "streambus")]
        "streambus" => {
            use tidewater::streambus::{StreamBus, StreamBusConfig};
            run(&StreamBus::connect(StreamBusConfig::new(given.unwrap_or("127.0.0.1:9400"))).await?).await
        }
        // Reached for the drivers this build left out; with all of them in, never.
        #[allow(unreachable_patterns)]
        "nats" | "kafka" | "pulsar" | "streambus" => {
            Err(format!("this build has no {broker} driver: run it with --features {broker}").into())
        }
        other => Err(format!("unknown broker {other:?}: memory, nats, kafka, pulsar or streambus").into()),
    }
}

/// The service: billing charges each order and publishes a payment; shipping ships each
/// payment; an order that can never be charged goes to the dead-letter topic. Returns
/// once every order has ended one way or the other, and the bus has shut down.
async fn run(driver: &impl Driver) -> Result<(), Box<dyn std::error::Error>> {
    let run_id = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let (orders, payments) = (format!("orders-{run_id}"), format!("payments-{run_id}"));
    let registry = EventRegistry::new().route::<OrderPlaced>(&orders).route::<PaymentCaptured>(&payments);
    let mut bus = Bus::new(driver, registry);
    // A permanent failure goes to `<topic>.dlq` by default; Retry handles transient ones.
    bus.with_middleware(Retry::new().max_attempts(3).min_delay(Duration::from_millis(50)));

    let progress = Arc::new(Progress::default());
    let publisher = bus.publisher().clone();
    bus.subscribe_event(move |order: OrderPlaced, _d: Delivery| {
        let publisher = publisher.clone();
        async move {
            if order.cents <= 0 {
                return Err(HandlerError::permanent(format!("order {} has nothing to charge", order.order_id)));
            }
            println!("billing:  charged {} {} cents", order.order_id, order.cents);
            publisher.publish(&PaymentCaptured { order_id: order.order_id, cents: order.cents }).await?;
            Ok(())
        }
    })
    .group("billing");

    let shipped = Arc::clone(&progress);
    bus.subscribe_event(move |paid: PaymentCaptured, _d: Delivery| {
        let progress = Arc::clone(&shipped);
        async move {
            println!("shipping: shipped {}", paid.order_id);
            progress.count(&progress.shipped);
            Ok::<_, HandlerError>(())
        }
    })
    .group("shipping");

    // The dead-letter topic is a topic like any other: here it is only watched.
    let dead = Arc::clone(&progress);
    bus.subscribe(
        format!("{orders}.dlq"),
        handler_fn(move |d: Delivery| {
            let progress = Arc::clone(&dead);
            async move {
                let why = d.message().headers.get(tidewater::middleware::dlq_headers::ERROR).unwrap_or("?");
                println!("dlq:      {} ({why})", d.message().id);
                progress.count(&progress.dead);
                Ok::<_, HandlerError>(())
            }
        }),
    )
    .group("watch");

    bus.start().await?;
    let placed = [
        OrderPlaced { order_id: "o-1".into(), cents: 1250 },
        OrderPlaced { order_id: "o-2".into(), cents: 990 },
        OrderPlaced { order_id: "o-3".into(), cents: 0 },
    ];
    bus.publisher().publish_batch(&placed).await?;

    let finished = tokio::time::timeout(Duration::from_secs(30), progress.wait(2, 1)).await;
    let report = bus.shutdown(Duration::from_secs(10)).await?;
    for task in &report.tasks {
        println!(
            "report:   {}: {} delivered, {} acked, {} dead-lettered",
            task.topic, task.delivered, task.acked, task.dead_lettered
        );
    }
    if finished.is_err() || !report.is_clean() {
        return Err("the orders did not all end within 30 s".into());
    }
    println!("done:     2 orders shipped, 1 dead-lettered");
    Ok(())
}

/// How many payments were shipped and orders dead-lettered, with a signal on each.
#[derive(Default)]
struct Progress {
    shipped: AtomicUsize,
    dead: AtomicUsize,
    changed: Notify,
}

impl Progress {
    fn count(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    async fn wait(&self, shipped: usize, dead: usize) {
        loop {
            // Listen before looking, so a count between the two is not missed.
            let changed = self.changed.notified();
            if self.shipped.load(Ordering::SeqCst) >= shipped && self.dead.load(Ordering::SeqCst) >= dead {
                return;
            }
            changed.await;
        }
    }
}
