//! A unit's run record, written by the unit's own process between fork and exec
//! ([`SelfRecord`]), and reading a process's start time, the fact that tells a unit's process
//! from one that got its pid later.
//!
//! Written by the child, not by the daemon after the spawn: the record then exists before the
//! program runs its first instruction, so a daemon killed at any moment leaves no process of a
//! unit unrecorded, and a record that cannot be written means the program never runs. The
//! engine (`engine::runs`) reads the records back after a crash; the format is its
//! `RunRecord`: `{"unit":NAME,"pid":PID,"start_ticks":TICKS}`.
//!
//! What runs in the child must be async-signal-safe (the daemon has other threads, whose locks
//! the child may have inherited held: https://man7.org/linux/man-pages/man7/signal-safety.7.html),
//! so everything is prepared before the fork and the child only makes system calls on it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A run record prepared before the fork, for the child to write about itself.
#[derive(Debug)]
pub struct SelfRecord {
    path: PathBuf,
    /// Where the child writes before renaming over `path`, so a reader never sees half a
    /// record. One per unit: a unit has one process at a time.
    temp: PathBuf,
    temp_c: CString,
    path_c: CString,
    /// `{"unit":NAME,"pid":`, the part known before the fork.
    head: Vec<u8>,
}

/// What follows the pid in a record.
const MIDDLE: &[u8] = b",\"start_ticks\":";

