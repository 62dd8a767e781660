//! The JSON reader behind [`JsonCodec`](crate::JsonCodec)'s decoding: serde_json's
//! reading of a payload, value for value, with strings searched sixteen bytes at a time
//! and checked as UTF-8 in the same pass.
//!
//! It takes on what events are mostly made of: objects, arrays, strings, numbers,
//! `true`, `false` and `null`, and fields it skips of any kind. A float is read as
//! serde_json's default build reads it, bit for bit (a check against serde_json at the
//! first float finds out whether some crate turned on its `float_roundtrip`, which
//! reads some differently); a number it cannot read that way (more digits than a `u64`
//! holds, `float_roundtrip` on) gets its value from serde_json reading that number's
//! text alone, which gives what serde_json gives in place. What the reader does not
//! take on, it refuses with [`Unsupported`] and the codec reads the payload with
//! serde_json from the start: any payload that is not valid JSON or does not fit the
//! type (so every error is serde_json's), a `\u` escape of half a surrogate pair in
//! text that is read, bytes, `i128` and `u128`, map keys read as anything but text,
//! serde_json's private types, nesting deeper than [`MAX_DEPTH`], and every payload
//! when serde_json's `arbitrary_precision` is on. A type whose `Deserialize` refuses a
//! value then runs twice, the second time under serde_json.

use std::sync::OnceLock;

use serde::de::{self, DeserializeSeed, Visitor};

use super::scan::to_special;
use super::{Unsupported, SERDE_JSON_PRIVATE};

type Result<T> = std::result::Result<T, Unsupported>;

/// Arrays and objects open at once beyond which the payload is serde_json's to read (it
/// refuses at 128).
const MAX_DEPTH: u32 = 100;

/// Reads `T` from all of `json` as serde_json's `from_slice` would, or refuses it.
pub(crate) fn read<'de, T: de::Deserialize<'de>>(json: &'de [u8]) -> Result<T> {
    if numbers_as_text() {
        return Err(Unsupported);
    }
    let mut reader = Reader { json, at: 0, depth: 0, scratch: Vec::new() };
    let value = T::deserialize(&mut reader)?;
    match reader.peek() {
        None => Ok(value),
        Some(_) => Err(Unsupported),
    }
}

/// Whether serde_json reads numbers as their text: its `arbitrary_precision` feature,
/// which any crate of a program can turn on for all of it. This reader hands numbers to
/// visitors as serde_json does without it, so with it, every payload is serde_json's.
fn numbers_as_text() -> bool {
    static AS_TEXT: OnceLock<bool> = OnceLock::new();
    *AS_TEXT.get_or_init(|| {
        let read = serde_json::from_str::<serde_json::Value>("1.000");
        read.and_then(|value| serde_json::to_string(&value)).ok().as_deref() == Some("1.000")
    })
}

/// A number whose reading serde_json's default build and its `float_roundtrip`
/// feature round differently (604.02102123843 against 604.0210212384299): digits
/// 60402102123842989, power -14.
const ROUNDING_PROBE: &[u8] = b"60402102123842989e-14";

/// Whether serde_json turns a float's digits into an `f64` as [`from_parts`] does: its
/// default, unless some crate of the program turned on `float_roundtrip`, which rounds
/// each float correctly and so differs in the last bit for some.
fn floats_read_plainly() -> bool {
    static PLAIN: OnceLock<bool> = OnceLock::new();
    *PLAIN.get_or_init(|| {
        serde_json::from_slice::<f64>(ROUNDING_PROBE).ok() == from_parts(true, 60_402_102_123_842_989, -14)
    })
}

/// The `f64` serde_json's default build makes of a float's digits, read as a `u64`
/// `significand`, and its power of ten: the significand scaled by one power of ten (a
/// quick reading, not always the nearest `f64`, but serde_json's). `None` for a result
/// too large, which serde_json refuses.
fn from_parts(positive: bool, significand: u64, mut exponent: i32) -> Option<f64> {
    let pow10 = pow10();
    let mut f = significand as f64;
    loop {
        match pow10.get(exponent.unsigned_abs() as usize) {
            Some(&pow) if exponent >= 0 => {
                f *= pow;
                if f.is_infinite() {
                    return None;
                }
                break;
            }
            Some(&pow) => {
                f /= pow;
                break;
            }
            None if f == 0.0 => break,
            None if exponent >= 0 => return None,
            None => {
                f /= 1e308;
                exponent += 308;
            }
        }
    }
    Some(if positive { f } else { -f })
}

