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
/// `String`. A conversion from text shares the name with the last few names the thread
/// converted, where it is one of them, so that `publisher.publish_bytes("orders", ..)` in
/// a loop copies the text once, not once a message.
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
        recent::share(name)
    }
}

impl From<String> for TopicName {
    fn from(name: String) -> Self {
        recent::share(&name)
    }
}

impl From<&String> for TopicName {
    fn from(name: &String) -> Self {
        recent::share(name)
    }
}

/// The names this thread converted from text last. A service publishes to a handful of
/// topics, by name, from every task; the few names each thread saw last catch nearly all
/// of those conversions, for a comparison or two instead of an allocation.
mod recent {
    use std::cell::RefCell;
    use std::sync::Arc;

    use super::TopicName;

    /// Enough for the topics one publisher writes to; a miss costs a comparison each.
    const KEPT: usize = 4;

    thread_local! {
        /// The names, and where the next new one goes (round robin).
        static RECENT: RefCell<([Option<TopicName>; KEPT], usize)> = const { RefCell::new(([None, None, None, None], 0)) };
    }

    /// `name` as a shared name: a clone of a kept one with that text, else a new one,
    /// kept in place of the oldest.
    pub(super) fn share(name: &str) -> TopicName {
        RECENT
            .try_with(|recent| {
                let mut recent = recent.borrow_mut();
                let (kept, next) = &mut *recent;
                if let Some(found) = kept.iter().flatten().find(|kept| kept.as_str() == name) {
                    return found.clone();
                }
                let made = TopicName(Arc::from(name));
                kept[*next] = Some(made.clone());
                *next = (*next + 1) % KEPT;
                made
            })
            // The thread is ending and its kept names are gone: copy.
            .unwrap_or_else(|_| TopicName(Arc::from(name)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_converted_again_is_shared() {
        let a = TopicName::from("orders");
        let b = TopicName::from(String::from("orders"));
        assert!(a.shares(&b));
        // More names than are kept push the first out: it is made again, equal.
        for other in ["a", "b", "c", "d", "e"] {
            let _ = TopicName::from(other);
        }
        let c = TopicName::from("orders");
        assert_eq!(c, a);
        assert!(!c.shares(&a));
    }
}
