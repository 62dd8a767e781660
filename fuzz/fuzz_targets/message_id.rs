//! Message ids from any text: an id keeps its text whole, inline (read back without a
//! UTF-8 check) or shared, hashes and orders as that text, and reads a UUIDv7's time
//! as a parse of the text does.
//!
//! `cargo +nightly fuzz run message_id` from `fuzz/` (see the README's "Unsafe code and fuzzing").

#![no_main]

use std::hash::{BuildHasher, RandomState};

use libfuzzer_sys::fuzz_target;
use tidewater_core::MessageId;

fuzz_target!(|texts: (&str, &str)| {
    let (a, b) = texts;
    let (id_a, id_b) = (MessageId::from(a), MessageId::from(b));
    assert_eq!(id_a.as_str(), a);
    assert_eq!(MessageId::from_args(format_args!("{a}")), id_a, "formatted and copied ids differ");
    assert_eq!(id_a.uuid_v7_millis(), tidewater_core::id::uuid_v7_millis(a));
    assert_eq!(id_a.cmp(&id_b), a.cmp(b), "ids order as their text");
    assert_eq!(id_a == id_b, a == b);
    let hasher = RandomState::new();
    assert_eq!(hasher.hash_one(&id_a), hasher.hash_one(a), "ids hash as their text");
});
