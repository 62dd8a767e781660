//! Timeout: a limit on each handler call.

use std::time::Duration;

use tidewater_core::{Around, Delivery, HandlerError, Inner};

/// Fails a handler call that runs longer than a limit, with a transient error. The call
/// is cancelled at its next await point.
///
/// The limit starts when the call first waits. Work before that cannot be interrupted
/// anyway (a future is only cancelled at an await point), and a call that never waits
/// then costs no timer at all, which is most calls.
#[derive(Clone, Copy, Debug)]
pub struct Timeout(pub Duration);

impl Around for Timeout {
    async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
        let mut call = std::pin::pin!(next.run(delivery));
        if let std::task::Poll::Ready(result) = futures::poll!(call.as_mut()) {
            return result;
        }
        match tokio::time::timeout(self.0, call).await {
            Ok(result) => result,
            Err(_) => Err(HandlerError::transient(format!("handler timed out after {:?}", self.0))),
        }
    }
}
