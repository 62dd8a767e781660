//! Request/reply: a pricing service answers quotes; a checkout asks and waits for the
//! typed price. A request nobody answers is an error in its time, never a hang.
//!
//! ```sh
//! cargo run --example request_reply                                           # in-memory
//! cargo run --example request_reply --features nats -- nats nats://127.0.0.1:4222   # core NATS
//! ```
//!
//! On core NATS the requester uses NATS's own request/reply, and a subject nobody
//! listens on is a `NoResponders` error at once; elsewhere replies come on a reply topic
//! of the requester's own, and nobody answering is a `Timeout`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewater::{Bus, Delivery, Driver, ErrorKind, Event, EventRegistry, HandlerResult, Publisher, Requester, State};

#[derive(Serialize, Deserialize, Event)]
#[event(type = "quote.requested")]
struct Quote {
    sku: String,
    quantity: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Price {
    sku: String,
    cents: u64,
}

/// The pricing service's handler: it answers the request it was given.
async fn price(quote: Quote, request: Delivery, State(publisher): State<Publisher>) -> HandlerResult {
    let cents = u64::from(quote.quantity) * 125;
    publisher.reply(&request, &Price { sku: quote.sku, cents }).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map_or("memory", String::as_str) {
        "memory" => run(tidewater::memory::MemoryBroker::new()).await,
        #[cfg(feature = "nats")]
        "nats" => {
            use tidewater::nats::{NatsConfig, NatsCore};
            let url = args.get(1).map_or("nats://127.0.0.1:4222", String::as_str);
            run(NatsCore::connect(&NatsConfig::new(url)).await?).await
        }
        other => Err(format!("no {other:?} here: memory, or nats with --features nats").into()),
    }
}

async fn run(driver: impl Driver) -> Result<(), Box<dyn std::error::Error>> {
    let run = std::process::id();
    let quotes = format!("quotes-{run}");
    let mut bus = Bus::new(&driver, EventRegistry::new().route::<Quote>(&quotes));
    bus.subscribe_event(price).group("pricing");
    bus.start().await?;

    let requester = Requester::start(&driver, bus.publisher().clone()).await?;
    let price: Price = requester.request(&Quote { sku: "apple".into(), quantity: 4 }, Duration::from_secs(5)).await?;
    println!("checkout: 4 apples cost {} cents (replies via {})", price.cents, requester.inbox());
    if price.cents != 500 {
        return Err(format!("expected 500 cents, got {price:?}").into());
    }

    let nobody = format!("discounts-{run}");
    let pear = Quote { sku: "pear".into(), quantity: 1 };
    match requester.request_to::<_, Price>(&nobody, &pear, Duration::from_millis(500)).await {
        Err(err) if matches!(err.kind(), ErrorKind::Timeout | ErrorKind::NoResponders) => {
            println!("checkout: nobody prices discounts: {err}");
        }
        other => return Err(format!("a request nobody answers should fail, got {other:?}").into()),
    }
    requester.close().await?;
    bus.shutdown(Duration::from_secs(10)).await?;
    Ok(())
}