/// 1e0 to 1e308, each the nearest `f64`, as serde_json's table has them.
fn pow10() -> &'static [f64; 309] {
    static POW10: OnceLock<[f64; 309]> = OnceLock::new();
    POW10.get_or_init(|| std::array::from_fn(|i| format!("1e{i}").parse().expect("a power of ten")))
}

struct Reader<'de> {
    json: &'de [u8],
    /// The next byte to read.
    at: usize,
    /// Arrays and objects open.
    depth: u32,
    /// A string with escapes, unescaped (a string without borrows from `json`).
    scratch: Vec<u8>,
}

/// A number as serde_json hands it to a visitor.
enum Number {
    Positive(u64),
    Negative(i64),
    Float(f64),
}

/// A number as read: where it starts, its sign, whether it has a fraction or an
/// exponent, and its digits as a `u64` scaled by a power of ten, unless they are `long`
/// (more than a `u64` holds, or a power past an `i32`).
struct Digits {
    start: usize,
    negative: bool,
    float: bool,
    significand: u64,
    long: bool,
    exponent: i32,
}

impl<'de> Reader<'de> {
    /// The next byte after whitespace, left unread.
    fn peek(&mut self) -> Option<u8> {
        while let Some(&byte) = self.json.get(self.at) {
            if !matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(byte);
            }
            self.at += 1;
        }
        None
    }

    /// Reads `byte` after whitespace.
    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    /// Reads `word` (`null`, `true` or `false`) where it starts.
    fn word(&mut self, word: &[u8]) -> Result<()> {
        if self.json[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    /// Opens an array or object: its bracket is the next byte.
    fn open(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Unsupported);
        }
        self.at += 1;
        Ok(())
    }

    fn close(&mut self, bracket: u8) -> Result<()> {
        self.expect(bracket)?;
        self.depth -= 1;
        Ok(())
    }

    /// Reads the number that starts here as serde_json would: an integer that fits as
    /// one; a float as serde_json's default build reads it (see [`from_parts`]);
    /// anything else as serde_json's own `f64` of the same text.
    fn number(&mut self) -> Result<Number> {
        let Digits { start, negative, float, significand: n, long, exponent } = self.digits()?;
        match (float, long) {
            (_, true) => {}
            (false, false) if !negative => return Ok(Number::Positive(n)),
            // serde_json reads -0 as the float -0.0, and below i64::MIN as a float.
            (false, false) if n != 0 && n <= 1 << 63 => return Ok(Number::Negative((n as i64).wrapping_neg())),
            (false, false) => {}
            (true, false) if floats_read_plainly() => {
                if let Some(x) = from_parts(!negative, n, exponent) {
                    return Ok(Number::Float(x));
                }
            }
            (true, false) => {}
        }
        serde_json::from_slice::<f64>(&self.json[start..self.at]).map(Number::Float).map_err(|_| Unsupported)
    }

    /// Reads the number that starts here, checked against JSON's grammar, in one pass:
    /// what serde_json makes its value from. A number skipped is read the same way.
    // Always inlined: as a call of its own, returning its parts through memory, it cost
    // a number about 35 instructions more (callgrind, `json_codec`'s 100 floats).
    #[inline(always)]
    fn digits(&mut self) -> Result<Digits> {
        let json = self.json;
        let start = self.at;
        let digit = |at: usize| json.get(at).filter(|c| c.is_ascii_digit()).map(|c| u64::from(c - b'0'));
        let negative = json.get(start) == Some(&b'-');
        let mut at = start + usize::from(negative);
        // The digits, whole part and fraction, while they fit a u64: serde_json takes a
        // longer way past that (`long`), and so does this reader, through serde_json.
        let (mut significand, mut long) = (0u64, false);
        let mut push = |d: u64| {
            if significand >= u64::MAX / 10 && (significand > u64::MAX / 10 || d > u64::MAX % 10) {
                long = true;
            } else {
                significand = significand * 10 + d;
            }
        };
        match json.get(at) {
            // No digit may follow a leading zero (checked below).
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => {
                while let Some(d) = digit(at) {
                    push(d);
                    at += 1;
                }
            }
            _ => return Err(Unsupported),
        }
        let mut exponent = 0i32;
        let mut float = false;
        if json.get(at) == Some(&b'.') {
            at += 1;
            float = true;
            let from = at;
            while let Some(d) = digit(at) {
                push(d);
                at += 1;
            }
            if at == from {
                return Err(Unsupported);
            }
            // A power of ten down for each digit after the point (past a u64 of digits
            // the value is serde_json's to make, whatever the count).
            exponent = -i32::try_from(at - from).unwrap_or(i32::MAX);
        }
        if let Some(b'e' | b'E') = json.get(at) {
            at += 1;
            float = true;
            let negative_power = json.get(at) == Some(&b'-');
            at += usize::from(matches!(json.get(at), Some(b'+' | b'-')));
            let from = at;
            let mut power = 0i32;
            while let Some(d) = digit(at) {
                let d = d as i32;
                if power >= i32::MAX / 10 && (power > i32::MAX / 10 || d > i32::MAX % 10) {
                    long = true;
                } else {
                    power = power * 10 + d;
                }
                at += 1;
            }
            if at == from {
                return Err(Unsupported);
            }
            exponent = if negative_power { exponent.saturating_sub(power) } else { exponent.saturating_add(power) };
        }
        if digit(at).is_some() {
            return Err(Unsupported);
        }
        self.at = at;
        Ok(Digits { start, negative, float, significand, long, exponent })
    }

    fn visit_number<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        match self.number()? {
            Number::Positive(n) => visitor.visit_u64(n),
            Number::Negative(n) => visitor.visit_i64(n),
            Number::Float(x) => visitor.visit_f64(x),
        }
    }

    /// Reads the string whose opening quote was just read, and hands it to `visitor`:
    /// borrowed from the payload if it has no escapes, as serde_json does.
    fn visit_string<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        let start = self.at;
        let (end, high) = to_special(self.json, start);
        if self.json.get(end) == Some(&b'"') {
            self.at = end + 1;
            let text = &self.json[start..end];
            let text = if high {
                std::str::from_utf8(text).map_err(|_| Unsupported)?
            } else {
                // SAFETY: every byte of `text` is below 0x80 (`to_special` said so), and
                // ASCII is UTF-8.
                unsafe { std::str::from_utf8_unchecked(text) }
            };
            return visitor.visit_borrowed_str(text);
        }
        self.scratch.clear();
        let (mut end, mut high) = (end, high);
        let mut from = start;
        loop {
            self.scratch.extend_from_slice(&self.json[from..end]);
            match self.json.get(end) {
                Some(b'"') => break,
                Some(b'\\') => {}
                // A control character or the end of the payload: an error.
                _ => return Err(Unsupported),
            }
            let unescaped = match self.json.get(end + 1) {
                Some(b'"') => b'"',
                Some(b'\\') => b'\\',
                Some(b'/') => b'/',
                Some(b'b') => 0x08,
                Some(b'f') => 0x0c,
                Some(b'n') => b'\n',
                Some(b'r') => b'\r',
                Some(b't') => b'\t',
                Some(b'u') => 0,
                _ => return Err(Unsupported),
            };
            from = end + 2;
            if unescaped == 0 {
                let (c, len) = self.unicode_escape(from)?;
                self.scratch.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                from += len;
            } else {
                self.scratch.push(unescaped);
            }
            let (next, next_high) = to_special(self.json, from);
            (end, high) = (next, high || next_high);
        }
        self.at = end + 1;
        // Each escape gives a whole character, so the text as a whole is what serde_json
        // checks.
        let text = if high {
            std::str::from_utf8(&self.scratch).map_err(|_| Unsupported)?
        } else {
            // SAFETY: the bytes copied are ASCII, as above, and each escape's are a whole
            // character's UTF-8.
            unsafe { std::str::from_utf8_unchecked(&self.scratch) }
        };
        visitor.visit_str(text)
    }

    /// The character of the `\u` escape whose four hex digits start at `at`, and how
    /// many bytes after `at` it takes: a pair of escapes for a character beyond the
    /// basic plane. A surrogate not in such a pair is serde_json's to refuse.
    fn unicode_escape(&self, at: usize) -> Result<(char, usize)> {
        let first = self.hex(at)?;
        let (code, len) = match first {
            0xd800..=0xdbff => {
                if self.json.get(at + 4..at + 6) != Some(b"\\u") {
                    return Err(Unsupported);
                }
                let second = self.hex(at + 6)?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(Unsupported);
                }
                (0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00), 10)
            }
            _ => (first, 4),
        };
        // Lone low surrogates are the only codes left that are not characters.
        char::from_u32(code).map(|c| (c, len)).ok_or(Unsupported)
    }

    /// The four hex digits at `at`, as a number.
    fn hex(&self, at: usize) -> Result<u32> {
        let digits = self.json.get(at..at + 4).ok_or(Unsupported)?;
        digits.iter().try_fold(0, |n, &d| Some(n << 4 | char::from(d).to_digit(16)?)).ok_or(Unsupported)
    }

    /// Skips the string whose opening quote was just read, as serde_json's
    /// `ignore_str` does: escapes are checked, the text is not.
    fn skip_string(&mut self) -> Result<()> {
        let mut at = self.at;
        loop {
            let (end, _) = to_special(self.json, at);
            match self.json.get(end) {
                Some(b'"') => {
                    self.at = end + 1;
                    return Ok(());
                }
                Some(b'\\') => {}
                _ => return Err(Unsupported),
            }
            at = end + 2;
            match self.json.get(end + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                Some(b'u') => {
                    self.hex(at)?;
                    at += 4;
                }
                _ => return Err(Unsupported),
            }
        }
    }

    /// Skips the value that starts after whitespace, checking it as serde_json's
    /// `ignore_value` does.
    fn skip_value(&mut self) -> Result<()> {
        match self.peek().ok_or(Unsupported)? {
            b'n' => self.word(b"null"),
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'-' | b'0'..=b'9' => self.digits().map(drop),
            b'"' => {
                self.at += 1;
                self.skip_string()
            }
            b'[' => {
                self.open()?;
                if self.peek() != Some(b']') {
                    loop {
                        self.skip_value()?;
                        if self.peek() != Some(b',') {
                            break;
                        }
                        self.at += 1;
                    }
                }
                self.close(b']')
            }
            b'{' => {
                self.open()?;
                if self.peek() != Some(b'}') {
                    loop {
                        self.expect(b'"')?;
                        self.skip_string()?;
                        self.expect(b':')?;
                        self.skip_value()?;
                        if self.peek() != Some(b',') {
                            break;
                        }
                        self.at += 1;
                    }
                }
                self.close(b'}')
            }
            _ => Err(Unsupported),
        }
    }

    fn visit_seq<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        self.open()?;
        let value = visitor.visit_seq(Elements { reader: self, first: true })?;
        self.close(b']')?;
        Ok(value)
    }

    fn visit_map<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        self.open()?;
        let value = visitor.visit_map(Entries { reader: self, first: true })?;
        self.close(b'}')?;
        Ok(value)
    }
}

