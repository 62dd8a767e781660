//! Whether the readers' client reaches its broker. The pulsar crate reconnects by itself
//! and tells nobody, so a topic lookup is asked through the client once a second while
//! some reader uses it.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::reader::ConsumerClient;

/// The pause between two lookups.
const EVERY: Duration = Duration::from_secs(1);
/// The longest a lookup may take before the broker counts as out of reach (or the
/// request timeout, if shorter). A broker on loopback answers in a millisecond.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long the lookups go on once no reader uses the client: past the scheduler's
/// longest wait between two subscriptions of a failed reader (5 s), so that an outage,
/// when no subscription is open for a while, is still watched.
const IDLE: Duration = Duration::from_secs(10);

/// What the last lookup said: nothing yet, answered, or failed or late.
#[derive(Debug, Default)]
pub(crate) struct Link {
    /// 0 until the first lookup ends, and again once the lookups stop; then [`UP`] or
    /// [`DOWN`].
    state: AtomicU8,
    /// Subscriptions open or being made through the client.
    users: AtomicUsize,
    /// Whether a task is looking up.
    watching: AtomicBool,
}

const UP: u8 = 1;
const DOWN: u8 = 2;

impl Link {
    /// `None` until the first lookup has answered or failed.
    pub(crate) fn connected(&self) -> Option<bool> {
        match self.state.load(Ordering::Relaxed) {
            UP => Some(true),
            DOWN => Some(false),
            _ => None,
        }
    }

    /// Notes a lookup's outcome, and says when it changes what the client knew: the
    /// pulsar crate logs every attempt of its reconnects (through `log`, at error level),
    /// so this is the one line a service's logs need.
    fn set(&self, up: bool, url: &str) {
        let was = self.state.swap(if up { UP } else { DOWN }, Ordering::Relaxed);
        match (was, up) {
            (UP, false) => tracing::warn!(%url, "lost the connection to Pulsar; reconnecting"),
            (DOWN, true) => tracing::info!(%url, "connected to Pulsar again"),
            _ => {}
        }
    }

    /// Notes a subscription to `topic` (a full topic name) through `client` until the
    /// guard is dropped, and starts looking `topic` up if nothing does: a driver that
    /// only writes asks nothing, and one whose readers have all stopped stops asking
    /// after [`IDLE`].
    pub(crate) fn in_use(client: &Arc<ConsumerClient>, topic: String) -> InUse {
        let link = client.link();
        link.users.fetch_add(1, Ordering::SeqCst);
        if link.watching.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            tokio::spawn(watch(Arc::downgrade(client), topic));
        }
        InUse(Arc::clone(client))
    }

    /// Whether the lookups may stop: no subscription for `IDLE`, counted from `idle`
    /// (when none was first seen, kept by the caller). When they stop, what the client
    /// knew is forgotten.
    fn may_stop(&self, idle: &mut Option<Instant>) -> bool {
        if self.users.load(Ordering::SeqCst) > 0 {
            *idle = None;
            return false;
        }
        if idle.get_or_insert_with(Instant::now).elapsed() < IDLE {
            return false;
        }
        self.state.store(0, Ordering::Relaxed);
        self.watching.store(false, Ordering::SeqCst);
        // A subscription made since the count was read found the lookups still going
        // and started none: they go on for it, unless it started them anew already.
        if self.users.load(Ordering::SeqCst) > 0
            && self.watching.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            *idle = None;
            return false;
        }
        true
    }
}

/// A subscription through the readers' client, counted while this lives.
pub(crate) struct InUse(Arc<ConsumerClient>);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.link().users.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Looks `topic` up once a second until the client is dropped or no reader has used it
/// for [`IDLE`], and notes the outcome.
async fn watch(client: Weak<ConsumerClient>, topic: String) {
    let mut idle = None;
    'lookups: loop {
        let Some(owner) = client.upgrade() else { return };
        if owner.link().may_stop(&mut idle) {
            return;
        }
        let (generation, pulsar) = owner.get();
        let patience = owner.config().request_timeout.min(PATIENCE);
        drop(owner);
        let topic = topic.clone();
        // Spawned and never dropped half-way: a lookup dropped while the pulsar crate is
        // connecting leaves that connection marked as being made, and every later
        // request through the client would wait for it for good.
        let mut lookup = tokio::spawn(async move { answered(&pulsar.lookup_topic(topic).await) });
        let up = match tokio::time::timeout(patience, &mut lookup).await {
            Ok(answer) => answer.unwrap_or(false),
            Err(_) => {
                note(&client, false);
                // The crate retries its connect for minutes: its outcome, or a reader
                // that replaced the client, ends the wait.
                loop {
                    tokio::select! {
                        answer = &mut lookup => break answer.unwrap_or(false),
                        _ = tokio::time::sleep(EVERY) => match client.upgrade() {
                            None => return,
                            Some(owner) if owner.get().0 != generation => continue 'lookups,
                            Some(_) => {}
                        },
                    }
                }
            }
        };
        note(&client, up);
        tokio::time::sleep(EVERY).await;
    }
}

/// Whether a lookup's outcome says the broker was reached and serves: an answer, or a
/// refusal about the topic (deleted where topics are not made on first use, not
/// authorized), which the readers of other topics need not share. A broker that says it
/// is not ready yet does not serve.
fn answered<T>(outcome: &Result<T, pulsar::Error>) -> bool {
    use pulsar::error::ServiceDiscoveryError as Lookup;
    use pulsar::message::proto::ServerError;
    match outcome {
        Ok(_) => true,
        Err(pulsar::Error::ServiceDiscovery(Lookup::NotFound)) => true,
        Err(pulsar::Error::ServiceDiscovery(Lookup::Query(Some(error), _))) => {
            !matches!(error, ServerError::ServiceNotReady | ServerError::MetadataError)
        }
        Err(_) => false,
    }
}

fn note(client: &Weak<ConsumerClient>, up: bool) {
    if let Some(owner) = client.upgrade() {
        owner.link().set(up, &owner.config().url);
    }
}

#[cfg(test)]
mod tests {
    use super::answered;
    use pulsar::error::{ConnectionError, ServiceDiscoveryError as Lookup};
    use pulsar::message::proto::ServerError;

    #[test]
    fn a_refusal_about_the_topic_is_an_answer_and_a_broken_connection_is_not() {
        let lookup = |e: Lookup| Err::<(), _>(pulsar::Error::ServiceDiscovery(e));
        assert!(answered(&Ok::<(), pulsar::Error>(())));
        assert!(answered(&lookup(Lookup::NotFound)));
        assert!(answered(&lookup(Lookup::Query(Some(ServerError::TopicNotFound), None))));
        assert!(answered(&lookup(Lookup::Query(Some(ServerError::AuthorizationError), None))));
        assert!(!answered(&lookup(Lookup::Query(Some(ServerError::ServiceNotReady), None))));
        assert!(!answered(&lookup(Lookup::Connection(ConnectionError::Disconnected))));
        assert!(!answered(&lookup(Lookup::Canceled)));
    }
}
