//! Message ids that are kept inline rather than on the heap.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// The longest id kept inline: a UUID's 36 characters and a KSUID's 27 fit. One byte
/// short of what the value has room for, which the UUIDv7 mark takes.
const INLINE: usize = 37;

/// A message's id, as [`Message::id`](crate::Message::id) carries it and a publisher
/// returns it. The ids the factories of this crate make (36-character UUIDs, 27-character
/// KSUIDs) and any other id of up to 37 bytes are kept inside the value, so making,
/// cloning and comparing one allocates nothing; a longer id is shared, so a clone copies
/// a pointer.
///
/// It reads as a `&str` (`Deref`), compares with strings, and converts from `&str` and
/// `String`.
///
/// ```
/// use tidewater_core::{IdFactory, Message, MessageId, UuidV7Ids};
///
/// let id = UuidV7Ids.next_id();
/// assert_eq!(id.len(), 36);
/// let message = Message::new("orders", "{}").with_id(id.clone());
/// assert_eq!(message.id, id);
/// assert_eq!(MessageId::from("order-17"), "order-17");
/// assert!(MessageId::default().is_empty());
/// ```
#[derive(Clone)]
pub struct MessageId(Repr);

#[derive(Clone)]
enum Repr {
    /// Invariant: `bytes[..len]` is UTF-8 (it is copied from a `&str`) and `len <= INLINE`.
    Inline {
        len: u8,
        /// The text is a UUIDv7 in its 36-character form, as [`crate::UuidV7Ids`] makes
        /// it: its time then reads without parsing and checking the whole id.
        uuid_v7: bool,
        bytes: [u8; INLINE],
    },
    Shared(Arc<str>),
}

impl MessageId {
    /// An empty id: a message's id until a publisher or writer fills it.
    pub const fn empty() -> Self {
        Self(Repr::Inline { len: 0, uuid_v7: false, bytes: [0; INLINE] })
    }

    /// The id as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes, .. } => {
                let text = &bytes[..usize::from(*len)];
                // SAFETY: an inline id's first `len` bytes were copied from a `&str`
                // whole (see `From<&str>`), so they are UTF-8.
                unsafe { std::str::from_utf8_unchecked(text) }
            }
            Repr::Shared(text) => text,
        }
    }

    /// Whether the id is kept inline (it allocated nothing).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }

    /// The Unix time in milliseconds the id carries if it is a UUIDv7, as
    /// [`uuid_v7_millis`](crate::id::uuid_v7_millis) reads it. An id [`crate::UuidV7Ids`]
    /// made is known to be one, and its time is read from its first twelve digits alone:
    /// a driver that leaves out a time header the id holds asks this of every message
    /// it sends, and parsing the whole id cost about 150 instructions each (callgrind).
    ///
    /// ```
    /// use tidewater_core::{IdFactory, MessageId, UuidV7Ids};
    ///
    /// let id = UuidV7Ids.next_id();
    /// assert_eq!(id.uuid_v7_millis(), tidewater_core::id::uuid_v7_millis(&id));
    /// assert_eq!(MessageId::from("017f22e2-79b0-7cc3-98c4-dc0c0c07398f").uuid_v7_millis(), Some(0x017F_22E2_79B0));
    /// assert_eq!(MessageId::from("order-17").uuid_v7_millis(), None);
    /// ```
    pub fn uuid_v7_millis(&self) -> Option<u64> {
        match &self.0 {
            Repr::Inline { uuid_v7: true, bytes, .. } => {
                let high = u64::from_be_bytes(bytes[..8].try_into().expect("eight digits"));
                let low = u64::from_be_bytes([b'0', b'0', b'0', b'0', bytes[9], bytes[10], bytes[11], bytes[12]]);
                Some(hex_digits(high) << 16 | hex_digits(low))
            }
            _ => crate::id::uuid_v7_millis(self.as_str()),
        }
    }
}

