//! The JSON codec against serde_json, on any bytes: tidewater reads and writes JSON with
//! code of its own (a block-at-a-time string scan with SSE2 and AVX2 loads, UTF-8
//! checked in the same pass) and promises serde_json's values, errors and bytes.
//!
//! - decoding any payload, as several types, gives what serde_json gives, or fails
//!   where serde_json fails;
//! - encoding what was decoded gives serde_json's bytes.
//!
//! `cargo +nightly fuzz run json_codec` from `fuzz/` (see the README's "Unsafe code and fuzzing").

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidewater_core::{Codec, JsonCodec};

/// The shapes an event takes: text, numbers of each kind, options, lists, a nested
/// record, an enum.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    note: String,
    quantity: i32,
    price: f64,
    paid: bool,
    coupon: Option<String>,
    lines: Vec<Line>,
    state: State,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: String,
    count: u16,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum State {
    Open,
    Shipped { carrier: String },
    Held(String),
}

/// Decodes `data` as `T` both ways; where both succeed, the values agree and encode to
/// serde_json's bytes.
fn same<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let ours = JsonCodec.decode::<T>(data);
    let theirs = serde_json::from_slice::<T>(data);
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => {
            assert_eq!(ours, theirs, "decoded differently from serde_json");
            let written = JsonCodec.encode(&ours).expect("serde_json wrote it");
            assert_eq!(&written[..], &serde_json::to_vec(&theirs).unwrap()[..], "encoded differently");
        }
        (Err(_), Err(_)) => {}
        (ours, theirs) => panic!("tidewater: {ours:?}, serde_json: {theirs:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    same::<Value>(data);
    same::<Order>(data);
    same::<Vec<String>>(data);
    same::<BTreeMap<String, Value>>(data);
    same::<Option<String>>(data);
});
