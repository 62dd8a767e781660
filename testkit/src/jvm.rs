//! What the JVM brokers (Kafka, Pulsar) share.

/// A log4j2 configuration that sends warnings and errors to the process's output (which
/// goes to its log file), and the `info` loggers at INFO besides.
pub(crate) fn quiet_log_config(info: &[&str]) -> String {
    let mut config = String::from(
        "Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: \"[%d] %p %m (%c)%n\"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
",
    );
    if !info.is_empty() {
        config.push_str("    Logger:\n");
        for name in info {
            config.push_str(&format!("      - name: {name}\n        level: INFO\n"));
        }
    }
    config
}
