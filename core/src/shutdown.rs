//! The stop signal that read tasks watch, with the deadline for in-flight work.
//!
//! A handler, or middleware around it, finds its task's signal with
//! [`StopSignal::current`]: what waits for something other than work of its own (a
//! retry's backoff, an open circuit, a rate limit) can then give the delivery up at a
//! stop with [`HandlerError::stopping`](crate::HandlerError::stopping), and the task
//! stops without waiting out its grace period.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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

/// The stop signals of the tasks that run a read task's runner or one of its lanes, by
/// tokio task id, for [`StopSignal::current`]. A map looked up only when a handler asks,
/// rather than a tokio task-local: a task-local is swapped in and out at every poll of
/// the task it scopes, which added 39 instructions a message to the peer bench's
/// counting row (callgrind), for a signal most handlers never ask for.
fn running() -> std::sync::MutexGuard<'static, HashMap<tokio::task::Id, StopSignal>> {
    static RUNNING: OnceLock<Mutex<HashMap<tokio::task::Id, StopSignal>>> = OnceLock::new();
    let map = RUNNING.get_or_init(Mutex::default);
    // Nothing panics while holding it; a poisoned map is still whole.
    map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

thread_local! {
    /// Where a runner polled outside any task (in `block_on`, which always polls on one
    /// thread) keeps its signal.
    static OUTSIDE_A_TASK: RefCell<Option<StopSignal>> = const { RefCell::new(None) };
}

/// Makes a signal the [`StopSignal::current`] of the task (or thread, outside one) it is
/// made in, until it is dropped, which puts back what was there. Made inside the async
/// code of a runner and of each lane, rather than as a future wrapped around them,
/// which would add a layer to every poll.
pub(crate) struct CurrentSignal {
    task: Option<tokio::task::Id>,
    previous: Option<StopSignal>,
}

impl CurrentSignal {
    pub(crate) fn new(signal: &StopSignal) -> Self {
        let task = tokio::task::try_id();
        let previous = match task {
            Some(id) => running().insert(id, signal.clone()),
            None => OUTSIDE_A_TASK.try_with(|slot| slot.replace(Some(signal.clone()))).ok().flatten(),
        };
        Self { task, previous }
    }
}

impl Drop for CurrentSignal {
    fn drop(&mut self) {
        let previous = self.previous.take();
        match self.task {
            Some(id) => {
                let mut running = running();
                match previous {
                    Some(previous) => running.insert(id, previous),
                    None => running.remove(&id),
                };
            }
            // A future polled outside a task is dropped on the thread that polled it.
            None => {
                let _ = OUTSIDE_A_TASK.try_with(|slot| *slot.borrow_mut() = previous);
            }
        }
    }
}

/// The signal of the read task this code runs in.
fn current() -> Option<StopSignal> {
    match tokio::task::try_id() {
        Some(id) => running().get(&id).cloned(),
        None => OUTSIDE_A_TASK.try_with(|slot| slot.borrow().clone()).ok().flatten(),
    }
}

/// Whether the read task this code runs in was asked to stop; false outside one.
pub(crate) fn stop_requested() -> bool {
    current().is_some_and(|signal| signal.is_stopped())
}

impl StopSignal {
    /// The stop signal of the read task whose handler calls this, so that a handler or
    /// middleware waiting on something other than its own work can give the delivery up
    /// at a stop rather than hold the task until its deadline. Outside a handler that
    /// a read task runs (a handler called by hand in a test, or a task the handler
    /// spawned), a signal that never fires.
    ///
    /// ```
    /// use tidewater_core::{Delivery, HandlerError, StopSignal};
    ///
    /// async fn handle(delivery: Delivery) -> Result<(), HandlerError> {
    ///     tokio::select! {
    ///         done = render_report(&delivery) => done,
    ///         // Left unsettled, the delivery comes again, to this service's next
    ///         // instance: the stop does not wait out its grace period for it.
    ///         _ = StopSignal::current().stopped() => Err(HandlerError::stopping()),
    ///     }
    /// }
    /// # async fn render_report(_: &Delivery) -> Result<(), HandlerError> { Ok(()) }
    /// ```
    pub fn current() -> StopSignal {
        current().unwrap_or_else(StopSignal::never)
    }

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

    /// Resolves when a stop is requested (or the handle is dropped). The future holds
    /// what it needs of the signal, so `StopSignal::current().stopped()` can be awaited
    /// as it is.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.rx.clone();
        // A signal that never fires must not fire because its last copy went.
        let never = self._never.clone();
        async move {
            let _ = rx.wait_for(Option::is_some).await;
            drop(never);
        }
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
    fn a_never_firing_signal_s_wait_outlives_the_signal() {
        let wait = StopSignal::never().stopped();
        assert!(wait.now_or_never().is_none());
    }

    #[test]
    fn a_dropped_handle_counts_as_a_stop() {
        let (handle, signal) = stop_pair();
        assert!(signal.stopped().now_or_never().is_none());
        drop(handle);
        assert!(signal.stopped().now_or_never().is_some());
    }
}
