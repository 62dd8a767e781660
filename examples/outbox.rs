//! The transactional outbox: an order and the event that announces it are written in
//! one PostgreSQL transaction, so there is never an order without its event or an
//! event without its order; a relay forwards the stored events to the broker.
//!
//! ```sh
//! cargo run --example outbox --features outbox -- postgres://user:pass@127.0.0.1/shop
//! cargo run --example outbox --features outbox   # a private PostgreSQL (Debian's), started for the run
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use tidewater::memory::MemoryBroker;
use tidewater::outbox::{Outbox, Relay};
use tidewater::{Bus, Event, EventRegistry};

#[derive(Serialize, Deserialize, Event)]
#[event(type = "order.placed", key = order_id)]
struct OrderPlaced {
    order_id: String,
    cents: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Without a URL, a server of the run's own (the test kit's), gone when the run ends.
    let (_server, url) = match std::env::args().nth(1) {
        Some(url) => (None, url),
        None => {
            let server = tidewater_testkit::PostgresServer::start();
            let url = server.url();
            (Some(server), url)
        }
    };
    let pool = PgPoolOptions::new().max_connections(4).connect(&url).await?;
    let outbox = Outbox::new();
    outbox.create_table(&pool).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, cents BIGINT NOT NULL)")
        .execute(&pool)
        .await?;

    let broker = MemoryBroker::new();
    let run = std::process::id();
    let bus = Bus::new(&broker, EventRegistry::new().route::<OrderPlaced>(format!("orders-{run}")));
    let publisher = bus.publisher().clone();

    // The business write and its event: both or neither.
    for (order_id, cents, keep) in [("o-1", 1200, true), ("o-2", 800, false), ("o-3", 450, true)] {
        let order_id = format!("{order_id}-{run}");
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO orders VALUES ($1, $2)").bind(&order_id).bind(cents).execute(&mut *tx).await?;
        outbox.store_event(&mut tx, &publisher, &OrderPlaced { order_id: order_id.clone(), cents }).await?;
        if keep {
            tx.commit().await?;
        } else {
            // A failed check after the writes: the order and its event go together.
            tx.rollback().await?;
        }
    }

    // The relay, in a real service a task of its own (`run_until` a stop signal).
    let relay = Relay::new(pool.clone(), bus.writer()).poll_interval(Duration::from_millis(50));
    let forwarded = relay.relay_once().await?.forwarded;
    let published: Vec<tidewater::MessageId> =
        broker.published(&format!("orders-{run}")).iter().map(|m| m.id.clone()).collect();
    println!("relay: forwarded {forwarded} events; on the broker: {}", published.len());
    if forwarded != 2 || published.len() != 2 {
        return Err(format!("expected the two committed orders' events, got {published:?}").into());
    }
    Ok(())
}
