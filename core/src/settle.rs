//! Settling deliveries: what a driver gives the runner with each delivery.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Delivery, Result, Settlement};

/// Settles one delivery with the broker. Drivers implement it; the runner calls it once
/// with the handler's outcome, or calls [`Settle::release`] for a delivery it did not hand
/// to the handler (a stop came first).
///
/// Each delivery gets its own, boxed: an allocation per delivery unless the type is
/// zero-sized. A driver that keeps its settlement state in one place for the whole
/// source implements [`SharedSettle`] instead.
#[async_trait]
pub trait Settle: Send {
    /// Acks or nacks the delivery.
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<()>;

    /// Acks or nacks the delivery at once, where the driver can without waiting, and
    /// returns the outcome; `None` means it cannot, and the runner then calls
    /// [`Settle::settle`]. The runner tries this first, which spares a boxed future per
    /// delivery for drivers that settle in memory. Returning `None` must leave the
    /// delivery unsettled. The default returns `None`.
    fn settle_now(&mut self, _settlement: Settlement) -> Option<Result<()>> {
        None
    }

    /// Gives back a delivery that was fetched but not handled. The default does nothing,
    /// for brokers that redeliver what a closing consumer left unsettled.
    async fn release(self: Box<Self>) {}

    /// Whether the delivery should still be handled. A log driver answers false once the
    /// record's partition was rewound below it or taken away by a rebalance, so the
    /// runner releases it unhandled instead of running a handler whose result would be
    /// thrown away and whose side effects would come again. The default is true.
    fn is_current(&self) -> bool {
        true
    }
}

/// Settles every delivery of a source from one shared value, told which delivery by the
/// delivery itself (its [`Position`](crate::Position)): the same calls as [`Settle`],
/// without an allocation per delivery.
#[async_trait]
pub trait SharedSettle: Send + Sync {
    /// Acks or nacks `delivery`.
    async fn settle(&self, delivery: &Delivery, settlement: Settlement) -> Result<()>;

    /// Acks or nacks `delivery` at once where that needs no waiting; see
    /// [`Settle::settle_now`]. The default returns `None`.
    fn settle_now(&self, _delivery: &Delivery, _settlement: Settlement) -> Option<Result<()>> {
        None
    }

    /// Gives back a delivery that was fetched but not handled; see [`Settle::release`].
    async fn release(&self, _delivery: &Delivery) {}

    /// Whether `delivery` should still be handled; see [`Settle::is_current`].
    fn is_current(&self, _delivery: &Delivery) -> bool {
        true
    }
}

/// How the runner settles one delivery: a [`Settle`] of the delivery's own, or the
/// source's [`SharedSettle`].
pub enum Settler {
    /// The delivery's own.
    Own(Box<dyn Settle>),
    /// The source's, shared by its deliveries.
    Shared(Arc<dyn SharedSettle>),
}

/// The calls of [`Settle`] and [`SharedSettle`], whichever settles `delivery`: what the
/// runner calls, and what a test that drives a [`Source`](crate::Source) by hand calls.
impl Settler {
    /// Whether `delivery` should still be handled; see [`Settle::is_current`].
    pub fn is_current(&self, delivery: &Delivery) -> bool {
        match self {
            Settler::Own(settle) => settle.is_current(),
            Settler::Shared(settle) => settle.is_current(delivery),
        }
    }

    /// Acks or nacks `delivery` at once where that needs no waiting; see
    /// [`Settle::settle_now`].
    pub fn settle_now(&mut self, delivery: &Delivery, settlement: Settlement) -> Option<Result<()>> {
        match self {
            Settler::Own(settle) => settle.settle_now(settlement),
            Settler::Shared(settle) => settle.settle_now(delivery, settlement),
        }
    }

    /// Acks or nacks `delivery`.
    pub async fn settle(self, delivery: &Delivery, settlement: Settlement) -> Result<()> {
        match self {
            Settler::Own(settle) => settle.settle(settlement).await,
            Settler::Shared(settle) => settle.settle(delivery, settlement).await,
        }
    }

    /// Gives back `delivery`, fetched but not handled; see [`Settle::release`].
    pub async fn release(self, delivery: &Delivery) {
        match self {
            Settler::Own(settle) => settle.release().await,
            Settler::Shared(settle) => settle.release(delivery).await,
        }
    }
}

/// A delivery fetched by a driver, with the means to settle it.
pub struct Incoming {
    /// The delivery.
    pub delivery: Delivery,
    /// How to settle it.
    pub settle: Settler,
}

impl Incoming {
    /// `delivery`, settled by its own `settle`.
    pub fn new(delivery: Delivery, settle: impl Settle + 'static) -> Self {
        Self { delivery, settle: Settler::Own(Box::new(settle)) }
    }

    /// `delivery`, settled by the source's shared `settle`.
    pub fn shared(delivery: Delivery, settle: &Arc<dyn SharedSettle>) -> Self {
        Self { delivery, settle: Settler::Shared(Arc::clone(settle)) }
    }

    /// Gives the delivery back unhandled.
    pub(crate) async fn release(self) {
        self.settle.release(&self.delivery).await;
    }
}
