//! The snapshot files: their names (`launchgraph-snapshot-<stamp>[-<n>].tar.gz`, sorting by
//! time), writing one atomically as a gzipped tarball, and listing those in
//! `<state>/snapshots/`. What goes into an archive is the collectors' business.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::SnapshotError;

/// Snapshot files are `<PREFIX><stamp>[-<n>]<SUFFIX>`.
const PREFIX: &str = "launchgraph-snapshot-";
const SUFFIX: &str = ".tar.gz";

/// How many names one second may give (`…Z.tar.gz`, `…Z-1.tar.gz`, …) before giving up.
pub(super) const MAX_NAMES_PER_SECOND: u32 = 1000;

/// Where the snapshots of `state_dir` are.
pub fn snapshots_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("snapshots")
}

/// The snapshots in `<state_dir>/snapshots/`, oldest first: path, size in bytes, modification
/// time. Temporary files of snapshots being written are not listed. No directory: none.
pub fn list(state_dir: &Path) -> io::Result<Vec<(PathBuf, u64, SystemTime)>> {
    let dir = snapshots_dir(state_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(order) = name.to_str().and_then(name_order) else {
            continue;
        };
        // Only regular files: a link placed in the directory is not a snapshot we wrote.
        let meta = match entry.path().symlink_metadata() {
            Ok(m) if m.is_file() => m,
            _ => continue,
        };
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        found.push((order, entry.path(), meta.len(), mtime));
    }
    // By the time in the name, then the suffix: names sort the way they were taken, which
    // file times, copied or touched, need not.
    found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    Ok(found.into_iter().map(|(_, p, s, t)| (p, s, t)).collect())
}

/// `(stamp, n)` of a snapshot file name, `None` for any other name.
fn name_order(name: &str) -> Option<(String, u32)> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (stamp, n) = match rest.split_once('-') {
        Some((s, n)) => (s, n.parse().ok()?),
        None => (rest, 0),
    };
    let valid = stamp.len() == 16
        && stamp.ends_with('Z')
        && stamp.as_bytes()[8] == b'T'
        && stamp
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 8 || i == 15 || b.is_ascii_digit());
    valid.then(|| (stamp.to_owned(), n))
}

/// `20261124T004512Z`: UTC, whole seconds, no separators, so names sort by time.
pub(super) fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace(['-', ':'], "")
}

fn file_name(stamp: &str, n: u32) -> String {
    if n == 0 {
        format!("{PREFIX}{stamp}{SUFFIX}")
    } else {
        format!("{PREFIX}{stamp}-{n}{SUFFIX}")
    }
}

/// Removes a temporary file unless it was handed over; also when the writer fails, panics, or
/// the task is dropped.
struct TempFile {
    path: PathBuf,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Writes a new snapshot file in `dir` atomically: `write` fills a temporary file
/// (`.launchgraph-snapshot-<stamp>.tar.gz.tmp`, 0600) in the same directory, which is synced
/// and then given its final name without replacing anything, and the directory is synced. A
/// final name is therefore only ever seen with complete content; on any failure the
/// temporary file is removed. Two snapshots in the same second get `-1`, `-2`, ….
pub(super) fn publish(
    dir: &Path,
    stamp: &str,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<PathBuf, SnapshotError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(SnapshotError::io("create the snapshots directory", dir))?;

    let exists = |p: &Path| p.symlink_metadata().is_ok();
    let mut n = 0;
    let (mut file, temp) = loop {
        if n >= MAX_NAMES_PER_SECOND {
            return Err(SnapshotError::NoFreeName {
                dir: dir.to_path_buf(),
                stamp: stamp.to_owned(),
            });
        }
        let name = file_name(stamp, n);
        if exists(&dir.join(&name)) {
            n += 1;
            continue;
        }
        let temp = dir.join(format!(".{name}.tmp"));
        // create_new: a temporary file of the same name is another snapshot being written.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
        {
            Ok(f) => break (f, TempFile { path: temp }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(SnapshotError::io("create", &temp)(e)),
        }
    };

    write(&mut file).map_err(SnapshotError::io("write", &temp.path))?;
    file.sync_all()
        .map_err(SnapshotError::io("sync", &temp.path))?;
    drop(file);

    // A hard link never replaces an existing name, so a snapshot taken meanwhile under the
    // same name is not overwritten; where links are not supported, a rename after a check.
    let path = loop {
        if n >= MAX_NAMES_PER_SECOND {
            return Err(SnapshotError::NoFreeName {
                dir: dir.to_path_buf(),
                stamp: stamp.to_owned(),
            });
        }
        let target = dir.join(file_name(stamp, n));
        match fs::hard_link(&temp.path, &target) {
            Ok(()) => break target,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
            Err(_) if !exists(&target) => {
                fs::rename(&temp.path, &target)
                    .map_err(SnapshotError::io("rename the snapshot to", &target))?;
                break target;
            }
            Err(_) => n += 1,
        }
    };
    // The temporary name goes (TempFile's drop); then the directory is synced so that the
    // new name survives a crash.
    drop(temp);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SnapshotError::io("sync the directory", dir))?;
    Ok(path)
}

/// The tar.gz of `entries`, each a regular file with mode 0644 and time `mtime`.
pub(super) fn write_archive(
    file: &mut File,
    entries: &[(String, Vec<u8>)],
    mtime: u64,
) -> io::Result<()> {
    let gz = flate2::write::GzEncoder::new(
        io::BufWriter::new(&mut *file),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        tar.append_data(&mut header, name, data.as_slice())?;
    }
    let gz = tar.into_inner()?;
    let mut buffered = gz.finish()?;
    buffered.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    #[test]
    fn stamps_and_names_sort_by_time() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_480_000);
        let s = stamp(t);
        assert_eq!(s.len(), 16, "{s}");
        assert!(name_order(&file_name(&s, 0)).is_some());
        assert_eq!(name_order(&file_name(&s, 3)), Some((s.clone(), 3)));
        assert_eq!(name_order(&format!(".{}.tmp", file_name(&s, 0))), None);
        assert_eq!(name_order("launchgraph-snapshot-x.tar.gz"), None);
        assert_eq!(
            name_order("launchgraph-snapshot-20261124T004512Z.tar.gz"),
            Some(("20261124T004512Z".into(), 0))
        );
    }

    #[test]
    fn a_failing_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = dir.path().join("snapshots");
        let err = publish(&snaps, "20261124T004512Z", |f| {
            f.write_all(&[0u8; 4096])?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        let left: Vec<_> = fs::read_dir(&snaps).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn same_second_snapshots_get_suffixes() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = snapshots_dir(dir.path());
        let stamp = "20261124T004512Z";
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| publish(&snaps, stamp, |f| f.write_all(&[i])).unwrap())
            .collect();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "launchgraph-snapshot-20261124T004512Z.tar.gz",
                "launchgraph-snapshot-20261124T004512Z-1.tar.gz",
                "launchgraph-snapshot-20261124T004512Z-2.tar.gz",
            ]
        );
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(fs::read(p).unwrap(), [i as u8]);
            assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let listed: Vec<PathBuf> = list(dir.path()).unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(listed, paths);
    }

    #[test]
    fn listing_a_state_dir_without_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
        fs::create_dir(snapshots_dir(dir.path())).unwrap();
        fs::write(snapshots_dir(dir.path()).join("notes.txt"), "x").unwrap();
        fs::write(
            snapshots_dir(dir.path()).join(".launchgraph-snapshot-20261124T004512Z.tar.gz.tmp"),
            "x",
        )
        .unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
    }
}
