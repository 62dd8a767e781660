//! Topic names that are shared rather than copied.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The name of a topic or subject, as a [`Message`](crate::Message) carries it: shared, so
/// that cloning it copies a pointer and not the text. A publisher routes every event of a
/// type to one name, and a reader of one topic names every message it reads with it; each
/// then gives its messages clones of one `TopicName` instead of a copy of the text apiece.
///
/// It reads as a `&str` (`Deref`), compares with strings, and converts from `&str` and
/// `String` (which copies the text once).
///
/// ```
/// use tidewater_core::{Message, TopicName};
///
/// let orders = TopicName::from("orders");
/// let a = Message::new(&orders, "1");
/// let b = Message::new(&orders, "2");
/// assert_eq!(a.stream, "orders");
/// assert!(a.stream.shares(&b.stream));
/// assert!(a.stream.starts_with("ord"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are clones of one name (rather than two copies of the same text).
    pub fn shares(&self, other: &TopicName) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for TopicName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for TopicName {
    fn from(name: &str) -> Self {
        Self(Arc::from(name))
    }
}

impl From<String> for TopicName {
    fn from(name: String) -> Self {
        Self(Arc::from(name))
    }
}

impl From<&String> for TopicName {
    fn from(name: &String) -> Self {
        Self(Arc::from(name.as_str()))
    }
}

impl From<Arc<str>> for TopicName {
    fn from(name: Arc<str>) -> Self {
        Self(name)
    }
}

impl From<&TopicName> for TopicName {
    fn from(name: &TopicName) -> Self {
        name.clone()
    }
}

impl From<TopicName> for String {
    fn from(name: TopicName) -> Self {
        name.0.to_string()
    }
}

impl From<&TopicName> for String {
    fn from(name: &TopicName) -> Self {
        name.0.to_string()
    }
}

impl PartialEq<str> for TopicName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for TopicName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for TopicName {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<TopicName> for str {
    fn eq(&self, other: &TopicName) -> bool {
        self == &*other.0
    }
}

impl PartialEq<TopicName> for &str {
    fn eq(&self, other: &TopicName) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<TopicName> for String {
    fn eq(&self, other: &TopicName) -> bool {
        **self == *other.0
    }
}

impl serde::Serialize for TopicName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}
