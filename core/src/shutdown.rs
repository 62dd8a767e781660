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
}

/// A new stop handle and the signal it controls.
pub fn stop_pair() -> (StopHandle, StopSignal) {
    let (tx, rx) = watch::channel(None);
    let stopped = Arc::new(AtomicBool::new(false));
    (StopHandle { tx, stopped: Arc::clone(&stopped) }, StopSignal { rx, stopped })
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
        StopSignal { rx: self.tx.subscribe(), stopped: Arc::clone(&self.stopped) }
    }
}

impl StopSignal {
    /// A signal that never fires, for readers run outside a scheduler.
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(None);
        // Leaking the sender keeps the channel open, so `stopped` pends forever.
        std::mem::forget(tx);
        Self { rx, stopped: Arc::new(AtomicBool::new(false)) }
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
