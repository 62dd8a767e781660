//! What a message held by the in-memory broker costs in memory: 20,000 messages of a
//! 1 KiB payload published to a topic of 4 partitions x 5,000 with nobody reading, as a
//! slow consumer leaves them, through the `Publisher` a service uses: typed events (JSON)
//! and `publish_bytes`. Each is measured in a process of its own (the resident set only
//! grows within one): the growth of the resident set over the publishing, per message,
//! and its ratio to the payload.
//!
//! Run: `cargo bench --bench memory_held`.

use serde::{Deserialize, Serialize};
use tidewater::memory::{MemoryBroker, MemoryConfig};
use tidewater::{Bus, Event, EventRegistry};

const MESSAGES: usize = 20_000;
const PAYLOAD: usize = 1024;

#[derive(Serialize, Deserialize, Event)]
#[event(type = "order.placed")]
struct Order {
    id: u64,
    note: String,
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of kB")
}

/// Publishes the messages in this process; the resident set's growth in KiB.
async fn measure(typed: bool) -> u64 {
    let broker = MemoryBroker::with_config(MemoryConfig::default().partitions(4).capacity(MESSAGES / 4));
    let bus = Bus::new(&broker, EventRegistry::new().route::<Order>("orders"));
    let publisher = bus.publisher();
    // The JSON of an order is the payload's size: the note and 18 bytes around it.
    let order = |id| Order { id, note: "x".repeat(PAYLOAD - 18) };
    let body = serde_json::to_vec(&order(0)).unwrap();
    assert_eq!(body.len(), PAYLOAD, "the payload is 1 KiB");
    let before = rss_kib();
    for id in 0..MESSAGES as u64 {
        if typed {
            publisher.publish(&order(id)).await.unwrap();
        } else {
            publisher.publish_bytes("orders", body.clone(), "application/json").await.unwrap();
        }
    }
    let grown = rss_kib().saturating_sub(before);
    assert_eq!(broker.published("orders").len(), MESSAGES, "every message is held");
    grown
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Ok(mode) = std::env::var("TW_MEASURE_MODE") {
        println!("{}", measure(mode == "typed").await);
        return;
    }
    println!("{MESSAGES} messages of {PAYLOAD} bytes held by the memory broker (4 partitions x {})", MESSAGES / 4);
    println!("| publish | resident set growth | per message | vs payload |");
    println!("|---|---|---|---|");
    for mode in ["typed", "bytes"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env("TW_MEASURE_MODE", mode)
            .output()
            .expect("the measuring process runs");
        let kib: u64 =
            String::from_utf8_lossy(&out.stdout).trim().parse().expect("a figure from the measuring process");
        let per = kib as f64 * 1024.0 / MESSAGES as f64;
        println!(
            "| {} | {:.1} MiB | {per:.0} bytes | {:.2}x |",
            if mode == "typed" { "publish(&Order)" } else { "publish_bytes" },
            kib as f64 / 1024.0,
            per / PAYLOAD as f64
        );
    }
}