/// Number methods that read as [`Deserializer::deserialize_u64`](de::Deserializer) does:
/// serde_json reads every number type alike and leaves it to the visitor to say whether
/// the number fits.
macro_rules! numbers {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
                self.deserialize_u64(visitor)
            }
        )*
    };
}

/// The methods of a deserializer that leave the value to serde_json.
macro_rules! unsupported {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
                Err(Unsupported)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Unsupported;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek().ok_or(Unsupported)? {
            b'n' => {
                self.word(b"null")?;
                visitor.visit_unit()
            }
            b't' => {
                self.word(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.word(b"false")?;
                visitor.visit_bool(false)
            }
            b'-' | b'0'..=b'9' => self.visit_number(visitor),
            b'"' => {
                self.at += 1;
                self.visit_string(visitor)
            }
            b'[' => self.visit_seq(visitor),
            b'{' => self.visit_map(visitor),
            _ => Err(Unsupported),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b't' | b'f') => self.deserialize_any(visitor),
            _ => Err(Unsupported),
        }
    }

    /// Every number type reads as this one does (see `numbers!`): the number as it is
    /// written, handed to the visitor, which says whether it fits.
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.visit_number(visitor),
            _ => Err(Unsupported),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.expect(b'"')?;
        self.visit_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek() == Some(b'n') {
            self.word(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'n') => self.deserialize_any(visitor),
            _ => Err(Unsupported),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value> {
        if name.starts_with(SERDE_JSON_PRIVATE) {
            return Err(Unsupported);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'[') => self.visit_seq(visitor),
            _ => Err(Unsupported),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'{') => self.visit_map(visitor),
            _ => Err(Unsupported),
        }
    }

    /// A struct reads from an object, or from an array of its fields in order, as
    /// serde_json allows.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.peek() {
            Some(b'[') => self.visit_seq(visitor),
            Some(b'{') => self.visit_map(visitor),
            _ => Err(Unsupported),
        }
    }

    /// A unit variant reads from its name; any variant from an object of one entry,
    /// its name and its content.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.peek() {
            Some(b'"') => visitor.visit_enum(Variant { reader: self, named_only: true }),
            Some(b'{') => {
                self.open()?;
                let value = visitor.visit_enum(Variant { reader: &mut *self, named_only: false })?;
                self.close(b'}')?;
                Ok(value)
            }
            _ => Err(Unsupported),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.skip_value()?;
        visitor.visit_unit()
    }

    numbers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_u8 deserialize_u16
        deserialize_u32 deserialize_f32 deserialize_f64
    }

    unsupported! { deserialize_i128 deserialize_u128 deserialize_bytes deserialize_byte_buf }
}

