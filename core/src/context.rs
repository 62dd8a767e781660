//! The correlation id in scope while a handler runs.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::task::{Context, Poll};

use crate::{wire, Delivery};

/// Where the correlation id in scope comes from. A delivery is kept as it is (a
/// reference count) and its message read only when something is published, so the
/// handlers that publish nothing pay nothing.
enum Correlation {
    Id(String),
    Of(Delivery),
}

thread_local! {
    /// The correlation of the scope being polled on this thread, if any: set for the
    /// length of each poll, to the correlation the scope's future holds.
    ///
    /// A pointer rather than tokio's task-local (a `RefCell` behind a lazily made key,
    /// the value moved in and out, the scope entered again to drop the future): the
    /// correlation-id middleware scopes every handler call, and the task-local took
    /// about 140 instructions of it a message (callgrind). A pointer needs no
    /// destructor, so reaching it is one thread-local read.
    static CURRENT: Cell<*const Correlation> = const { Cell::new(ptr::null()) };
}

/// Runs `fut` with `id` as the current correlation id. A [`Publisher`](crate::Publisher)
/// used inside it stamps `id` on the messages it publishes. Tasks a handler spawns do
/// not inherit it; wrap their futures in this.
pub fn with_correlation_id<F: Future>(id: String, fut: F) -> impl Future<Output = F::Output> {
    Scoped { correlation: Correlation::Id(id), fut }
}

/// Runs `fut` with the correlation id of `delivery`'s message in scope: its
/// `tw-correlation-id` header, or its id when it has none. The correlation-id
/// middleware calls this around each handler.
pub fn with_correlation_of<F: Future>(delivery: Delivery, fut: F) -> impl Future<Output = F::Output> {
    Scoped { correlation: Correlation::Of(delivery), fut }
}

pin_project_lite::pin_project! {
    /// A future polled with a correlation in scope, whichever thread polls it.
    struct Scoped<F> {
        correlation: Correlation,
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = Entered::new(this.correlation);
        this.fut.poll(cx)
    }
}

/// A scope's correlation made current; what was current before is put back on drop,
/// a panicking poll included.
struct Entered {
    before: *const Correlation,
}

impl Entered {
    #[inline]
    fn new(correlation: &Correlation) -> Self {
        Self { before: CURRENT.replace(correlation) }
    }
}

impl Drop for Entered {
    #[inline]
    fn drop(&mut self) {
        CURRENT.set(self.before);
    }
}

/// The correlation id in scope, if any.
pub fn correlation_id() -> Option<String> {
    let current = CURRENT.get();
    // SAFETY: a non-null `CURRENT` was set by `Entered::new` from a `&Correlation` that
    // lives in a `Scoped` being polled on this thread: `Entered` puts the pointer before
    // it back when that poll returns or unwinds, and the scope neither moves (it is
    // pinned) nor changes its correlation while polled. So this runs inside that poll
    // and the reference is valid for the call.
    let correlation = unsafe { current.as_ref() }?;
    Some(match correlation {
        Correlation::Id(id) => id.clone(),
        Correlation::Of(d) => {
            let m = d.message();
            m.headers.get(wire::CORRELATION_ID).unwrap_or(&m.id).to_owned()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, Position};

    fn delivery(message: Message) -> Delivery {
        Delivery::new(message, 1, Position::Queue { partition: None, sequence: None }, None)
    }

    #[tokio::test]
    async fn a_message_gives_its_header_or_else_its_id() {
        assert_eq!(correlation_id(), None);
        let plain = delivery(Message::new("t", "p").with_id("m-1"));
        assert_eq!(with_correlation_of(plain, async { correlation_id() }).await.as_deref(), Some("m-1"));
        let linked = delivery(Message::new("t", "p").with_id("m-2").with_header(wire::CORRELATION_ID, "c-9"));
        assert_eq!(with_correlation_of(linked, async { correlation_id() }).await.as_deref(), Some("c-9"));
        assert_eq!(with_correlation_id("c-1".into(), async { correlation_id() }).await.as_deref(), Some("c-1"));
        assert_eq!(correlation_id(), None, "out of every scope again");
    }

    #[tokio::test]
    async fn scopes_nest_and_hold_across_waits() {
        let inner = async {
            tokio::task::yield_now().await;
            correlation_id()
        };
        let outer = async {
            let before = correlation_id();
            let nested = with_correlation_id("inner".into(), inner).await;
            tokio::task::yield_now().await;
            (before, nested, correlation_id())
        };
        let (before, nested, after) = with_correlation_id("outer".into(), outer).await;
        assert_eq!(before.as_deref(), Some("outer"));
        assert_eq!(nested.as_deref(), Some("inner"));
        assert_eq!(after.as_deref(), Some("outer"), "the outer id is back once the inner scope ends");
        assert_eq!(correlation_id(), None);
    }

    #[tokio::test]
    async fn a_scope_is_not_seen_by_other_futures_polled_between() {
        // Two scoped futures polled by turns on one thread each see their own id.
        let (tx_a, rx_a) = tokio::sync::oneshot::channel::<()>();
        let a = with_correlation_id("a".into(), async move {
            rx_a.await.unwrap();
            correlation_id()
        });
        let b = with_correlation_id("b".into(), async move {
            let seen = correlation_id();
            tx_a.send(()).unwrap();
            tokio::task::yield_now().await;
            (seen, correlation_id())
        });
        let (a, (b_first, b_then)) = tokio::join!(a, b);
        assert_eq!((a.as_deref(), b_first.as_deref(), b_then.as_deref()), (Some("a"), Some("b"), Some("b")));
    }

    #[test]
    fn a_panicking_poll_leaves_no_id_in_scope() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(with_correlation_id("p".into(), async { panic!("in the handler") }))
        }));
        assert!(panicked.is_err());
        assert_eq!(correlation_id(), None);
    }
}
