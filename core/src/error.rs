//! Errors of the transport layer ([`Error`]) and of handlers ([`HandlerError`]).

use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, SystemTime};

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong, and so whether trying again can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The broker could not be reached or the connection broke. Retrying can help.
    Connection,
    /// An operation took too long. Retrying can help, but a write may have happened.
    Timeout,
    /// The broker or a local buffer is full or throttling. Retrying later can help.
    Busy,
    /// The broker answered with an error that retrying can fix (leader moved, rebalance).
    BrokerTransient,
    /// The broker answered with an error that retrying will not fix.
    BrokerPermanent,
    /// The topic does not exist and the driver may not create it.
    UnknownTopic,
    /// The consumer group has never read the topic (or the broker forgot it).
    UnknownGroup,
    /// A name (topic, group, header) is not valid for the broker.
    InvalidName,
    /// A message is larger than the broker or driver accepts.
    TooLarge,
    /// Some other input is not valid (a non-UTF-8 key on a broker with text keys, ...).
    InvalidInput,
    /// A payload could not be encoded.
    Encode,
    /// A payload could not be decoded.
    Decode,
    /// An event type has no topic in the registry.
    UnknownEventType,
    /// The configuration is not valid.
    Config,
    /// The broker or driver cannot do what was asked.
    Unsupported,
    /// The writer, reader or broker was closed.
    Closed,
    /// A request reached no one: the broker knows that nobody listens on its topic
    /// (NATS's native request/reply tells it; elsewhere no answer is a `Timeout`).
    NoResponders,
}