/// An array's elements.
struct Elements<'r, 'de> {
    reader: &'r mut Reader<'de>,
    first: bool,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Unsupported;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match self.reader.peek() {
            Some(b']') => return Ok(None),
            Some(b',') if !self.first => {
                self.reader.at += 1;
                // A comma before the closing bracket is an error.
                if matches!(self.reader.peek(), Some(b']') | None) {
                    return Err(Unsupported);
                }
            }
            Some(_) if self.first => {}
            _ => return Err(Unsupported),
        }
        self.first = false;
        seed.deserialize(&mut *self.reader).map(Some)
    }
}

/// An object's entries.
struct Entries<'r, 'de> {
    reader: &'r mut Reader<'de>,
    first: bool,
}

impl<'de> de::MapAccess<'de> for Entries<'_, 'de> {
    type Error = Unsupported;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.reader.peek() {
            Some(b'}') => return Ok(None),
            Some(b',') if !self.first => {
                self.reader.at += 1;
            }
            Some(b'"') if self.first => {}
            _ => return Err(Unsupported),
        }
        self.first = false;
        self.reader.expect(b'"')?;
        seed.deserialize(Key { reader: &mut *self.reader }).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value> {
        self.reader.expect(b':')?;
        seed.deserialize(&mut *self.reader)
    }
}