/// The value of eight hexadecimal digits (`0`-`9`, `a`-`f` or `A`-`F`), the first in
/// the word's highest byte, all at once rather than a digit at a time.
fn hex_digits(word: u64) -> u64 {
    const LOW_NIBBLES: u64 = u64::from_ne_bytes([0x0F; 8]);
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    // Each byte its digit's value: the low four bits, plus nine for a letter (bit 6 set).
    let values = (word & LOW_NIBBLES) + 9 * ((word >> 6) & ONES);
    // Then the eight values side by side, four bits each.
    let pairs = (values | values >> 4) & 0x00FF_00FF_00FF_00FF;
    let quads = (pairs | pairs >> 8) & 0x0000_FFFF_0000_FFFF;
    (quads | quads >> 16) & 0xFFFF_FFFF
}

impl Default for MessageId {
    fn default() -> Self {
        Self::empty()
    }
}

impl Deref for MessageId {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for MessageId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for MessageId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl MessageId {
    /// The id of a UUIDv7 this crate formatted (`text` is its 36-character form),
    /// straight into the value rather than through a `&str` copied into it, and marked as
    /// a UUIDv7 so that its time reads without a parse.
    pub(crate) fn from_uuid_v7(text: [u8; 36]) -> Self {
        debug_assert!(crate::id::uuid_v7_millis(std::str::from_utf8(&text).unwrap_or_default()).is_some());
        // Hexadecimal digits and hyphens are ASCII, so UTF-8, as the inline form requires.
        Self::inline(&text, true)
    }

    /// `text`, which must be UTF-8 and at most `INLINE` bytes, kept inside the value;
    /// `uuid_v7` only for a UUIDv7's 36-character form.
    fn inline(text: &[u8], uuid_v7: bool) -> Self {
        let mut bytes = [0; INLINE];
        bytes[..text.len()].copy_from_slice(text);
        Self(Repr::Inline { len: text.len() as u8, uuid_v7, bytes })
    }

    /// The id `args` write, as `format!` would make it, but kept inside the value when it
    /// fits, with no `String` made on the way: readers name a record that came without
    /// an id by where it is (`orders-2-1017`), once for each such record they read.
    ///
    /// ```
    /// use tidewater_core::MessageId;
    ///
    /// let (topic, partition, offset) = ("orders", 2, 1017);
    /// let id = MessageId::from_args(format_args!("{topic}-{partition}-{offset}"));
    /// assert_eq!(id, "orders-2-1017");
    /// assert!(id.is_inline());
    /// ```
    pub fn from_args(args: fmt::Arguments<'_>) -> Self {
        if let Some(text) = args.as_str() {
            return Self::from(text);
        }
        let mut out = Written { len: 0, bytes: [0; INLINE], longer: None };
        fmt::Write::write_fmt(&mut out, args).expect("writing to memory does not fail");
        match out.longer {
            Some(text) => Self(Repr::Shared(Arc::from(text))),
            None => Self(Repr::Inline { len: out.len as u8, uuid_v7: false, bytes: out.bytes }),
        }
    }
}

/// What [`MessageId::from_args`] writes to: the inline bytes until they would overflow,
/// then a `String` of everything.
struct Written {
    len: usize,
    bytes: [u8; INLINE],
    longer: Option<String>,
}

impl fmt::Write for Written {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(longer) = &mut self.longer {
            longer.push_str(s);
            return Ok(());
        }
        let end = self.len + s.len();
        if end <= INLINE {
            self.bytes[self.len..end].copy_from_slice(s.as_bytes());
            self.len = end;
        } else {
            let written = std::str::from_utf8(&self.bytes[..self.len]).expect("whole strings were copied in");
            let mut longer = String::with_capacity(end.max(2 * INLINE));
            longer.push_str(written);
            longer.push_str(s);
            self.longer = Some(longer);
        }
        Ok(())
    }
}

impl From<&str> for MessageId {
    fn from(id: &str) -> Self {
        if id.len() > INLINE {
            return Self(Repr::Shared(Arc::from(id)));
        }
        Self::inline(id.as_bytes(), false)
    }
}

impl From<String> for MessageId {
    fn from(id: String) -> Self {
        Self::from(id.as_str())
    }
}

impl From<&String> for MessageId {
    fn from(id: &String) -> Self {
        Self::from(id.as_str())
    }
}

impl From<&MessageId> for MessageId {
    fn from(id: &MessageId) -> Self {
        id.clone()
    }
}

