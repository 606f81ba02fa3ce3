//! A unit's log files: the pipes its stdout and stderr write into, the tasks that copy them to
//! files, and size-based rotation (`file` → `file.1` → … → `file.N`).
//!
//! Pipe reads are async; file writes, renames and opens run on the blocking pool, so a slow
//! disk never stalls the runtime. A copy task ends when every writer of its pipe (the process
//! and any descendant that inherited the descriptor) has closed it, after writing everything
//! it read. It does not decide where logs go: that is the unit's `stdout`/`stderr`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

/// Mode of a log file launchgraph creates: the owner writes, the group reads.
const FILE_MODE: u32 = 0o640;
/// Mode of a log directory launchgraph creates.
const DIR_MODE: u32 = 0o750;
/// The most one pipe read (and so one file write) carries.
const CHUNK: usize = 64 * 1024;

/// One open log file and its rotation policy.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    file: File,
    /// Bytes in `file`; starts at its size when opened, since restarts append.
    size: u64,
    max_bytes: u64,
    keep: u32,
    /// Owner given to files launchgraph creates (the unit's uid and gid).
    owner: Option<(u32, u32)>,
}

impl LogFile {
    /// Opens `path` for appending, creating it (mode 0640) and its parent directory (0750)
    /// when missing. `max_bytes == 0` never rotates.
    pub(crate) fn open(
        path: &Path,
        max_bytes: u64,
        keep: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(dir)?;
            }
        }
        let file = open_append(path, owner)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            max_bytes,
            keep,
            owner,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `data`, rotating first whenever it would grow the file past `max_bytes`.
    pub(crate) fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match plan_write(self.size, data, self.max_bytes) {
                Step::Write(n) => {
                    self.file.write_all(&data[..n])?;
                    self.size += n as u64;
                    data = &data[n..];
                }
                Step::Rotate => self.rotate()?,
            }
        }
        Ok(())
    }

    /// `file.N-1` → `file.N` … `file` → `file.1`, then a fresh `file`. The oldest is replaced
    /// by the rename onto it. With `keep == 0` the file is truncated in place.
    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            // The file is opened with O_APPEND, so writes continue at the new end, 0.
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for i in (1..self.keep).rev() {
            match fs::rename(numbered(&self.path, i), numbered(&self.path, i + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::rename(&self.path, numbered(&self.path, 1))?;
        self.file = open_append(&self.path, self.owner)?;
        self.size = self.file.metadata()?.len();
        Ok(())
    }
}

/// `path` with `.n` appended to its file name: `out.log` → `out.log.2`.
pub(crate) fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn open_append(path: &Path, owner: Option<(u32, u32)>) -> io::Result<File> {
    match OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(file) => {
            // Only files launchgraph creates change owner; an admin's existing file is kept.
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            }
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().append(true).open(path)
        }
        Err(e) => Err(e),
    }
}

/// What to do with the front of `data` when the file holds `used` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Append this many bytes of `data`.
    Write(usize),
    /// Rotate, then plan again.
    Rotate,
}

/// Keeps every file at most `max` bytes and keeps lines whole where a line fits in a file:
/// when `data` does not fit, the part up to its last newline that fits is written first; a
/// line that would straddle the limit starts the next file; only a line longer than `max`
/// itself is split.
pub(crate) fn plan_write(used: u64, data: &[u8], max: u64) -> Step {
    if max == 0 {
        return Step::Write(data.len());
    }
    let space = usize::try_from(max.saturating_sub(used)).unwrap_or(usize::MAX);
    if data.len() <= space {
        return Step::Write(data.len());
    }
    let through_last_newline = data[..space]
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|i| i + 1);
    match through_last_newline {
        Some(n) => Step::Write(n),
        None if used > 0 => Step::Rotate,
        // An empty file and a line longer than the limit: split it.
        None => Step::Write(space),
    }
}

/// Where one of the child's standard streams goes.
pub(crate) struct Sink {
    pub(crate) log: LogFile,
    pub(crate) reader: OwnedFd,
}

/// A pipe whose ends are closed on exec, so no other child inherits them; the child gets its
/// write end as stdout or stderr through `dup2`, which clears the flag on the copy.
pub(crate) fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(target_os = "linux")]
    {
        Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::os::fd::AsRawFd;
        // macOS has no pipe2: set the flag right after. std does the same there.
        let (r, w) = nix::unistd::pipe()?;
        for fd in [&r, &w] {
            // SAFETY: `fd` is an open descriptor we own.
            if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok((r, w))
    }
}

