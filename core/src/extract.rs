//! Typed event handlers: plain async functions that take the event and, after it, what
//! they need from the delivery or the service ([`State`], [`Delivery`], a
//! [`Publisher`](crate::Publisher)), in the manner of axum's extractors.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! use tidewater_core::{Bus, Event, EventRegistry, HandlerResult, Publisher, State};
//! # #[derive(Serialize, Deserialize)] struct OrderPlaced { id: u64 }
//! # impl Event for OrderPlaced { const TYPE: &'static str = "order.placed"; }
//! # #[derive(Clone, Default)] struct Ledger;
//! # impl Ledger { fn charge(&self, _id: u64) {} }
//!
//! async fn bill(order: OrderPlaced, State(ledger): State<Ledger>) -> HandlerResult {
//!     ledger.charge(order.id);
//!     Ok(())
//! }
//!
//! # fn demo(driver: impl tidewater_core::Driver) {
//! let mut bus = Bus::new(&driver, EventRegistry::new().route::<OrderPlaced>("orders"));
//! bus.with_state(Ledger::default());
//! bus.subscribe_event(bill).group("billing");
//! # }
//! ```

use std::any::type_name;
use std::future::Future;
use std::ops::Deref;

use crate::{Delivery, Error, ErrorKind, Event, Extensions, HandlerError, Result};

/// What a handler returns: `Ok` settles the delivery, an error nacks or dead-letters it.
/// Naming it in an `async fn` handler's signature spares the `Ok::<_, HandlerError>`
/// that a closure needs.
pub type HandlerResult = std::result::Result<(), HandlerError>;

/// Shared state a handler asks for by type: given once with
/// [`Bus::with_state`](crate::Bus::with_state) (or
/// [`SubscriberScheduler::with_state`](crate::SubscriberScheduler::with_state)), cloned
/// into each call. Wrap what is not cheap to clone in an `Arc`, or make the state a
/// handle (a connection pool, a `Publisher`) that is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State<S>(pub S);

impl<S> Deref for State<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.0
    }
}

/// Something a typed handler can take after its event. What it needs from the service
/// is looked up once, when the subscription starts ([`FromDelivery::resolve`]); what it
/// needs from each delivery, per call.
pub trait FromDelivery: Sized + Send + 'static {
    /// What is looked up once per subscription.
    type Part: Send + Sync + 'static;

    /// Looks the part up among the states given to the scheduler; an error ends the
    /// scheduler's `start` with it.
    fn resolve(states: &Extensions) -> Result<Self::Part>;

    /// The value for one call.
    fn from_delivery(part: &Self::Part, delivery: &Delivery) -> Self;
}

impl FromDelivery for Delivery {
    type Part = ();

    fn resolve(_states: &Extensions) -> Result<()> {
        Ok(())
    }

    fn from_delivery(_part: &(), delivery: &Delivery) -> Self {
        delivery.clone()
    }
}

impl<S: Clone + Send + Sync + 'static> FromDelivery for State<S> {
    type Part = S;

    fn resolve(states: &Extensions) -> Result<S> {
        states.get::<S>().cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("a handler takes State<{}>, which was never given; add it with with_state", type_name::<S>()),
            )
        })
    }

    fn from_delivery(part: &S, _delivery: &Delivery) -> Self {
        State(part.clone())
    }
}

/// A function that handles a typed event: `async fn(E)`, `async fn(E, A)`,
/// `async fn(E, A, B)` or `async fn(E, A, B, C)` where each of `A`, `B`, `C` is
/// [`FromDelivery`], returning a [`HandlerResult`]. `T` only tells the forms apart.
pub trait EventFn<T>: Send + Sync + 'static {
    /// The event the function takes.
    type Event: Event;
    /// What the function's other arguments need, looked up once.
    type Parts: Send + Sync + 'static;
    /// The future of one call.
    type Future: Future<Output = HandlerResult> + Send + 'static;

    /// Looks up what the other arguments need.
    fn resolve(states: &Extensions) -> Result<Self::Parts>;

    /// Calls the function.
    fn call(&self, event: Self::Event, parts: &Self::Parts, delivery: &Delivery) -> Self::Future;
}

impl<F, Fut, E> EventFn<(E,)> for F
where
    F: Fn(E) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
    E: Event,
{
    type Event = E;
    type Parts = ();
    type Future = Fut;

    fn resolve(_states: &Extensions) -> Result<()> {
        Ok(())
    }

    fn call(&self, event: E, _parts: &(), _delivery: &Delivery) -> Fut {
        self(event)
    }
}

impl<F, Fut, E, A> EventFn<(E, A)> for F
where
    F: Fn(E, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
    E: Event,
    A: FromDelivery,
{
    type Event = E;
    type Parts = A::Part;
    type Future = Fut;

    fn resolve(states: &Extensions) -> Result<Self::Parts> {
        A::resolve(states)
    }

    fn call(&self, event: E, a: &A::Part, delivery: &Delivery) -> Fut {
        self(event, A::from_delivery(a, delivery))
    }
}

impl<F, Fut, E, A, B> EventFn<(E, A, B)> for F
where
    F: Fn(E, A, B) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
    E: Event,
    A: FromDelivery,
    B: FromDelivery,
{
    type Event = E;
    type Parts = (A::Part, B::Part);
    type Future = Fut;

    fn resolve(states: &Extensions) -> Result<Self::Parts> {
        Ok((A::resolve(states)?, B::resolve(states)?))
    }

    fn call(&self, event: E, (a, b): &Self::Parts, delivery: &Delivery) -> Fut {
        self(event, A::from_delivery(a, delivery), B::from_delivery(b, delivery))
    }
}

impl<F, Fut, E, A, B, C> EventFn<(E, A, B, C)> for F
where
    F: Fn(E, A, B, C) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
    E: Event,
    A: FromDelivery,
    B: FromDelivery,
    C: FromDelivery,
{
    type Event = E;
    type Parts = (A::Part, B::Part, C::Part);
    type Future = Fut;

    fn resolve(states: &Extensions) -> Result<Self::Parts> {
        Ok((A::resolve(states)?, B::resolve(states)?, C::resolve(states)?))
    }

    fn call(&self, event: E, (a, b, c): &Self::Parts, delivery: &Delivery) -> Fut {
        self(event, A::from_delivery(a, delivery), B::from_delivery(b, delivery), C::from_delivery(c, delivery))
    }
}
