//! Where `scripts/setup` put the brokers and clients, at the versions `scripts/versions`
//! names (read here at compile time, so the scripts and the tests never disagree).

use std::path::PathBuf;

const VERSIONS: &str = include_str!("../../scripts/versions");

/// The value of `name=` in `scripts/versions`.
pub fn version(name: &str) -> &'static str {
    VERSIONS
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim())
        .unwrap_or_else(|| panic!("scripts/versions names no {name}"))
}

/// The cache `scripts/setup` installs into: `TIDEWATER_CACHE`, else `~/.cache/tidewater`.
pub fn cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("TIDEWATER_CACHE") {
        return dir.into();
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".cache/tidewater")
}

/// `path` under the cache, which must exist: a missing install fails the test and says
/// how to make it.
pub fn installed(path: &str) -> PathBuf {
    let full = cache().join(path);
    assert!(full.exists(), "{full:?} is missing: run scripts/setup, which installs it");
    full
}

/// The Java class path of the jars Maven resolved into `dir` under the cache.
pub fn class_path(dir: &str) -> String {
    format!("{}/*", installed(dir).display())
}

/// The `java` to run brokers and the reference client with: `$JAVA_HOME/bin/java`, else
/// the one on `PATH`.
pub fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME").map(|home| PathBuf::from(home).join("bin/java")).unwrap_or_else(|| "java".into())
}

/// The Python of the venv with the reference clients (confluent-kafka, pulsar-client).
pub fn python() -> PathBuf {
    installed("py/bin/python")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_scripts_file() {
        assert!(version("KAFKA_VERSION").starts_with("4."), "{}", version("KAFKA_VERSION"));
        assert!(version("NATS_SERVER_VERSION").starts_with('v'));
    }
}
