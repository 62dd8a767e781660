//! Per-message cost of the full middleware chain on the success path, against the
//! same handler with no chain, in one run.
//!
//! Run: `cargo bench -p tidewater-middleware --bench chain_cost`. Calls the handler
//! directly (no broker), so the difference is the chain alone. Each message has its own
//! id, so deduplication checks and commits a new key every time, as in production. A run
//! commits 200,000 ids into stores of the default 100,000, so forgetting old ids is part
//! of the cost, as in a long-running service. The last two rows put moka's store in
//! place of the default one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewater_core::{apply_chain, handler_fn, BoxHandler, Delivery, HandlerError, Message, Middleware, Position};
use tidewater_memory::MemoryBroker;
use tidewater_middleware::*;

const N: usize = 200_000;
const RUNS: usize = 5;
/// Deliveries are made this many at a time, untimed, as a fetch brings them, so the
/// chain works on memory as warm as in a consumer rather than on 200,000 cold ones.
const BATCH: usize = 1000;

fn deliveries(run: usize, from: usize) -> Vec<Delivery> {
    // One shared payload: no middleware reads it.
    let payload = bytes::Bytes::from(vec![0u8; 1024]);
    (from..from + BATCH)
        .map(|i| {
            let m = Message::new("bench", payload.clone()).with_id(format!("{run}-{i}"));
            Delivery::new(m, 1, Position::Queue { partition: Some(0), sequence: Some(i as u64) }, Some(Arc::from("g")))
        })
        .collect()
}

/// Calls `handler` with N new deliveries; returns the time spent in the calls.
async fn time(handler: &BoxHandler, run: usize) -> Duration {
    let mut spent = Duration::ZERO;
    for from in (0..N).step_by(BATCH) {
        let batch = deliveries(run, from);
        let start = Instant::now();
        for d in batch {
            handler.handle(d).await.unwrap();
        }
        spent += start.elapsed();
    }
    spent
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let bare: BoxHandler = Arc::new(handler_fn(|d: Delivery| async move {
            std::hint::black_box(&d);
            Ok::<_, HandlerError>(())
        }));
        let broker = MemoryBroker::new();
        let layers: Vec<(&str, Arc<dyn Middleware>)> = vec![
            ("Trace", Arc::new(Trace)),
            ("CorrelationId", Arc::new(CorrelationId)),
            ("DeadLetter", Arc::new(DeadLetter::new(broker.writer()))),
            ("Deduplicate (in memory)", Arc::new(Deduplicate::in_memory())),
            ("Retry", Arc::new(Retry::new())),
            ("Timeout", Arc::new(Timeout(Duration::from_secs(30)))),
            ("Recover", Arc::new(Recover::new())),
        ];
        let full: Vec<Arc<dyn Middleware>> = layers.iter().map(|(_, m)| Arc::clone(m)).collect();
        let mut rows: Vec<(String, BoxHandler)> = vec![
            ("none (handler called directly)".into(), Arc::clone(&bare)),
            ("empty chain".into(), apply_chain(Arc::clone(&bare), &[])),
        ];
        for (name, m) in &layers {
            rows.push((format!("{name} alone"), apply_chain(Arc::clone(&bare), std::slice::from_ref(m))));
        }
        rows.push(("full chain, all of the above".into(), apply_chain(Arc::clone(&bare), &full)));
        let moka: Arc<dyn Middleware> = Arc::new(Deduplicate::new(MokaDedupStorage::default()));
        rows.push(("Deduplicate (moka) alone".into(), apply_chain(Arc::clone(&bare), std::slice::from_ref(&moka))));
        let with_moka: Vec<Arc<dyn Middleware>> = layers
            .iter()
            .map(|(name, m)| if name.starts_with("Deduplicate") { Arc::clone(&moka) } else { Arc::clone(m) })
            .collect();
        rows.push(("full chain, moka dedup".into(), apply_chain(Arc::clone(&bare), &with_moka)));
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
        for run in 0..RUNS {
            for (i, (_, handler)) in rows.iter().enumerate() {
                times[i].push(time(handler, run * rows.len() + i).await.as_nanos() as f64 / N as f64);
            }
        }
        let med = |v: &Vec<f64>| {
            let mut v = v.clone();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let base = med(&times[0]);
        println!("middleware cost, success path, {N} calls per run, median of {RUNS}");
        println!("| chain                          | ns/message | added ns |");
        println!("|--------------------------------|------------|----------|");
        for (i, (name, _)) in rows.iter().enumerate() {
            let t = med(&times[i]);
            println!("| {name:<30} | {t:>10.1} | {:>8.1} |", t - base);
        }
    });
}