impl ErrorKind {
    /// Whether trying the same operation again can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::Busy | ErrorKind::BrokerTransient)
    }

    /// Whether the error is about the message itself (its payload, size, names or
    /// fields), so that the same message fails the same way each time while others can
    /// succeed: `Decode`, `Encode`, `TooLarge`, `InvalidName`, `InvalidInput`. What
    /// handler errors convert as permanent, and what an outbox relay sets aside.
    ///
    /// ```
    /// use tidewater_core::ErrorKind;
    ///
    /// assert!(ErrorKind::TooLarge.is_about_the_message());
    /// assert!(!ErrorKind::Connection.is_about_the_message());
    /// ```
    pub fn is_about_the_message(self) -> bool {
        use ErrorKind as K;
        matches!(self, K::Decode | K::Encode | K::TooLarge | K::InvalidName | K::InvalidInput)
    }

    /// Whether a failed write refused the message for its own sake: it is
    /// [about the message](ErrorKind::is_about_the_message), or its topic does not exist.
    /// Writing it again fails the same way, while other messages can pass. Not
    /// `BrokerPermanent`, which drivers also give for what is not the message's (a
    /// refused authorization, a fenced producer), and which would refuse every message
    /// alike. What [`Redrive`](crate::Redrive) fails permanently and an outbox relay
    /// sets aside.
    ///
    /// ```
    /// use tidewater_core::ErrorKind;
    ///
    /// assert!(ErrorKind::UnknownTopic.refuses_the_message());
    /// assert!(!ErrorKind::BrokerPermanent.refuses_the_message());
    /// ```
    pub fn refuses_the_message(self) -> bool {
        self.is_about_the_message() || self == ErrorKind::UnknownTopic
    }

    fn describe(self) -> &'static str {
        match self {
            ErrorKind::Connection => "connection failed",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Busy => "busy",
            ErrorKind::BrokerTransient => "transient broker error",
            ErrorKind::BrokerPermanent => "broker error",
            ErrorKind::UnknownTopic => "unknown topic",
            ErrorKind::UnknownGroup => "unknown group",
            ErrorKind::InvalidName => "invalid name",
            ErrorKind::TooLarge => "message too large",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Encode => "cannot encode payload",
            ErrorKind::Decode => "cannot decode payload",
            ErrorKind::UnknownEventType => "unknown event type",
            ErrorKind::Config => "invalid configuration",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Closed => "closed",
            ErrorKind::NoResponders => "no responders",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// An error from a writer, reader, publisher or codec.
///
/// It says what went wrong ([`ErrorKind`]), whether a retry can help
/// ([`Error::is_retryable`]), which driver and topic it concerns, and what caused it.
///
/// Its text says its cause, as [`std::io::Error`]'s does, so that a log line of it alone
/// (`%err`) tells the whole story; and so that a reporter that also prints each
/// [`source`](StdError::source) (anyhow's `{:#}`, tracing's `error.sources`) says that
/// cause once, not twice, `source()` goes on from the first cause below those the text
/// already says. [`Error::get_ref`] is the cause as it was recorded, to downcast.
///
/// ```
/// use tidewater_core::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::TooLarge, "payload is 2000000 bytes, the limit is 1048576")
///     .with_driver("memory")
///     .with_topic("orders");
/// assert!(!err.is_retryable());
/// assert_eq!(
///     err.to_string(),
///     "message too large: payload is 2000000 bytes, the limit is 1048576 (driver memory, topic orders)"
/// );
/// ```
// Boxed, so that the error is a pointer wide: a `Result` on a path that succeeds, each
// publish and write among them, then moves its success value through the futures'
// states rather than the 88 bytes the error's parts take.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    message: String,
    driver: Option<&'static str>,
    topic: Option<String>,
    source: Option<BoxError>,
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind`, explained by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self(Box::new(Inner { kind, message: message.into(), driver: None, topic: None, source: None }))
    }

    /// Records the driver the error came from.
    pub fn with_driver(mut self, driver: &'static str) -> Self {
        self.0.driver = Some(driver);
        self
    }

    /// Records the topic the error concerns.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.0.topic = Some(topic.into());
        self
    }

    /// Records the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Whether trying again can succeed.
    pub fn is_retryable(&self) -> bool {
        self.0.kind.is_retryable()
    }

    /// What happened, without the kind, driver and topic that [`Display`](fmt::Display)
    /// adds around it: for an error that wraps this one's text, so it says them once.
    ///
    /// ```
    /// use tidewater_core::{Error, ErrorKind};
    ///
    /// let err = Error::new(ErrorKind::Connection, "the broker at 127.0.0.1:9092 refused").with_driver("kafka");
    /// let wrapped = Error::new(err.kind(), format!("message m-1 was not written: {}", err.message()))
    ///     .with_driver("kafka");
    /// assert_eq!(
    ///     wrapped.to_string(),
    ///     "connection failed: message m-1 was not written: the broker at 127.0.0.1:9092 refused (driver kafka)"
    /// );
    /// ```
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The driver the error came from, if recorded.
    pub fn driver(&self) -> Option<&'static str> {
        self.0.driver
    }

    /// The topic the error concerns, if recorded.
    pub fn topic(&self) -> Option<&str> {
        self.0.topic.as_deref()
    }

    /// A `Closed` error.
    pub fn closed(what: impl Into<String>) -> Self {
        Self::new(ErrorKind::Closed, what)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.kind)?;
        self.write_what(f)?;
        match self.place() {
            (Some(d), Some(t)) => write!(f, " (driver {d}, topic {t})"),
            (Some(d), None) => write!(f, " (driver {d})"),
            (None, Some(t)) => write!(f, " (topic {t})"),
            (None, None) => Ok(()),
        }
    }
}

impl Error {
    /// What happened and its cause, after the kind: the text between the kind and the
    /// driver and topic.
    fn write_what(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = &self.0.message;
        if !message.is_empty() {
            write!(f, ": {message}")?;
        }
        let Some(source) = &self.0.source else { return Ok(()) };
        // The cause is part of what happened ("connection refused"), so the text says it;
        // a message that already quotes it does not say it again.
        match source.downcast_ref::<Error>() {
            // An error of this crate wrapped in another (a batch's failed message): its
            // kind where it differs, then its own account; its driver and topic go to
            // the end, with this one's, rather than a second "(driver ...)" mid-text.
            Some(inner) if !message.contains(&inner.to_string()) => {
                if inner.0.kind != self.0.kind {
                    write!(f, ": {}", inner.0.kind)?;
                }
                inner.write_what(f)
            }
            Some(_) => Ok(()),
            None => {
                let cause = source.to_string();
                if cause.is_empty() || message.contains(&cause) {
                    return Ok(());
                }
                write!(f, ": {cause}")
            }
        }
    }

