//! The JSON writer behind [`JsonCodec`](crate::JsonCodec)'s encoding: serde_json's compact
//! output, byte for byte, with long strings searched for escapes a block at a time.
//!
//! serde_json looks at a string's bytes one at a time to find those that need escaping,
//! about nine instructions a byte; an event with a 1 KiB text field spent most of its
//! encoding there. This writer finds them with the reader's block search (short text
//! through a table, as serde_json does) and copies the stretches that need nothing.
//! Numbers, `null` and byte arrays go through serde_json's own formatter, so they read
//! exactly as serde_json writes them.
//!
//! What this writer does not take on, it refuses with [`Unsupported`], and the codec
//! encodes the value with serde_json instead: map keys other than strings, chars, unit
//! variants and integers, serde_json's private types (`RawValue`, and `Number` with
//! `arbitrary_precision`), and any error a value's `Serialize` raises, so that the error
//! the caller sees is serde_json's. Such a value's `Serialize` then runs twice.

use serde::ser::{self, Serialize};
use serde_json::ser::{CompactFormatter, Formatter};

use super::scan::to_special;
use super::{Unsupported, SERDE_JSON_PRIVATE};

/// Appends the compact JSON of `value` to `out`, or refuses the value (leaving `out`
/// holding part of it).
pub(crate) fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Unsupported> {
    value.serialize(&mut Json { out })
}

struct Json<'o> {
    out: &'o mut Vec<u8>,
}

/// Runs one of serde_json's formatter calls on `out`; writing to a `Vec` cannot fail.
fn format(out: &mut Vec<u8>, write: impl FnOnce(&mut CompactFormatter, &mut Vec<u8>) -> std::io::Result<()>) {
    write(&mut CompactFormatter, out).expect("writing to a Vec never fails");
}

impl Json<'_> {
    fn format(&mut self, write: impl FnOnce(&mut CompactFormatter, &mut Vec<u8>) -> std::io::Result<()>) {
        format(self.out, write);
    }

    fn float(&mut self, finite: bool, write: impl FnOnce(&mut CompactFormatter, &mut Vec<u8>) -> std::io::Result<()>) {
        // As serde_json: NaN and the infinities are not JSON, so they are written as null.
        if finite {
            self.format(write);
        } else {
            self.out.extend_from_slice(b"null");
        }
    }

    /// `{"variant":`, which an enum variant with content opens with.
    fn open_variant(&mut self, variant: &str) {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
    }
}

/// One array, object or variant being written.
///
/// It holds the output itself, not the `Json` it was opened on: each byte it writes
/// then takes one pointer less to find the vector, which made a small event's encode
/// about a tenth faster.
struct Compound<'s> {
    json: Json<'s>,
    first: bool,
    /// The closing bracket: `]` or `}`. A byte and a flag rather than the closing
    /// bytes as a slice, whose loop of one or two pushes took a twentieth of a small
    /// event's encode.
    close: u8,
    /// Whether a variant's `}` follows it.
    in_variant: bool,
}

impl<'s> Compound<'s> {
    fn open(json: &'s mut Json<'_>, open: u8, close: u8, in_variant: bool) -> Self {
        json.out.push(open);
        Self { json: Json { out: &mut *json.out }, first: true, close, in_variant }
    }

    // This and `field` inlined into each field's `serialize_field`: a small event's
    // encode took 198 ns with them as calls and 174 ns inlined (json_codec bench).
    #[inline]
    fn comma(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.json.out.push(b',');
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.comma();
        value.serialize(&mut self.json)
    }

    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Unsupported> {
        self.comma();
        write_str(self.json.out, key);
        self.json.out.push(b':');
        value.serialize(&mut self.json)
    }

    fn close(self) {
        self.json.out.push(self.close);
        if self.in_variant {
            self.json.out.push(b'}');
        }
    }
}

