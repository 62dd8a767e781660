//! The subjects a writer has checked, kept in the client's shared form.
//!
//! A service publishes to a few subjects over and over. Checking each subject again and
//! copying it into a fresh [`Subject`] cost about a tenth of a core publish; a subject
//! remembered here is checked once and then shared by reference count.

use std::sync::{Mutex, TryLockError};

use async_nats::Subject;
use tidewater_core::{Result, TopicName};

use crate::headers::check_subject;

/// How many subjects a writer remembers. A writer that publishes to more (a subject per
/// tenant, say) replaces the oldest and pays the check and the copy again, as it would
/// without them.
const SLOTS: usize = 8;

/// Subjects a writer has checked.
#[derive(Debug, Default)]
pub(crate) struct CheckedSubjects {
    recent: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    /// Each subject with the topic name it was last asked for by.
    subjects: Vec<(TopicName, Subject)>,
    /// The slot the next new subject takes once all are used.
    next: usize,
    /// The slot found last, looked at first: a writer mostly writes to one subject after
    /// another to the same.
    last: usize,
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

impl CheckedSubjects {
    /// The subject of `topic`, checked as a subject to publish to, in the client's form.
    pub(crate) fn get(&self, topic: &TopicName) -> Result<Subject> {
        let mut recent = match self.recent.try_lock() {
            Ok(recent) => recent,
            // Nothing panics while holding the lock, but a poisoned list is still whole.
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Another task of this writer holds the list: doing the work is quicker than
            // waiting for it.
            Err(TryLockError::WouldBlock) => return checked(topic),
        };
        if let Some(known) = recent.find(topic) {
            return Ok(known.clone());
        }
        let fresh = checked(topic)?;
        // The clone moves the bytes to shared storage once, so later clones only count.
        recent.remember(topic, fresh.clone());
        Ok(fresh)
    }
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

    #[test]
    fn a_known_subject_is_shared_and_a_bad_one_is_never_remembered() {
        let subjects = CheckedSubjects::default();
        let name = TopicName::from("orders.eu");
        let first = subjects.get(&name).unwrap();
        let again = subjects.get(&name).unwrap();
        assert_eq!(first, again);
        // A copy of the name, not a clone, finds the subject by its text.
        let copy = TopicName::from(Arc::<str>::from("orders.eu"));
        assert!(!copy.shares(&name));
        assert_eq!(subjects.get(&copy).unwrap(), first);
        assert_eq!(subjects.recent.lock().unwrap().subjects.len(), 1);
        for _ in 0..2 {
            assert_eq!(subjects.get(&"orders..eu".into()).unwrap_err().kind(), ErrorKind::InvalidName);
        }
        assert_eq!(subjects.recent.lock().unwrap().subjects.len(), 1);
    }

    #[test]
    fn more_subjects_than_slots_replace_the_oldest() {
        let subjects = CheckedSubjects::default();
        for i in 0..SLOTS + 3 {
            assert_eq!(subjects.get(&format!("s.{i}").into()).unwrap().as_str(), format!("s.{i}"));
        }
        let mut recent = subjects.recent.lock().unwrap();
        assert_eq!(recent.subjects.len(), SLOTS);
        assert!(recent.find(&"s.0".into()).is_none() && recent.find(&"s.2".into()).is_none());
        for i in 3..SLOTS + 3 {
            assert!(recent.find(&format!("s.{i}").into()).is_some(), "s.{i}");
        }
    }

    #[test]
    fn subjects_taking_turns_each_find_their_own() {
        let subjects = CheckedSubjects::default();
        let names: Vec<TopicName> = ["a.1", "a.2", "a.3"].into_iter().map(TopicName::from).collect();
        for i in [0, 1, 0, 0, 2, 1, 2, 2, 0] {
            assert_eq!(subjects.get(&names[i]).unwrap().as_str(), names[i].as_str());
        }
        assert_eq!(subjects.recent.lock().unwrap().subjects.len(), 3);
    }

    #[test]
    fn a_busy_list_still_checks() {
        let subjects = CheckedSubjects::default();
        let held = subjects.recent.lock().unwrap();
        assert_eq!(subjects.get(&"ok.subject".into()).unwrap().as_str(), "ok.subject");
        assert_eq!(subjects.get(&"bad subject".into()).unwrap_err().kind(), ErrorKind::InvalidName);
        drop(held);
        assert!(subjects.recent.lock().unwrap().subjects.is_empty());
    }
}
