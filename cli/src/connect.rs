//! Choosing and connecting the driver by the URL's scheme.

use std::sync::Arc;

use tidewater::{Admin, Driver, Error, ErrorKind, Reader, Result, Writer};

/// Whichever driver the URL named, behind one type.
pub(crate) struct AnyDriver(Box<dyn Driver + Send + Sync>);

impl Driver for AnyDriver {
    fn writer(&self) -> Arc<dyn Writer> {
        self.0.writer()
    }

    fn reader(&self) -> Arc<dyn Reader> {
        self.0.reader()
    }

    fn admin(&self) -> Arc<dyn Admin> {
        self.0.admin()
    }
}

/// Connects to the broker `url` names: `nats://` (JetStream), `kafka://host:port[,...]`,
/// `pulsar://` or `pulsar+ssl://` (with `admin_url` for topic administration, by default
/// the same host on port 8080), `streambus://host:port`.
pub(crate) async fn connect(url: &str, admin_url: Option<&str>) -> Result<AnyDriver> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| usage(url))?;
    let driver: Box<dyn Driver + Send + Sync> = match scheme {
        "nats" | "tls" => {
            use tidewater::nats::{JetStream, JetStreamConfig, NatsConfig};
            Box::new(JetStream::connect(&NatsConfig::new(url), JetStreamConfig::default()).await?)
        }
        "kafka" => {
            use tidewater::kafka::{Kafka, KafkaConfig};
            Box::new(Kafka::connect(KafkaConfig::new(rest)).await?)
        }
        "pulsar" | "pulsar+ssl" => {
            use tidewater::pulsar::{Pulsar, PulsarConfig};
            let host = rest.split([':', '/', ',']).next().unwrap_or("localhost");
            let admin = admin_url.map_or_else(|| format!("http://{host}:8080"), str::to_owned);
            Box::new(Pulsar::connect(PulsarConfig::new(url).admin_url(admin)).await?)
        }
        "streambus" => {
            use tidewater::streambus::{StreamBus, StreamBusConfig};
            Box::new(StreamBus::connect(StreamBusConfig::new(rest)).await?)
        }
        _ => return Err(usage(url)),
    };
    Ok(AnyDriver(driver))
}

fn usage(url: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("{url:?} names no broker: use nats://, kafka://, pulsar:// or streambus:// and the address"),
    )
}
