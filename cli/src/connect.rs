//! Choosing and connecting the driver by the URL's scheme.

use std::path::Path;
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

/// librdkafka properties from `--kafka-config` and `-X`, in the order they apply.
#[derive(Debug, Default)]
pub(crate) struct KafkaProperties(Vec<(String, String)>);

impl KafkaProperties {
    /// The file's properties, then `given`, so that those given on the command line win.
    pub(crate) fn gather(file: Option<&Path>, given: Vec<(String, String)>) -> Result<Self> {
        let mut all = Vec::new();
        if let Some(file) = file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                Error::new(ErrorKind::Config, format!("cannot read the Kafka properties in {}", file.display()))
                    .with_source(e)
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let pair = property(line).map_err(|why| {
                    Error::new(ErrorKind::Config, format!("{}, line {}: {why}", file.display(), n + 1))
                })?;
                all.push(pair);
            }
        }
        all.extend(given);
        Ok(Self(all))
    }
}

/// `KEY=VALUE`, as `-X` and the lines of `--kafka-config` give a property.
pub(crate) fn property(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.trim().to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Connects to the broker `url` names: `nats://` (JetStream), `kafka://host:port[,...]`
/// (with `kafka`'s librdkafka properties), `pulsar://` or `pulsar+ssl://` (with
/// `admin_url` for topic administration, by default the same host on port 8080),
/// `streambus://host:port`.
pub(crate) async fn connect(url: &str, admin_url: Option<&str>, kafka: KafkaProperties) -> Result<AnyDriver> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| usage(url))?;
    if scheme != "kafka" && !kafka.0.is_empty() {
        // Said rather than left unused: a user who gave credentials expects them used.
        return Err(Error::new(
            ErrorKind::Config,
            format!("Kafka properties (-X, --kafka-config) apply to kafka:// URLs, not to {scheme}://"),
        ));
    }
    let driver: Box<dyn Driver + Send + Sync> = match scheme {
        "nats" | "tls" => {
            use tidewater::nats::{JetStream, JetStreamConfig, NatsConfig};
            Box::new(JetStream::connect(&NatsConfig::new(url), JetStreamConfig::default()).await?)
        }
        "kafka" => {
            use tidewater::kafka::{Kafka, KafkaConfig};
            let config = kafka.0.into_iter().fold(KafkaConfig::new(rest), |config, (k, v)| config.set(k, v));
            Box::new(Kafka::connect(config).await?)
        }
        "pulsar" | "pulsar+ssl" => {
            use tidewater::pulsar::{Pulsar, PulsarConfig};
            let host = rest.split([':', '/', ',']).next().unwrap_or("localhost");
            let admin = admin_url.map_or_else(|| format!("http://{host}:8080"), str::to_owned);
            Box::new(Pulsar::connect(PulsarConfig::new(url).admin_url(admin)).await?)
        }
        "streambus" => {
            use tidewater::streambus::{FileOffsets, StreamBus, StreamBusConfig};
            let mut config = StreamBusConfig::new(rest);
            // v1.0.x brokers keep no group positions; the command keeps them in a file,
            // so that a group goes on where its last run stopped.
            config.offset_store = Arc::new(FileOffsets::new(offsets_dir())?);
            Box::new(StreamBus::connect(config).await?)
        }
        _ => return Err(usage(url)),
    };
    Ok(AnyDriver(driver))
}

/// Where group positions on StreamBus v1.0.x brokers are kept:
/// `$TIDEWATER_OFFSETS_DIR`, else `$XDG_STATE_HOME/tidewater/streambus-offsets`, else
/// `~/.local/state/tidewater/streambus-offsets`.
fn offsets_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("TIDEWATER_OFFSETS_DIR") {
        return dir.into();
    }
    let state = std::env::var_os("XDG_STATE_HOME").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".local/state")
    });
    state.join("tidewater/streambus-offsets")
}

fn usage(url: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("{url:?} names no broker: use nats://, kafka://, pulsar:// or streambus:// and the address"),
    )
}
