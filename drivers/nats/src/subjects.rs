//! The subjects writers have checked, kept in the client's shared form.
//!
//! A service publishes to a few subjects over and over. Checking each subject again and
//! copying it into a fresh [`Subject`] cost about a tenth of a core publish; a subject
//! remembered here is checked once and then shared by reference count.
//!
//! Whether a subject passes its checks depends on its text alone, so one list serves
//! every writer, and each thread keeps its own: a publish takes no lock. A list per
//! writer behind a mutex cost two atomic operations a publish (the lock and its
//! release), as many as the subject's own reference count.

use std::cell::RefCell;

use async_nats::Subject;
use tidewater_core::{Result, TopicName};

use crate::headers::check_subject;

/// How many subjects a thread remembers. Writing to more (a subject per tenant, say)
/// replaces the oldest, which then pays the check and the copy again, as it would
/// without the list.
const SLOTS: usize = 8;

struct Recent {
    /// Each subject with the topic name it was last asked for by.
    subjects: Vec<(TopicName, Subject)>,
    /// The slot the next new subject takes once all are used.
    next: usize,
    /// The slot found last, looked at first: a writer mostly writes to one subject after
    /// another to the same.
    last: usize,
}

thread_local! {
    static RECENT: RefCell<Recent> = const { RefCell::new(Recent { subjects: Vec::new(), next: 0, last: 0 }) };
}

impl Recent {
    /// The subject of `topic`. Messages of one publisher's topic share its name, so a
    /// comparison of pointers finds it first; a copy of the name is compared as text,
    /// and then kept, so that its clones are found by pointer too.
    fn find(&mut self, topic: &TopicName) -> Option<&Subject> {
        if self.subjects.get(self.last).is_some_and(|(name, _)| name.shares(topic)) {
            return Some(&self.subjects[self.last].1);
        }
        let at = match self.subjects.iter().position(|(name, _)| name.shares(topic)) {
            Some(at) => at,
            None => {
                let at = self.subjects.iter().position(|(name, _)| name == topic)?;
                self.subjects[at].0 = topic.clone();
                at
            }
        };
        self.last = at;
        Some(&self.subjects[at].1)
    }

    fn remember(&mut self, topic: &TopicName, subject: Subject) {
        let entry = (topic.clone(), subject);
        if self.subjects.len() < SLOTS {
            self.last = self.subjects.len();
            self.subjects.push(entry);
        } else {
            self.subjects[self.next] = entry;
            self.last = self.next;
            self.next = (self.next + 1) % SLOTS;
        }
    }
}

/// The subject of `topic`, checked as a subject to publish to, in the client's form.
pub(crate) fn subject_of(topic: &TopicName) -> Result<Subject> {
    RECENT
        .try_with(|recent| {
            let mut recent = recent.borrow_mut();
            if let Some(known) = recent.find(topic) {
                return Ok(known.clone());
            }
            let fresh = checked(topic)?;
            // The clone moves the bytes to shared storage once, so later clones only count.
            recent.remember(topic, fresh.clone());
            Ok(fresh)
        })
        // The thread is ending and its list is gone: check and copy.
        .unwrap_or_else(|_| checked(topic))
}

fn checked(subject: &str) -> Result<Subject> {
    // The portable rule first, so that a topic NATS would take but other brokers would not
    // (`orders/eu`, `a*b`) fails here as it fails on the memory driver.
    tidewater_core::names::check_topic(subject).map_err(|e| e.with_driver(crate::DRIVER))?;
    check_subject(subject)?;
    Ok(Subject::from(subject))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tidewater_core::ErrorKind;

    use super::*;

    /// Runs `test` on a thread of its own, so that it starts from an empty list.
    fn on_fresh_thread(test: impl FnOnce() + Send + 'static) {
        std::thread::spawn(test).join().unwrap();
    }

    /// The names this thread's list holds, in slot order.
    fn kept() -> Vec<String> {
        RECENT.with(|recent| recent.borrow().subjects.iter().map(|(name, _)| name.to_string()).collect())
    }

    #[test]
    fn a_known_subject_is_shared_and_a_bad_one_is_never_remembered() {
        on_fresh_thread(|| {
            let name = TopicName::from("orders.eu");
            let first = subject_of(&name).unwrap();
            let again = subject_of(&name).unwrap();
            assert_eq!(first, again);
            // A copy of the name, not a clone, finds the subject by its text.
            let copy = TopicName::from(Arc::<str>::from("orders.eu"));
            assert!(!copy.shares(&name));
            assert_eq!(subject_of(&copy).unwrap(), first);
            assert_eq!(kept(), ["orders.eu"]);
            for _ in 0..2 {
                assert_eq!(subject_of(&"orders..eu".into()).unwrap_err().kind(), ErrorKind::InvalidName);
            }
            assert_eq!(kept(), ["orders.eu"]);
        });
    }

    #[test]
    fn a_subject_found_again_shares_the_first_ones_bytes() {
        on_fresh_thread(|| {
            let name = TopicName::from("orders.shared");
            let first = subject_of(&name).unwrap();
            let again = subject_of(&name.clone()).unwrap();
            assert_eq!(first.as_str().as_ptr(), again.as_str().as_ptr(), "the subject was copied, not shared");
        });
    }

    #[test]
    fn more_subjects_than_slots_replace_the_oldest() {
        on_fresh_thread(|| {
            for i in 0..SLOTS + 3 {
                assert_eq!(subject_of(&format!("s.{i}").into()).unwrap().as_str(), format!("s.{i}"));
            }
            let mut held = kept();
            held.sort();
            let mut expected: Vec<String> = (3..SLOTS + 3).map(|i| format!("s.{i}")).collect();
            expected.sort();
            assert_eq!(held, expected);
        });
    }

    #[test]
    fn subjects_taking_turns_each_find_their_own() {
        on_fresh_thread(|| {
            let names: Vec<TopicName> = ["a.1", "a.2", "a.3"].into_iter().map(TopicName::from).collect();
            for i in [0, 1, 0, 0, 2, 1, 2, 2, 0] {
                assert_eq!(subject_of(&names[i]).unwrap().as_str(), names[i].as_str());
            }
            assert_eq!(kept(), ["a.1", "a.2", "a.3"]);
        });
    }

    #[test]
    fn each_thread_checks_for_itself() {
        on_fresh_thread(|| {
            assert_eq!(subject_of(&"here.only".into()).unwrap().as_str(), "here.only");
            on_fresh_thread(|| {
                assert!(kept().is_empty());
                assert_eq!(subject_of(&"bad subject".into()).unwrap_err().kind(), ErrorKind::InvalidName);
            });
            assert_eq!(kept(), ["here.only"]);
        });
    }
}
