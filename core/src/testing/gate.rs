//! A handler that holds its calls until the test lets them return.

use std::fmt;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::Recorder;
use crate::{Delivery, Handler, HandlerError};

/// A handler that records each delivery, then waits until the test lets the call return.
///
/// For tests of what a reader does while its handlers are busy: how far it reads ahead,
/// what a shutdown with handlers running settles, whether a full broker holds its
/// publishers. Each call succeeds once let through.
///
/// ```
/// use std::time::Duration;
/// use tidewater_core::testing::Gate;
/// use tidewater_core::{Delivery, Handler, Message, Position};
///
/// # async fn demo() {
/// let gate = Gate::new();
/// // A test subscribes `gate.clone()` as its handler; here the handler is called by hand.
/// let delivery = Delivery::new(Message::new("t", "x"), 1, Position::Queue { partition: None, sequence: None }, None);
/// let call = tokio::spawn({
///     let gate = gate.clone();
///     async move { gate.handle(delivery).await }
/// });
/// gate.recorder().wait_for(1, Duration::from_secs(5)).await.unwrap();
/// assert!(!call.is_finished(), "held at the gate");
/// gate.release(1);
/// call.await.unwrap().unwrap();
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo());
/// ```
#[derive(Clone)]
pub struct Gate {
    recorder: Recorder,
    // A permit a call let through; closed, the gate lets every call through.
    passes: Arc<Semaphore>,
}

impl Gate {
    /// A closed gate: every call waits.
    pub fn new() -> Self {
        Self { recorder: Recorder::new(), passes: Arc::new(Semaphore::new(0)) }
    }

    /// What the handler got, in order of arrival: the calls held and those let through.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Lets `calls` calls return: those waiting first, then later ones as they come.
    pub fn release(&self, calls: usize) {
        self.passes.add_permits(calls);
    }

    /// Lets every call return, those waiting and all later ones.
    pub fn open(&self) {
        self.passes.close();
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("recorded", &self.recorder.len())
            .field("open", &self.passes.is_closed())
            .field("passes", &self.passes.available_permits())
            .finish()
    }
}

impl Handler for Gate {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        self.recorder.record(delivery);
        // An error means the semaphore was closed: the gate is open.
        if let Ok(pass) = self.passes.acquire().await {
            pass.forget();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Message, Position};

    fn delivery(id: &str) -> Delivery {
        Delivery::new(Message::new("t", "x").with_id(id), 1, Position::Queue { partition: None, sequence: None }, None)
    }

    fn call(gate: &Gate, id: &str) -> tokio::task::JoinHandle<Result<(), HandlerError>> {
        let (gate, delivery) = (gate.clone(), delivery(id));
        tokio::spawn(async move { gate.handle(delivery).await })
    }

    const PATIENCE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn calls_return_only_as_they_are_released() {
        let gate = Gate::new();
        let calls: Vec<_> = ["a", "b", "c"].iter().map(|id| call(&gate, id)).collect();
        gate.recorder().wait_for(3, PATIENCE).await.unwrap();
        gate.release(2);
        let mut calls = calls.into_iter();
        // The semaphore is fair: the first two callers take the two passes.
        for held in calls.by_ref().take(2) {
            tokio::time::timeout(PATIENCE, held).await.expect("released").unwrap().unwrap();
        }
        let third = calls.next().unwrap();
        tokio::task::yield_now().await;
        assert!(!third.is_finished(), "a third call returned on two passes");
        gate.release(1);
        tokio::time::timeout(PATIENCE, third).await.expect("released").unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_open_gate_lets_waiting_and_later_calls_through() {
        let gate = Gate::new();
        let waiting = call(&gate, "a");
        gate.recorder().wait_for(1, PATIENCE).await.unwrap();
        gate.open();
        tokio::time::timeout(PATIENCE, waiting).await.expect("let through").unwrap().unwrap();
        tokio::time::timeout(PATIENCE, call(&gate, "b")).await.expect("let through").unwrap().unwrap();
        let ids: Vec<String> = gate.recorder().deliveries().iter().map(|d| d.message().id.to_string()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(format!("{gate:?}"), "Gate { recorded: 2, open: true, passes: 0 }");
    }
}
