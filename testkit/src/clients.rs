//! The reference clients the interop tests run beside tidewater: Apache Kafka's Java
//! client and the Python clients in the venv `scripts/setup` makes.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::install::{cache, java};
use crate::kafka::kafka_class_path;

const KAFKA_INTEROP: &str = include_str!("../java/KafkaInterop.java");

/// A command that runs `testkit/java/KafkaInterop.java` (see its header for the
/// arguments) with the Kafka client of the broker's version.
///
/// The program is compiled on first use into the cache, under a name that changes with
/// its source, so an edit never runs a stale class.
pub fn java_kafka_client() -> Command {
    let classes = compiled_kafka_interop();
    let mut command = Command::new(java());
    command.arg("-cp").arg(format!("{}:{}", classes.display(), kafka_class_path())).arg("KafkaInterop");
    command
}

fn compiled_kafka_interop() -> PathBuf {
    // Test binaries run their tests on many threads; one compiles, the others wait.
    static COMPILING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = COMPILING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut hasher = DefaultHasher::new();
    KAFKA_INTEROP.hash(&mut hasher);
    kafka_class_path().hash(&mut hasher);
    let dir = cache().join(format!("java-interop/{:016x}", hasher.finish()));
    if !dir.join("KafkaInterop.class").exists() {
        compile(&dir);
    }
    dir
}

fn compile(dir: &Path) {
    // Compiled in a directory of its own, then renamed into place, so another test
    // process never sees half a class.
    let staging = dir.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::create_dir_all(&staging).expect("create the Java build directory");
    let source = staging.join("KafkaInterop.java");
    std::fs::write(&source, KAFKA_INTEROP).expect("write the Java source");
    let javac = std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/javac"))
        .unwrap_or_else(|| "javac".into());
    let out = Command::new(&javac)
        .arg("-cp")
        .arg(kafka_class_path())
        .arg("-d")
        .arg(&staging)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {javac:?}: {e}; a JDK 17 is needed"));
    assert!(out.status.success(), "javac KafkaInterop.java failed: {}", String::from_utf8_lossy(&out.stderr));
    if std::fs::rename(&staging, dir).is_err() {
        // Another process got there first; its classes are the same.
        let _ = std::fs::remove_dir_all(&staging);
    }
}

/// Runs `command` to completion and returns its standard output's lines, failing the
/// test with its standard error when it fails.
pub fn output_lines(mut command: Command) -> Vec<String> {
    let out = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(out.status.success(), "{command:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output").lines().map(str::to_owned).collect()
}
