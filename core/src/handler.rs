//! Handlers and the middleware that wraps them.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;

use crate::{Delivery, HandlerError, ReadContext, ReadTask, Result, Source};

/// Processes deliveries. Returning `Ok` settles the delivery (ack or commit); an error
/// makes it a nack, redelivered according to the read task's policy; a panic counts as an
/// error and never ends the worker.
///
/// Most handlers are closures made into handlers with [`handler_fn`]. A type of its own
/// implements it with an `async fn`:
///
/// ```
/// use tidewater_core::{Delivery, Handler, HandlerError};
///
/// struct Audit;
///
/// impl Handler for Audit {
///     async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
///         println!("{} on {}", delivery.message().id, delivery.message().stream);
///         Ok(())
///     }
/// }
/// ```
///
/// The runner calls a handler subscribed as it is (no middleware list) through its own
/// type, so its future is not boxed; [`BoxHandler`] is the erased form middleware wraps.
pub trait Handler: Send + Sync + 'static {
    /// Processes one delivery.
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Whether this handler takes failed messages off the broker itself, as a
    /// [`Layered`] handler with a dead-letter layer does, so that the scheduler adds no
    /// default dead letter of its own around it. The default is false.
    fn dead_letters(&self) -> bool {
        false
    }
}

/// A [`Handler`] with its future boxed, so that handlers of different types can stand
/// behind one pointer ([`BoxHandler`]). Every handler is one; there is nothing to
/// implement.
pub trait DynHandler: Send + Sync + 'static {
    /// [`Handler::handle`], its future boxed.
    fn handle_boxed(&self, delivery: Delivery) -> BoxFuture<'_, Result<(), HandlerError>>;

    /// [`Handler::dead_letters`], behind the pointer. (Named apart from it so that a
    /// call on a concrete handler is never ambiguous.)
    fn dead_letters_erased(&self) -> bool;
}

impl<H: Handler> DynHandler for H {
    fn handle_boxed(&self, delivery: Delivery) -> BoxFuture<'_, Result<(), HandlerError>> {
        Box::pin(self.handle(delivery))
    }

    fn dead_letters_erased(&self) -> bool {
        self.dead_letters()
    }
}

/// A shared, type-erased handler: what middleware wraps and returns.
pub type BoxHandler = Arc<dyn DynHandler>;

impl Handler for Arc<dyn DynHandler> {
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send {
        (**self).handle_boxed(delivery)
    }

    fn dead_letters(&self) -> bool {
        (**self).dead_letters_erased()
    }
}

impl<H: Handler> Handler for Arc<H> {
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send {
        (**self).handle(delivery)
    }

    fn dead_letters(&self) -> bool {
        (**self).dead_letters()
    }
}

/// A read task's handler as [`Reader::read`](crate::Reader::read) gets it, ready for
/// the runner. Made from a handler's own type ([`TaskHandler::new`], or `From<Arc<H>>`)
/// the runner calls that type, so no call boxes its future; made from a [`BoxHandler`]
/// (what a middleware chain is) each call goes through the box.
#[derive(Clone)]
pub struct TaskHandler(Repr);

#[derive(Clone)]
enum Repr {
    Erased(BoxHandler),
    Typed(Arc<dyn RunsTask>),
}

/// A handler of a known type, with the runner for that type.
trait RunsTask: Send + Sync {
    fn run<'a>(
        &'a self,
        source: &'a mut (dyn Source + 'a),
        task: &'a ReadTask,
        ctx: &'a ReadContext,
    ) -> BoxFuture<'a, Result<()>>;

    fn boxed(&self) -> BoxHandler;

    fn dead_letters(&self) -> bool;
}

struct Typed<H>(Arc<H>);

impl<H: Handler> RunsTask for Typed<H> {
    fn run<'a>(
        &'a self,
        source: &'a mut (dyn Source + 'a),
        task: &'a ReadTask,
        ctx: &'a ReadContext,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(crate::run_source(source, Arc::clone(&self.0), task, ctx))
    }

    fn boxed(&self) -> BoxHandler {
        Arc::clone(&self.0) as BoxHandler
    }

    fn dead_letters(&self) -> bool {
        self.0.dead_letters()
    }
}

impl TaskHandler {
    /// `handler`, called through its own type. (A [`BoxHandler`] goes through `From`,
    /// which does not box it again.)
    pub fn new<H: Handler>(handler: H) -> Self {
        Self::from(Arc::new(handler))
    }

