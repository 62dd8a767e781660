//! Helpers for tests of services built on tidewater: record what was published and what
//! handlers saw, on any driver, and wait for it without sleeping.
//!
//! [`TestKit`] wraps a driver and records everything a bus does through it;
//! [`Recorder`] is a handler that records the deliveries it gets; [`Gate`] records them
//! and holds each call until the test lets it return; [`reported`] is an error as a
//! log reporter prints it.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::{Delivery, Handler, HandlerError};

mod gate;
mod kit;

pub use gate::Gate;
pub use kit::{Handled, Outcome, Recorded, TestKit};

/// The text a reporter that prints each [`source`](std::error::Error::source) makes of
/// `err`, as anyhow's `{:#}` does: the error's own, then each cause's, joined by ": ".
/// For a test that an error of a service's says each cause once.
///
/// ```
/// use tidewater_core::{testing::reported, Error, ErrorKind};
///
/// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
/// let err = Error::new(ErrorKind::Connection, "cannot reach the broker").with_source(refused);
/// assert_eq!(reported(&err), "connection failed: cannot reach the broker: connection refused");
/// ```
pub fn reported(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// A handler that records every delivery it gets and lets a test wait for them.
///
/// ```
/// # async fn demo() {
/// use std::time::Duration;
/// use tidewater_core::testing::Recorder;
///
/// let recorder = Recorder::new();
/// // subscribe `recorder.clone()` as a handler, publish 3 messages, then:
/// # for i in 0..3 { recorder.record(tidewater_core::Delivery::new(
/// #     tidewater_core::Message::new("t", "x"), 1,
/// #     tidewater_core::Position::Queue { partition: None, sequence: None }, None)); }
/// let seen = recorder.wait_for(3, Duration::from_secs(5)).await.unwrap();
/// assert_eq!(seen.len(), 3);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    seen: Mutex<Vec<Delivery>>,
    changed: Notify,
}

/// A wait that ran out of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitTimeout {
    /// How long it waited.
    pub waited: Duration,
    /// How many deliveries had been recorded by then.
    pub recorded: usize,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {:?} with {} deliveries recorded", self.waited, self.recorded)
    }
}

impl std::error::Error for WaitTimeout {}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `delivery` and wakes waiters.
    pub fn record(&self, delivery: Delivery) {
        self.inner.seen.lock().expect("recorder lock").push(delivery);
        self.inner.changed.notify_waiters();
    }

    /// Everything recorded so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.seen.lock().expect("recorder lock").clone()
    }

    /// How many deliveries were recorded.
    pub fn len(&self) -> usize {
        self.inner.seen.lock().expect("recorder lock").len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least `n` deliveries were recorded, for at most `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<Delivery>, WaitTimeout> {
        self.wait_until(|seen| seen.len() >= n, timeout).await
    }

    /// Waits until `done` holds for the recorded deliveries, for at most `timeout`.
    pub async fn wait_until(
        &self,
        done: impl Fn(&[Delivery]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Delivery>, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let seen = self.inner.seen.lock().expect("recorder lock");
                if done(&seen) {
                    return Ok(seen.clone());
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(WaitTimeout { waited: timeout, recorded: self.len() });
            }
        }
    }
}

impl Handler for Recorder {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        self.record(delivery);
        Ok(())
    }
}
