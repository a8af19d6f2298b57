//! `DATA_DIR/alert-position.json`: the seq up to which every notification
//! of the rules in force was delivered (docs/FORMAT.md, "Alert position").
//!
//! `{"version":1,"seq":<u64>}` and a newline, replaced through
//! [`crate::datadir::write_durably`]: a crash leaves the old position or
//! the new one, never a mix. Owns only this file.

use crate::datadir::{write_durably, DataDir, IoError};
use std::path::{Path, PathBuf};

/// The file's format version.
pub const VERSION: u64 = 1;

/// Why the position could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PositionError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The file is not a position of a known version: data, not a fault.
    #[error("{path} is not an alert position of version {VERSION}: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The position file of a data directory.
#[derive(Debug, Clone)]
pub struct PositionFile {
    path: PathBuf,
}

impl PositionFile {
    /// The file of `data_dir` (nothing is read yet).
    pub fn new(data_dir: &Path) -> PositionFile {
        PositionFile {
            path: DataDir::new(data_dir).alert_position(),
        }
    }

    /// The position, `None` when there is no file.
    ///
    /// # Errors
    /// It cannot be read, or does not hold a position.
    pub fn read(&self) -> Result<Option<u64>, PositionError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(IoError {
                    op: "read",
                    path: self.path.clone(),
                    source,
                }
                .into())
            }
        };
        let corrupt = |why: String| PositionError::Corrupt {
            path: self.path.clone(),
            why,
        };
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if v.get("version").and_then(|v| v.as_u64()) != Some(VERSION) {
            return Err(corrupt(format!("version {}", v["version"])));
        }
        let seq = v
            .get("seq")
            .and_then(|s| s.as_u64())
            .ok_or_else(|| corrupt("no seq".into()))?;
        Ok(Some(seq))
    }

    /// Replaces the position with `seq`, durably.
    ///
    /// # Errors
    /// The write or one of its fsyncs failed (the old position stays).
    pub fn write(&self, seq: u64) -> Result<(), PositionError> {
        let text = format!("{{\"version\":{VERSION},\"seq\":{seq}}}\n");
        Ok(write_durably(&self.path, text.as_bytes(), 0o644)?)
    }

    /// Removes the file (no rule in force: nothing to resume).
    ///
    /// # Errors
    /// It exists and cannot be removed.
    pub fn remove(&self) -> Result<(), PositionError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(IoError {
                op: "remove",
                path: self.path.clone(),
                source,
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_survives_a_reopen_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = PositionFile::new(dir.path());
        assert_eq!(f.read().unwrap(), None);
        f.write(41).unwrap();
        f.write(42).unwrap();
        assert_eq!(PositionFile::new(dir.path()).read().unwrap(), Some(42));
        let bytes = std::fs::read_to_string(dir.path().join("alert-position.json")).unwrap();
        assert_eq!(bytes, "{\"version\":1,\"seq\":42}\n");
        std::fs::write(
            dir.path().join("alert-position.json"),
            "{\"version\":2,\"seq\":1}",
        )
        .unwrap();
        assert!(matches!(f.read(), Err(PositionError::Corrupt { .. })));
        f.remove().unwrap();
        f.remove().unwrap();
        assert_eq!(f.read().unwrap(), None);
    }
}
