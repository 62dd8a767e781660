//! What a driver provides.

use std::sync::Arc;

use crate::{Reader, Writer};

/// A broker connection that gives a writer and a reader: what a [`Bus`](crate::Bus) is
/// built from. Every driver crate's main type implements it.
pub trait Driver {
    /// The write side.
    fn writer(&self) -> Arc<dyn Writer>;
    /// The read side.
    fn reader(&self) -> Arc<dyn Reader>;
}
