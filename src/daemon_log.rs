//! The daemon's own log file (`launchgraph up --log-file PATH`), followed across rotation.
//!
//! Under launchd, a file named by `StandardOutPath` is opened by launchd and inherited: when
//! newsyslog(8) renames it, the daemon would keep writing into the renamed file until it
//! restarts. So the daemon opens its log itself (`O_APPEND`, created mode 0644 when missing)
//! on standard error, and before each line checks that the path still names the file it
//! writes to (one `stat`, compared with the device and inode it opened). When it does not
//! (renamed, removed, replaced by newsyslog's fresh empty file), it opens the path again and
//! moves it onto standard error, so its lines and a panic's message alike land in the current
//! file. No signal is involved: SIGHUP already means "re-read the units", and nothing has to
//! know the daemon's pid.
//!
//! It does not rotate: newsyslog (packaging/pkg/newsyslog.d/launchgraph.conf) does.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Mode of the log file when the daemon creates it: what newsyslog's entry gives it too.
const FILE_MODE: u32 = 0o644;

/// The log at a path, kept open on one descriptor (standard error in the daemon).
#[derive(Debug)]
pub struct FollowedLog {
    path: PathBuf,
    /// The descriptor the file is moved onto at each open.
    target: RawFd,
    /// Device and inode of the file `target` holds; whether the last reopen failed.
    state: Mutex<Followed>,
}

#[derive(Debug)]
struct Followed {
    id: (u64, u64),
    /// A failed reopen is reported once, not before every line.
    failing: bool,
}

impl FollowedLog {
    /// Opens `path` for appending (creating it when missing) onto descriptor `target`.
    pub fn open(path: &Path, target: RawFd) -> io::Result<Self> {
        let id = open_onto(path, target)?;
        Ok(Self {
            path: path.to_owned(),
            target,
            state: Mutex::new(Followed { id, failing: false }),
        })
    }

    /// Opens the path again when it no longer names the file being written to. On failure
    /// (a missing directory, a full disk), says so in the file still open, once, and keeps
    /// writing there.
    pub fn follow(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let same = std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == state.id);
        if same {
            return;
        }
        match open_onto(&self.path, self.target) {
            Ok(id) => *state = Followed { id, failing: false },
            Err(e) if !state.failing => {
                state.failing = true;
                let line = format!(
                    "launchgraph: cannot open the log file {} again after it was rotated: {e}; \
                     writing on in the file it was\n",
                    self.path.display()
                );
                // SAFETY: writes a buffer we own to a descriptor that stays open.
                unsafe { libc::write(self.target, line.as_ptr().cast(), line.len()) };
            }
            Err(_) => {}
        }
    }

    /// The path it follows.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens `path` to append and moves it onto `target`; the device and inode opened.
fn open_onto(path: &Path, target: RawFd) -> io::Result<(u64, u64)> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        // A link planted where the log goes must not make a root daemon append elsewhere; a
        // FIFO must not block it.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    move_onto(&file, target)?;
    Ok((meta.dev(), meta.ino()))
}

/// `dup2`: `target` now holds `file` (without close-on-exec, as standard error always has).
fn move_onto(file: &File, target: RawFd) -> io::Result<()> {
    // SAFETY: both are open descriptors; dup2 replaces `target` atomically.
    if unsafe { libc::dup2(file.as_raw_fd(), target) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The writer the daemon's log lines go through: before each line, [`FollowedLog::follow`];
/// then standard error, which holds the current file.
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for &'static FollowedLog {
    type Writer = io::Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.follow();
        io::stderr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A descriptor of our own standing in for standard error.
    fn target() -> File {
        File::open("/dev/null").unwrap()
    }

    fn write_line(fd: RawFd, line: &str) {
        // SAFETY: a buffer we own, a descriptor we own.
        let n = unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
        assert_eq!(n, line.len() as isize);
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn lines_after_a_rename_go_to_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("launchgraph.log");
        let old = dir.path().join("launchgraph.log.0");
        std::fs::write(&path, "before the daemon\n").unwrap();
        let fd = target();
        let log = FollowedLog::open(&path, fd.as_raw_fd()).unwrap();
        log.follow();
        write_line(fd.as_raw_fd(), "one\n");
        assert_eq!(read(&path), "before the daemon\none\n", "appended");

        // newsyslog: rename, then create the new file itself.
        std::fs::rename(&path, &old).unwrap();
        std::fs::File::create(&path).unwrap();
        log.follow();
        write_line(fd.as_raw_fd(), "two\n");
        assert_eq!(read(&old), "before the daemon\none\n");
        assert_eq!(read(&path), "two\n");

        // A rename with nothing created: the daemon creates it.
        std::fs::rename(&path, &old).unwrap();
        log.follow();
        write_line(fd.as_raw_fd(), "three\n");
        assert_eq!(read(&old), "two\n");
        assert_eq!(read(&path), "three\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, FILE_MODE & !umask());

        // Unchanged: no reopen, the same file.
        let before = std::fs::metadata(&path).unwrap().ino();
        log.follow();
        write_line(fd.as_raw_fd(), "four\n");
        assert_eq!(read(&path), "three\nfour\n");
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), before);
    }

    #[test]
    fn a_reopen_that_fails_is_said_once_and_writing_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let path = logs.join("launchgraph.log");
        let fd = target();
        let log = FollowedLog::open(&path, fd.as_raw_fd()).unwrap();
        let moved = dir.path().join("moved");
        std::fs::rename(&logs, &moved).unwrap();
        log.follow();
        log.follow();
        write_line(fd.as_raw_fd(), "still here\n");
        let text = read(&moved.join("launchgraph.log"));
        assert_eq!(
            text.matches("cannot open the log file").count(),
            1,
            "{text}"
        );
        assert!(text.ends_with("still here\n"), "{text}");
    }

    #[test]
    fn a_symbolic_link_or_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("elsewhere");
        std::fs::File::create(&real)
            .unwrap()
            .write_all(b"x")
            .unwrap();
        let link = dir.path().join("launchgraph.log");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let fd = target();
        assert!(FollowedLog::open(&link, fd.as_raw_fd()).is_err());
        assert!(FollowedLog::open(dir.path(), fd.as_raw_fd()).is_err());
        assert_eq!(read(&real), "x");
    }

    /// This process's umask, read where reading it changes nothing (umask(2) would set it).
    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }
}
