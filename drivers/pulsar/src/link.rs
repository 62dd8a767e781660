//! Whether the readers' client reaches its broker. The pulsar crate reconnects by itself
//! and tells nobody, so a topic lookup is asked through the client once a second.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crate::reader::ConsumerClient;

/// The pause between two lookups.
const EVERY: Duration = Duration::from_secs(1);
/// The longest a lookup may take before the broker counts as out of reach (or the
/// request timeout, if shorter). A broker on loopback answers in a millisecond.
const PATIENCE: Duration = Duration::from_secs(5);

/// What the last lookup said: nothing yet, answered, or failed or late.
#[derive(Debug, Default)]
pub(crate) struct Link {
    /// 0 until the first lookup ends, then [`UP`] or [`DOWN`].
    state: AtomicU8,
    watching: OnceLock<()>,
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

    /// Starts looking `topic` (a full topic name the readers use) up through `client`,
    /// once for the client's life: the first subscription starts it, so a driver that
    /// only writes asks nothing.
    pub(crate) fn watch(&self, client: &Arc<ConsumerClient>, topic: String) {
        if self.watching.set(()).is_ok() {
            tokio::spawn(watch(Arc::downgrade(client), topic));
        }
    }
}

/// Looks `topic` up once a second until the client is dropped, and notes the outcome.
async fn watch(client: Weak<ConsumerClient>, topic: String) {
    'lookups: loop {
        let Some(owner) = client.upgrade() else { return };
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
