//! Batch handlers: gathered up to a size or a linger, settled one delivery at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater_core::{batch_handler_fn, BatchError, Delivery, EventRegistry, HandlerError, SubscriberScheduler};

use crate::cases::{topic, GRACE};
use crate::support::{batch, skip, write_each};
use crate::Fixture;

/// Case 22: A batch handler gets batches of at most its size, gathered within its
/// linger; the one delivery it reports failed is redelivered and the others are not
/// (where the broker settles exactly); messages of a key keep their order across
/// batches; and on a log the commit passes no unsettled message (the failed one comes
/// again although its batch-mates after it were acked).
pub async fn batches_settle_each_delivery(f: Arc<dyn Fixture>) {
    const N: usize = 60;
    const MAX: usize = 10;
    let caps = f.capabilities();
    if !caps.redelivery_on_nack {
        return skip("batches_settle_each_delivery", "redelivery_on_nack");
    }
    let topic = topic(&*f, "batch").await;
    let victim = format!("{topic}-7");
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let handler = {
        let (sizes, seen, victim) = (Arc::clone(&sizes), Arc::clone(&seen), victim.clone());
        batch_handler_fn(move |batch: Vec<Delivery>| {
            let (sizes, seen, victim) = (Arc::clone(&sizes), Arc::clone(&seen), victim.clone());
            async move {
                sizes.lock().unwrap().push(batch.len());
                let mut seen = seen.lock().unwrap();
                let mut result = Ok(());
                for (i, delivery) in batch.iter().enumerate() {
                    let first_time = !seen.iter().any(|d| d.message().id == delivery.message().id);
                    if delivery.message().id == victim && first_time {
                        result = Err(BatchError::none().fail(i, HandlerError::transient("the row was locked")));
                    }
                    seen.push(delivery.clone());
                }
                result
            }
        })
    };
    let mut scheduler = SubscriberScheduler::new(f.reader().await, EventRegistry::new());
    scheduler
        .subscribe_batch(&topic, MAX, Duration::from_millis(200), handler)
        .group("batchers")
        .nack_delay(Some(Duration::from_millis(50)));
    if let Err(err) = scheduler.start().await {
        panic!("subscribing a batch handler to {topic} failed: {err}");
    }
    write_each(&*f.writer().await, batch(&topic, N, |i, m| m.with_key(format!("k{}", i % 6)))).await;

    let everything = tokio::time::timeout(caps.patience, async {
        loop {
            {
                let seen = seen.lock().unwrap();
                let distinct: std::collections::HashSet<&str> = seen.iter().map(|d| d.message().id.as_str()).collect();
                let victim_again = seen.iter().filter(|d| d.message().id == victim).count() >= 2;
                if distinct.len() == N && victim_again {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let report = scheduler.shutdown(GRACE).await;
    let seen = seen.lock().unwrap().clone();
    let sizes = sizes.lock().unwrap().clone();
    assert!(everything.is_ok(), "every message handled and the failed one again; saw {} calls", seen.len());

    assert!(sizes.iter().all(|&n| (1..=MAX).contains(&n)), "batches of 1 to {MAX}: {sizes:?}");
    assert!(sizes.iter().any(|&n| n > 1), "the linger gathers more than one message: {sizes:?}");
    let victim_calls: Vec<&Delivery> = seen.iter().filter(|d| d.message().id == victim).collect();
    if caps.counts_attempts {
        assert!(victim_calls[1].attempt() >= 2, "the redelivery counts up: {:?}", victim_calls[1]);
    }
    if caps.settles_exactly {
        let mut calls: HashMap<&str, usize> = HashMap::new();
        for d in &seen {
            *calls.entry(d.message().id.as_str()).or_default() += 1;
        }
        let again: Vec<_> = calls.iter().filter(|(id, n)| **n > 1 && **id != victim).collect();
        assert!(again.is_empty(), "only the failed delivery comes again, not its batch-mates: {again:?}");
    }
    // Per key, first calls in publish order (the victim's key aside: its redelivery
    // comes after the messages behind it, as a single handler's would).
    let victim_key = seen.iter().find(|d| d.message().id == victim).and_then(|d| d.message().key.clone());
    let mut firsts: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    let mut counted = std::collections::HashSet::new();
    for d in &seen {
        let m = d.message();
        if m.key == victim_key || !counted.insert(m.id.clone()) {
            continue;
        }
        let i: usize = m.id.rsplit('-').next().and_then(|n| n.parse().ok()).expect("ids end in their index");
        firsts.entry(m.key.clone().map(|k| k.to_vec()).unwrap_or_default()).or_default().push(i);
    }
    for (key, order) in &firsts {
        assert!(order.windows(2).all(|w| w[0] < w[1]), "key {key:?} kept its order across batches: {order:?}");
    }
    assert!(report.tasks[0].nacked >= 1, "the failure was nacked: {report:?}");
}
