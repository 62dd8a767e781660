//! Core NATS's own request/reply, for [`Requester`](tidewater_core::Requester).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tidewater_core::request::NativeRequests;
use tidewater_core::{Error, ErrorKind, IdFactory, Message, Result, UuidV7Ids};
use tokio::sync::{oneshot, OnceCell};
use tokio::task::JoinHandle;

use crate::core_nats::publish_error;
use crate::headers::{check_subject, from_nats, into_nats};
use crate::{connection_error, DRIVER};

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<async_nats::Message>>>>;

/// Requests over core NATS: each request goes out with a reply subject under an inbox of
/// this connection (`_INBOX.<nuid>.<n>`), which one subscription takes replies from. The
/// server answers a request to a subject nobody subscribes to with a "no responders"
/// status, which becomes a `NoResponders` error at once; a reply after its request
/// timed out is dropped and counted.
pub(crate) struct CoreRequests {
    client: async_nats::Client,
    inbox: String,
    next: AtomicU64,
    waiting: Waiting,
    late: Arc<AtomicU64>,
    /// The task that hands replies to their requests, started with the first request.
    routing: OnceCell<JoinHandle<()>>,
}

impl CoreRequests {
    pub(crate) fn new(client: async_nats::Client) -> Self {
        let inbox = client.new_inbox();
        Self {
            client,
            inbox,
            next: AtomicU64::new(0),
            waiting: Arc::default(),
            late: Arc::default(),
            routing: OnceCell::new(),
        }
    }

    /// Subscribes to the inbox and starts handing replies out, once.
    async fn route(&self) -> Result<()> {
        self.routing
            .get_or_try_init(|| async {
                let mut replies = self
                    .client
                    .subscribe(format!("{}.*", self.inbox))
                    .await
                    .map_err(|e| connection_error("cannot subscribe to the reply inbox", e))?;
                let (waiting, late, skip) = (Arc::clone(&self.waiting), Arc::clone(&self.late), self.inbox.len() + 1);
                Ok::<_, Error>(tokio::spawn(async move {
                    while let Some(reply) = replies.next().await {
                        let token = reply.subject.get(skip..).unwrap_or_default();
                        let waiter = waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(token);
                        match waiter {
                            Some(waiter) => {
                                let _ = waiter.send(reply);
                            }
                            None => {
                                late.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(subject = %reply.subject, "a reply came for no waiting request (it timed out); dropped");
                            }
                        }
                    }
                }))
            })
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl NativeRequests for CoreRequests {
    fn inbox(&self) -> &str {
        &self.inbox
    }

    async fn request(&self, message: Message, timeout: Duration) -> Result<Message> {
        self.route().await?;
        check_subject(&message.stream)?;
        let token = self.next.fetch_add(1, Ordering::Relaxed).to_string();
        let reply_to = format!("{}.{token}", self.inbox);
        let (topic, headers, payload) = into_nats(message)?;
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(token.clone(), tx);
        // Forgotten however the wait ends, so a late reply finds no waiter.
        let _forget = Forget { waiting: &self.waiting, token: &token };
        self.client
            .publish_with_reply_and_headers(topic.clone(), reply_to, headers, payload)
            .await
            .map_err(|e| publish_error(e).with_topic(topic.clone()))?;
        let reply = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(Error::closed("the requester stopped before the reply came").with_driver(DRIVER)),
            Err(_) => {
                return Err(Error::new(ErrorKind::Timeout, format!("no reply within {timeout:?}"))
                    .with_driver(DRIVER)
                    .with_topic(topic))
            }
        };
        if reply.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Err(Error::new(ErrorKind::NoResponders, "nobody subscribes to the subject")
                .with_driver(DRIVER)
                .with_topic(topic));
        }
        Ok(from_nats(&reply.subject, reply.headers.as_ref(), reply.payload, || UuidV7Ids.next_id(), None))
    }

    fn late_replies(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    async fn close(&self) -> Result<()> {
        if let Some(routing) = self.routing.get() {
            routing.abort();
        }
        Ok(())
    }
}

impl Drop for CoreRequests {
    fn drop(&mut self) {
        if let Some(routing) = self.routing.get() {
            routing.abort();
        }
    }
}

struct Forget<'a> {
    waiting: &'a Waiting,
    token: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(self.token);
    }
}
