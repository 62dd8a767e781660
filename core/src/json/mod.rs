//! The JSON reader and writer behind [`JsonCodec`](crate::JsonCodec): serde_json's
//! format, read and written faster where it matters most, with serde_json itself taking
//! over whatever they do not take on.
//!
//! serde_json looks for the end of a string's plain text eight bytes at a time on the
//! way in (and then checks it as UTF-8 in a second pass) and one byte at a time on the
//! way out; an event with a 1 KiB text field spent most of its decoding and encoding
//! there. Both look at the first sixteen bytes of text at once, then sixty-four at a
//! time (in 32-byte blocks where the processor has AVX2) while none of them needs a
//! look; short text to be written goes through a table, as in serde_json. Each refuses
//! what it does not handle with [`Unsupported`], and the codec then runs serde_json on
//! the value from the start: so every payload, value and error the codec gives is
//! serde_json's.

use std::fmt;

mod read;
mod scan;
mod write;

pub(crate) use read::read;
pub(crate) use write::write;

/// A value the fast reader or writer leaves to serde_json.
#[derive(Debug)]
pub(crate) struct Unsupported;

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("left to serde_json")
    }
}

impl std::error::Error for Unsupported {}

impl serde::ser::Error for Unsupported {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Unsupported
    }
}

impl serde::de::Error for Unsupported {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Unsupported
    }
}

/// The names serde_json gives its private types (`RawValue`, and `Number` with
/// `arbitrary_precision`), which it reads and writes raw.
const SERDE_JSON_PRIVATE: &str = "$serde_json::private::";
