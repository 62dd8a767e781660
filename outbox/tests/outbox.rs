//! The outbox against a real PostgreSQL of the test's own (Debian's server, started by
//! the test kit in a temporary directory): a rolled-back transaction publishes nothing;
//! a relay stopped dead mid-run loses nothing (its duplicates are counted); two relays at
//! once never reorder a key.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tidewater_core::{Message, Writer};
use tidewater_memory::MemoryBroker;
use tidewater_outbox::{Outbox, Relay};
use tidewater_testkit::PostgresServer;

/// A server of the test's own, a pool on it, and the outbox table made.
async fn setup() -> (PostgresServer, PgPool, Outbox) {
    let server = PostgresServer::start();
    let pool =
        PgPoolOptions::new().max_connections(8).connect(&server.url()).await.expect("connect to the test PostgreSQL");
    let outbox = Outbox::new();
    outbox.create_table(&pool).await.unwrap();
    (server, pool, outbox)
}

/// Stores `n` messages over `keys` keys in one committed transaction; message `i` has
/// id `m{i}` and key `k{i % keys}`.
async fn store(pool: &PgPool, outbox: &Outbox, n: usize, keys: usize) {
    let mut tx = pool.begin().await.unwrap();
    for i in 0..n {
        let message =
            Message::new("orders", format!("{i}")).with_id(format!("m{i}")).with_key(format!("k{}", i % keys));
        outbox.store(&mut tx, &message).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Everything on `orders` so far, in the order it was written.
fn written(broker: &MemoryBroker) -> Vec<Message> {
    broker.published("orders")
}

async fn remaining(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM tidewater_outbox").fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_publishes_nothing() {
    let (_server, pool, outbox) = setup().await;
    sqlx::query("CREATE TABLE orders (id TEXT PRIMARY KEY)").execute(&pool).await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO orders VALUES ('o-1')").execute(&mut *tx).await.unwrap();
    outbox.store(&mut tx, &Message::new("orders", "o-1").with_id("rolled-back")).await.unwrap();
    tx.rollback().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO orders VALUES ('o-2')").execute(&mut *tx).await.unwrap();
    outbox.store(&mut tx, &Message::new("orders", "o-2").with_id("committed")).await.unwrap();
    tx.commit().await.unwrap();

    let broker = MemoryBroker::new();
    let relay = Relay::new(pool.clone(), broker.writer());
    while relay.relay_once().await.unwrap() > 0 {}
    let ids: Vec<tidewater_core::MessageId> = written(&broker).into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["committed"], "only what was committed is relayed");
    assert_eq!(remaining(&pool).await, 0, "and deleted once relayed");
}

/// A writer slow enough that a relay can be stopped in the middle of a run.
struct Slow(Arc<dyn Writer>);

#[async_trait::async_trait]
impl Writer for Slow {
    fn driver(&self) -> &'static str {
        self.0.driver()
    }

    async fn write(&self, batch: Vec<Message>) -> tidewater_core::Result<()> {
        self.0.write(batch).await?;
        // After the broker took the batch and before the relay deletes it: where a
        // relay that dies leaves duplicates behind.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stopped_dead_loses_nothing() {
    const N: usize = 2000;
    let (_server, pool, outbox) = setup().await;
    store(&pool, &outbox, N, 10).await;
    let broker = MemoryBroker::new();

    // The task is aborted mid-run, as a process killed would stop: its open
    // transaction goes with its connection.
    let first = {
        let relay = Relay::new(pool.clone(), Arc::new(Slow(broker.writer()))).batch(50);
        tokio::spawn(async move { relay.run_until(std::future::pending()).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while written(&broker).len() < N / 4 {
        assert!(tokio::time::Instant::now() < deadline, "the first relay forwards");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.abort();
    let _ = first.await;
    let left = remaining(&pool).await;
    assert!(left > 0, "stopped before the end (else the test proves nothing)");

    let second = Relay::new(pool.clone(), broker.writer());
    while second.relay_once().await.unwrap() > 0 {}
    assert_eq!(remaining(&pool).await, 0);
    let all = written(&broker);
    let distinct: HashSet<&str> = all.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(distinct.len(), N, "every stored message was relayed");
    println!("relay stopped with {left} rows left: {} messages written, {} duplicates", all.len(), all.len() - N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_never_reorder_a_key() {
    const N: usize = 3000;
    let (_server, pool, outbox) = setup().await;
    store(&pool, &outbox, N, 20).await;
    let broker = MemoryBroker::new();

    let relays: Vec<_> = (0..2)
        .map(|_| {
            let relay = Relay::new(pool.clone(), broker.writer()).batch(25);
            tokio::spawn(async move {
                let mut forwarded = 0;
                loop {
                    match relay.relay_once().await.unwrap() {
                        0 => break forwarded,
                        n => forwarded += n,
                    }
                }
            })
        })
        .collect();
    let mut shares = Vec::new();
    for relay in relays {
        shares.push(relay.await.unwrap());
    }
    // A relay can find every bucket taken in a pass and stop early: finish the rest.
    let last = Relay::new(pool.clone(), broker.writer());
    while last.relay_once().await.unwrap() > 0 {}
    assert_eq!(remaining(&pool).await, 0);

    let mut by_key: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for m in written(&broker) {
        let i: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        by_key.entry(m.key.clone().unwrap().to_vec()).or_default().push(i);
    }
    assert_eq!(by_key.values().map(Vec::len).sum::<usize>(), N, "each once");
    for (key, order) in &by_key {
        assert!(order.windows(2).all(|w| w[0] < w[1]), "key {key:?} in order: {order:?}");
    }
    println!("two relays forwarded {shares:?} messages side by side");
    assert!(shares.iter().all(|&n| n > 0), "both relays worked: {shares:?}");
}
