//! Core NATS's own request/reply, for [`Requester`](tidewater_core::Requester).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tidewater_core::request::{NativeRequests, Waiters};
use tidewater_core::{Error, ErrorKind, IdFactory, Message, Result, UuidV7Ids};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use crate::core_nats::publish_error;
use crate::headers::{check_subject, from_nats, into_nats, Implied};
use crate::{connection_error, DRIVER};

/// Requests over core NATS: each request goes out with a reply subject under an inbox of
/// this connection (`_INBOX.<nuid>.<n>`), which one subscription takes replies from. The
/// server answers a request to a subject nobody subscribes to with a "no responders"
/// status, which becomes a `NoResponders` error at once; a reply after its request
/// timed out is dropped and counted.
pub(crate) struct CoreRequests {
    client: async_nats::Client,
    inbox: String,
    next: AtomicU64,
    waiters: Arc<Waiters<async_nats::Message>>,
    /// The task that hands replies to their requests, started with the first request.
    routing: OnceCell<JoinHandle<()>>,
    /// What the connection's publishes leave out and its reads take for granted.
    implied: Implied,
}

impl CoreRequests {
    pub(crate) fn new(client: async_nats::Client, implied: Implied) -> Self {
        let inbox = client.new_inbox();
        Self { client, inbox, next: AtomicU64::new(0), waiters: Arc::default(), routing: OnceCell::new(), implied }
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
                let (waiters, skip) = (Arc::clone(&self.waiters), self.inbox.len() + 1);
                Ok::<_, Error>(tokio::spawn(async move {
                    while let Some(reply) = replies.next().await {
                        let token = reply.subject.get(skip..).unwrap_or_default().to_owned();
                        waiters.deliver(&token, reply);
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
        let (topic, headers, payload) = into_nats(message, &self.implied)?;
        let wait = self.waiters.wait(token);
        self.client
            .publish_with_reply_and_headers(topic.to_string(), reply_to, headers, payload)
            .await
            .map_err(|e| publish_error(e).with_topic(topic.clone()))?;
        let reply = wait.reply(timeout).await.map_err(|e| e.with_driver(DRIVER).with_topic(topic.clone()))?;
        if reply.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Err(Error::new(ErrorKind::NoResponders, "nobody subscribes to the subject")
                .with_driver(DRIVER)
                .with_topic(topic));
        }
        Ok(from_nats(
            reply.subject.as_str(),
            reply.headers.as_ref(),
            reply.payload,
            || UuidV7Ids.next_id(),
            None,
            self.implied.content_type.as_ref(),
        ))
    }

    fn late_replies(&self) -> u64 {
        self.waiters.late()
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