impl<'s, 'o> ser::Serializer for &'s mut Json<'o> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Compound<'s>;
    type SerializeTuple = Compound<'s>;
    type SerializeTupleStruct = Compound<'s>;
    type SerializeTupleVariant = Compound<'s>;
    type SerializeMap = Compound<'s>;
    type SerializeStruct = Compound<'s>;
    type SerializeStructVariant = Compound<'s>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.format(|f, w| f.write_bool(w, v));
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), Unsupported> {
        self.format(|f, w| f.write_i8(w, v));
        Ok(())
    }

    fn serialize_i16(self, v: i16) -> Result<(), Unsupported> {
        self.format(|f, w| f.write_i16(w, v));
        Ok(())
    }

    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        self.format(|f, w| f.write_i32(w, v));
        Ok(())
    }

    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        self.format(|f, w| f.write_i64(w, v));
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<(), Unsupported> {
        self.format(|f, w| f.write_i128(w, v));
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        self.format(|f, w| f.write_u8(w, v));
        Ok(())
    }

    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        self.format(|f, w| f.write_u16(w, v));
        Ok(())
    }

    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        self.format(|f, w| f.write_u32(w, v));
        Ok(())
    }

    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        self.format(|f, w| f.write_u64(w, v));
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), Unsupported> {
        self.format(|f, w| f.write_u128(w, v));
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        self.float(v.is_finite(), |f, w| f.write_f32(w, v));
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        self.float(v.is_finite(), |f, w| f.write_f64(w, v));
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        write_str(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unsupported> {
        self.format(|f, w| f.write_byte_array(w, v));
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Unsupported> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Unsupported> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        write_str(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.open_variant(variant);
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'s>, Unsupported> {
        Ok(Compound::open(self, b'[', b']', false))
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'s>, Unsupported> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'s>, Unsupported> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'s>, Unsupported> {
        self.open_variant(variant);
        Ok(Compound::open(self, b'[', b']', true))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'s>, Unsupported> {
        Ok(Compound::open(self, b'{', b'}', false))
    }

    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Compound<'s>, Unsupported> {
        if name.starts_with(SERDE_JSON_PRIVATE) {
            return Err(Unsupported);
        }
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'s>, Unsupported> {
        self.open_variant(variant);
        Ok(Compound::open(self, b'{', b'}', true))
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.element(value)
    }

    fn end(self) -> Result<(), Unsupported> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.element(value)
    }

    fn end(self) -> Result<(), Unsupported> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.element(value)
    }

    fn end(self) -> Result<(), Unsupported> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.element(value)
    }

    fn end(self) -> Result<(), Unsupported> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsupported> {
        self.comma();
        key.serialize(MapKey { out: self.json.out })
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.json.out.push(b':');
        value.serialize(&mut self.json)
    }

    fn end(self) -> Result<(), Unsupported> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Unsupported> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Unsupported> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Unsupported> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Unsupported> {
        self.close();
        Ok(())
    }
}

/// A map key: JSON keys are strings, so integers are written quoted, as serde_json does.
/// Any other kind of key is left to serde_json, which accepts some and refuses the rest.
struct MapKey<'o> {
    out: &'o mut Vec<u8>,
}

impl MapKey<'_> {
    fn quoted(
        self,
        write: impl FnOnce(&mut CompactFormatter, &mut Vec<u8>) -> std::io::Result<()>,
    ) -> Result<(), Unsupported> {
        self.out.push(b'"');
        format(self.out, write);
        self.out.push(b'"');
        Ok(())
    }
}

impl ser::Serializer for MapKey<'_> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = ser::Impossible<(), Unsupported>;
    type SerializeTuple = ser::Impossible<(), Unsupported>;
    type SerializeTupleStruct = ser::Impossible<(), Unsupported>;
    type SerializeTupleVariant = ser::Impossible<(), Unsupported>;
    type SerializeMap = ser::Impossible<(), Unsupported>;
    type SerializeStruct = ser::Impossible<(), Unsupported>;
    type SerializeStructVariant = ser::Impossible<(), Unsupported>;

    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        write_str(self.out, v);
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        value.serialize(self)
    }

    fn serialize_i8(self, v: i8) -> Result<(), Unsupported> {
        self.quoted(|f, w| f.write_i8(w, v))
    }

    fn serialize_i16(self, v: i16) -> Result<(), Unsupported> {
        self.quoted(|f, w| f.write_i16(w, v))
    }

    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        self.quoted(|f, w| f.write_i32(w, v))
    }

    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        self.quoted(|f, w| f.write_i64(w, v))
    }

    fn serialize_i128(self, v: i128) -> Result<(), Unsupported> {
        self.quoted(|f, w| f.write_i128(w, v))
    }

    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        self.quoted(|f, w| f.write_u8(w, v))
    }

    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        self.quoted(|f, w| f.write_u16(w, v))
    }

    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        self.quoted(|f, w| f.write_u32(w, v))
    }

    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        self.quoted(|f, w| f.write_u64(w, v))
    }

    fn serialize_u128(self, v: u128) -> Result<(), Unsupported> {
        self.quoted(|f, w| f.write_u128(w, v))
    }

    fn serialize_bool(self, _v: bool) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_f32(self, _v: f32) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_f64(self, _v: f64) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_none(self) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_unit(self) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Err(Unsupported)
    }
}

