//! Custom middleware in one closure: a tenant check that refuses messages without a
//! tenant before any handler sees them (they go to the dead-letter topic, since retrying
//! cannot add a header), and a timer around every call.
//!
//! ```sh
//! cargo run --example custom_middleware
//! ```

use std::time::{Duration, Instant};

use tidewater::memory::MemoryBroker;
use tidewater::testing::TestKit;
use tidewater::{handler_fn, middleware_fn, Bus, Delivery, EventRegistry, HandlerError, Message, Next};

/// Messages must say which tenant they belong to.
async fn require_tenant(delivery: Delivery, next: Next) -> Result<(), HandlerError> {
    if delivery.message().headers.get("tenant").is_none() {
        return Err(HandlerError::permanent(format!("message {} names no tenant", delivery.message().id)));
    }
    next.run(delivery).await
}

/// Runs the service on `broker` with both middleware and publishes two messages, one
/// without a tenant; returns the kit that recorded it all.
async fn run(broker: MemoryBroker) -> Result<TestKit, Box<dyn std::error::Error>> {
    let kit = TestKit::new();
    let mut bus = Bus::new(&kit.wrap(broker), EventRegistry::new());
    bus.with_middleware(middleware_fn(|delivery: Delivery, next: Next| async move {
        let (id, started) = (delivery.message().id.clone(), Instant::now());
        let result = next.run(delivery).await;
        println!("timing:   {id} took {:?} ({})", started.elapsed(), if result.is_ok() { "ok" } else { "failed" });
        result
    }))
    .with_middleware(middleware_fn(require_tenant));
    bus.subscribe(
        "invoices",
        handler_fn(|d: Delivery| async move {
            println!("invoices: {} for tenant {}", d.message().id, d.message().headers.get("tenant").unwrap_or("?"));
            Ok::<_, HandlerError>(())
        }),
    )
    .group("billing");
    bus.start().await?;
    let writer = bus.writer();
    writer.write(vec![Message::new("invoices", "{}").with_id("inv-1").with_header("tenant", "acme")]).await?;
    writer.write(vec![Message::new("invoices", "{}").with_id("inv-2")]).await?;
    kit.wait_idle(Duration::from_secs(10)).await?;
    bus.shutdown(Duration::from_secs(5)).await?;
    Ok(kit)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kit = run(MemoryBroker::new()).await?;
    for dead in kit.published("invoices.dlq") {
        let why = dead.headers.get(tidewater::dead_letter::headers::ERROR).unwrap_or("?");
        println!("dlq:      {} ({why})", dead.id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tidewater::testing::Outcome;

    use super::*;

    #[tokio::test]
    async fn a_message_without_a_tenant_never_reaches_the_handler() {
        let kit = run(MemoryBroker::new()).await.unwrap();
        assert_eq!(kit.count("invoices", Outcome::Acked), 1);
        let dead = kit.published("invoices.dlq");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].id, "inv-2");
        assert_eq!(dead[0].headers.get(tidewater::dead_letter::headers::ERROR), Some("message inv-2 names no tenant"));
    }
}
