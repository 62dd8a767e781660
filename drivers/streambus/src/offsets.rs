//! Where a group's positions live when the broker cannot keep them (v1.0.x).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use tidewater_core::{Error, ErrorKind, Result};

use crate::DRIVER;

/// Keeps committed positions (the next offset to read) per group, topic and partition.
/// Used on v1.0.x brokers, which have no offset requests; later brokers keep offsets
/// themselves.
#[async_trait]
pub trait OffsetStore: Send + Sync {
    /// The committed position, if any.
    async fn load(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>>;
    /// Stores positions of one group and topic.
    async fn commit(&self, group: &str, topic: &str, positions: &[(u32, u64)]) -> Result<()>;
    /// Forgets every group's positions in `topic`, which the driver deleted: a topic made
    /// again under its name is a new one, and positions kept from the old one would
    /// skip its first records.
    async fn forget_topic(&self, topic: &str) -> Result<()>;
}

/// Positions in memory, shared by every reader of one driver; lost when the process
/// ends. The default.
#[derive(Debug, Default)]
pub struct MemoryOffsets(Mutex<HashMap<(String, String, u32), u64>>);

#[async_trait]
impl OffsetStore for MemoryOffsets {
    async fn load(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        Ok(self.0.lock().unwrap().get(&(group.to_owned(), topic.to_owned(), partition)).copied())
    }

    async fn commit(&self, group: &str, topic: &str, positions: &[(u32, u64)]) -> Result<()> {
        let mut map = self.0.lock().unwrap();
        for (p, o) in positions {
            map.insert((group.to_owned(), topic.to_owned(), *p), *o);
        }
        Ok(())
    }

    async fn forget_topic(&self, topic: &str) -> Result<()> {
        self.0.lock().unwrap().retain(|(_, t, _), _| t != topic);
        Ok(())
    }
}

/// Positions in files under a directory, one file per group and topic, replaced
/// atomically on each commit, so they survive a restart of the process.
#[derive(Debug)]
pub struct FileOffsets {
    dir: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl FileOffsets {
    /// A store in `dir` (created if missing).
    pub fn new(dir: impl AsRef<Path>) -> Result<Self> {
        std::fs::create_dir_all(dir.as_ref()).map_err(io("cannot create the offset directory"))?;
        Ok(Self { dir: dir.as_ref().to_owned(), lock: tokio::sync::Mutex::new(()) })
    }

    /// The file of a group and topic, and the line that names them in it, if any.
    fn path(&self, group: &str, topic: &str) -> (PathBuf, Option<String>) {
        // Group and topic names may hold characters a file name cannot; hex keeps
        // them apart without escaping rules.
        let hex: String = format!("{group}\u{0}{topic}").bytes().map(|b| format!("{b:02x}")).collect();
        if hex.len() + EXTENSION.len() <= MOST_NAME {
            return (self.dir.join(format!("{hex}{EXTENSION}")), None);
        }
        // Hex doubles the names: a group and topic of more than about 120 bytes together
        // would pass the file name limit (a topic may have 249). Such a pair's file is
        // named by a digest of the names ("s" is no hex digit, so it meets no short
        // pair's name), and its first line holds them, so that a second pair of the same
        // digest is refused rather than read.
        let digest = format!("s{:016x}{:016x}", fnv1a(&hex, 0xcbf2_9ce4_8422_2325), fnv1a(&hex, 0x6c62_272e_07bb_0142));
        (self.dir.join(format!("{digest}{EXTENSION}")), Some(format!("{KEY}{hex}")))
    }

    fn read(&self, group: &str, topic: &str) -> Result<HashMap<u32, u64>> {
        let (path, key) = self.path(group, topic);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(e) => return Err(io("cannot read the offset file")(e)),
        };
        let mut lines = text.lines();
        if let Some(key) = key {
            if lines.next() != Some(key.as_str()) {
                let what =
                    format!("the offset file {} holds another group and topic of the same digest", path.display());
                return Err(Error::new(ErrorKind::Config, what).with_driver(DRIVER));
            }
        }
        lines
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let mut parts = line.split_whitespace();
                let parse = |s: Option<&str>| s.and_then(|s| s.parse().ok());
                match (parse(parts.next()), parse(parts.next())) {
                    (Some(p), Some(o)) => Ok((p as u32, o)),
                    _ => Err(Error::new(ErrorKind::Decode, format!("bad line in the offset file: {line:?}"))
                        .with_driver(DRIVER)),
                }
            })
            .collect()
    }
}

/// The longest file name most file systems take (ext4, XFS, APFS, NTFS: 255 bytes).
const MOST_NAME: usize = 255;
const EXTENSION: &str = ".offsets";
/// How the first line of a file named by a digest starts.
const KEY: &str = "names ";

/// FNV-1a over `text`, from `basis`: stable from build to build, as a file name must be
/// (std's hasher is not).
fn fnv1a(text: &str, basis: u64) -> u64 {
    text.bytes().fold(basis, |hash, b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::new(ErrorKind::Config, what).with_driver(DRIVER).with_source(e)
}

#[async_trait]
impl OffsetStore for FileOffsets {
    async fn load(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        let _guard = self.lock.lock().await;
        Ok(self.read(group, topic)?.get(&partition).copied())
    }

    async fn commit(&self, group: &str, topic: &str, positions: &[(u32, u64)]) -> Result<()> {
        let _guard = self.lock.lock().await;
        let mut all = self.read(group, topic)?;
        all.extend(positions.iter().copied());
        let mut sorted: Vec<_> = all.into_iter().collect();
        sorted.sort_unstable();
        let (path, key) = self.path(group, topic);
        let key = key.map(|k| format!("{k}\n")).unwrap_or_default();
        let text: String = key + &sorted.iter().map(|(p, o)| format!("{p} {o}\n")).collect::<String>();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(io("cannot write the offset file"))?;
        std::fs::rename(&tmp, &path).map_err(io("cannot replace the offset file"))?;
        Ok(())
    }

    async fn forget_topic(&self, topic: &str) -> Result<()> {
        let _guard = self.lock.lock().await;
        let entries = std::fs::read_dir(&self.dir).map_err(io("cannot list the offset directory"))?;
        for entry in entries {
            let path = entry.map_err(io("cannot list the offset directory"))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(EXTENSION)) else {
                continue;
            };
            // A short pair's file is named by its names in hex; a long pair's first
            // line holds them.
            let hex = match name.starts_with('s') {
                false => name.to_owned(),
                true => {
                    let text = std::fs::read_to_string(&path).map_err(io("cannot read the offset file"))?;
                    match text.lines().next().and_then(|l| l.strip_prefix(KEY)) {
                        Some(hex) => hex.to_owned(),
                        None => continue,
                    }
                }
            };
            if names_of(&hex).is_some_and(|(_, t)| t == topic) {
                std::fs::remove_file(&path).map_err(io("cannot remove the offset file"))?;
            }
        }
        Ok(())
    }
}

/// The group and topic a file's hex name holds.
fn names_of(hex: &str) -> Option<(String, String)> {
    let bytes: Option<Vec<u8>> =
        (0..hex.len()).step_by(2).map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect();
    let text = String::from_utf8(bytes?).ok()?;
    let (group, topic) = text.split_once('\u{0}')?;
    Some((group.to_owned(), topic.to_owned()))
}
