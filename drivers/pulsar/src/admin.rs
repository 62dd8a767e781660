//! Topic administration through Pulsar's admin REST API, the only place Pulsar offers it.

use std::sync::Arc;

use async_trait::async_trait;
use tidewater_core::{names, Admin, Error, ErrorKind, PartitionLag, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Auth;
use crate::record::short_topic;
use crate::writer::Producers;
use crate::{PulsarConfig, DRIVER};

/// Creates partitioned topics, deletes and lists topics of the configured namespace.
pub(crate) struct PulsarAdmin {
    config: Arc<PulsarConfig>,
    /// The connection's producers, to forget those of a topic it deletes.
    producers: Arc<Producers>,
}

impl PulsarAdmin {
    pub(crate) fn new(config: Arc<PulsarConfig>, producers: Arc<Producers>) -> Self {
        Self { config, producers }
    }

    /// `/admin/v2/persistent/public/default` for `persistent://public/default/`.
    fn base(&self) -> Result<String> {
        let namespace = self.config.namespace.trim_end_matches('/');
        match namespace.split_once("://") {
            Some((domain, path)) if !path.is_empty() => Ok(format!("/admin/v2/{domain}/{path}")),
            _ => {
                Err(Error::new(ErrorKind::Config, format!("namespace {namespace:?} is not domain://tenant/namespace"))
                    .with_driver(DRIVER))
            }
        }
    }

    /// Sends one request and returns the status and body.
    async fn call(&self, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
        let Some(url) = &self.config.admin_url else {
            return Err(Error::new(
                ErrorKind::Config,
                "Pulsar has topic administration only in its admin API: set PulsarConfig::admin_url",
            )
            .with_driver(DRIVER));
        };
        let Some(host) = url.strip_prefix("http://").map(|h| h.trim_end_matches('/')) else {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("admin URL {url:?}: only http:// is supported for the admin API"),
            )
            .with_driver(DRIVER));
        };
        let failed = |e: std::io::Error| {
            Error::new(ErrorKind::Connection, format!("the Pulsar admin API at {url}"))
                .with_source(e)
                .with_driver(DRIVER)
        };
        let exchange = async {
            let mut stream = TcpStream::connect(host).await.map_err(failed)?;
            let auth = match &self.config.auth {
                Some(Auth::Token(token)) => format!("Authorization: Bearer {token}\r\n"),
                None => String::new(),
            };
            // HTTP/1.0, so the answer ends with the connection and is never chunked.
            let request = format!(
                "{method} {path} HTTP/1.0\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).await.map_err(failed)?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.map_err(failed)?;
            Ok::<_, Error>(answer)
        };
        let answer = tokio::time::timeout(self.config.request_timeout, exchange).await.map_err(|_| {
            Error::new(ErrorKind::Timeout, format!("the Pulsar admin API at {url} did not answer in time"))
                .with_driver(DRIVER)
        })??;
        let text = String::from_utf8_lossy(&answer);
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| {
            Error::new(ErrorKind::BrokerPermanent, format!("the Pulsar admin API at {url} did not answer in HTTP"))
                .with_driver(DRIVER)
        })?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        Ok((status, body))
    }

    fn refused(what: String, status: u16, body: &str) -> Error {
        let kind = match status {
            401 | 403 => ErrorKind::Config,
            412 | 400 => ErrorKind::InvalidInput,
            500.. => ErrorKind::BrokerTransient,
            _ => ErrorKind::BrokerPermanent,
        };
        Error::new(kind, format!("{what}: the admin API answered {status} {}", body.trim())).with_driver(DRIVER)
    }

    /// The JSON body of a GET that answered 200; `None` for a 404.
    async fn json(&self, what: &str, path: &str) -> Result<Option<serde_json::Value>> {
        match self.call("GET", path, "").await? {
            (200, body) => serde_json::from_str(&body).map(Some).map_err(|e| {
                Error::new(ErrorKind::BrokerPermanent, format!("{what}: the admin API's answer is not JSON"))
                    .with_source(e)
                    .with_driver(DRIVER)
            }),
            (404, _) => Ok(None),
            (status, body) => Err(Self::refused(what.to_owned(), status, &body)),
        }
    }

    /// The backlog of subscription `group` on one topic or partition; `None` when the
    /// topic has no such subscription.
    async fn backlog(&self, topic: &str, path: &str, group: &str) -> Result<Option<u64>> {
        let what = format!("reading the stats of topic {topic:?}");
        let Some(stats) = self.json(&what, path).await? else {
            return Err(Error::new(ErrorKind::UnknownTopic, "no such topic").with_driver(DRIVER).with_topic(topic));
        };
        Ok(stats
            .get("subscriptions")
            .and_then(|s| s.get(group))
            .map(|s| s.get("msgBacklog").and_then(serde_json::Value::as_u64).unwrap_or(0)))
    }

    async fn names(&self, path: &str) -> Result<Vec<String>> {
        let (status, body) = self.call("GET", path, "").await?;
        if status != 200 {
            return Err(Self::refused("listing topics".to_owned(), status, &body));
        }
        serde_json::from_str(&body).map_err(|e| {
            Error::new(ErrorKind::BrokerPermanent, "the topic list is not a JSON list of names")
                .with_source(e)
                .with_driver(DRIVER)
        })
    }
}

