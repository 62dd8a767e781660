//! Choosing and connecting the driver by the URL's scheme.

use std::path::{Path, PathBuf};
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

/// librdkafka properties from `--kafka-config` and `-X`, in the order they apply. No
/// `Debug`: they hold passwords.
pub(crate) struct KafkaProperties(Vec<(String, String)>);

impl KafkaProperties {
    /// The file's properties, then `given`, so that those given on the command line win.
    fn gather(file: Option<&Path>, given: Vec<(String, String)>) -> Result<Self> {
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

/// How to get in, beside the URL: what the options gave. No `Debug`: it holds secrets.
#[derive(Default)]
pub(crate) struct Access {
    /// Pulsar's admin API.
    pub(crate) admin_url: Option<String>,
    /// A file of librdkafka properties.
    pub(crate) kafka_config: Option<PathBuf>,
    /// librdkafka properties given one by one, over the file's.
    pub(crate) kafka_properties: Vec<(String, String)>,
    /// A Pulsar or NATS token.
    pub(crate) token: Option<String>,
    /// A NATS credentials file.
    pub(crate) nats_creds: Option<PathBuf>,
    /// The CA that signed a NATS or Pulsar broker's certificate.
    pub(crate) ca_file: Option<PathBuf>,
}

impl Access {
    /// Keeps what `scheme`'s broker uses. Of the rest, an option `typed` on the command
    /// line is refused (a user who gave credentials expects them used, not dropped in
    /// silence); one from the environment, which may be set for another broker, goes.
    fn for_scheme(mut self, scheme: &str, typed: &[&str]) -> Result<Self> {
        let (nats, pulsar) = (matches!(scheme, "nats" | "tls"), matches!(scheme, "pulsar" | "pulsar+ssl"));
        let uses = |id: &str| match id {
            "kafka_properties" | "kafka_config" => scheme == "kafka",
            "token" | "ca_file" => nats || pulsar,
            "nats_creds" => nats,
            _ => true,
        };
        if let Some(id) = typed.iter().find(|id| !uses(id)) {
            let option = match *id {
                "kafka_properties" => "-X".to_owned(),
                other => format!("--{}", other.replace('_', "-")),
            };
            return Err(Error::new(ErrorKind::Config, format!("{option} is not for {scheme}:// URLs")));
        }
        if self.token.is_some() && self.nats_creds.is_some() && nats {
            return Err(Error::new(ErrorKind::Config, "give --token or --nats-creds, not both"));
        }
        if !uses("kafka_properties") {
            (self.kafka_config, self.kafka_properties) = (None, Vec::new());
        }
        if !uses("token") {
            self.token = None;
        }
        if !uses("nats_creds") {
            self.nats_creds = None;
        }
        if !uses("ca_file") {
            self.ca_file = None;
        }
        Ok(self)
    }
}

/// Connects to the broker `url` names, as `access` says (see [`Access::for_scheme`] for
/// `typed`): `nats://` or `tls://` (JetStream), `kafka://host:port[,...]`, `pulsar://` or
/// `pulsar+ssl://` (with the admin URL for topic administration, by default the same
/// host on port 8080), `streambus://host:port`.
pub(crate) async fn connect(url: &str, access: Access, typed: &[&str]) -> Result<AnyDriver> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| usage(url))?;
    let access = access.for_scheme(scheme, typed)?;
    let driver: Box<dyn Driver + Send + Sync> = match scheme {
        "nats" | "tls" => {
            use tidewater::nats::{Auth, JetStream, JetStreamConfig, NatsConfig, Tls};
            let mut config = NatsConfig::new(url);
            if let Some(token) = access.token {
                config = config.auth(Auth::Token(token));
            }
            if let Some(creds) = access.nats_creds {
                config = config.auth(Auth::CredentialsFile(creds));
            }
            if let Some(ca) = access.ca_file {
                config = config.tls(Tls { required: true, root_certificates: Some(ca), client_certificate: None });
            }
            Box::new(JetStream::connect(&config, JetStreamConfig::default()).await?)
        }
        "kafka" => {
            use tidewater::kafka::{Kafka, KafkaConfig};
            let properties = KafkaProperties::gather(access.kafka_config.as_deref(), access.kafka_properties)?;
            let config = properties.0.into_iter().fold(KafkaConfig::new(rest), |config, (k, v)| config.set(k, v));
            Box::new(Kafka::connect(config).await?)
        }
        "pulsar" | "pulsar+ssl" => {
            use tidewater::pulsar::{Pulsar, PulsarConfig, Tls};
            let host = rest.split([':', '/', ',']).next().unwrap_or("localhost");
            let admin = access.admin_url.unwrap_or_else(|| format!("http://{host}:8080"));
            let mut config = PulsarConfig::new(url).admin_url(admin);
            if let Some(token) = access.token {
                config = config.token(token);
            }
            if let Some(ca) = access.ca_file {
                config.tls = Some(Tls::new().ca_file(ca));
            }
            Box::new(Pulsar::connect(config).await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_for_another_broker_are_refused_when_typed_and_dropped_from_the_environment() {
        let access = || Access {
            token: Some("t".into()),
            kafka_properties: vec![("a".into(), "b".into())],
            ca_file: Some("ca.pem".into()),
            ..Access::default()
        };
        let refused = |access: Access, scheme, typed| access.for_scheme(scheme, typed).err().expect("refused");
        let err = refused(access(), "kafka", &["token"]);
        assert!(err.to_string().contains("--token is not for kafka:// URLs"), "{err}");
        let err = refused(access(), "pulsar", &["kafka_properties"]);
        assert!(err.to_string().contains("-X is not for pulsar:// URLs"), "{err}");

        let kafka = access().for_scheme("kafka", &["kafka_properties"]).unwrap_or_else(|e| panic!("kept: {e}"));
        assert_eq!((kafka.token, kafka.ca_file, kafka.kafka_properties.len()), (None, None, 1));
        let nats = access().for_scheme("tls", &[]).unwrap_or_else(|e| panic!("kept: {e}"));
        assert!(nats.token.is_some() && nats.ca_file.is_some() && nats.kafka_properties.is_empty());
        let both = Access { nats_creds: Some("u.creds".into()), ..access() };
        assert!(both.for_scheme("nats", &[]).is_err(), "two credentials: which one?");
    }

    #[test]
    fn a_property_is_key_equals_value() {
        assert_eq!(property(" sasl.password = a=b "), Ok(("sasl.password".into(), "a=b".into())));
        assert!(property("security.protocol").is_err());
        assert!(property("=x").is_err());
    }
}
