//! `tidewater`: look at and feed topics on any broker tidewater drives.
//!
//! ```text
//! tidewater --url nats://127.0.0.1:4222 topics create orders
//! echo '{"id":1}' | tidewater --url nats://127.0.0.1:4222 publish orders --key o-1
//! tidewater --url nats://127.0.0.1:4222 tail orders --count 1 --json
//! ```

mod commands;
mod connect;
mod dlq;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Look at and feed topics on NATS JetStream, Kafka, Pulsar or StreamBus.
#[derive(Debug, Parser)]
#[command(name = "tidewater", version)]
struct Cli {
    /// The broker: nats://host:port, kafka://host:port (several, comma-separated),
    /// pulsar://host:port or streambus://host:port.
    #[arg(long, env = "TIDEWATER_URL")]
    url: String,
    /// Pulsar's admin API, for `topics` (default: the broker's host, port 8080).
    #[arg(long, env = "TIDEWATER_ADMIN_URL")]
    admin_url: Option<String>,
    /// A librdkafka property for kafka:// URLs, as KEY=VALUE; give it again for more.
    /// For a secured cluster: -X security.protocol=sasl_ssl -X sasl.mechanism=SCRAM-SHA-512
    /// -X sasl.username=... (the password better in --kafka-config). Wins over the file.
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = connect::property)]
    kafka_properties: Vec<(String, String)>,
    /// A file of librdkafka properties for kafka:// URLs, a KEY=VALUE a line (# begins a
    /// comment), as kcat's -F reads: keeps a password off the command line.
    #[arg(long, env = "TIDEWATER_KAFKA_CONFIG", value_name = "FILE")]
    kafka_config: Option<std::path::PathBuf>,
    /// A token, for Pulsar's token authentication or a NATS server's (better in the
    /// environment than on the command line).
    #[arg(long, env = "TIDEWATER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A NATS credentials file (`.creds`), for a server in operator mode.
    #[arg(long, env = "TIDEWATER_NATS_CREDS", value_name = "FILE")]
    nats_creds: Option<std::path::PathBuf>,
    /// The CA certificates (PEM) that signed the broker's, for NATS (TLS then required)
    /// and pulsar+ssl:// URLs, where the system's do not. (Kafka: -X ssl.ca.location=...)
    #[arg(long, env = "TIDEWATER_CA_FILE", value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, create or delete topics.
    Topics {
        #[command(subcommand)]
        action: commands::TopicsAction,
    },
    /// Publish messages: the payload argument, a file, or stdin (one message, or one per
    /// line with --lines).
    Publish(commands::PublishArgs),
    /// Print the messages of a topic as they come, in a group or on their own.
    Tail(commands::TailArgs),
    /// Print how many messages of each topic a group has not yet settled, per partition.
    Lag(commands::LagArgs),
    /// List, show or redrive the dead letters of a dead-letter topic.
    Dlq {
        #[command(subcommand)]
        action: dlq::DlqAction,
    },
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    // Which access options the command line gave: one of those that the URL's broker
    // does not use is refused; one from the environment, which may be set for another
    // broker, is left unused.
    let typed: Vec<&'static str> = ["kafka_properties", "kafka_config", "token", "nats_creds", "ca_file"]
        .into_iter()
        .filter(|id| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
        .collect();
    log_to_stderr();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tidewater: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, &typed)) {
        Ok(()) => ExitCode::SUCCESS,
        // A listing whose reader had enough (`topics list | head -1`), as with `head`:
        // what was not printed was only to be read.
        Err(err)
            if err.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            // One line that says what failed and why, not a backtrace.
            eprintln!("tidewater: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The library's warnings on stderr: a reader that failed and restarts, a broker that
/// went away. Without them a command whose broker stops answering seems only to hang.
/// Not the runner's warning of each failed handler call: the commands' handlers fail
/// only to give a message back on purpose (past `--count`, stdout gone) and say what
/// needs saying themselves. Not async-nats's own log either: it says again what the
/// command's error says (a refused token), and the NATS driver logs the client's events
/// itself (a lost connection, a server's error). `TIDEWATER_LOG` sets the filter
/// (`error`, `info`, `tidewater_core=debug`, ...).
fn log_to_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDEWATER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,tidewater_core::runner=error,async_nats=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
}

async fn run(cli: Cli, typed: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let access = connect::Access {
        admin_url: cli.admin_url,
        kafka_config: cli.kafka_config,
        kafka_properties: cli.kafka_properties,
        token: cli.token,
        nats_creds: cli.nats_creds,
        ca_file: cli.ca_file,
    };
    let driver = connect::connect(&cli.url, access, typed).await?;
    match cli.command {
        Command::Topics { action } => commands::topics(&driver, action).await,
        Command::Publish(args) => commands::publish(&driver, args).await,
        Command::Tail(args) => commands::tail(&driver, args).await,
        Command::Lag(args) => commands::lag(&driver, args).await,
        Command::Dlq { action } => dlq::dlq(&driver, action).await,
    }
}