    /// The driver and topic the text ends with: this error's, or else those of the first
    /// error of this crate among its causes that has them.
    fn place(&self) -> (Option<&'static str>, Option<&str>) {
        let (mut driver, mut topic) = (self.0.driver, self.0.topic.as_deref());
        let mut next = self.0.source.as_deref().and_then(|s| s.downcast_ref::<Error>());
        while let Some(inner) = next {
            driver = driver.or(inner.0.driver);
            topic = topic.or(inner.0.topic.as_deref());
            next = inner.0.source.as_deref().and_then(|s| s.downcast_ref::<Error>());
        }
        (driver, topic)
    }

    /// The cause as it was recorded with [`Error::with_source`], to downcast: the error
    /// of the broker's client, say. Its text is part of this error's;
    /// [`source`](StdError::source) starts below it.
    ///
    /// ```
    /// use tidewater_core::{Error, ErrorKind};
    ///
    /// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
    /// let err = Error::new(ErrorKind::Connection, "cannot reach 127.0.0.1:4222").with_source(refused);
    /// let io = err.get_ref().and_then(|e| e.downcast_ref::<std::io::Error>());
    /// assert_eq!(io.map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionRefused));
    /// assert_eq!(err.to_string(), "connection failed: cannot reach 127.0.0.1:4222: connection refused");
    /// assert!(std::error::Error::source(&err).is_none(), "the text already says it");
    /// ```
    pub fn get_ref(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.0.source.as_deref()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind).field("message", &self.0.message);
        if let Some(driver) = self.0.driver {
            d.field("driver", &driver);
        }
        if let Some(topic) = &self.0.topic {
            d.field("topic", topic);
        }
        if let Some(source) = &self.0.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl StdError for Error {
    /// The first cause below those this error's text says: the recorded cause's own
    /// source, passing over any whose text the error's already holds (a client's error
    /// that quotes its own cause) or that has none. `None` when the text says them all.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let recorded: &(dyn StdError + 'static) = self.0.source.as_deref()?;
        let said = self.to_string();
        let mut next = recorded.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !said.contains(&text) {
                return Some(cause);
            }
            next = cause.source();
        }
        None
    }
}

/// Whether retrying a failed handler can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Recovery {
    /// The failure may pass (a database was down): retry or redeliver.
    Transient,
    /// The message can never be processed (it does not decode, it breaks a rule): send it
    /// to the dead-letter queue at once, without retries.
    Permanent,
}

/// Why a handler did not process a message.
///
/// Any error converts into a `HandlerError` with `?`, so a handler can return the errors
/// of the libraries it calls. It is transient, but for a tidewater [`Error`] that says
/// the input can never succeed (`Decode`, `Encode`, `TooLarge`, `InvalidName`,
/// `InvalidInput`: a payload that does not decode, an event published from it that is
/// too large): that one is permanent. Mark other input that can never succeed with
/// [`HandlerError::permanent`]. `HandlerError` deliberately does not implement
/// [`std::error::Error`] itself (as `anyhow::Error` does not), which is what makes the
/// blanket conversion possible; [`HandlerError::source_ref`] gives the cause.
///
/// ```
/// use tidewater_core::{HandlerError, Recovery};
///
/// fn parse(input: &str) -> Result<u32, HandlerError> {
///     let n: u32 = input.parse().map_err(HandlerError::permanent)?;
///     Ok(n)
/// }
/// assert_eq!(parse("x").unwrap_err().recovery(), Recovery::Permanent);
/// ```
// Boxed like `Error`: every handler returns a `Result<(), HandlerError>`, which is then
// a pointer wide rather than the 64 bytes these parts take.
pub struct HandlerError(Box<HandlerInner>);