    /// The handler as a [`BoxHandler`], for wrapping it in middleware.
    pub fn boxed(&self) -> BoxHandler {
        match &self.0 {
            Repr::Erased(handler) => Arc::clone(handler),
            Repr::Typed(typed) => typed.boxed(),
        }
    }

    /// Whether the handler takes failed messages off the broker itself; see
    /// [`Handler::dead_letters`].
    pub fn dead_letters(&self) -> bool {
        match &self.0 {
            Repr::Erased(handler) => handler.dead_letters_erased(),
            Repr::Typed(typed) => typed.dead_letters(),
        }
    }

    /// Runs the handler over `source` with [`run_source`](crate::run_source).
    pub fn run<'a>(
        &'a self,
        source: &'a mut (dyn Source + 'a),
        task: &'a ReadTask,
        ctx: &'a ReadContext,
    ) -> BoxFuture<'a, Result<()>> {
        match &self.0 {
            Repr::Erased(handler) => Box::pin(crate::run_source(source, Boxed(Arc::clone(handler)), task, ctx)),
            Repr::Typed(typed) => typed.run(source, task, ctx),
        }
    }
}

/// A [`BoxHandler`] as a handler of a named type, for the runner.
struct Boxed(BoxHandler);

impl Handler for Boxed {
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self.0.handle_boxed(delivery)
    }

    fn dead_letters(&self) -> bool {
        self.0.dead_letters_erased()
    }
}

impl From<BoxHandler> for TaskHandler {
    fn from(handler: BoxHandler) -> Self {
        Self(Repr::Erased(handler))
    }
}

impl<H: Handler> From<Arc<H>> for TaskHandler {
    fn from(handler: Arc<H>) -> Self {
        Self(Repr::Typed(Arc::new(Typed(handler))))
    }
}

impl std::fmt::Debug for TaskHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Repr::Erased(_) => "TaskHandler(boxed)",
            Repr::Typed(_) => "TaskHandler(typed)",
        })
    }
}

/// A handler made from an async closure; see [`handler_fn`].
#[derive(Clone)]
pub struct FnHandler<F>(F);

/// Makes a handler from an async closure.
///
/// ```
/// use tidewater_core::{handler_fn, Delivery, HandlerError};
///
/// let handler = handler_fn(|delivery: Delivery| async move {
///     println!("got {} bytes", delivery.message().payload.len());
///     Ok::<_, HandlerError>(())
/// });
/// # let _ = handler;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    FnHandler(f)
}

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        (self.0)(delivery).await
    }
}

/// Wraps a handler in another: retry, dedup, dead-lettering, timeouts and so on.
///
/// A chain is a list of middleware; the first in the list is the outermost, so it sees a
/// delivery first and the handler's result last:
///
/// ```text
/// runner -> m[0] -> m[1] -> ... -> handler
/// ```
pub trait Middleware: Send + Sync + 'static {
    /// Wraps `inner`, returning the handler that runs in its place.
    fn wrap(&self, inner: BoxHandler) -> BoxHandler;

    /// Whether this middleware takes failed messages off the broker (writes them to a
    /// dead-letter queue), so that a permanent failure has somewhere to go. A scheduler
    /// with a default dead-letter queue adds it only to chains where no middleware says
    /// so. The default is false.
    fn dead_letters(&self) -> bool {
        false
    }
}

