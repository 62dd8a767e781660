//! Pausing a read task: it takes nothing new from the broker until it is resumed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Pauses and resumes one read task, from [`Monitor::pause`](crate::Monitor::pause) or
/// by hand for a reader run outside a scheduler. Clones share the switch.
///
/// A paused task fetches nothing more; the deliveries it holds are handled and settled
/// as usual. What the broker holds for it waits there: on Kafka its consumer keeps its
/// place in the group (it is polled with its partitions paused), JetStream and
/// StreamBus are asked for nothing, and Pulsar's consumer keeps what the broker had sent
/// it ahead (its receiver queue) until the task resumes. Core NATS sends every message
/// as it is published, so a paused core NATS task holds them in its client's buffer,
/// and beyond the buffer the server drops them, as for any slow core NATS consumer.
#[derive(Clone, Debug, Default)]
pub struct PauseSwitch(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    paused: AtomicBool,
    resumed: Notify,
}

impl PauseSwitch {
    /// A switch that is not paused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pauses the task; false if it was paused already.
    pub fn pause(&self) -> bool {
        !self.0.paused.swap(true, Ordering::AcqRel)
    }

    /// Resumes the task; false if it was not paused.
    pub fn resume(&self) -> bool {
        let was = self.0.paused.swap(false, Ordering::AcqRel);
        if was {
            self.0.resumed.notify_waiters();
        }
        was
    }

    /// Whether the task is paused.
    pub fn is_paused(&self) -> bool {
        self.0.paused.load(Ordering::Acquire)
    }

    /// Resolves once the task is not paused (at once if it is not).
    pub async fn resumed(&self) {
        loop {
            // Registered before the flag is read, so a resume between the two still wakes.
            let notified = self.0.resumed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_paused() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_wait_ends_at_the_resume_and_not_before() {
        let switch = PauseSwitch::new();
        assert!(switch.resumed().now_or_never().is_some(), "not paused: no wait");
        assert!(switch.pause());
        assert!(!switch.pause(), "paused already");
        let waiting = tokio::spawn({
            let switch = switch.clone();
            async move { switch.resumed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(switch.resume());
        waiting.await.unwrap();
        assert!(!switch.resume(), "not paused any more");
    }
}