/// What each byte needs in a JSON string: 0 for nothing, `u` for `\u00XX`, or the letter
/// of its short escape. The same escapes serde_json writes.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Writes `text` as a JSON string.
///
/// Short text with nothing to escape (field names, most values) is written here, in the
/// caller, without a call of its own: a small event's encode went from 0.80 to 0.83 of
/// serde_json's speed with it (json_codec bench).
#[inline]
fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if bytes.len() < 16 && bytes.iter().all(|&b| ESCAPE[usize::from(b)] == 0) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        write_any_str(out, text);
    }
}

/// Writes `text` as a JSON string: the stretches that need no escape copied whole, as
/// the reader's search finds where each ends.
fn write_any_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    loop {
        // Short text (keys, names, most values) is looked at a byte at a time through
        // the table, as serde_json does: the block search's setup costs more than it
        // saves below a block.
        let at = if bytes.len() - run < 16 {
            bytes[run..].iter().position(|&b| ESCAPE[usize::from(b)] != 0).map_or(bytes.len(), |i| run + i)
        } else {
            to_special(bytes, run).0
        };
        out.extend_from_slice(&bytes[run..at]);
        let Some(&byte) = bytes.get(at) else { break };
        run = at + 1;
        // Every byte the search stops at has an escape.
        let escape = ESCAPE[usize::from(byte)];
        if escape == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Serialize;

    use super::*;

    /// What the fast writer makes of `value`, which must be what serde_json makes of it.
    #[track_caller]
    fn same_as_serde_json<T: Serialize + ?Sized>(value: &T) {
        let mut ours = Vec::new();
        write(&mut ours, value).expect("the writer takes this value");
        let theirs = serde_json::to_vec(value).unwrap();
        assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
    }

    #[test]
    fn every_ascii_character_is_escaped_as_serde_json_does() {
        for byte in 0u8..0x80 {
            let c = char::from(byte);
            same_as_serde_json(&c.to_string());
            same_as_serde_json(&c);
        }
    }

    #[test]
    fn escapes_are_found_at_every_place_in_a_block() {
        // Each character that needs an escape, and some that do not, at every offset of
        // strings up to two and a half blocks of sixteen bytes long, among plain ASCII
        // and multi-byte text.
        let specials = ['"', '\\', '\n', '\u{0}', '\u{1f}', '\u{7f}', ' ', '~', 'é', '€', '😀'];
        for fill in ["abcdefghijklmnopqrstuvwxyz0123456789ABCD", "éééééééééééééééééééé", "😀😀😀😀😀😀😀😀😀😀"]
        {
            for len in 0..=fill.chars().count() {
                let base: Vec<char> = fill.chars().take(len).collect();
                for at in 0..=len {
                    for special in specials {
                        let mut text = base.clone();
                        text.insert(at, special);
                        same_as_serde_json(&text.into_iter().collect::<String>());
                    }
                }
            }
        }
    }

    #[test]
    fn long_strings_of_every_kind() {
        same_as_serde_json(&"x".repeat(990));
        same_as_serde_json(&"line\n".repeat(200));
        same_as_serde_json(&"\"quoted\\\" ".repeat(100));
        let all: String = (0..=0x2000u32).filter_map(char::from_u32).collect();
        same_as_serde_json(&all);
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Newtype(u32);

    #[derive(Serialize)]
    struct Pair(i8, String);

    #[derive(Serialize)]
    struct Empty {}

    #[derive(Serialize)]
    enum Kind {
        Plain,
        Wrapped(Option<u8>),
        Tuple(u8, f64),
        Fields { at: i64, why: &'static str },
    }

    #[derive(Serialize)]
    #[serde(tag = "type")]
    enum Tagged {
        Created { id: u64 },
        Deleted,
    }

    #[derive(Serialize)]
    #[serde(untagged)]
    enum Untagged {
        Number(u64),
        Text(String),
    }

    #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
    enum Key {
        First,
    }

    #[derive(Serialize)]
    struct Everything {
        yes: bool,
        small: i8,
        medium: i32,
        big: i64,
        huge: i128,
        tiny: u8,
        wide: u64,
        widest: u128,
        half: f32,
        double: f64,
        letter: char,
        quote: char,
        text: String,
        none: Option<String>,
        some: Option<Vec<u16>>,
        unit: (),
        unit_struct: Unit,
        newtype: Newtype,
        pair: Pair,
        empty: Empty,
        empty_list: Vec<u8>,
        empty_map: BTreeMap<String, u8>,
        kinds: Vec<Kind>,
        tagged: Vec<Tagged>,
        untagged: Vec<Untagged>,
        tuple: (u8, &'static str, bool),
        by_name: BTreeMap<String, Vec<f64>>,
        by_number: BTreeMap<i32, char>,
        by_unsigned: BTreeMap<u128, ()>,
        by_variant: BTreeMap<Key, u8>,
        by_char: BTreeMap<char, u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        #[serde(flatten)]
        flattened: HashMap<String, u8>,
        value: serde_json::Value,
    }

    #[test]
    fn every_kind_of_value_is_written_as_serde_json_writes_it() {
        let everything = Everything {
            yes: true,
            small: i8::MIN,
            medium: -42,
            big: i64::MAX,
            huge: i128::MIN,
            tiny: u8::MAX,
            wide: u64::MAX,
            widest: u128::MAX,
            half: 0.1,
            double: -1.5e300,
            letter: 'ß',
            quote: '"',
            text: "tab\there \u{1} \"end\"".into(),
            none: None,
            some: Some(vec![1, 2, 3]),
            unit: (),
            unit_struct: Unit,
            newtype: Newtype(7),
            pair: Pair(-1, "two".into()),
            empty: Empty {},
            empty_list: vec![],
            empty_map: BTreeMap::new(),
            kinds: vec![
                Kind::Plain,
                Kind::Wrapped(None),
                Kind::Wrapped(Some(3)),
                Kind::Tuple(1, 2.0),
                Kind::Fields { at: -9, why: "because\n" },
            ],
            tagged: vec![Tagged::Created { id: 5 }, Tagged::Deleted],
            untagged: vec![Untagged::Number(1), Untagged::Text("one".into())],
            tuple: (0, "zero", false),
            by_name: BTreeMap::from([("a\"b".into(), vec![f64::NAN, f64::INFINITY, -0.0, 1e21, 5e-324])]),
            by_number: BTreeMap::from([(-1, 'x'), (i32::MAX, 'y')]),
            by_unsigned: BTreeMap::from([(u128::MAX, ())]),
            by_variant: BTreeMap::from([(Key::First, 1)]),
            by_char: BTreeMap::from([('\n', 2)]),
            skipped: None,
            flattened: HashMap::from([("extra".into(), 9)]),
            value: serde_json::json!({"nested": [1, 2.5, "three", null, true, {"k": []}], "n": -3}),
        };
        same_as_serde_json(&everything);
        same_as_serde_json(&[f32::NAN, f32::NEG_INFINITY, 1.0e-7, 16777216.0]);
        same_as_serde_json(&serde_json::json!([]));
    }

    /// A type that serializes as bytes, which serde_json writes as an array of numbers.
    struct Raw(&'static [u8]);

    impl Serialize for Raw {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    #[test]
    fn bytes_are_an_array_of_numbers() {
        same_as_serde_json(&Raw(b"\x00\x7f\xff"));
        same_as_serde_json(&Raw(b""));
    }

    /// A type that fails to serialize, as a `Serialize` impl may.
    struct Fails;

    impl Serialize for Fails {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }

    #[test]
    fn what_the_writer_does_not_take_on_is_refused() {
        let mut out = Vec::new();
        assert!(write(&mut out, &HashMap::from([(vec![1u8], 1)])).is_err(), "a list as a map key");
        assert!(write(&mut out, &HashMap::from([(true, 1)])).is_err(), "a bool as a map key");
        assert!(write(&mut out, &BTreeMap::from([(Some(1), 1)])).is_err(), "an option as a map key");
        assert!(write(&mut out, &vec![Fails]).is_err(), "an error of the value's own");
        assert!(write(&mut out, &Private).is_err(), "a type serde_json writes raw");
    }

    /// How serde_json's `RawValue` serializes (with its `raw_value` feature, which any
    /// crate in a build can turn on): a struct by a private name that serde_json's own
    /// serializer writes unquoted.
    struct Private;

    impl Serialize for Private {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeStruct;
            let mut raw = serializer.serialize_struct("$serde_json::private::RawValue", 1)?;
            raw.serialize_field("$serde_json::private::RawValue", "[1,2]")?;
            raw.end()
        }
    }
}
