//! Batch handlers: a handler that stores readings takes up to 50 at a time (or what
//! came within 100 ms of the first), writes them in one go, and reports the one reading
//! it could not store; only that reading comes again, and a sensor's readings stay in
//! order across batches.
//!
//! ```sh
//! cargo run --example batches
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewater::memory::MemoryBroker;
use tidewater::{BatchError, Bus, Event, EventRegistry, HandlerError};
use tokio::sync::Notify;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(type = "reading.taken", key = sensor)]
struct Reading {
    sensor: String,
    seq: u32,
    celsius: f32,
}

/// The "database": rows stored, batches written, and whether the bad row has been
/// refused once already (the second time, the lock it waited for is gone).
#[derive(Default)]
struct Store {
    rows: Vec<Reading>,
    batches: usize,
    refused: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    const READINGS: u32 = 300;
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new().route::<Reading>("readings"));
    let store = Arc::new(Mutex::new(Store::default()));
    let stored = Arc::new(Notify::new());

    let (db, done) = (Arc::clone(&store), Arc::clone(&stored));
    bus.subscribe_event_batch(50, Duration::from_millis(100), move |batch: Vec<Reading>| {
        let (db, done) = (Arc::clone(&db), Arc::clone(&done));
        async move {
            let mut db = db.lock().unwrap();
            db.batches += 1;
            let mut failed = BatchError::none();
            // One INSERT of many rows, in a real service; here, a push each.
            for (i, reading) in batch.into_iter().enumerate() {
                if reading.sensor == "s-3" && reading.seq == 42 && !db.refused {
                    db.refused = true;
                    failed = failed.fail(i, HandlerError::transient("row locked by a vacuum; try again"));
                    continue;
                }
                db.rows.push(reading);
            }
            done.notify_one();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(failed)
            }
        }
    })
    .group("storage")
    .nack_delay(Some(Duration::from_millis(20)));
    bus.start().await?;

    for seq in 0..READINGS {
        let reading = Reading { sensor: format!("s-{}", seq % 5), seq: seq / 5, celsius: 20.0 + (seq % 7) as f32 };
        bus.publisher().publish(&reading).await?;
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while store.lock().unwrap().rows.len() < READINGS as usize {
            stored.notified().await;
        }
    })
    .await
    .map_err(|_| "not every reading was stored within 30 s")?;
    bus.shutdown(Duration::from_secs(10)).await?;

    let db = store.lock().unwrap();
    println!(
        "stored {} readings in {} batches; s-3 #42 was refused once and stored on its second delivery",
        db.rows.len(),
        db.batches
    );
    if db.batches >= READINGS as usize / 2 {
        return Err(format!("{} batches for {READINGS} readings: they were not batched", db.batches).into());
    }
    for sensor in 0..5 {
        let name = format!("s-{sensor}");
        let seqs: Vec<u32> = db.rows.iter().filter(|r| r.sensor == name).map(|r| r.seq).collect();
        // The refused reading was stored after the ones behind it: only it is out of place.
        let misplaced = seqs.windows(2).filter(|w| w[0] > w[1]).count();
        println!("sensor {name}: {} readings, {misplaced} out of order", seqs.len());
        if seqs.len() != 60 || (name != "s-3" && misplaced > 0) || misplaced > 1 {
            return Err(format!("sensor {name}: readings {seqs:?}").into());
        }
    }
    Ok(())
}
