//! What a driver provides.

use std::sync::Arc;

use crate::admin::NoAdmin;
use crate::{Admin, Reader, Result, Transactions, Writer};

/// A broker connection that gives a writer and a reader: what a [`Bus`](crate::Bus) is
/// built from. Every driver crate's main type implements it.
pub trait Driver {
    /// The write side.
    fn writer(&self) -> Arc<dyn Writer>;
    /// The read side.
    fn reader(&self) -> Arc<dyn Reader>;

    /// Topic administration. The default, for a driver without it, answers every call
    /// with `Unsupported`; every driver of this workspace has its own.
    fn admin(&self) -> Arc<dyn Admin> {
        Arc::new(NoAdmin(self.reader().driver()))
    }

    /// The broker's own request/reply, where it has one that a
    /// [`Requester`](crate::Requester) should use instead of a reply topic (core NATS
    /// does). `None` by default.
    fn native_requests(&self) -> Option<Arc<dyn crate::request::NativeRequests>> {
        None
    }

    /// Transactions under the transactional id `id` (see [`Transactions`] for how to
    /// pick it). The default, for a driver without them, is an `Unsupported` error;
    /// Kafka and the memory driver have them.
    fn transactions(&self, id: &str) -> Result<Arc<dyn Transactions>> {
        let _ = id;
        Err(crate::transaction::unsupported(self.reader().driver()))
    }
}