#[derive(Debug)]
struct HandlerInner {
    recovery: Recovery,
    retry_after: Option<Duration>,
    attempts: Option<Attempts>,
    panicked: bool,
    /// Given up unprocessed at a stop ([`HandlerError::stopping`]).
    stopping: bool,
    source: BoxError,
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &*self.0;
        f.debug_struct("HandlerError")
            .field("recovery", &e.recovery)
            .field("retry_after", &e.retry_after)
            .field("attempts", &e.attempts)
            .field("panicked", &e.panicked)
            .field("stopping", &e.stopping)
            .field("source", &e.source)
            .finish()
    }
}

/// How many calls a failure took, as recorded by retrying middleware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempts {
    /// Handler calls made, the last one included.
    pub count: u32,
    /// When the first of them failed.
    pub first_failure: SystemTime,
}

impl HandlerError {
    /// A failure that may pass: the message is retried or redelivered.
    pub fn transient(source: impl Into<BoxError>) -> Self {
        Self::with_recovery(Recovery::Transient, source.into())
    }

    /// A failure that retrying cannot fix: the message goes to the dead-letter queue.
    pub fn permanent(source: impl Into<BoxError>) -> Self {
        Self::with_recovery(Recovery::Permanent, source.into())
    }

    /// A handler call that panicked, as one failed attempt: transient, since a panic may
    /// come from a passing state. The scheduler makes every panic of a handler into
    /// this error before any middleware sees the result, so retry and dead-lettering
    /// treat it like any other failure.
    ///
    /// ```
    /// use tidewater_core::HandlerError;
    ///
    /// let payload = std::panic::catch_unwind(|| panic!("index out of range")).unwrap_err();
    /// let err = HandlerError::from_panic(&*payload);
    /// assert!(err.is_panic() && err.is_transient());
    /// assert_eq!(err.to_string(), "handler failed: handler panicked: index out of range");
    /// ```
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let text = format!("handler panicked: {}", crate::panic_message(payload));
        let mut err = Self::transient(text);
        err.0.panicked = true;
        err
    }

    fn with_recovery(recovery: Recovery, source: BoxError) -> Self {
        Self(Box::new(HandlerInner {
            recovery,
            retry_after: None,
            attempts: None,
            panicked: false,
            stopping: false,
            source,
        }))
    }

    /// The same failure for another message: the same recovery, delay and text (the
    /// source itself cannot be shared), for a batch that failed as a whole.
    pub(crate) fn for_another(&self) -> Self {
        Self(Box::new(HandlerInner {
            recovery: self.0.recovery,
            retry_after: self.0.retry_after,
            attempts: self.0.attempts,
            panicked: self.0.panicked,
            stopping: self.0.stopping,
            source: self.chain().into(),
        }))
    }

    /// Whether the failure was a panic of the handler.
    pub fn is_panic(&self) -> bool {
        self.0.panicked
    }

    /// The delivery given up unprocessed because its read task is stopping (see
    /// [`StopSignal::current`](crate::StopSignal::current)): a handler, or middleware,
    /// that was waiting rather than working returns it so that the stop need not wait
    /// out its grace period. Once the stop was asked for, the runner leaves the delivery
    /// unsettled for the broker to deliver again, as it does a handler still running at
    /// the deadline, and counts it in the shutdown report's `abandoned`; middleware
    /// neither retries nor dead-letters it. Returned with no stop asked for, it is a
    /// transient failure like any other.
    ///
    /// ```
    /// use tidewater_core::HandlerError;
    ///
    /// let err = HandlerError::stopping();
    /// assert!(err.is_stopping() && err.is_transient());
    /// assert_eq!(err.to_string(), "handler let the delivery go: its read task is stopping");
    /// ```
    pub fn stopping() -> Self {
        let mut err = Self::transient("its read task is stopping");
        err.0.stopping = true;
        err
    }

    /// Whether the delivery was given up at a stop ([`HandlerError::stopping`]).
    pub fn is_stopping(&self) -> bool {
        self.0.stopping
    }

    /// Asks for the redelivery to wait `delay` (where the broker can delay).
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.0.retry_after = Some(delay);
        self
    }

    /// Records that the failure came after `attempts` calls (retry middleware does).
    pub fn with_attempts(mut self, attempts: Attempts) -> Self {
        self.0.attempts = Some(attempts);
        self
    }

    /// The calls this failure took, where retry middleware recorded them.
    pub fn attempts(&self) -> Option<Attempts> {
        self.0.attempts
    }

    /// Marks the failure permanent: retrying cannot help.
    pub fn into_permanent(mut self) -> Self {
        self.0.recovery = Recovery::Permanent;
        self
    }

    /// Whether retrying can help.
    pub fn recovery(&self) -> Recovery {
        self.0.recovery
    }

    /// Whether retrying can help, as a bool.
    pub fn is_transient(&self) -> bool {
        self.0.recovery == Recovery::Transient
    }

    /// The delay the handler asked for before a redelivery.
    pub fn requested_delay(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// The underlying error.
    pub fn source_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0.source
    }

    /// The error and its chain of causes, joined by ": ", for logs and DLQ headers.
    pub fn chain(&self) -> String {
        let mut out = self.0.source.to_string();
        let mut next = self.0.source.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            // An [`Error`] already quotes its cause in its text.
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            next = cause.source();
        }
        out
    }
}

