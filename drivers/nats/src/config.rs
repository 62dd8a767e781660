//! Connecting to NATS.

use async_nats::ConnectErrorKind;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tidewater_core::{Error, ErrorKind, Result};

use crate::DRIVER;

/// How to authenticate.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// User and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
    /// A `.creds` file (JWT and NKey seed), as `nsc` writes them.
    CredentialsFile(PathBuf),
    /// An NKey seed.
    NKey(String),
}

impl fmt::Debug for Auth {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::UserPassword { user, .. } => write!(f, "UserPassword {{ user: {user:?}, password: <redacted> }}"),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::CredentialsFile(path) => write!(f, "CredentialsFile({path:?})"),
            Auth::NKey(_) => f.write_str("NKey(<redacted>)"),
        }
    }
}

/// TLS settings.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// Refuse to connect without TLS.
    pub required: bool,
    /// A PEM file of root certificates to trust besides the system's.
    pub root_certificates: Option<PathBuf>,
    /// A PEM client certificate and key, for mutual TLS.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

/// Where and how to connect.
///
/// ```
/// use tidewater_nats::{Auth, NatsConfig};
///
/// let config = NatsConfig::new("nats://127.0.0.1:4222")
///     .auth(Auth::Token("s3cret".into()))
///     .name("billing");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct NatsConfig {
    /// Server URLs; the client picks one and fails over to the others. A URL may carry
    /// credentials, as NATS's own tools take them: `nats://user:password@host:4222`, or
    /// `nats://token@host:4222`; they are used when [`NatsConfig::auth`] sets none, and
    /// never shown (in `Debug` output, errors or logs).
    pub servers: Vec<String>,
    /// Credentials.
    pub auth: Auth,
    /// TLS, if any.
    pub tls: Option<Tls>,
    /// The connection name the server shows.
    pub name: Option<String>,
    /// Reconnect attempts before giving up; `None` (the default) retries forever, so a
    /// restarted server is found again.
    pub max_reconnects: Option<usize>,
    /// The longest wait between reconnect attempts (they back off up to it).
    pub max_reconnect_delay: Duration,
    /// How long a connection attempt may take.
    pub connection_timeout: Duration,
    /// How long JetStream API requests and publish acknowledgements may take. A publish
    /// whose acknowledgement is lost (the server restarted) fails with `Timeout` after
    /// this, and can be sent again: its `Nats-Msg-Id` keeps the server from storing it
    /// twice. Default 10 s.
    pub request_timeout: Duration,
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("servers", &self.shown_servers())
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("name", &self.name)
            .field("max_reconnects", &self.max_reconnects)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .field("connection_timeout", &self.connection_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl NatsConfig {
    /// The server URLs as errors and logs show them: without credentials.
    fn shown_servers(&self) -> Vec<String> {
        self.servers.iter().map(|url| shown(url)).collect()
    }

    /// A configuration for one server URL, with the defaults.
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            servers: vec![server.into()],
            auth: Auth::None,
            tls: None,
            name: None,
            max_reconnects: None,
            max_reconnect_delay: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Sets the credentials.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets TLS.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the connection name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Connects. A server that refuses the credentials or the TLS handshake (its
    /// certificate not trusted here, the client's refused) is a `Config` error, which
    /// retrying cannot help; one that cannot be reached is a `Connection` error.
    pub async fn connect(&self) -> Result<async_nats::Client> {
        let mut servers = Vec::with_capacity(self.servers.len());
        let mut in_url = None;
        for url in &self.servers {
            let (addr, credentials) = without_credentials(server_addr(url)?)?;
            in_url = in_url.or(credentials);
            servers.push(addr);
        }
        let auth = match (&self.auth, in_url) {
            (Auth::None, Some(from_url)) => from_url,
            (given, _) => given.clone(),
        };
        let mut options = match &auth {
            Auth::None => async_nats::ConnectOptions::new(),
            Auth::UserPassword { user, password } => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Auth::Token(token) => async_nats::ConnectOptions::with_token(token.clone()),
            Auth::CredentialsFile(path) => {
                async_nats::ConnectOptions::with_credentials_file(path).await.map_err(|e| {
                    Error::new(ErrorKind::Config, format!("cannot read credentials file {path:?}")).with_source(e)
                })?
            }
            Auth::NKey(seed) => async_nats::ConnectOptions::with_nkey(seed.clone()),
        };
        if let Some(tls) = &self.tls {
            options = options.require_tls(tls.required);
            if let Some(roots) = &tls.root_certificates {
                options = options.add_root_certificates(roots.clone());
            }
            if let Some((cert, key)) = &tls.client_certificate {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
        }
        if let Some(name) = &self.name {
            options = options.name(name);
        }
        let max_delay = self.max_reconnect_delay;
        let shown: Arc<str> = self.shown_servers().join(",").into();
        options = options
            .event_callback(move |event| {
                log_event(&shown, &event);
                std::future::ready(())
            })
            .max_reconnects(self.max_reconnects)
            .reconnect_delay_callback(move |attempt| {
                let exp = Duration::from_millis(50).saturating_mul(1u32 << attempt.min(16));
                exp.min(max_delay)
            })
            .connection_timeout(self.connection_timeout)
            .request_timeout(Some(self.request_timeout))
            // Every subject the driver publishes to passed its own check first, stricter
            // than the client's (tokens, no wildcards, no white space or control
            // characters; `subjects.rs` keeps what it checked), or came from the server
            // or the client (inboxes, replies). The client's second look took about 140
            // instructions a publish (callgrind, core publish). JetStream names are
            // checked by the client whatever this says.
            .skip_subject_validation(true);
        options.connect(servers).await.map_err(|e| {
            const TLS: &str = "TLS with the NATS server failed (check the root certificates, and the client \
                               certificate if the server wants one) at";
            let (kind, what) = match e.kind() {
                // Retrying with the same settings would be refused the same way.
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => (
                    ErrorKind::Config,
                    "the NATS server refused the credentials (check the user, password, token, nkey or \
                     credentials file) at",
                ),
                ConnectErrorKind::Tls => (ErrorKind::Config, TLS),
                // A handshake that failed on a certificate comes as an I/O error.
                ConnectErrorKind::Io if tidewater_core::reach::refused_certificate(&e) => (ErrorKind::Config, TLS),
                _ => (ErrorKind::Connection, "cannot connect to"),
            };
            Error::new(kind, format!("{what} {:?}", self.shown_servers())).with_source(e).with_driver(DRIVER)
        })
    }
}

/// `url` as a server address, or a configuration error: a URL that can never reach a
/// server (a mistyped scheme, no host) must not look like a broker that is down.
fn server_addr(url: &str) -> Result<async_nats::ServerAddr> {
    let invalid = |why: &str| {
        Error::new(ErrorKind::Config, format!("{:?} is not a NATS server URL: {why}", shown(url))).with_driver(DRIVER)
    };
    let addr: async_nats::ServerAddr = url.parse().map_err(|e| invalid("it does not parse").with_source(e))?;
    let parsed = addr.clone().into_inner();
    if !matches!(parsed.scheme(), "nats" | "tls" | "ws" | "wss") {
        return Err(invalid("the scheme must be nats, tls, ws or wss"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it names no host"));
    }
    // A URL without a scheme gets `nats://` put in front, so `htp:/nope` would be host
    // `htp` with path `/nope`; a server address has no path.
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        return Err(invalid("a server URL has no path or query"));
    }
    Ok(addr)
}

/// `addr` without the credentials in it, and those as an [`Auth`]: a user and a password,
/// or a user alone, which NATS takes as a token.
fn without_credentials(addr: async_nats::ServerAddr) -> Result<(async_nats::ServerAddr, Option<Auth>)> {
    let Some(user) = addr.username().filter(|u| !u.is_empty()).map(decoded) else { return Ok((addr, None)) };
    let auth = match addr.password().map(decoded) {
        Some(password) => Auth::UserPassword { user, password },
        None => Auth::Token(user),
    };
    let mut url = addr.into_inner();
    // Only a URL with a host can have had a user, and such a URL takes these.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let addr = async_nats::ServerAddr::from_url(url).map_err(|e| {
        Error::new(ErrorKind::Config, "a NATS server URL without its credentials does not parse")
            .with_source(e)
            .with_driver(DRIVER)
    })?;
    Ok((addr, Some(auth)))
}

/// A URL's user or password as written, percent-escapes undone.
fn decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// `url` as it may be shown: its credentials, if any, replaced by `***`.
fn shown(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        },
    }
}