/// A middleware written as what it does around each call of the rest of the chain: a
/// type that implements it is a [`Middleware`]. The rest of the chain is `next`; call
/// `next.run(delivery)` to go on, or return without calling it to stop there.
///
/// ```
/// use tidewater_core::{Around, Delivery, HandlerError, Inner};
///
/// /// Drops messages marked as tests before they reach the handler.
/// #[derive(Clone)]
/// struct SkipTests;
///
/// impl Around for SkipTests {
///     async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
///         if delivery.message().headers.get("test") == Some("true") {
///             return Ok(());
///         }
///         next.run(delivery).await
///     }
/// }
///
/// # fn demo(bus: &mut tidewater_core::Bus) {
/// bus.with_middleware(SkipTests);
/// # }
/// ```
///
/// Each such middleware given to a chain on its own costs an allocation a call (its
/// future, boxed, as every [`Handler`]'s). Layers joined with [`Around::then`] run as one
/// future: a chain of them costs one allocation a call however long it is, and none when
/// it is put around the handler with [`Around::wrapping`] and subscribed as one handler.
pub trait Around: Clone + Send + Sync + 'static {
    /// Handles `delivery`, with `next` the rest of the chain. `next.run` borrows it, so
    /// a layer may call it more than once (as a retry does), and a helper of the layer's
    /// can take `&next`, which runs the chain as well.
    fn around<N: Inner>(&self, delivery: Delivery, next: N) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Whether this layer takes failed messages off the broker; see
    /// [`Middleware::dead_letters`]. The default is false.
    fn dead_letters(&self) -> bool {
        false
    }

    /// This layer with `inner` inside it, as one layer: `inner` runs where this one calls
    /// the rest of the chain, and the two are one future, not two boxed ones.
    ///
    /// ```
    /// # use tidewater_core::Around;
    /// # fn demo<A: Around, B: Around, C: Around>(a: A, b: B, c: C, bus: &mut tidewater_core::Bus) {
    /// bus.with_middleware(a.then(b).then(c)); // a outermost, as with_middleware(a), (b), (c)
    /// # }
    /// ```
    fn then<B: Around>(self, inner: B) -> Stack<Self, B> {
        Stack { outer: self, inner }
    }

    /// This layer (or stack) around `handler`, as one handler of a known type. Subscribed
    /// as a handler, without a middleware list, it is called through its own type: no
    /// call allocates, where a middleware list boxes the chain's future on each call. A
    /// panic of `handler` is one failed attempt that the layers see, as in a list.
    ///
    /// ```
    /// use tidewater_core::{handler_fn, Around, Delivery, HandlerError, Inner};
    ///
    /// #[derive(Clone)]
    /// struct SkipTests;
    ///
    /// impl Around for SkipTests {
    ///     async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
    ///         if delivery.message().headers.get("test") == Some("true") {
    ///             return Ok(());
    ///         }
    ///         next.run(delivery).await
    ///     }
    /// }
    ///
    /// # fn demo(bus: &mut tidewater_core::Bus) {
    /// let handler = handler_fn(|_delivery: Delivery| async { Ok::<_, HandlerError>(()) });
    /// bus.subscribe("orders", SkipTests.wrapping(handler));
    /// # }
    /// ```
    fn wrapping<H: Handler>(self, handler: H) -> Layered<Self, H> {
        Layered { layer: self, handler: CatchPanic(handler) }
    }
}

/// The rest of a chain, as an [`Around`] layer calls it.
pub trait Inner: Send + Sync {
    /// Runs the rest of the chain, down to the handler, on `delivery`.
    fn run(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A reference to the rest of a chain runs it: a layer that calls a helper of its own
/// can pass `&next` on.
impl<N: Inner + ?Sized> Inner for &N {
    fn run(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send {
        (**self).run(delivery)
    }
}

/// The end of a stack of layers: the boxed handler (or chain) it wraps.
impl Inner for dyn DynHandler {
    fn run(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self.handle_boxed(delivery)
    }
}

/// Two [`Around`] layers as one; see [`Around::then`].
#[derive(Clone, Debug)]
pub struct Stack<A, B> {
    outer: A,
    inner: B,
}

impl<A: Around, B: Around> Around for Stack<A, B> {
    // Not an `async fn`: the outer layer's call takes the rest of the chain by value, so
    // a stack is its outer layer's future and adds no level of its own.
    fn around<N: Inner>(&self, delivery: Delivery, next: N) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self.outer.around(delivery, Then { layer: &self.inner, next })
    }

    fn dead_letters(&self) -> bool {
        self.outer.dead_letters() || self.inner.dead_letters()
    }
}

/// `layer` with the rest of the chain `next` inside it, as the rest of the chain of the
/// layer outside.
struct Then<'a, B, N> {
    layer: &'a B,
    next: N,
}

impl<B: Around, N: Inner> Inner for Then<'_, B, N> {
    fn run(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self.layer.around(delivery, &self.next)
    }
}

/// An [`Around`] layer (or stack) with its handler inside, as one handler; see
/// [`Around::wrapping`].
#[derive(Clone, Debug)]
pub struct Layered<A, H> {
    layer: A,
    handler: CatchPanic<H>,
}

impl<A: Around, H: Handler> Handler for Layered<A, H> {
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self.layer.around(delivery, &self.handler)
    }

    fn dead_letters(&self) -> bool {
        self.layer.dead_letters() || self.handler.dead_letters()
    }
}

impl<A: Around> Middleware for A {
    fn wrap(&self, inner: BoxHandler) -> BoxHandler {
        Arc::new(AroundLayer { layer: self.clone(), inner })
    }

    fn dead_letters(&self) -> bool {
        Around::dead_letters(self)
    }
}

struct AroundLayer<A> {
    layer: A,
    inner: BoxHandler,
}