/// Copies everything read from `sink.reader` into its log file until every writer is gone.
/// A failing write is reported once per run of failures and the data dropped, but the pipe
/// keeps being drained so the unit never blocks on a full pipe.
pub(crate) async fn pump(unit: String, sink: Sink) {
    let Sink { mut log, reader } = sink;
    let mut pipe = match pipe::Receiver::from_owned_fd(reader) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(unit, path = %log.path().display(), error = %e, "cannot read the unit's output pipe");
            return;
        }
    };
    let mut buf = vec![0u8; CHUNK];
    let mut failing = false;
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(unit, path = %log.path().display(), error = %e, "reading the unit's output failed");
                return;
            }
        };
        let written = tokio::task::spawn_blocking(move || {
            let result = log.write(&buf[..n]);
            (log, buf, result)
        })
        .await;
        let result;
        (log, buf, result) = match written {
            Ok(parts) => parts,
            Err(e) => {
                tracing::warn!(unit, error = %e, "the log writer stopped");
                return;
            }
        };
        match result {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(unit, path = %log.path().display(), error = %e, "cannot write the unit's log; dropping output until writes succeed again");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_stay_whole_when_they_fit() {
        assert_eq!(plan_write(0, b"abc\n", 10), Step::Write(4));
        assert_eq!(plan_write(6, b"ab\ncd\n", 10), Step::Write(3));
        assert_eq!(plan_write(8, b"abcd\n", 10), Step::Rotate);
        assert_eq!(plan_write(0, b"0123456789abc", 10), Step::Write(10));
        assert_eq!(plan_write(12, b"x", 10), Step::Rotate);
        assert_eq!(plan_write(u64::MAX / 2, b"x", 0), Step::Write(1));
    }

    proptest! {
        /// Simulates a file fed chunk by chunk: no file ever exceeds the limit, nothing is
        /// lost or reordered, and a line shorter than the limit never straddles two files.
        #[test]
        fn rotation_plan_keeps_every_byte_and_the_limit(
            chunks in proptest::collection::vec(
                proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), Just(b'b')], 0..40),
                0..20,
            ),
            max in 1u64..30,
        ) {
            let mut files: Vec<Vec<u8>> = vec![Vec::new()];
            for chunk in &chunks {
                let mut data = &chunk[..];
                while !data.is_empty() {
                    let current = files.last_mut().unwrap();
                    match plan_write(current.len() as u64, data, max) {
                        Step::Write(n) => {
                            prop_assert!(n > 0);
                            current.extend_from_slice(&data[..n]);
                            data = &data[n..];
                        }
                        Step::Rotate => {
                            prop_assert!(!current.is_empty(), "rotating an empty file loops");
                            files.push(Vec::new());
                        }
                    }
                }
            }
            for f in &files {
                prop_assert!(f.len() as u64 <= max);
            }
            let joined: Vec<u8> = files.concat();
            prop_assert_eq!(&joined, &chunks.concat());
            // Within one chunk, a file is only cut after a newline, or at the limit when a
            // line is longer than the limit; lines cut by the pipe itself are not ours to keep.
            if chunks.len() == 1 {
                for f in &files[..files.len() - 1] {
                    prop_assert!(f.ends_with(b"\n") || f.len() as u64 == max, "file {:?}", f);
                }
            }
        }
    }

    #[test]
    fn rotation_keeps_n_files_and_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/out.log");
        let mut log = LogFile::open(&path, 10, 2, None).unwrap();
        for line in ["one-line\n", "two-line\n", "three-ln\n", "four-ln\n"] {
            log.write(line.as_bytes()).unwrap();
        }
        let read = |p: PathBuf| fs::read_to_string(p).unwrap();
        assert_eq!(read(path.clone()), "four-ln\n");
        assert_eq!(read(numbered(&path, 1)), "three-ln\n");
        assert_eq!(read(numbered(&path, 2)), "two-line\n");
        assert!(!numbered(&path, 3).exists());
    }

    #[test]
    fn keep_zero_truncates_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut log = LogFile::open(&path, 10, 0, None).unwrap();
        log.write(b"12345678\n").unwrap();
        log.write(b"abc\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "abc\n");
        assert!(!numbered(&path, 1).exists());
    }

    #[test]
    fn reopening_appends_and_counts_what_is_there() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/dir/out.log");
        LogFile::open(&path, 100, 1, None)
            .unwrap()
            .write(&[b'x'; 95])
            .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // The umask may only remove bits.
        assert_eq!(mode(&path) & !FILE_MODE, 0);
        assert_eq!(mode(path.parent().unwrap()) & !DIR_MODE, 0);

        let mut log = LogFile::open(&path, 100, 1, None).unwrap();
        log.write(b"0123456789\n").unwrap();
        assert_eq!(fs::read(numbered(&path, 1)).unwrap(), vec![b'x'; 95]);
        assert_eq!(fs::read_to_string(&path).unwrap(), "0123456789\n");
    }
}