#[async_trait]
impl Admin for PulsarAdmin {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    /// Creates a partitioned topic of `partitions` partitions (at least 1).
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        names::check_topic(topic).map_err(|e| e.with_driver(DRIVER))?;
        let path = format!("{}/{topic}/partitions", self.base()?);
        match self.call("PUT", &path, &partitions.max(1).to_string()).await? {
            (200 | 204 | 409, _) => Ok(()),
            (status, body) => Err(Self::refused(format!("creating topic {topic:?}"), status, &body).with_topic(topic)),
        }
    }

    /// Deletes the topic (partitioned or not) with its subscriptions, even while
    /// consumers are connected, and drops this connection's producer for it. Kept, it
    /// would reconnect to the partitions it knew by their own names
    /// (`<topic>-partition-0`), which the broker makes as topics of their own where
    /// topics are made on first use: its writes would be stored there and read by no
    /// one, also after the topic is made again.
    async fn delete_topic(&self, topic: &str) -> Result<()> {
        let base = self.base()?;
        for path in [format!("{base}/{topic}/partitions?force=true"), format!("{base}/{topic}?force=true")] {
            match self.call("DELETE", &path, "").await? {
                (200 | 204, _) => break,
                (404, _) => continue,
                (status, body) => {
                    return Err(Self::refused(format!("deleting topic {topic:?}"), status, &body).with_topic(topic))
                }
            }
        }
        // Also when it was gone already: deleted elsewhere, the producer is as stale.
        self.producers.forget(topic);
        Ok(())
    }

    /// The backlog of the group's subscription, per partition of a partitioned topic.
    async fn lag(&self, topic: &str, group: &str) -> Result<Vec<PartitionLag>> {
        names::check_topic(topic).map_err(|e| e.with_driver(DRIVER))?;
        let base = self.base()?;
        let metadata = self.json(&format!("reading topic {topic:?}"), &format!("{base}/{topic}/partitions")).await?;
        let partitions = metadata.and_then(|m| m.get("partitions").and_then(serde_json::Value::as_u64)).unwrap_or(0);
        let paths: Vec<String> = if partitions == 0 {
            vec![format!("{base}/{topic}/stats")]
        } else {
            (0..partitions).map(|i| format!("{base}/{topic}-partition-{i}/stats")).collect()
        };
        let mut lags = Vec::with_capacity(paths.len());
        for (partition, path) in paths.iter().enumerate() {
            let Some(lag) = self.backlog(topic, path, group).await? else {
                return Err(Error::new(ErrorKind::UnknownGroup, format!("the topic has no subscription {group:?}"))
                    .with_driver(DRIVER)
                    .with_topic(topic));
            };
            lags.push(PartitionLag { partition: partition as u32, lag });
        }
        Ok(lags)
    }

    /// The topics of the namespace, a partitioned topic once by its own name.
    async fn topics(&self) -> Result<Vec<String>> {
        let base = self.base()?;
        let mut topics: Vec<String> = self.names(&format!("{base}/partitioned")).await?;
        topics.extend(self.names(&base).await?);
        let mut short: Vec<String> = topics.iter().map(|t| short_topic(t)).collect();
        short.sort();
        short.dedup();
        Ok(short)
    }
}