impl<E: Into<BoxError>> From<E> for HandlerError {
    fn from(err: E) -> Self {
        let source: BoxError = err.into();
        // What tidewater itself says of a message, or of what a handler made of it, is
        // permanent: a handler that publishes an event too large for the broker, or to a
        // topic named from the message that is not a valid name, would otherwise be
        // redelivered for good and never reach the dead-letter queue. The broker, the
        // configuration or the service's state can change: transient.
        let recovery = match source.downcast_ref::<Error>() {
            Some(e) if e.kind().is_about_the_message() => Recovery::Permanent,
            _ => Recovery::Transient,
        };
        Self::with_recovery(recovery, source)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.0.recovery {
            Recovery::Transient if self.0.stopping => "handler let the delivery go",
            Recovery::Transient => "handler failed",
            Recovery::Permanent => "handler failed permanently",
        };
        write!(f, "{what}: {}", self.chain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_about_the_input_become_permanent_handler_errors() {
        use ErrorKind as K;
        for kind in [K::Decode, K::Encode, K::TooLarge, K::InvalidName, K::InvalidInput] {
            let err: HandlerError = Error::new(kind, "about the message").into();
            assert_eq!(err.recovery(), Recovery::Permanent, "{kind:?}");
        }
        let may_pass = [
            K::Connection,
            K::Timeout,
            K::Busy,
            K::BrokerTransient,
            K::BrokerPermanent,
            K::UnknownTopic,
            K::UnknownGroup,
            K::UnknownEventType,
            K::Config,
            K::Unsupported,
            K::Closed,
            K::NoResponders,
        ];
        for kind in may_pass {
            let err: HandlerError = Error::new(kind, "about the broker or the service").into();
            assert_eq!(err.recovery(), Recovery::Transient, "{kind:?}");
        }
        let err: HandlerError = std::io::Error::other("not ours").into();
        assert_eq!(err.recovery(), Recovery::Transient);
    }

    #[test]
    fn results_on_the_success_path_stay_a_pointer_wide() {
        // What a write or a handler returns is moved through every future that awaits
        // it; the errors' parts belong behind a pointer, off that path.
        assert_eq!(std::mem::size_of::<Result<()>>(), std::mem::size_of::<usize>());
        assert_eq!(std::mem::size_of::<Result<(), HandlerError>>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn chain_joins_causes() {
        let inner = Error::new(ErrorKind::Connection, "refused");
        let outer = Error::new(ErrorKind::Timeout, "write").with_source(inner);
        let err = HandlerError::transient(outer);
        assert_eq!(err.chain(), "timed out: write: connection failed: refused");
    }

    #[test]
    fn display_says_the_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let err = Error::new(ErrorKind::Connection, "cannot reach 127.0.0.1:4222").with_source(io).with_driver("nats");
        assert_eq!(err.to_string(), "connection failed: cannot reach 127.0.0.1:4222: Connection refused (driver nats)");
        let quoted = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let err = Error::new(ErrorKind::Connection, "cannot connect: Connection refused").with_source(quoted);
        assert_eq!(err.to_string(), "connection failed: cannot connect: Connection refused");
        assert_eq!(HandlerError::transient(err).chain(), "connection failed: cannot connect: Connection refused");
    }

    /// A client's error that says its own cause and returns it as its source too, as
    /// async-nats's and rdkafka's do.
    #[derive(Debug)]
    struct Quoting(std::io::Error);

    impl fmt::Display for Quoting {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "IO error: {}", self.0)
        }
    }

    impl StdError for Quoting {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    use crate::testing::reported;

    #[test]
    fn a_reporter_says_each_cause_once() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let err = Error::new(ErrorKind::Connection, "cannot reach 127.0.0.1:4222").with_source(refused());
        assert_eq!(reported(&err), "connection failed: cannot reach 127.0.0.1:4222: Connection refused");

        // The client's error quotes its cause: the chain goes on below both.
        let err = Error::new(ErrorKind::Connection, "cannot reach 127.0.0.1:4222")
            .with_source(Quoting(refused()))
            .with_driver("nats");
        assert_eq!(
            reported(&err),
            "connection failed: cannot reach 127.0.0.1:4222: IO error: Connection refused (driver nats)"
        );
        // The cause itself stays at hand, to downcast.
        let io = err.get_ref().and_then(|e| e.downcast_ref::<Quoting>()).map(|q| q.0.kind());
        assert_eq!(io, Some(std::io::ErrorKind::ConnectionRefused));

        // A cause the text does not say comes next.
        let deeper = std::io::Error::other(Quoting(refused()));
        let err = Error::new(ErrorKind::Connection, "cannot reach").with_source(std::io::Error::other(deeper));
        assert!(reported(&err).matches("Connection refused").count() == 1, "{}", reported(&err));
    }

    #[test]
    fn a_wrapped_error_of_this_crate_says_its_kind_and_driver_once() {
        let inner = Error::new(ErrorKind::Connection, "gone").with_driver("nats").with_topic("orders");
        let err = Error::new(ErrorKind::Connection, "message 2 of the batch of 5 was not sent")
            .with_driver("nats")
            .with_source(inner);
        assert_eq!(
            reported(&err),
            "connection failed: message 2 of the batch of 5 was not sent: gone (driver nats, topic orders)"
        );
        let inner = Error::new(ErrorKind::Timeout, "no answer in 5s")
            .with_source(std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline"));
        let err = Error::new(ErrorKind::Connection, "write").with_source(inner).with_driver("kafka");
        assert_eq!(reported(&err), "connection failed: write: timed out: no answer in 5s: deadline (driver kafka)");
        // A message that quotes the wrapped error whole says nothing more of it.
        let inner = Error::new(ErrorKind::TooLarge, "2 MiB").with_source(std::io::Error::other("refused"));
        let err = Error::new(ErrorKind::TooLarge, format!("2 requests failed; the first: {inner}")).with_source(inner);
        assert_eq!(
            reported(&err),
            "message too large: 2 requests failed; the first: message too large: 2 MiB: refused"
        );
    }
}