/// An object's key or a variant's name, whose opening quote has been read: text, to
/// whatever asks for it as text. A key read as anything else (a number, say, which
/// serde_json reads from inside the quotes) is serde_json's to read.
struct Key<'r, 'de> {
    reader: &'r mut Reader<'de>,
}

impl<'de> de::Deserializer<'de> for Key<'_, 'de> {
    type Error = Unsupported;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.reader.visit_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.reader.visit_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.reader.visit_string(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.reader.visit_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.reader.skip_string()?;
        visitor.visit_unit()
    }

    unsupported! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes
        deserialize_byte_buf deserialize_option deserialize_unit deserialize_seq deserialize_map
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &'static str, _: usize, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value> {
        Err(Unsupported)
    }

    fn deserialize_enum<V: Visitor<'de>>(self, _: &'static str, _: &'static [&'static str], _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
}

/// An enum's variant: `"Name"` if `named_only`, else `{"Name": content}` with its
/// opening brace read.
struct Variant<'r, 'de> {
    reader: &'r mut Reader<'de>,
    named_only: bool,
}

impl<'r, 'de> de::EnumAccess<'de> for Variant<'r, 'de> {
    type Error = Unsupported;
    type Variant = Self;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self)> {
        self.reader.expect(b'"')?;
        let name = seed.deserialize(Key { reader: &mut *self.reader })?;
        if !self.named_only {
            self.reader.expect(b':')?;
        }
        Ok((name, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Unsupported;

    fn unit_variant(self) -> Result<()> {
        if self.named_only {
            Ok(())
        } else {
            de::Deserialize::deserialize(self.reader)
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        if self.named_only {
            return Err(Unsupported);
        }
        seed.deserialize(self.reader)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        if self.named_only {
            return Err(Unsupported);
        }
        de::Deserializer::deserialize_seq(self.reader, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value> {
        if self.named_only {
            return Err(Unsupported);
        }
        de::Deserializer::deserialize_struct(self.reader, "", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt::Debug;

    use serde::de::{DeserializeOwned, IgnoredAny};
    use serde::Deserialize;
    use serde_json::Value;

    use super::*;

    /// Whatever the reader makes of `json` as a `T`, serde_json makes too; returns
    /// whether the reader took it on.
    #[track_caller]
    fn agrees<T: DeserializeOwned + Debug>(json: &[u8]) -> bool {
        match read::<T>(json) {
            Ok(ours) => {
                let theirs = serde_json::from_slice::<T>(json);
                assert!(
                    theirs.is_ok(),
                    "read {:?} from {:?}, which serde_json refuses",
                    ours,
                    String::from_utf8_lossy(json)
                );
                assert_eq!(
                    format!("{ours:?}"),
                    format!("{:?}", theirs.unwrap()),
                    "{:?}",
                    String::from_utf8_lossy(json)
                );
                true
            }
            Err(Unsupported) => false,
        }
    }

    #[track_caller]
    fn taken<T: DeserializeOwned + Debug>(json: &str) {
        assert!(agrees::<T>(json.as_bytes()), "left {json:?} to serde_json");
    }

    #[track_caller]
    fn left<T: DeserializeOwned + Debug>(json: &str) {
        assert!(!agrees::<T>(json.as_bytes()), "took {json:?} on");
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Order {
        id: u64,
        quantity: u32,
        note: String,
        tags: Vec<String>,
        discount: Option<i32>,
        status: Status,
        #[serde(default)]
        extra: BTreeMap<String, Value>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    enum Status {
        Open,
        Held(String),
        Moved(u8, u8),
        Closed { at: i64 },
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    #[serde(tag = "kind")]
    enum Tagged {
        Paid { amount: u64 },
        Refunded,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    #[serde(untagged)]
    enum Either {
        Number(i64),
        Text(String),
        Pair(bool, Option<()>),
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Flat {
        id: u8,
        #[serde(flatten)]
        rest: BTreeMap<String, Value>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        a: u8,
    }

    #[derive(Debug, Deserialize)]
    struct Unit;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Wrapper(String);

    #[test]
    fn events_are_read_as_serde_json_reads_them() {
        let note = "x".repeat(990);
        taken::<Order>(&format!(
            r#"{{"id":7,"quantity":37,"note":"{note}","tags":["a","b"],"discount":null,"status":"Open"}}"#
        ));
        taken::<Order>(
            "{ \"id\" : 18446744073709551615 ,\n\t\"quantity\":0,\"note\":\"caf\u{e9} \\\"\\\\\\/\\b\\f\\n\\r\\t \u{1F30A}\",\r
             \"tags\":[],\"discount\":-2147483648,\"status\":{\"Closed\":{\"at\":-9223372036854775808}},
             \"extra\":{\"f\":1.5e-3,\"g\":[null,true,false,{}],\"h\":-0.0,\"i\":123456789012345678901234}} ",
        );
        taken::<Order>(r#"{"status":{"Held":"x"},"id":1,"quantity":2,"note":"","tags":["\u0041"],"discount":3}"#);
        taken::<Order>(r#"[1,2,"n",["t"],null,{"Moved":[1,2]}]"#);
        // Fields the type does not have, of every kind, are skipped.
        taken::<Order>(
            r#"{"id":1,"x":{"a":[1,-2.5e+10,"\u00e9\ud83c\udf0a\"",{"b":null}]},"quantity":2,"note":"","tags":[],"discount":1,"status":"Open","y":"\udead"}"#,
        );
        taken::<Tagged>(r#"{"amount":5,"kind":"Paid"}"#);
        taken::<Tagged>(r#"{"kind":"Refunded"}"#);
        taken::<Either>("-5");
        taken::<Either>(r#""text""#);
        taken::<Either>("[true,null]");
        taken::<Flat>(r#"{"id":1,"b":[1,2],"c":"d"}"#);
        taken::<Strict>(r#"{"a":1}"#);
        taken::<Unit>("null");
        taken::<Wrapper>(r#""w""#);
        taken::<(u8, char, f64, f32, i16)>(r#"[1,"c",2,-3,-4]"#);
        taken::<BTreeMap<String, Vec<Option<bool>>>>(r#"{"a":[true,null],"b":[]}"#);
        taken::<Value>(r#"{"a":[1,-1,0,-0,1.0,1e2,"s",{"t":null}],"a":2}"#);
        taken::<IgnoredAny>(r#"[{"a":"\u00e9"}, 1.5, -0, "\ud800"]"#);
        taken::<String>(r#""é\u00e9""#);
    }

    #[test]
    fn what_the_reader_does_not_take_on_is_left_to_serde_json() {
        // Not JSON: serde_json's error, with its line and column, is the one to give.
        for bad in [
            "",
            " ",
            "{",
            r#"{"id":1,}"#,
            "[1,]",
            "[1 2]",
            "01",
            "1.",
            "-",
            "nul",
            r#""a"#,
            "\"\u{1}\"",
            "1 2",
            "{1:2}",
        ] {
            left::<Value>(bad);
        }
        left::<String>("\"\\x\"");
        taken::<String>(r#""\u00e9\u0000\ud83c\udf0a\uFFFF""#);
        for lone in [
            r#""\ud83c""#,
            r#""\ud83cx""#,
            r#""\ud83c\n""#,
            r#""\ud83c\u0041""#,
            r#""\udf0a""#,
            r#""\u12""#,
            r#""\u12G4""#,
        ] {
            left::<String>(lone);
        }
        left::<u8>("256");
        left::<u64>("-1");
        left::<u64>("1.0");
        left::<i128>("1");
        left::<Vec<u8>>(r#""bytes""#);
        left::<BTreeMap<u32, u8>>(r#"{"1":2}"#);
        left::<Strict>(r#"{"a":1,"b":2}"#);
        left::<Status>(r#""Held""#);
        left::<(u8, u8)>("[1,2,3]");
        left::<Value>(&format!("{}1{}", "[".repeat(MAX_DEPTH as usize + 1), "]".repeat(MAX_DEPTH as usize + 1)));
        taken::<Value>(&format!("{}1{}", "[".repeat(MAX_DEPTH as usize), "]".repeat(MAX_DEPTH as usize)));
        // Invalid UTF-8 in a string read as text, and in one skipped (serde_json checks
        // only the first).
        assert!(!agrees::<String>(b"\"\xff\""));
        assert!(!agrees::<String>(b"\"ab\xc3\""));
        assert!(agrees::<IgnoredAny>(b"\"ab\xc3\""));
    }

    /// Floats of every shape serde_json reads its quick way, and the longer ways it
    /// takes past them, read to the bit as serde_json reads them.
    #[test]
    fn floats_read_as_serde_json_reads_them() {
        assert!(floats_read_plainly(), "serde_json's default build rounds as plain_float does");
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let digits = |n: u64, next: &mut dyn FnMut() -> u64| -> String {
            (0..n).map(|_| char::from(b'0' + (next() % 10) as u8)).collect()
        };
        // Fewer under Miri, which checks the reader's memory use rather than its answers
        // and runs hundreds of times slower than a native build.
        for _ in 0..if cfg!(miri) { 500 } else { 50_000 } {
            let shape = next();
            let mut text = String::from(if shape & 1 == 0 { "" } else { "-" });
            // The whole part: 0, or up to 21 digits not starting with 0.
            let whole = (shape >> 1) % 22;
            if whole == 0 {
                text.push('0');
            } else {
                text.push(char::from(b'1' + (next() % 9) as u8));
                text += &digits(whole - 1, &mut next);
            }
            let fraction = (shape >> 8) % 24;
            if fraction > 0 {
                text.push('.');
                text += &digits(fraction, &mut next);
            }
            if fraction == 0 || shape & 2 == 0 {
                text += ["e", "E", "e+", "e-", "E-"][(shape >> 16) as usize % 5];
                let top = [10, 30, 330, 400, 100_000][(shape >> 24) as usize % 5];
                text += &(next() % top).to_string();
            }
            let taken = agrees::<f64>(text.as_bytes());
            assert!(
                taken || text.len() > 20 || serde_json::from_str::<f64>(&text).is_err(),
                "{text} left to serde_json"
            );
            agrees::<Value>(text.as_bytes());
            agrees::<f32>(text.as_bytes());
        }
        for long in [
            "123456789012345678901.5",
            "0.12345678901234567890123",
            "1e2147483648",
            "1e308",
            "1e309",
            "-1e-400",
            "4.9e-324",
        ] {
            agrees::<f64>(long.as_bytes());
        }
        assert!(agrees::<f64>(ROUNDING_PROBE));
    }

    /// Random documents and random damage to them: whenever the reader takes one on,
    /// serde_json reads the same value from it.
    /// Nothing in this workspace turns on serde_json's `arbitrary_precision`, under
    /// which the reader would leave every payload to serde_json.
    #[test]
    fn numbers_are_read_as_numbers_here() {
        assert!(!numbers_as_text());
        assert!(read::<Value>(b"1.000").is_ok());
    }

    #[test]
    fn random_documents_read_alike() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut taken_on = 0;
        // Fewer under Miri, as above.
        let rounds = if cfg!(miri) { 300 } else { 20_000 };
        for round in 0..rounds {
            let mut doc = Vec::new();
            document(&mut next, &mut doc, 0);
            if round % 2 == 1 {
                // Damage: a byte changed, dropped or added.
                let at = next(doc.len() as u64 + 1) as usize;
                const BYTES: &[u8] = b" \"\\{}[],:-+.eE019aentul\x01\x7f\xc3\xa9\xff";
                let byte = BYTES[next(BYTES.len() as u64) as usize];
                match next(3) {
                    0 if at < doc.len() => doc[at] = byte,
                    1 if at < doc.len() => _ = doc.remove(at),
                    _ => doc.insert(at, byte),
                }
            }
            taken_on += usize::from(agrees::<Value>(&doc));
            agrees::<IgnoredAny>(&doc);
            agrees::<Vec<Value>>(&doc);
            agrees::<BTreeMap<String, Value>>(&doc);
            agrees::<Option<String>>(&doc);
            agrees::<Either>(&doc);
        }
        assert!(taken_on > rounds / 4, "the reader took on only {taken_on} of {rounds}");
    }

    fn document(next: &mut impl FnMut(u64) -> u64, out: &mut Vec<u8>, depth: u32) {
        let space = |next: &mut dyn FnMut(u64) -> u64, out: &mut Vec<u8>| {
            if next(4) == 0 {
                out.extend_from_slice([&b" "[..], b"\n", b"\t", b"\r\n  "][next(4) as usize]);
            }
        };
        space(next, out);
        match next(if depth > 4 { 5 } else { 7 }) {
            0 => out.extend_from_slice([&b"null"[..], b"true", b"false"][next(3) as usize]),
            1 | 2 => {
                const NUMBERS: &[&str] = &[
                    "0",
                    "-0",
                    "7",
                    "-7",
                    "1.5",
                    "-2.25e-3",
                    "1E+2",
                    "18446744073709551615",
                    "18446744073709551616",
                    "-9223372036854775808",
                    "-9223372036854775809",
                    "123456789.123456789e-30",
                    "4e400",
                ];
                out.extend_from_slice(NUMBERS[next(NUMBERS.len() as u64) as usize].as_bytes());
            }
            3 | 4 => string(next, out),
            5 => {
                out.push(b'[');
                for i in 0..next(4) {
                    if i > 0 {
                        out.push(b',');
                    }
                    document(next, out, depth + 1);
                }
                space(next, out);
                out.push(b']');
            }
            _ => {
                out.push(b'{');
                for i in 0..next(4) {
                    if i > 0 {
                        out.push(b',');
                    }
                    space(next, out);
                    string(next, out);
                    space(next, out);
                    out.push(b':');
                    document(next, out, depth + 1);
                }
                space(next, out);
                out.push(b'}');
            }
        }
        space(next, out);
    }

    fn string(next: &mut impl FnMut(u64) -> u64, out: &mut Vec<u8>) {
        const PIECES: &[&str] = &[
            "a",
            "kind",
            "0123456789abcdef",
            "\\\"",
            "\\\\",
            "\\/",
            "\\n",
            "\\t",
            "\\u00e9",
            "\\ud83c\\udf0a",
            "é",
            "🌊",
            "\u{7f}",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ];
        out.push(b'"');
        for _ in 0..next(6) {
            out.extend_from_slice(PIECES[next(PIECES.len() as u64) as usize].as_bytes());
        }
        out.push(b'"');
    }
}
