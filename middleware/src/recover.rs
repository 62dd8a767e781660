//! Recover: panics made into errors of the recovery you choose.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tidewater_core::{panic_message, Around, Delivery, HandlerError, Inner};

/// Turns a panicking handler call into an error of the recovery you choose. Without
/// it a panic is already one failed, transient attempt that the whole chain sees (the
/// scheduler catches it right around the handler); use [`Recover::permanent`] to send
/// panicking messages to the dead-letter queue at once instead of retrying them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Recover {
    permanent: bool,
}

impl Recover {
    /// Panics become transient errors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Panics become permanent errors.
    pub fn permanent() -> Self {
        Self { permanent: true }
    }
}

impl Around for Recover {
    async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
        match AssertUnwindSafe(next.run(delivery)).catch_unwind().await {
            // The scheduler's own catch around the handler got there first.
            Ok(Err(err)) if err.is_panic() && self.permanent => Err(err.into_permanent()),
            Ok(result) => result,
            Err(panic) => {
                let text = format!("handler panicked: {}", panic_message(&*panic));
                Err(if self.permanent { HandlerError::permanent(text) } else { HandlerError::transient(text) })
            }
        }
    }
}