impl<A: Around> Handler for AroundLayer<A> {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        self.layer.around(delivery, &*self.inner).await
    }

    fn dead_letters(&self) -> bool {
        self.layer.dead_letters() || self.inner.dead_letters_erased()
    }
}

/// Makes a middleware from an async closure that gets the delivery and the rest of the
/// chain, as axum's `from_fn` does: call [`Next::run`] to go on, or return without calling
/// it to stop there.
///
/// ```
/// use std::time::Instant;
/// use tidewater_core::{middleware_fn, Delivery, Next};
///
/// // Logs how long each handler call took and what came of it.
/// let timing = middleware_fn(|delivery: Delivery, next: Next| async move {
///     let started = Instant::now();
///     let id = delivery.message().id.clone();
///     let result = next.run(delivery).await;
///     println!("{id}: {:?} in {:?}", result.is_ok(), started.elapsed());
///     result
/// });
/// # let _ = timing;
/// ```
pub fn middleware_fn<F, Fut>(f: F) -> FnMiddleware<F>
where
    F: Fn(Delivery, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    FnMiddleware(Arc::new(f))
}

/// A middleware made from an async closure; see [`middleware_fn`].
pub struct FnMiddleware<F>(Arc<F>);

impl<F> Clone for FnMiddleware<F> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

/// The rest of the chain, for a [`middleware_fn`] to call.
#[derive(Clone)]
pub struct Next(BoxHandler);

impl Next {
    /// Runs the rest of the chain, down to the handler, on `delivery`.
    pub async fn run(self, delivery: Delivery) -> Result<(), HandlerError> {
        self.0.handle(delivery).await
    }
}

impl<F, Fut> Middleware for FnMiddleware<F>
where
    F: Fn(Delivery, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn wrap(&self, inner: BoxHandler) -> BoxHandler {
        Arc::new(FnLayer { f: Arc::clone(&self.0), inner })
    }
}

struct FnLayer<F> {
    f: Arc<F>,
    inner: BoxHandler,
}

impl<F, Fut> Handler for FnLayer<F>
where
    F: Fn(Delivery, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        (self.f)(delivery, Next(Arc::clone(&self.inner))).await
    }

    fn dead_letters(&self) -> bool {
        self.inner.dead_letters_erased()
    }
}

/// Applies `chain` to `handler`, the first element outermost.
pub fn apply_chain(handler: BoxHandler, chain: &[Arc<dyn Middleware>]) -> BoxHandler {
    chain.iter().rev().fold(handler, |inner, m| m.wrap(inner))
}

/// Makes a panic of the handler into a [`HandlerError::from_panic`], so that the
/// middleware around it sees one failed attempt like any other. The scheduler puts it
/// right around every handler that has middleware, and a [`Layered`] handler has it at
/// the bottom of its stack; without middleware the runner's own catch does the same.
#[derive(Clone, Debug)]
pub(crate) struct CatchPanic<H>(pub(crate) H);

impl<H: Handler> Handler for CatchPanic<H> {
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send {
        Caught { call: self.0.handle(delivery) }
    }

    fn dead_letters(&self) -> bool {
        self.0.dead_letters()
    }
}

pin_project_lite::pin_project! {
    /// A [`CatchPanic`] call: the handler's own future, polled inside a catch. Written
    /// out rather than `catch_unwind().map(..)`, whose two wrappers cost every call
    /// about 30 instructions more (callgrind).
    struct Caught<F> {
        #[pin]
        call: F,
    }
}

impl<F: Future<Output = Result<(), HandlerError>>> Future for Caught<F> {
    type Output = Result<(), HandlerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let call = self.project().call;
        // A call that panicked is not polled again: it has returned its error.
        match std::panic::catch_unwind(AssertUnwindSafe(|| call.poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => Poll::Ready(Err(HandlerError::from_panic(&*panic))),
        }
    }
}

/// The bottom of a [`Layered`] stack.
impl<H: Handler> Inner for CatchPanic<H> {
    fn run(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self.handle(delivery)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{Message, Position};

    #[test]
    fn a_task_handler_keeps_the_form_it_was_given() {
        let typed = TaskHandler::new(handler_fn(|_d: Delivery| async { Ok::<_, HandlerError>(()) }));
        assert_eq!(format!("{typed:?}"), "TaskHandler(typed)");
        let boxed: BoxHandler = Arc::new(handler_fn(|_d: Delivery| async { Ok::<_, HandlerError>(()) }));
        let erased = TaskHandler::from(Arc::clone(&boxed));
        assert_eq!(format!("{erased:?}"), "TaskHandler(boxed)");
        assert!(Arc::ptr_eq(&erased.boxed(), &boxed), "a boxed handler is not boxed again");
    }

    /// Writes its name to a shared log before and after the rest of the chain.
    #[derive(Clone)]
    struct Log(&'static str, Arc<Mutex<Vec<String>>>);

    impl Around for Log {
        async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
            self.1.lock().unwrap().push(format!("{} in", self.0));
            let result = next.run(delivery).await;
            self.1.lock().unwrap().push(format!("{} out", self.0));
            result
        }
    }

    /// Says it dead-letters, and does nothing else.
    #[derive(Clone)]
    struct Dlq;

    impl Around for Dlq {
        async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
            next.run(delivery).await
        }

        fn dead_letters(&self) -> bool {
            true
        }
    }

