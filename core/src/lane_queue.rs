//! The queue between a reader's dispatch and one of its lanes.
//!
//! A fetch's share for a lane goes in under one lock and the lane takes everything it
//! holds under one more, so a fetch of twenty messages over four lanes costs four
//! hand-overs, not twenty. A channel paid its atomic operations (and the cache line
//! they move between the two threads) for every message.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::Incoming;

/// Deliveries handed to one lane, in the order the reader fetched them. Unbounded: what
/// the lanes hold together is bounded by the runner's count of deliveries not started,
/// and a bound of a lane's own held up the hand-over to every other lane behind a lane
/// whose key was stuck.
#[derive(Default)]
pub(crate) struct LaneQueue {
    held: Mutex<Held>,
    ready: Notify,
}

#[derive(Default)]
struct Held {
    deliveries: VecDeque<Incoming>,
    closed: bool,
}

impl LaneQueue {
    fn held(&self) -> MutexGuard<'_, Held> {
        // Nothing runs under the lock that can panic halfway through a change.
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `share` (emptied, its capacity kept for the next fetch) and wakes the lane.
    pub(crate) fn hand_over(&self, share: &mut Vec<Incoming>) {
        if share.is_empty() {
            return;
        }
        self.held().deliveries.extend(share.drain(..));
        self.ready.notify_one();
    }

    /// No more deliveries come: the lane ends once it has taken what is held.
    pub(crate) fn close(&self) {
        self.held().closed = true;
        self.ready.notify_one();
    }

    /// Swaps everything held into `into` (which must be empty), waiting until there is
    /// something; false once the queue is closed and empty.
    pub(crate) async fn take_all(&self, into: &mut VecDeque<Incoming>) -> bool {
        debug_assert!(into.is_empty());
        loop {
            let woken = self.ready.notified();
            tokio::pin!(woken);
            // Registered before the look, so that a hand-over in between wakes it.
            woken.as_mut().enable();
            {
                let mut held = self.held();
                if !held.deliveries.is_empty() {
                    std::mem::swap(&mut held.deliveries, into);
                    return true;
                }
                if held.closed {
                    return false;
                }
            }
            woken.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Delivery, Message, Position, Result, Settle, Settlement};
    use std::sync::Arc;

    struct Unsettled;

    #[async_trait::async_trait]
    impl Settle for Unsettled {
        async fn settle(self: Box<Self>, _: Settlement) -> Result<()> {
            Ok(())
        }
    }

    fn incoming(id: &str) -> Incoming {
        let position = Position::Queue { partition: None, sequence: None };
        Incoming::new(Delivery::new(Message::new("t", "x").with_id(id), 1, position, None), Unsettled)
    }

    #[tokio::test]
    async fn a_lane_takes_what_was_handed_over_in_order_then_ends_at_close() {
        let queue = Arc::new(LaneQueue::default());
        let lane = tokio::spawn({
            let queue = Arc::clone(&queue);
            async move {
                let mut taken = Vec::new();
                let mut local = VecDeque::new();
                while queue.take_all(&mut local).await {
                    taken.extend(local.drain(..).map(|i| i.delivery.message().id.to_string()));
                }
                taken
            }
        });
        let mut share = vec![incoming("a"), incoming("b")];
        queue.hand_over(&mut share);
        assert!(share.is_empty() && share.capacity() >= 2, "the share is emptied, its room kept");
        tokio::task::yield_now().await;
        share.push(incoming("c"));
        queue.hand_over(&mut share);
        queue.close();
        assert_eq!(lane.await.unwrap(), ["a", "b", "c"]);
    }
}
