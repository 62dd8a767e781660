//! The stop signal that read tasks watch, with the deadline for in-flight work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Requests a stop; see [`StopSignal`].
#[derive(Debug)]
pub struct StopHandle {
    tx: watch::Sender<Option<Instant>>,
    stopped: Arc<AtomicBool>,
}

/// Tells a read task to stop taking messages, and until when its in-flight handlers may
/// run on. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct StopSignal {
    rx: watch::Receiver<Option<Instant>>,
    /// Set with the deadline, for [`StopSignal::is_stopped`], which runners ask before
    /// every delivery: reading the watch takes its lock.
    stopped: Arc<AtomicBool>,
    /// For a signal that never fires, the sender nobody else holds: kept open while the
    /// signal lives, so that `stopped` pends, and dropped with it.
    _never: Option<Arc<watch::Sender<Option<Instant>>>>,
}

/// A new stop handle and the signal it controls.
pub fn stop_pair() -> (StopHandle, StopSignal) {
    let (tx, rx) = watch::channel(None);
    let stopped = Arc::new(AtomicBool::new(false));
    (StopHandle { tx, stopped: Arc::clone(&stopped) }, StopSignal { rx, stopped, _never: None })
}

impl StopHandle {
    /// Asks for a stop: take no new messages, and give in-flight handlers `grace` to
    /// finish. A second call never extends the first deadline.
    pub fn stop(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        self.stopped.store(true, Ordering::Release);
        self.tx.send_if_modified(|current| match current {
            Some(_) => false,
            None => {
                *current = Some(deadline);
                true
            }
        });
    }

    /// A signal that follows this handle.
    pub fn signal(&self) -> StopSignal {
        StopSignal { rx: self.tx.subscribe(), stopped: Arc::clone(&self.stopped), _never: None }
    }
}

impl StopSignal {
    /// A signal that never fires, for readers run outside a scheduler.
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(None);
        Self { rx, stopped: Arc::new(AtomicBool::new(false)), _never: Some(Arc::new(tx)) }
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The deadline for in-flight work, once a stop was requested.
    pub fn deadline(&self) -> Option<Instant> {
        *self.rx.borrow()
    }

    /// Resolves when a stop is requested (or the handle is dropped).
    pub async fn stopped(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(Option::is_some).await;
    }

    /// Resolves when a stop was requested and its deadline has passed.
    pub async fn deadline_passed(&self) {
        let mut rx = self.rx.clone();
        let deadline = match rx.wait_for(Option::is_some).await {
            Ok(value) => *value,
            Err(_) => Some(Instant::now()),
        };
        if let Some(deadline) = deadline {
            tokio::time::sleep_until(deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn a_signal_that_never_fires_pends_while_any_copy_lives() {
        let first = StopSignal::never();
        let copy = first.clone();
        drop(first);
        assert!(!copy.is_stopped());
        assert!(copy.stopped().now_or_never().is_none(), "the channel closed with the first copy");
        assert!(copy.deadline().is_none());
    }

    #[test]
    fn a_dropped_handle_counts_as_a_stop() {
        let (handle, signal) = stop_pair();
        assert!(signal.stopped().now_or_never().is_none());
        drop(handle);
        assert!(signal.stopped().now_or_never().is_some());
    }
}
