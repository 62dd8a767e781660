//! The transactional outbox: an order and the event that announces it are written in
//! one PostgreSQL transaction, so there is never an order without its event or an
//! event without its order; a relay forwards the stored events to the broker.
//!
//! And the inbox, on the consuming side: billing charges each order in a transaction
//! that also claims the message for its group and stores the payment's event, so an
//! order delivered twice is charged once, and its payment announced once.
//!
//! And a scheduled message: each order stores, with it, a reminder that its payment is
//! overdue, to go out in 15 minutes; the charge takes it back in its own transaction, so
//! a paid order's reminder never goes out.
//!
//! ```sh
//! cargo run --example outbox --features outbox -- postgres://user:pass@127.0.0.1/shop
//! cargo run --example outbox --features outbox   # a private PostgreSQL (Debian's), started for the run
//! ```

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use tidewater::memory::MemoryBroker;
use tidewater::outbox::{Inbox, Outbox, Relay};
use tidewater::{Bus, Delivery, Event, EventRegistry, HandlerResult, Publisher, State};

#[derive(Serialize, Deserialize, Event)]
#[event(type = "order.placed", key = order_id)]
struct OrderPlaced {
    order_id: String,
    cents: i64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(type = "payment.charged", key = order_id)]
struct PaymentCharged {
    order_id: String,
    cents: i64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(type = "payment.overdue", key = order_id)]
struct PaymentOverdue {
    order_id: String,
}

/// The id of an order's overdue reminder: known to both the order and its charge.
fn overdue_id(order_id: &str) -> String {
    format!("overdue-{order_id}")
}

/// What billing's handler writes through.
#[derive(Clone)]
struct Books {
    pool: sqlx::PgPool,
    inbox: Inbox,
    outbox: Outbox,
}

/// Charges an order once: the claim, the charge, the payment's event and taking back the
/// overdue reminder in one transaction. A second delivery of the order finds it claimed
/// and does nothing.
async fn charge(
    order: OrderPlaced,
    delivery: Delivery,
    State(books): State<Books>,
    State(out): State<Publisher>,
) -> HandlerResult {
    let mut tx = books.pool.begin().await?;
    if !books.inbox.claim(&mut tx, &delivery).await? {
        return Ok(());
    }
    sqlx::query("INSERT INTO charges VALUES ($1, $2)")
        .bind(&order.order_id)
        .bind(order.cents)
        .execute(&mut *tx)
        .await?;
    books.outbox.cancel_scheduled(&mut tx, &overdue_id(&order.order_id)).await?;
    books.outbox.store_event(&mut tx, &out, &PaymentCharged { order_id: order.order_id, cents: order.cents }).await?;
    tx.commit().await?;
    Ok(())
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
    let inbox = Inbox::new();
    inbox.create_table(&pool).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS charges (order_id TEXT NOT NULL, cents BIGINT NOT NULL)")
        .execute(&pool)
        .await?;

    let broker = MemoryBroker::new();
    let run = std::process::id();
    let (orders, payments) = (format!("orders-{run}"), format!("payments-{run}"));
    let registry = EventRegistry::new()
        .route::<OrderPlaced>(&orders)
        .route::<PaymentCharged>(&payments)
        .route::<PaymentOverdue>(&payments);
    let mut bus = Bus::new(&broker, registry);
    let publisher = bus.publisher().clone();

    // The business write and its event: both or neither.
    for (order_id, cents, keep) in [("o-1", 1200, true), ("o-2", 800, false), ("o-3", 450, true)] {
        let order_id = format!("{order_id}-{run}");
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO orders VALUES ($1, $2)").bind(&order_id).bind(cents).execute(&mut *tx).await?;
        outbox.store_event(&mut tx, &publisher, &OrderPlaced { order_id: order_id.clone(), cents }).await?;
        let overdue =
            publisher.encode(&payments, &PaymentOverdue { order_id: order_id.clone() })?.with_id(overdue_id(&order_id));
        outbox.store_at(&mut tx, &overdue, SystemTime::now() + Duration::from_secs(15 * 60)).await?;
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

    // Billing, with the first order delivered twice (as after a consumer's crash
    // between its commit and its acknowledgement).
    bus.with_state(Books { pool: pool.clone(), inbox, outbox: outbox.clone() });
    bus.subscribe_event(charge).group("billing");
    bus.start().await?;
    let again = broker.published(&orders).remove(0);
    broker.writer().write(vec![again]).await?;
    broker.wait_acked(&orders, "billing", 3, Duration::from_secs(10)).await?;
    // The relay again, before the bus closes the writer it shares.
    let forwarded = relay.relay_once().await?.forwarded;
    bus.shutdown(Duration::from_secs(5)).await?;
    let charged: i64 = sqlx::query_scalar("SELECT count(*) FROM charges WHERE order_id LIKE $1")
        .bind(format!("%-{run}"))
        .fetch_one(&pool)
        .await?;
    let announced = broker.published(&payments).len();
    println!("billing: 3 deliveries of 2 orders, {charged} charged, {announced} payments announced");
    if charged != 2 || forwarded != 2 || announced != 2 {
        return Err(
            format!("expected each order charged and announced once: {charged} charges, {announced} events").into()
        );
    }
    let overdue: i64 = sqlx::query_scalar("SELECT count(*) FROM tidewater_outbox_scheduled WHERE id LIKE $1")
        .bind(format!("overdue-%-{run}"))
        .fetch_one(&pool)
        .await?;
    println!("overdue reminders still scheduled: {overdue}");
    if overdue != 0 {
        return Err(format!("expected each paid order's reminder taken back, {overdue} left").into());
    }
    Ok(())
}
