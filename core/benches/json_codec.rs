//! `JsonCodec::decode` and `encode` against serde_json alone, on payloads of a few
//! shapes, in one run: what the codec's own reader and writer save, and that they cost
//! nothing where they save nothing.
//!
//! Run: `cargo bench -p tidewater-core --bench json_codec`. Each row is timed as the
//! codec and as serde_json by turns, the order alternating, eleven rounds; the figures
//! are medians, and the ratio is the median of the rounds' own.
//!
//! `TW_JSON_ONLY=<text>` runs only the rows whose name holds the text, for a profiler.

use std::hint::black_box;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tidewater_core::{Codec, JsonCodec};

const ROUNDS: usize = 11;

/// The peer bench's order: a 990-character note.
#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
    quantity: u32,
    note: String,
}

/// A small event of the usual kind, with a field the type does not have.
#[derive(Serialize, Deserialize)]
struct Payment {
    id: u64,
    user: String,
    amount: f64,
    currency: String,
    tags: Vec<String>,
    settled: bool,
    note: Option<String>,
}

/// Mostly floats.
#[derive(Serialize, Deserialize)]
struct Reading {
    sensor: String,
    values: Vec<f64>,
    at: u64,
}

/// Nanoseconds a call of `f`, over `n` calls.
fn per_call(n: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times the codec's `a` against serde_json's `b`, by turns; prints a row.
fn row(name: &str, n: usize, mut a: impl FnMut(), mut b: impl FnMut()) {
    if std::env::var("TW_JSON_ONLY").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (x, y) = if round % 2 == 0 {
            let x = per_call(n, &mut a);
            (x, per_call(n, &mut b))
        } else {
            let y = per_call(n, &mut b);
            (per_call(n, &mut a), y)
        };
        ours.push(x);
        theirs.push(y);
        ratios.push(y / x);
    }
    let (ours, theirs, ratio) = (median(ours), median(theirs), median(ratios));
    println!("| {name:<34} | {ours:>8.0} | {theirs:>10.0} | {ratio:>5.2} |");
}

fn decode_row<T: DeserializeOwned>(name: &str, payload: &[u8], n: usize) {
    row(
        name,
        n,
        || _ = black_box(JsonCodec.decode::<T>(black_box(payload)).unwrap()),
        || _ = black_box(serde_json::from_slice::<T>(black_box(payload)).unwrap()),
    );
}

fn encode_row<T: Serialize>(name: &str, value: &T, n: usize) {
    row(
        name,
        n,
        || _ = black_box(JsonCodec.encode(black_box(value)).unwrap()),
        || _ = black_box(bytes::Bytes::from(serde_json::to_vec(black_box(value)).unwrap())),
    );
}

fn main() {
    let order = Order { id: 17, quantity: 37, note: "x".repeat(990) };
    let payment = Payment {
        id: 123_456,
        user: "alice@example.com".into(),
        amount: 12.5,
        currency: "EUR".into(),
        tags: vec!["new".into(), "vip".into()],
        settled: true,
        note: None,
    };
    let reading =
        Reading { sensor: "s-1".into(), values: (0..100).map(|i| f64::from(i) * 1.37 + 0.001).collect(), at: 17 };
    let order_json = serde_json::to_vec(&order).unwrap();
    let mut payment_json = serde_json::to_vec(&payment).unwrap();
    // A field the type skips, as a newer producer's event carries.
    payment_json.pop();
    payment_json.extend_from_slice(br#","extra":{"region":"eu","score":0.75}}"#);
    let reading_json = serde_json::to_vec(&reading).unwrap();
    let escaped =
        serde_json::to_vec(&Order { id: 1, quantity: 1, note: "line\n\"quoted\" caf\u{e9} ".repeat(40) }).unwrap();
    println!("JsonCodec against serde_json alone, ns a call, median of {ROUNDS} rounds by turns");
    println!("| payload                            | codec ns | serde_json | ratio |");
    println!("|------------------------------------|----------|------------|-------|");
    decode_row::<Order>("decode order, 990-char text", &order_json, 100_000);
    decode_row::<Order>("decode text with escapes", &escaped, 50_000);
    decode_row::<Payment>("decode small event", &payment_json, 200_000);
    decode_row::<serde_json::Value>("decode small event as Value", &payment_json, 100_000);
    decode_row::<Reading>("decode 100 floats", &reading_json, 20_000);
    encode_row("encode order, 990-char text", &order, 100_000);
    encode_row("encode small event", &payment, 200_000);
    encode_row("encode 100 floats", &reading, 20_000);
    println!("\nratio: serde_json's time over the codec's (above 1: the codec is faster)");
}
