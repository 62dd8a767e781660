//! Outbox relay throughput: 20,000 stored 1 KiB messages over 100 keys, forwarded to the
//! in-memory driver by one relay and by two side by side, against a PostgreSQL of its
//! own (the test kit's). Also the storing itself: one transaction of 20,000 inserts.
//!
//! Run: `cargo bench -p tidewater-outbox --bench relay_throughput`.

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use tidewater_core::Message;
use tidewater_memory::MemoryBroker;
use tidewater_outbox::{Outbox, Relay};

const N: usize = 20_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = tidewater_testkit::PostgresServer::start();
    let pool = PgPoolOptions::new().max_connections(8).connect(&server.url()).await.expect("connect");
    let outbox = Outbox::new();
    outbox.create_table(&pool).await.expect("the table");
    let payload = bytes::Bytes::from(vec![b'x'; 1024]);
    println!("| relays | stored msg/s | relayed msg/s |");
    println!("|---|---|---|");
    for relays in [1usize, 2] {
        let started = Instant::now();
        let mut tx = pool.begin().await.unwrap();
        for i in 0..N {
            let message =
                Message::new("orders", payload.clone()).with_id(format!("m{i}")).with_key(format!("k{}", i % 100));
            outbox.store(&mut tx, &message).await.unwrap();
        }
        tx.commit().await.unwrap();
        let stored = started.elapsed();

        let broker = MemoryBroker::new();
        let started = Instant::now();
        let tasks: Vec<_> = (0..relays)
            .map(|_| {
                let relay = Relay::new(pool.clone(), broker.writer()).batch(100);
                tokio::spawn(async move { while relay.relay_once().await.unwrap().rows() > 0 {} })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let last = Relay::new(pool.clone(), broker.writer());
        while last.relay_once().await.unwrap().rows() > 0 {}
        let relayed = started.elapsed();
        assert_eq!(broker.published("orders").len(), N);
        let rate = |d: Duration| N as f64 / d.as_secs_f64();
        println!("| {relays} | {:.0} | {:.0} |", rate(stored), rate(relayed));
    }
}
