//! Scheduled messages against a real PostgreSQL of the test's own (Debian's server,
//! started by the test kit): a message stored for later goes out when it is due and not
//! before, stamped with that time, in its key's order from then; one taken back never
//! goes out; a rolled-back schedule or cancellation changes nothing; and an outbox
//! without the table of scheduled messages still relays the rest.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tidewater_core::{ErrorKind, Message, MessageId};
use tidewater_memory::MemoryBroker;
use tidewater_outbox::{Outbox, Relay, RelayReport};
use tidewater_testkit::PostgresServer;

async fn setup() -> (PostgresServer, PgPool, Outbox) {
    let server = PostgresServer::start();
    let pool =
        PgPoolOptions::new().max_connections(4).connect(&server.url()).await.expect("connect to the test PostgreSQL");
    let outbox = Outbox::new();
    outbox.create_table(&pool).await.unwrap();
    (server, pool, outbox)
}

fn order(id: &str) -> Message {
    Message::new("orders", id.to_owned()).with_id(id).with_key("o-1")
}

/// Passes until one forwards nothing, adding up what they did.
async fn drain(relay: &Relay) -> RelayReport {
    let mut total = RelayReport::default();
    loop {
        let pass = relay.relay_once().await.expect("a pass");
        total.due += pass.due;
        total.forwarded += pass.forwarded;
        if pass.rows() == 0 {
            return total;
        }
    }
}

fn sent(broker: &MemoryBroker) -> Vec<MessageId> {
    broker.published("orders").into_iter().map(|m| m.id).collect()
}

fn micros(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH).unwrap().as_micros()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_message_goes_out_when_due_in_its_key_s_order_from_then() {
    let (_server, pool, outbox) = setup().await;
    let broker = MemoryBroker::new();
    let relay = Relay::new(pool.clone(), broker.writer());
    let due = SystemTime::now() + Duration::from_millis(1500);
    let mut tx = pool.begin().await.unwrap();
    outbox.store_at(&mut tx, &order("reminder"), due).await.unwrap();
    outbox.store(&mut tx, &order("placed")).await.unwrap();
    tx.commit().await.unwrap();

    // Stored first, but due later: the key's message for now goes out alone.
    let first = drain(&relay).await;
    assert_eq!((first.due, first.forwarded), (0, 1));
    assert_eq!(sent(&broker), ["placed"]);
    assert_eq!(outbox.scheduled_count(&pool).await.unwrap(), 1);
    // A message stored now for the same key is forwarded at once, ahead of the reminder.
    let mut tx = pool.begin().await.unwrap();
    outbox.store(&mut tx, &order("paid")).await.unwrap();
    tx.commit().await.unwrap();
    drain(&relay).await;
    assert_eq!(sent(&broker), ["placed", "paid"]);

    // Then the reminder, once due and not before.
    let waited = tokio::time::Instant::now();
    while sent(&broker).len() < 3 {
        assert!(waited.elapsed() < Duration::from_secs(30), "the reminder never went out");
        let pass = relay.relay_once().await.unwrap();
        if pass.forwarded > 0 {
            assert!(SystemTime::now() >= due, "forwarded before it was due");
            assert_eq!(pass.due, 1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sent(&broker), ["placed", "paid", "reminder"]);
    let reminder = broker.published("orders").pop().unwrap();
    assert_eq!(micros(reminder.timestamp), micros(due), "stamped with the time it was due");
    assert_eq!(reminder.key_str(), Some("o-1"));
    assert_eq!(outbox.scheduled_count(&pool).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_scheduled_in_the_past_goes_out_at_once_with_its_own_later_time() {
    let (_server, pool, outbox) = setup().await;
    let broker = MemoryBroker::new();
    let made = SystemTime::now();
    let mut tx = pool.begin().await.unwrap();
    let message = order("late").with_timestamp(made);
    outbox.store_at(&mut tx, &message, made - Duration::from_secs(3600)).await.unwrap();
    tx.commit().await.unwrap();
    let report = drain(&Relay::new(pool.clone(), broker.writer())).await;
    assert_eq!((report.due, report.forwarded), (1, 1));
    let late = broker.published("orders").pop().unwrap();
    assert_eq!(micros(late.timestamp), micros(made), "its own time, the later of the two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_message_never_goes_out_and_rollbacks_change_nothing() {
    let (_server, pool, outbox) = setup().await;
    let broker = MemoryBroker::new();
    let relay = Relay::new(pool.clone(), broker.writer());
    let later = SystemTime::now() + Duration::from_secs(3600);

    let mut tx = pool.begin().await.unwrap();
    outbox.store_at(&mut tx, &order("rolled-back"), later).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(outbox.scheduled_count(&pool).await.unwrap(), 0, "a rolled-back schedule stores nothing");

    let mut tx = pool.begin().await.unwrap();
    outbox.store_at(&mut tx, &order("timeout"), later).await.unwrap();
    outbox.store_at(&mut tx, &order("kept"), SystemTime::now()).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    assert!(outbox.cancel_scheduled(&mut tx, "timeout").await.unwrap());
    tx.rollback().await.unwrap();
    assert_eq!(outbox.scheduled_count(&pool).await.unwrap(), 2, "a rolled-back cancellation keeps it");

    let mut tx = pool.begin().await.unwrap();
    assert!(outbox.cancel_scheduled(&mut tx, "timeout").await.unwrap(), "still waiting, so taken back");
    assert!(!outbox.cancel_scheduled(&mut tx, "no-such-id").await.unwrap());
    tx.commit().await.unwrap();

    assert_eq!(drain(&relay).await.forwarded, 1);
    assert_eq!(sent(&broker), ["kept"]);
    let mut tx = pool.begin().await.unwrap();
    assert!(!outbox.cancel_scheduled(&mut tx, "kept").await.unwrap(), "gone out already");
    tx.commit().await.unwrap();
    assert_eq!(outbox.scheduled_count(&pool).await.unwrap(), 0);
}

/// An outbox whose migrations predate scheduled messages still relays the rest; storing
/// for later says what is missing; `create_table` adds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_without_the_scheduled_table_relays_the_rest_and_says_what_is_missing() {
    let (_server, pool, outbox) = setup().await;
    sqlx::query("DROP TABLE tidewater_outbox_scheduled").execute(&pool).await.unwrap();
    let broker = MemoryBroker::new();
    let relay = Relay::new(pool.clone(), broker.writer());
    let mut tx = pool.begin().await.unwrap();
    outbox.store(&mut tx, &order("now")).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(drain(&relay).await.forwarded, 1);

    let mut tx = pool.begin().await.unwrap();
    let err = outbox.store_at(&mut tx, &order("later"), SystemTime::now()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("Outbox::create_table"), "{err}");
    drop(tx);

    outbox.create_table(&pool).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    outbox.store_at(&mut tx, &order("later"), SystemTime::now()).await.unwrap();
    tx.commit().await.unwrap();
    // A new relay looks at once (the first looks again a minute after it found none).
    let report = drain(&Relay::new(pool.clone(), broker.writer())).await;
    assert_eq!((report.due, report.forwarded), (1, 1));
    assert_eq!(sent(&broker), ["now", "later"]);
}