impl From<MessageId> for String {
    fn from(id: MessageId) -> Self {
        id.as_str().to_owned()
    }
}

impl From<&MessageId> for String {
    fn from(id: &MessageId) -> Self {
        id.as_str().to_owned()
    }
}

impl PartialEq for MessageId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for MessageId {}

impl Hash for MessageId {
    /// Hashes as the `str` it reads as, so that a map keyed by ids can be looked up with
    /// a `&str` (`Borrow<str>`).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for MessageId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MessageId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialEq<str> for MessageId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MessageId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for MessageId {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<MessageId> for str {
    fn eq(&self, other: &MessageId) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<MessageId> for &str {
    fn eq(&self, other: &MessageId) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<MessageId> for String {
    fn eq(&self, other: &MessageId) -> bool {
        self.as_str() == other.as_str()
    }
}

impl serde::Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through a `Cow`, so that a borrowed string is copied once, into the id.
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::from(&*text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn short_ids_are_inline_and_long_ones_shared() {
        let uuid = "0193a0b4-7c1e-7d2a-8f3b-1c2d3e4f5a6b";
        let id = MessageId::from(uuid);
        assert!(id.is_inline());
        assert_eq!(id, uuid);
        let long = "x".repeat(INLINE + 1);
        let shared = MessageId::from(long.as_str());
        assert!(!shared.is_inline());
        assert_eq!(shared, long);
        let edge = "é".repeat(INLINE / 2);
        assert_eq!(MessageId::from(edge.as_str()).as_str(), edge, "multi-byte text at the inline limit");
    }

    #[test]
    fn the_uuid_v7_mark_costs_no_room() {
        // The mark sits in the byte the inline text gave up, so a message moves as much as
        // before it: the 37 bytes of text, its length, the mark and the variant's tag.
        assert_eq!(std::mem::size_of::<MessageId>(), 40);
    }

    #[test]
    fn a_made_uuid_v7_reads_its_time_as_a_parse_of_its_text_would() {
        use crate::IdFactory;
        use std::time::{Duration, UNIX_EPOCH};
        // The first and last millisecond a UUIDv7 holds, and times whose digits are all
        // letters or all numerals.
        let edges = [0, 0xFFFF_FFFF_FFFF, 0xAAAA_BBBB_FFFF, 0x0123_4567_8999, 1_796_208_746_005];
        for millis in edges.into_iter().chain((0..1000).map(|i| 1_700_000_000_000 + i * 7_919)) {
            let id = crate::UuidV7Ids.id_at(UNIX_EPOCH + Duration::from_millis(millis));
            assert_eq!(id.uuid_v7_millis(), Some(millis), "{id}");
            assert_eq!(crate::id::uuid_v7_millis(&id), Some(millis), "{id}");
            // The same text from elsewhere carries no mark and is parsed: same answer.
            assert_eq!(MessageId::from(id.as_str()).uuid_v7_millis(), Some(millis));
        }
    }

    #[test]
    fn ids_from_args_read_as_format_writes_them_at_every_length() {
        // Topics of every length around the inline limit, and text of several bytes a
        // character where the limit falls inside one.
        for len in 0..=INLINE + 8 {
            for topic in ["t".repeat(len), "é".repeat(len / 2)] {
                let expected = format!("{topic}-{}-{}", 7, 123_456);
                let id = MessageId::from_args(format_args!("{topic}-{}-{}", 7, 123_456));
                assert_eq!(id, expected.as_str());
                assert_eq!(id.is_inline(), expected.len() <= INLINE, "{expected}");
            }
        }
        assert_eq!(MessageId::from_args(format_args!("plain")), "plain");
        assert!(MessageId::from_args(format_args!("")).is_empty());
    }

    #[test]
    fn ids_hash_and_order_as_their_text() {
        let mut seen = HashSet::new();
        seen.insert(MessageId::from("b"));
        assert!(seen.contains("b"), "looked up by &str");
        let (a, b) = (MessageId::from("a"), MessageId::from("b"));
        assert!(a < b);
        assert_eq!(MessageId::from("x".repeat(50)), MessageId::from("x".repeat(50)));
    }
}
