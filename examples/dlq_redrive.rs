//! The way back from the dead-letter queue: an order the service cannot take (its
//! currency is not known yet) goes to `orders.dlq`; once the fix is out, a redrive
//! writes it back to `orders`, without its dead-letter headers, and it is billed.
//!
//! ```sh
//! cargo run --example dlq_redrive
//! ```
//! The same from a shell, on a real broker: `tidewater dlq list orders.dlq` and
//! `tidewater dlq redrive orders.dlq` (see the README).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater::dead_letter::headers;
use tidewater::memory::MemoryBroker;
use tidewater::testing::{Outcome, TestKit};
use tidewater::{handler_fn, Bus, Delivery, EventRegistry, HandlerError, Redrive};

/// What the run saw: the dead letter's error, and the orders billed in the end.
struct Run {
    error: String,
    billed: Vec<String>,
}

async fn run(broker: MemoryBroker) -> Result<Run, Box<dyn std::error::Error>> {
    let kit = TestKit::new();
    let mut bus = Bus::new(&kit.wrap(broker), EventRegistry::new());
    // The "fix": until it is deployed, orders in CHF are refused for good.
    let francs_known = Arc::new(AtomicBool::new(false));
    let billed = Arc::new(Mutex::new(Vec::new()));
    bus.subscribe(
        "orders",
        handler_fn({
            let (francs_known, billed) = (Arc::clone(&francs_known), Arc::clone(&billed));
            move |d: Delivery| {
                let (francs_known, billed) = (Arc::clone(&francs_known), Arc::clone(&billed));
                async move {
                    let order = String::from_utf8_lossy(&d.message().payload).into_owned();
                    if order.ends_with("CHF") && !francs_known.load(Ordering::SeqCst) {
                        return Err(HandlerError::permanent(format!("unknown currency in {order:?}")));
                    }
                    billed.lock().unwrap().push(order);
                    Ok(())
                }
            }
        }),
    )
    .group("billing");
    // The redrive reads the dead-letter topic as a group of its own, writing each dead
    // letter back where it came from. In a service it would run on demand (the CLI's
    // `dlq redrive`); here it starts once the fix is in.
    bus.start().await?;
    for order in ["o-1 12.00 EUR", "o-2 30.00 CHF", "o-3 8.50 EUR"] {
        bus.publisher().publish_bytes("orders", order, "text/plain").await?;
    }
    kit.wait_idle(Duration::from_secs(10)).await?;
    // What the dead-letter topic holds: the order, with why it failed.
    let dead = kit.wait_published("orders.dlq", 1, Duration::from_secs(10)).await?;
    let error = dead[0].headers.get(headers::ERROR).unwrap_or_default().to_owned();
    println!("dead-lettered: {:?} ({error})", String::from_utf8_lossy(&dead[0].payload));

    francs_known.store(true, Ordering::SeqCst);
    println!("the fix is out; redriving orders.dlq");
    bus.subscribe("orders.dlq", Redrive::new(bus.writer())).group("redrive");
    bus.start().await?;
    kit.wait_for("orders", Outcome::Acked, 3, Duration::from_secs(10)).await?;
    bus.shutdown(Duration::from_secs(5)).await?;
    let billed = billed.lock().unwrap().clone();
    println!("billed: {}", billed.join(", "));
    Ok(Run { error, billed })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run = run(MemoryBroker::new()).await?;
    println!("{} orders billed; the one redriven had failed with: {}", run.billed.len(), run.error);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_redriven_order_is_billed_once() {
        let run = run(MemoryBroker::new()).await.unwrap();
        assert_eq!(run.error, "unknown currency in \"o-2 30.00 CHF\"");
        assert_eq!(run.billed, ["o-1 12.00 EUR", "o-3 8.50 EUR", "o-2 30.00 CHF"]);
    }
}
