//! Whether a reader's consumers reach the cluster, for [`Reader::connected`].
//!
//! [`Reader::connected`]: tidewater_core::Reader::connected

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};

use rdkafka::statistics::Statistics;

// 0 until the first statistics.
const UP: u8 = 1;
const DOWN: u8 = 2;

/// One consumer's link to the cluster, as its latest statistics told it. librdkafka
/// reconnects on its own and says so only in its statistics: it reports an error when
/// every broker is down, but nothing when one is back.
#[derive(Default)]
pub(super) struct Link(AtomicU8);

impl Link {
    /// Up while the consumer has a connection to a broker of the cluster (the internal
    /// and logical brokers librdkafka lists as well are always "up").
    pub(super) fn observe(&self, stats: &Statistics) {
        let up =
            stats.brokers.values().any(|b| b.state == "UP" && matches!(b.source.as_str(), "learned" | "configured"));
        self.0.store(if up { UP } else { DOWN }, Ordering::Relaxed);
    }

    fn get(&self) -> Option<bool> {
        match self.0.load(Ordering::Relaxed) {
            UP => Some(true),
            DOWN => Some(false),
            _ => None,
        }
    }
}

/// The links of a reader's open consumers. A consumer that closed drops its link.
#[derive(Default)]
pub(super) struct Links(Mutex<Vec<Weak<Link>>>);

impl Links {
    /// A link for a new consumer.
    pub(super) fn add(&self) -> Arc<Link> {
        let link = Arc::new(Link::default());
        let mut links = self.0.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|l| l.strong_count() > 0);
        links.push(Arc::downgrade(&link));
        link
    }

    /// Down while any consumer has no broker, up while every one that has told has
    /// one, `None` before any told (no consumer, or none a second old).
    pub(super) fn connected(&self) -> Option<bool> {
        let links = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut told = None;
        for link in links.iter().filter_map(Weak::upgrade) {
            match link.get() {
                Some(false) => return Some(false),
                Some(true) => told = Some(true),
                None => {}
            }
        }
        told
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_wins_and_closed_consumers_drop_out() {
        let links = Links::default();
        assert_eq!(links.connected(), None);
        let (a, b) = (links.add(), links.add());
        assert_eq!(links.connected(), None, "no statistics yet");
        a.0.store(UP, Ordering::Relaxed);
        assert_eq!(links.connected(), Some(true));
        b.0.store(DOWN, Ordering::Relaxed);
        assert_eq!(links.connected(), Some(false));
        drop(b);
        assert_eq!(links.connected(), Some(true), "a closed consumer no longer counts");
    }
}
