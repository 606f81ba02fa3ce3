//! Files the daemon writes: always atomically, so a crash leaves the old content or the new,
//! never a torn file. And reading a file without blocking on what it turns out to be, and
//! with a bound on how much of it is read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `data` to `path` atomically: a temporary file in the same directory is written and
/// synced, renamed over `path`, and the directory is synced. Creates the directory if needed.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_as(path, data, mode, None, Replace::Yes)
}

/// Whether [`write_atomic_as`] may replace a file already at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    Yes,
    /// Fail with `AlreadyExists` instead: the file there is kept as it is.
    No,
}

/// [`write_atomic`] with the exact mode (the umask does not apply) and, when given, the
/// owner (uid, gid) set on the temporary file before it is renamed into place, so the file
/// never appears with another owner or mode.
pub(crate) fn write_atomic_as(
    path: &Path,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    replace: Replace,
) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no directory", path.display())))?;
    fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // In the same directory, so the rename stays within one file system; created with its
    // final mode, and removed if anything fails before the rename.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp."))
        .permissions(fs::Permissions::from_mode(mode & 0o600))
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(tmp.as_file(), Some(uid), Some(gid))?;
    }
    // After the chown, which clears set-id bits; exact, whatever the umask.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    match replace {
        Replace::Yes => tmp.persist(path).map_err(|e| e.error)?,
        Replace::No => tmp.persist_noclobber(path).map_err(|e| e.error)?,
    };
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// The `*.json` files in `dir`, sorted, without the hidden ones (a writer's temporary
/// `.NAME.json.tmp` never counts); none when `dir` does not exist.
pub(crate) fn json_files_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// Opens `path` for reading without blocking on it (a FIFO put where a file was expected
/// never stalls the caller) and checks what was opened with `fstat`: `Ok(None)` unless it
/// is a regular file. Read it with a bound (`Read::take`): it may grow after the check.
pub(crate) fn open_regular(path: &Path) -> io::Result<Option<(File, fs::Metadata)>> {
    let file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    Ok(meta.is_file().then_some((file, meta)))
}

/// Why [`read_regular`] gave no bytes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// What was opened is not a regular file: a FIFO, a device, a directory, a socket.
    #[error("is {kind}, expected a regular file")]
    NotRegular { kind: &'static str },
    /// The file is larger than the reader's cap (or grew past it while being read).
    #[error("is {}, larger than the {} it may be", human_size(*.size), human_size(*.cap))]
    TooLarge { size: u64, cap: u64 },
    #[error("cannot be read: {0}")]
    Io(#[from] io::Error),
}

impl ReadError {
    /// The error as the end of a sentence that begins with the file's name, saying what the
    /// file is for: "is 4.0 GiB, larger than the 1 MiB a plist may be".
    pub(crate) fn describe(&self, what: &str) -> String {
        match self {
            Self::TooLarge { size, cap } => format!(
                "is {}, larger than the {} {what} may be",
                human_size(*size),
                human_size(*cap)
            ),
            other => other.to_string(),
        }
    }
}

/// The whole content of the regular file at `path`, at most `cap` bytes: opened without
/// blocking ([`open_regular`]), so a FIFO or a device put where a file was expected is an
/// error rather than a hang or an endless read, and read with a bound, so a file that grows
/// after the check is an error too. Symbolic links are followed.
pub(crate) fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular {
            kind: kind_of(&meta.file_type()),
        });
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            cap,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            cap,
        });
    }
    Ok(bytes)
}

fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// "a FIFO", "a directory", ...: what a file that is not a regular file is.
pub(crate) fn kind_of(t: &fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "an unknown kind of file"
    }
}

/// A byte count for people: "512 bytes", "1 MiB", "4.0 GiB".
pub(crate) fn human_size(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, name) in UNITS {
        if n >= size {
            return if n % size == 0 {
                format!("{} {name}", n / size)
            } else {
                format!("{:.1} {name}", n as f64 / size as f64)
            };
        }
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_with_the_mode_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("state.json");
        write_atomic(&path, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        write_atomic(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_failed_rename_leaves_the_target_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be replaced by a file.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"kept").unwrap();
        assert!(write_atomic(&path, b"new", 0o600).is_err());
        assert_eq!(fs::read(path.join("inside")).unwrap(), b"kept");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["taken"]);
    }

    #[test]
    fn read_regular_refuses_fifos_devices_directories_and_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = |p: &Path, cap| read_regular(p, cap).unwrap_err().to_string();
        assert_eq!(err(&fifo, 10), "is a FIFO, expected a regular file");
        assert_eq!(
            err(Path::new("/dev/zero"), 10),
            "is a character device, expected a regular file"
        );
        assert_eq!(
            err(dir.path(), 10),
            "is a directory, expected a regular file"
        );
        let big = dir.path().join("big");
        fs::write(&big, [0u8; 2048]).unwrap();
        assert_eq!(
            read_regular(&big, 1024)
                .unwrap_err()
                .describe("a test file"),
            "is 2 KiB, larger than the 1 KiB a test file may be"
        );
        assert_eq!(read_regular(&big, 2048).unwrap().len(), 2048);
        assert!(matches!(
            read_regular(&dir.path().join("none"), 10),
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound
        ));
    }
}
