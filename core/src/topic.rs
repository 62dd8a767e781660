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
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are clones of one name (rather than two copies of the same text).
    #[inline]
    pub fn shares(&self, other: &TopicName) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for TopicName {
    type Target = str;

    #[inline]
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

    /// The kept names, where the next new one goes (round robin), and which one was
    /// shared last.
    struct Recent {
        kept: [Option<TopicName>; KEPT],
        next: usize,
        last: usize,
    }

    thread_local! {
        static RECENT: RefCell<Recent> = const { RefCell::new(Recent { kept: [None, None, None, None], next: 0, last: 0 }) };
    }

    /// `name` as a shared name: a clone of a kept one with that text, else a new one,
    /// kept in place of the oldest.
    pub(super) fn share(name: &str) -> TopicName {
        RECENT
            .try_with(|recent| {
                let mut recent = recent.borrow_mut();
                let Recent { kept, next, last } = &mut *recent;
                // The last one first: a publisher mostly writes to one topic after another
                // to the same, and each other name of the same length costs a comparison.
                if let Some(found) = kept[*last].as_ref().filter(|kept| kept.as_str() == name) {
                    return found.clone();
                }
                if let Some(at) = kept.iter().position(|kept| kept.as_ref().is_some_and(|kept| kept.as_str() == name)) {
                    *last = at;
                    return kept[at].clone().expect("just found");
                }
                let made = TopicName(Arc::from(name));
                kept[*next] = Some(made.clone());
                *last = *next;
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

    #[test]
    fn names_taking_turns_stay_shared_and_distinct() {
        // Three names of one length in turn: each found again, never another's.
        let first: Vec<TopicName> = ["t.1", "t.2", "t.3"].into_iter().map(TopicName::from).collect();
        for round in 0..5 {
            for (name, kept) in ["t.1", "t.2", "t.3", "t.2", "t.2"].into_iter().zip([0, 1, 2, 1, 1]) {
                let again = TopicName::from(name);
                assert_eq!(again.as_str(), name, "round {round}");
                assert!(again.shares(&first[kept]), "{name} in round {round}");
            }
        }
        // New names go round the slots whatever was shared last: with four kept, the
        // fifth name pushes out the first.
        let _ = TopicName::from("t.4");
        let _ = TopicName::from("t.5");
        assert!(TopicName::from("t.2").shares(&first[1]) && TopicName::from("t.3").shares(&first[2]));
        assert!(!TopicName::from("t.1").shares(&first[0]));
    }
}