impl SelfRecord {
    /// A record of `unit` at `path` (a file in a directory the spawn creates when missing).
    pub fn new(path: &Path, unit: &str) -> io::Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?;
        let mut temp = std::ffi::OsString::from(".");
        temp.push(name);
        temp.push(".tmp");
        let temp = path.with_file_name(temp);
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| io::Error::other(format!("{} contains a NUL byte", p.display())))
        };
        let unit = serde_json::to_string(unit).map_err(io::Error::other)?;
        Ok(Self {
            path: path.to_owned(),
            temp_c: c(&temp)?,
            temp,
            path_c: c(path)?,
            head: format!("{{\"unit\":{unit},\"pid\":").into_bytes(),
        })
    }

    /// The record's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary file the record is written to before it is renamed into place.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Creates the temporary file, owner only, unless a previous run left it: the child then
    /// opens a file that exists (it still creates it when it is missing). Left as it is: the
    /// child writes over it and cuts it to the new record's length.
    pub fn create_temp(&self) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.temp)
            .map(drop)
    }

    /// Writes the record of the calling process: its pid and start time. Async-signal-safe:
    /// system calls on memory prepared before the fork, no allocation. Not synced: after a
    /// power loss there is no process left to find either.
    pub fn write_for_this_process(&self) -> Result<(), i32> {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let ticks = own_start_ticks()?;
        let mut pid_digits = [0u8; 20];
        let mut tick_digits = [0u8; 20];
        let parts: [&[u8]; 5] = [
            &self.head,
            decimal(pid as u64, &mut pid_digits),
            MIDDLE,
            decimal(ticks, &mut tick_digits),
            b"}",
        ];
        // Written over, not truncated on open: ext4 writes a file out when it is closed after
        // being truncated to nothing (`auto_da_alloc`,
        // https://docs.kernel.org/admin-guide/ext4.html), which would hold the start up, and
        // it frees the file's block only to allocate one again. Cut to what was written
        // instead: the previous record may have been longer.
        // SAFETY: a NUL-terminated path prepared before the fork; flags and mode are plain.
        let fd = unsafe {
            libc::open(
                self.temp_c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(errno());
        }
        let len: usize = parts.iter().map(|part| part.len()).sum();
        // One write when the record fits the buffer (every unit name short of 200 bytes).
        let mut whole = [0u8; 256];
        let written = if len <= whole.len() {
            let mut at = 0;
            for part in parts {
                whole[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            write_all(fd, &whole[..len])
        } else {
            parts.iter().try_for_each(|part| write_all(fd, part))
        };
        let written = written.and_then(|()| {
            // SAFETY: the descriptor opened above; a length, not a pointer.
            match unsafe { libc::ftruncate(fd, len as libc::off_t) } {
                0 => Ok(()),
                _ => Err(errno()),
            }
        });
        // SAFETY: the descriptor opened above, closed once.
        let closed = unsafe { libc::close(fd) };
        written?;
        if closed != 0 {
            return Err(errno());
        }
        // SAFETY: two NUL-terminated paths prepared before the fork.
        if unsafe { libc::rename(self.temp_c.as_ptr(), self.path_c.as_ptr()) } != 0 {
            return Err(errno());
        }
        Ok(())
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// write(2) until all of `bytes` is written. Async-signal-safe.
fn write_all(fd: libc::c_int, mut bytes: &[u8]) -> Result<(), i32> {
    while !bytes.is_empty() {
        // SAFETY: writes from a live slice of the length given.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            match errno() {
                libc::EINTR => continue,
                e => return Err(e),
            }
        }
        if n == 0 {
            return Err(libc::EIO);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// `n` in decimal, in `buf`, without allocating.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// What `/proc/PID/stat` says of a process: its state letter, its process group and its start
/// time in clock ticks since boot (fields 3, 5 and 22 of proc_pid_stat(5),
/// https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html). The command name (field 2) may
/// hold spaces and parentheses, so the fields are counted from the last `)`. No allocation: the
/// child parses its own stat with it.
#[cfg(any(target_os = "linux", test))]
pub(crate) fn parse_stat(stat: &[u8]) -> Option<(u8, i64, u64)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let mut fields = stat[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?;
    let pgrp = std::str::from_utf8(pgrp).ok()?.parse().ok()?;
    // Field 22 is the 17th after the process group (field 5).
    let start = fields.nth(16)?;
    let start = std::str::from_utf8(start).ok()?.parse().ok()?;
    Some((state, pgrp, start))
}

/// The calling process's start time, in the unit of [`start_ticks`]. Async-signal-safe.
#[cfg(not(target_os = "macos"))]
fn own_start_ticks() -> Result<u64, i32> {
    // SAFETY: a literal path; the buffer is a live local array read into with its length.
    unsafe {
        let fd = libc::open(
            c"/proc/self/stat".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(errno());
        }
        let mut buf = [0u8; 4096];
        let mut len = 0;
        let read = loop {
            if len == buf.len() {
                break Ok(());
            }
            let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
            match n {
                0 => break Ok(()),
                n if n > 0 => len += n as usize,
                _ if errno() == libc::EINTR => {}
                _ => break Err(errno()),
            }
        };
        libc::close(fd);
        read?;
        parse_stat(&buf[..len])
            .map(|(_, _, start)| start)
            .ok_or(libc::EIO)
    }
}

/// The calling process's start time, in the unit of [`start_ticks`]. Async-signal-safe: one
/// `proc_pidinfo` system call into a local buffer.
#[cfg(target_os = "macos")]
fn own_start_ticks() -> Result<u64, i32> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    bsd_info(pid)
        .map(|info| bsd_start(&info))
        .ok_or(libc::ESRCH)
}

/// `proc_pidinfo(PROC_PIDTBSDINFO)` of `pid` (apple-oss-distributions/xnu:bsd/sys/proc_info.h).
#[cfg(target_os = "macos")]
pub(crate) fn bsd_info(pid: i32) -> Option<libc::proc_bsdinfo> {
    let mut info = std::mem::MaybeUninit::<libc::proc_bsdinfo>::zeroed();
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: the buffer is a zeroed proc_bsdinfo of the size passed.
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            info.as_mut_ptr().cast(),
            size,
        )
    };
    // SAFETY: proc_pidinfo filled all `size` bytes.
    (n == size).then(|| unsafe { info.assume_init() })
}

/// A process's start time in microseconds since the epoch, from its BSD info.
#[cfg(target_os = "macos")]
pub(crate) fn bsd_start(info: &libc::proc_bsdinfo) -> u64 {
    info.pbi_start_tvsec
        .saturating_mul(1_000_000)
        .saturating_add(info.pbi_start_tvusec)
}

/// A process's start time as run records keep it: clock ticks since boot on Linux
/// (`/proc/PID/stat`), microseconds since the epoch on macOS (`proc_pidinfo`). `None` when
/// the process is gone.
pub fn start_ticks(pid: u32) -> Option<u64> {
    #[cfg(not(target_os = "macos"))]
    {
        let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&stat).map(|(_, _, start)| start)
    }
    #[cfg(target_os = "macos")]
    {
        bsd_info(i32::try_from(pid).ok()?).map(|info| bsd_start(&info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record at `path`, which must parse whole: a tail left after it fails here.
    fn written(path: &Path) -> serde_json::Value {
        let bytes = std::fs::read(path).unwrap();
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&bytes)))
    }

    #[test]
    fn decimal_writes_every_digit() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(4711, &mut buf), b"4711");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with spaces and parentheses, as proc_pid_stat(5) allows.
        let stat = b"42 (a (b) c) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        assert_eq!(parse_stat(stat), Some((b'S', 42, 98765)));
        assert_eq!(parse_stat(b"42 (x) S 1"), None);
        assert_eq!(parse_stat(b"no parenthesis"), None);
    }

    #[test]
    fn this_process_writes_a_record_of_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("we \"quote\".json");
        let record = SelfRecord::new(&path, "we \"quote\"").unwrap();
        record.write_for_this_process().unwrap();
        let json = written(&path);
        assert_eq!(json["unit"], "we \"quote\"");
        assert_eq!(json["pid"], std::process::id());
        assert_eq!(
            json["start_ticks"].as_u64(),
            start_ticks(std::process::id())
        );
        // Renamed into place: no temporary file is left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_record_is_cut_to_its_length_whatever_its_file_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.json");
        let record = SelfRecord::new(&path, "u").unwrap();
        // What an interrupted write of a longer record left, and a unit name too long for
        // the one-write buffer.
        std::fs::write(record.temp_path(), vec![b'x'; 4000]).unwrap();
        record.write_for_this_process().unwrap();
        let json = written(&path);
        assert_eq!(json["pid"], std::process::id());
        let long = "n".repeat(300);
        let path = dir.path().join("long.json");
        let record = SelfRecord::new(&path, &long).unwrap();
        record.create_temp().unwrap();
        record.write_for_this_process().unwrap();
        let json = written(&path);
        assert_eq!(json["unit"], long.as_str());
        assert_eq!(json["pid"], std::process::id());
    }

    #[test]
    fn the_temporary_file_is_created_owner_only_and_a_previous_one_is_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.json");
        let record = SelfRecord::new(&path, "u").unwrap();
        record.create_temp().unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(record.temp_path()).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "owner only");
        // A run's record renamed back, longer than the next one: its tail must not survive.
        let previous = format!("{{\"unit\":\"u\",\"pid\":{},\"start_ticks\":1}}", u64::MAX);
        std::fs::write(record.temp_path(), &previous).unwrap();
        record.create_temp().unwrap();
        record.write_for_this_process().unwrap();
        let json = written(&path);
        assert_eq!(json["pid"], std::process::id());
        assert!(!record.temp_path().exists(), "renamed into place");
    }

    #[test]
    fn a_record_that_cannot_be_written_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("runs");
        std::fs::write(&not_a_dir, b"").unwrap();
        let record = SelfRecord::new(&not_a_dir.join("u.json"), "u").unwrap();
        assert_eq!(record.write_for_this_process(), Err(libc::ENOTDIR));
    }
}