    fn delivery() -> Delivery {
        Delivery::new(Message::new("t", "x"), 1, Position::Queue { partition: None, sequence: None }, None)
    }

    #[tokio::test]
    async fn a_stack_runs_as_the_same_layers_in_a_chain_would() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&log);
        let handler: BoxHandler = Arc::new(handler_fn(move |_d: Delivery| {
            seen.lock().unwrap().push("handler".to_owned());
            async { Ok::<_, HandlerError>(()) }
        }));
        let (a, b, c) = (Log("a", Arc::clone(&log)), Log("b", Arc::clone(&log)), Log("c", Arc::clone(&log)));
        a.clone().then(b.clone()).then(c.clone()).wrap(Arc::clone(&handler)).handle(delivery()).await.unwrap();
        let stacked = std::mem::take(&mut *log.lock().unwrap());
        let chain: Vec<Arc<dyn Middleware>> = vec![Arc::new(a), Arc::new(b), Arc::new(c)];
        apply_chain(handler, &chain).handle(delivery()).await.unwrap();
        let chained = std::mem::take(&mut *log.lock().unwrap());
        assert_eq!(stacked, ["a in", "b in", "c in", "handler", "c out", "b out", "a out"]);
        assert_eq!(stacked, chained);
    }

    #[test]
    fn a_stack_dead_letters_when_a_layer_of_it_does() {
        let log = Arc::new(Mutex::new(Vec::new()));
        assert!(Middleware::dead_letters(&Log("a", Arc::clone(&log)).then(Dlq)));
        assert!(Middleware::dead_letters(&Dlq.then(Log("a", Arc::clone(&log)))));
        assert!(!Middleware::dead_letters(&Log("a", Arc::clone(&log)).then(Log("b", log))));
    }

    #[tokio::test]
    async fn a_stack_around_a_typed_handler_runs_as_the_chain_would() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&log);
        let handler = handler_fn(move |_d: Delivery| {
            seen.lock().unwrap().push("handler".to_owned());
            async { Ok::<_, HandlerError>(()) }
        });
        let layered = Log("a", Arc::clone(&log)).then(Log("b", Arc::clone(&log))).wrapping(handler);
        layered.handle(delivery()).await.unwrap();
        assert_eq!(*log.lock().unwrap(), ["a in", "b in", "handler", "b out", "a out"]);
    }

    #[tokio::test]
    async fn a_layered_handler_that_panics_is_a_failed_attempt_its_layers_see() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let panics = handler_fn(|_d: Delivery| async {
            if true {
                panic!("induced panic");
            }
            Ok::<_, HandlerError>(())
        });
        let err = Log("a", Arc::clone(&log)).wrapping(panics).handle(delivery()).await.unwrap_err();
        assert!(err.is_panic() && err.is_transient(), "{err}");
        assert_eq!(*log.lock().unwrap(), ["a in", "a out"], "the layer saw the call end");
    }

    #[test]
    fn a_layered_handler_says_whether_it_dead_letters_through_any_pointer() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler = || handler_fn(|_d: Delivery| async { Ok::<_, HandlerError>(()) });
        let with = Log("a", Arc::clone(&log)).then(Dlq).wrapping(handler());
        let without = Log("a", log).wrapping(handler());
        assert!(with.dead_letters() && !without.dead_letters());
        assert!(TaskHandler::new(with.clone()).dead_letters() && !TaskHandler::new(without).dead_letters());
        let boxed: BoxHandler = Arc::new(with);
        assert!(TaskHandler::from(Arc::clone(&boxed)).dead_letters());
        let chained: Vec<Arc<dyn Middleware>> = vec![Arc::new(Log("b", Arc::new(Mutex::new(Vec::new()))))];
        assert!(apply_chain(boxed, &chained).dead_letters(), "a chain around it still does");
    }
}
