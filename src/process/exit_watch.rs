//! The exit of a process launchgraph did not fork (a launchd job's pid, a process a previous
//! daemon left running), from the kernel's own notification: a pidfd on Linux
//! (pidfd_open(2), readable once the process has exited), an `EVFILT_PROC`/`NOTE_EXIT` kqueue
//! on macOS (kqueue(2): https://man.freebsd.org/cgi/man.cgi?query=kqueue&sektion=2, and
//! apple-oss-distributions/xnu:bsd/sys/event.h). Either is seen the moment the process exits,
//! costs no wake-up while it runs, and is bound to the process itself, so a pid the system
//! gives to another process later is never taken for it.
//!
//! The only pid-reuse window left is before the watch exists: [`ExitWatch::new`] checks the
//! process's start time once the kernel object is registered, so a pid that already belongs
//! to another process is reported gone, never watched. It does not reap, signal or wait for
//! the exit status (the process is not our child; its parent collects that).

use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// How often the fallback polls, when the kernel refuses a pidfd or a kqueue.
const POLL: Duration = Duration::from_millis(50);

/// A watch on the exit of one process. Dropping it closes what it holds.
#[derive(Debug)]
pub struct ExitWatch {
    how: How,
}

#[derive(Debug)]
enum How {
    /// Gone when the watch was made: not running, a zombie, or another process now.
    Gone,
    /// A pidfd (Linux) or a kqueue holding one `NOTE_EXIT` (macOS): readable once it exited.
    Kernel(AsyncFd<OwnedFd>),
    /// The kernel refused both: liveness and start time, every [`POLL`].
    Poll { pid: u32, start: u64 },
}

impl ExitWatch {
    /// Watches process `pid`. `start`, when known, is its start time as recorded earlier
    /// ([`crate::process::start_ticks`]): a process under `pid` that started at another time is
    /// not the one meant, and the watch reports it gone at once. Without it, the process
    /// running under `pid` now is the one watched. Needs a tokio runtime with I/O enabled.
    pub fn new(pid: u32, start: Option<u64>) -> Self {
        // Pid 0 names no process of ours (on macOS, proc_pidinfo answers for the kernel).
        let Some(raw) = libc::pid_t::try_from(pid).ok().filter(|&p| p > 0) else {
            return Self { how: How::Gone };
        };
        let kernel = match exit_fd(raw) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Self { how: How::Gone },
            // ENOSYS (Linux before 5.3), EPERM or EACCES (a sandbox, a process of another
            // user): the kernel will not tell us, so ask it every POLL instead.
            Err(e) => {
                tracing::debug!(pid, error = %e, "no kernel exit notification; polling");
                None
            }
        };
        // Checked after the registration: a process that exits from now on is announced, and
        // one that got the pid before it is told apart by its start time.
        let Some(now) = live_start(pid) else {
            return Self { how: How::Gone };
        };
        if start.is_some_and(|s| s != now) {
            return Self { how: How::Gone };
        }
        // SAFETY: the descriptor is owned by the registration and used by nobody else for as
        // long as it lives.
        let how = match kernel.map(|fd| unsafe { AsyncFd::register(fd) }) {
            Some(Ok(fd)) => How::Kernel(fd),
            _ => How::Poll { pid, start: now },
        };
        Self { how }
    }

    /// Whether the process was already gone (or was not the one meant) when the watch was made.
    pub fn was_gone(&self) -> bool {
        matches!(self.how, How::Gone)
    }

    /// Resolves once the process has exited (at once if it was gone already).
    pub async fn exited(&self) {
        match &self.how {
            How::Gone => {}
            How::Kernel(fd) => {
                while let Ok(mut ready) = fd.readable().await {
                    if exit_announced(fd) {
                        return;
                    }
                    ready.clear_ready();
                }
            }
            How::Poll { pid, start } => {
                while live_start(*pid) == Some(*start) {
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }
}

/// Resolves once process `pid` has exited; see [`ExitWatch::new`] for `start`.
pub async fn exited(pid: u32, start: Option<u64>) {
    ExitWatch::new(pid, start).exited().await;
}

/// The start time of `pid` while it runs; `None` when it is gone or a zombie (it has exited;
/// only its parent's wait is missing).
fn live_start(pid: u32) -> Option<u64> {
    #[cfg(not(target_os = "macos"))]
    {
        let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
        let (state, _, start) = super::parse_stat(&stat)?;
        (!matches!(state, b'Z' | b'X')).then_some(start)
    }
    #[cfg(target_os = "macos")]
    {
        let info = super::bsd_info(i32::try_from(pid).ok()?)?;
        (info.pbi_status != libc::SZOMB).then(|| super::bsd_start(&info))
    }
}

/// A pidfd of `pid`: readable once it has exited.
#[cfg(not(target_os = "macos"))]
fn exit_fd(pid: libc::pid_t) -> std::io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1. Its
    // descriptors are close-on-exec.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A pidfd stays readable once its process has exited: readiness is the exit.
#[cfg(not(target_os = "macos"))]
fn exit_announced(_: &AsyncFd<OwnedFd>) -> bool {
    true
}

/// A kqueue of its own holding `EVFILT_PROC`/`NOTE_EXIT` for `pid`: readable once the exit is
/// queued. ESRCH when no process has that pid.
#[cfg(target_os = "macos")]
fn exit_fd(pid: libc::pid_t) -> std::io::Result<OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: kqueue takes nothing and returns a new descriptor or -1.
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just returned to us, owned by nobody else. kqueue descriptors are not
    // inherited by a fork's child (kqueue(2)).
    let kq = unsafe { OwnedFd::from_raw_fd(kq) };
    // SAFETY: an all-zero kevent is a valid value of the plain C struct.
    let mut change: libc::kevent = unsafe { std::mem::zeroed() };
    change.ident = pid as libc::uintptr_t;
    change.filter = libc::EVFILT_PROC;
    change.flags = libc::EV_ADD | libc::EV_ONESHOT;
    change.fflags = libc::NOTE_EXIT;
    // SAFETY: one change of the right type, no event buffer, no timeout (nothing is waited
    // for: a registration error is returned at once).
    let n = unsafe {
        libc::kevent(
            kq.as_raw_fd(),
            &change,
            1,
            std::ptr::null_mut(),
            0,
            std::ptr::null(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(kq)
}

/// Whether the kqueue holds the exit (and not a spurious wake-up), taking it without waiting.
#[cfg(target_os = "macos")]
fn exit_announced(kq: &AsyncFd<OwnedFd>) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: as in `exit_fd`.
    let mut event: libc::kevent = unsafe { std::mem::zeroed() };
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: no changes, room for one event, a zero timeout.
    let n = unsafe { libc::kevent(kq.as_raw_fd(), std::ptr::null(), 0, &mut event, 1, &zero) };
    // An error other than an interruption would repeat forever: take it for the end.
    n > 0 || (n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
}
