//! Message ids that are kept inline rather than on the heap.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// The longest id kept inline: a UUID's 36 characters and a KSUID's 27 fit.
const INLINE: usize = 38;

/// A message's id, as [`Message::id`](crate::Message::id) carries it and a publisher
/// returns it. The ids the factories of this crate make (36-character UUIDs, 27-character
/// KSUIDs) and any other id of up to 38 bytes are kept inside the value, so making,
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
        bytes: [u8; INLINE],
    },
    Shared(Arc<str>),
}

impl MessageId {
    /// An empty id: a message's id until a publisher or writer fills it.
    pub const fn empty() -> Self {
        Self(Repr::Inline { len: 0, bytes: [0; INLINE] })
    }

    /// The id as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
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
    /// An id of the ASCII text in `text`: for ids this crate formats itself, straight
    /// into the value rather than through a `&str` copied into it.
    pub(crate) fn from_ascii<const N: usize>(text: [u8; N]) -> Self {
        const { assert!(N <= INLINE) };
        debug_assert!(text.is_ascii());
        // ASCII is UTF-8, as the inline form requires.
        Self::inline(&text)
    }

    /// `text`, which must be UTF-8 and at most `INLINE` bytes, kept inside the value.
    fn inline(text: &[u8]) -> Self {
        let mut bytes = [0; INLINE];
        bytes[..text.len()].copy_from_slice(text);
        Self(Repr::Inline { len: text.len() as u8, bytes })
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
            None => Self(Repr::Inline { len: out.len as u8, bytes: out.bytes }),
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
        Self::inline(id.as_bytes())
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