/// The client's connection events in the log. The client reconnects on its own and says
/// so only at debug level, so without these a lost connection shows only as readers and
/// writers that wait.
fn log_event(servers: &str, event: &async_nats::Event) {
    use async_nats::Event as E;
    match event {
        E::Disconnected => tracing::warn!(servers, "lost the connection to NATS; reconnecting"),
        E::Connected => tracing::info!(servers, "connected to NATS"),
        E::LameDuckMode => tracing::warn!(servers, "the NATS server is shutting down (lame duck mode)"),
        E::SlowConsumer(sid) => {
            tracing::warn!(servers, subscription = sid, "NATS dropped messages of a subscription that fell behind")
        }
        E::ServerError(err) => tracing::error!(servers, error = %err, "the NATS server reported an error"),
        E::ClientError(err) => tracing::warn!(servers, error = %err, "the NATS client reported an error"),
        E::Draining | E::Closed => tracing::debug!(servers, %event, "NATS connection"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_cannot_name_a_server_is_a_configuration_error() {
        for url in ["htp:/nope", "http://example.com", "nats://"] {
            let err = server_addr(url).expect_err(url);
            assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err}");
            assert!(!err.is_retryable());
        }
        for url in ["nats://127.0.0.1:4222", "127.0.0.1:4222", "tls://demo.example:4443", "localhost"] {
            server_addr(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn credentials_in_a_url_are_taken_out_and_never_shown() {
        let split = |url: &str| without_credentials(server_addr(url).unwrap()).unwrap();
        let (addr, auth) = split("nats://svc:p%40ss@127.0.0.1:4222");
        assert_eq!(addr.as_url_str(), "nats://127.0.0.1:4222");
        assert!(
            matches!(auth, Some(Auth::UserPassword { ref user, ref password }) if user == "svc" && password == "p@ss")
        );
        let (addr, auth) = split("tls://s3cret-token@demo.example:4443");
        assert_eq!((addr.host(), addr.port()), ("demo.example", 4443));
        assert!(matches!(auth, Some(Auth::Token(ref t)) if t == "s3cret-token"));
        assert!(split("nats://127.0.0.1:4222").1.is_none());

        let config = NatsConfig::new("nats://svc:hunter2@127.0.0.1:4222");
        assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
        assert_eq!(shown("nats://svc:hunter2@127.0.0.1:4222"), "nats://***@127.0.0.1:4222");
        assert_eq!(shown("svc:hunter2@127.0.0.1:4222"), "***@127.0.0.1:4222");
        assert_eq!(shown("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        let err = server_addr("nats://svc:hunter2@127.0.0.1:4222/path").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
