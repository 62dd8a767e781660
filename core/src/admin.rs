//! Topic administration: create, delete and list topics the same way on every driver,
//! so that tests clean up after themselves and services can set up what they use.

use async_trait::async_trait;

use crate::{Error, ErrorKind, Result};

/// Creates, deletes and lists topics on a driver's broker. Get one with
/// [`Driver::admin`](crate::Driver::admin).
///
/// ```
/// # async fn demo(driver: impl tidewater_core::Driver) -> tidewater_core::Result<()> {
/// let admin = driver.admin();
/// admin.create_topic("orders", 3).await?;
/// assert!(admin.topics().await?.iter().any(|t| t == "orders"));
/// admin.delete_topic("orders").await?;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Admin: Send + Sync {
    /// The driver's name, for errors and logs.
    fn driver(&self) -> &'static str;

    /// Creates `topic` with `partitions` partitions (brokers without partitions ignore the
    /// count). A topic that already exists is left as it is and is not an error.
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()>;

    /// Deletes `topic` with its messages (and, where the broker keeps them with the topic,
    /// its groups' positions). A topic that does not exist is not an error.
    async fn delete_topic(&self, topic: &str) -> Result<()>;

    /// The topics there are, in no particular order.
    async fn topics(&self) -> Result<Vec<String>>;
}

/// The admin of a driver that has none: every call is `Unsupported`.
pub(crate) struct NoAdmin(pub(crate) &'static str);

impl NoAdmin {
    fn unsupported(&self, what: &str) -> Error {
        Error::new(ErrorKind::Unsupported, format!("this driver cannot {what}")).with_driver(self.0)
    }
}

#[async_trait]
impl Admin for NoAdmin {
    fn driver(&self) -> &'static str {
        self.0
    }

    async fn create_topic(&self, topic: &str, _partitions: u32) -> Result<()> {
        Err(self.unsupported("create topics").with_topic(topic))
    }

    async fn delete_topic(&self, topic: &str) -> Result<()> {
        Err(self.unsupported("delete topics").with_topic(topic))
    }

    async fn topics(&self) -> Result<Vec<String>> {
        Err(self.unsupported("list topics"))
    }
}
