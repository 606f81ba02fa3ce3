//! Records of the launchd jobs launchgraph left unloaded: `<state-dir>/booted-out/<label>.json`.
//!
//! To stop a KeepAlive job the launchd backend boots it out (a signal alone would have launchd
//! relaunch it), and a bootout unloads the job until the next bootstrap, login or boot
//! (launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html;
//! github.com/elastic/elastic-agent/issues/593). While the daemon runs, its next start of the
//! unit bootstraps the job again. Once launchgraph stops for good (the uninstaller, an admin
//! who boots the daemon out), nobody would: so the backend writes a record here *before* each
//! bootout and removes it once the job is loaded again, and `launchgraph release` gives every
//! job still recorded back to launchd ([`crate::adopt::give_back`]).
//!
//! Written before the bootout, so that a crash between the two leaves a record of a job that
//! may still be loaded (which `release` finds loaded and forgets), never an unloaded job
//! without one. This module owns the file format and its place; it decides nothing.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The directory under the state directory that holds the records.
pub const BOOTED_OUT_DIR: &str = "booted-out";
/// The largest record read: one is a few hundred bytes.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// A job launchgraph booted out to stop it: enough to bootstrap it again without the units
/// directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The unit that drove it.
    pub unit: String,
    pub label: String,
    /// The domain target it was loaded in, resolved (`system`, `gui/501`, `user/501`): where
    /// the bootout unloaded it, and so where it is given back.
    pub domain: String,
    pub plist: PathBuf,
}

/// Why a record cannot be read, written or removed; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// A label usable as a file name: no `/`, no leading `.`, not empty.
fn file_name(label: &str) -> Result<String, Error> {
    if label.is_empty() || label.starts_with('.') || label.contains('/') || label.contains('\0') {
        return Err(Error(format!(
            "the label {label:?} cannot name a record file"
        )));
    }
    Ok(format!("{label}.json"))
}

/// Where the record of `label` is.
pub fn path_of(state_dir: &Path, label: &str) -> Result<PathBuf, Error> {
    Ok(state_dir.join(BOOTED_OUT_DIR).join(file_name(label)?))
}

/// Writes the record of a job about to be booted out, atomically.
pub fn record(state_dir: &Path, record: &Record) -> Result<(), Error> {
    let path = path_of(state_dir, &record.label)?;
    let json = serde_json::to_vec_pretty(record).expect("a record serializes");
    crate::fsutil::write_atomic(&path, &json, 0o600)
        .map_err(|e| Error(format!("cannot write {}: {e}", path.display())))
}

/// Removes the record of `label`, if there is one; true when one was removed.
pub fn forget(state_dir: &Path, label: &str) -> Result<bool, Error> {
    let path = path_of(state_dir, label)?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error(format!("cannot remove {}: {e}", path.display()))),
    }
}

/// The record of `label`, if there is one.
pub fn record_of(state_dir: &Path, label: &str) -> Result<Option<Record>, Error> {
    read(&path_of(state_dir, label)?)
}

fn read(path: &Path) -> Result<Option<Record>, Error> {
    match crate::fsutil::read_regular(path, MAX_RECORD_BYTES) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error(format!("the record {} is not valid: {e}", path.display()))),
        Err(crate::fsutil::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(Error(format!(
            "the record {} {}",
            path.display(),
            e.describe("a record")
        ))),
    }
}

/// Every record, by label; temporary files of an unfinished write are skipped.
pub fn all(state_dir: &Path) -> Result<Vec<Record>, Error> {
    let dir = state_dir.join(BOOTED_OUT_DIR);
    let paths = crate::fsutil::json_files_in(&dir)
        .map_err(|e| Error(format!("cannot list {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for p in paths {
        if let Some(r) = read(&p)? {
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_written_listed_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let r = Record {
            unit: "ollama".into(),
            label: "homebrew.mxcl.ollama".into(),
            domain: "system".into(),
            plist: "/Library/LaunchDaemons/homebrew.mxcl.ollama.plist".into(),
        };
        record(dir.path(), &r).unwrap();
        let path = dir.path().join("booted-out/homebrew.mxcl.ollama.json");
        assert!(path.is_file());
        assert_eq!(all(dir.path()).unwrap(), std::slice::from_ref(&r));
        assert_eq!(record_of(dir.path(), &r.label).unwrap(), Some(r.clone()));
        assert!(forget(dir.path(), &r.label).unwrap());
        assert!(!forget(dir.path(), &r.label).unwrap());
        assert!(all(dir.path()).unwrap().is_empty());
        assert!(
            record(
                dir.path(),
                &Record {
                    label: "../x".into(),
                    ..r
                }
            )
            .is_err()
        );
    }
}
