//! Creating a unit's process directly inside its cgroup: clone3(2) with CLONE_INTO_CGROUP and
//! CLONE_PIDFD (Linux 5.7, https://man7.org/linux/man-pages/man2/clone.2.html), then, in the
//! child, what `tokio::process::Command` and the unit's `pre_exec` do on the other path, in the
//! same order, and execve(2).
//!
//! Why not `Command`: its child can only join a cgroup by writing to `cgroup.procs`, which
//! migrates it and waits for an RCU grace period (10-15 ms a spawn, measured), while a process
//! created in its cgroup is never migrated. The system call is made through
//! `libc::syscall(SYS_clone3)` with the kernel's `struct clone_args` declared here
//! (torvalds/linux:include/uapi/linux/sched.h): the `clone3` crate adds little over it and
//! brings a large dependency (`uapi`), and the `libc` crate declares the struct on some
//! targets only and CLONE_INTO_CGROUP with a type too narrow for it.
//!
//! Everything the child needs is prepared before the clone ([`Exec`]): the child shares no
//! thread with the parent, whose other threads may hold locks (the allocator's, the C
//! library's), so it only makes system calls on memory that already exists
//! (https://man7.org/linux/man-pages/man7/signal-safety.7.html). Credentials are switched with
//! raw system calls, not the C library's setuid, which would try to reach the parent's other
//! threads (glibc's setxid broadcast) that do not exist in the child.
//!
//! When clone3 or CLONE_INTO_CGROUP is refused (ENOSYS, EINVAL, EPERM, E2BIG: an older kernel
//! or a seccomp filter) [`usable`] says so from then on and `spawn` takes the `Command` path:
//! the refusal is logged once and never fails a start.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use super::credentials::Credentials;
use super::logs::cloexec_pipe;
use super::record::SelfRecord;
use super::spawn::{close_inherited_on_exec, reset_ignored_signals};
use super::track::{PidfdChild, register_pidfd_child};

/// The kernel's `struct clone_args`, up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7).
#[repr(C, align(8))]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// 0 while clone3 may be used; the errno it was refused with once it was.
static REFUSED: AtomicI32 = AtomicI32::new(0);

/// Whether units can be created in their cgroup, or why not.
pub(crate) fn usable() -> Result<(), String> {
    match REFUSED.load(Ordering::Relaxed) {
        0 => Ok(()),
        errno => Err(format!(
            "clone3 with CLONE_INTO_CGROUP was refused: {}",
            io::Error::from_raw_os_error(errno)
        )),
    }
}

/// What the child needs, prepared before the clone: nothing is allocated after it.
pub(super) struct Exec {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    /// /dev/null, read and write: stdin, and stdout or stderr without a log file.
    null: OwnedFd,
}

impl Exec {
    pub(super) fn new<'a>(
        command: &[String],
        env: impl IntoIterator<Item = (&'a String, &'a String)>,
        cwd: &Path,
    ) -> io::Result<Self> {
        let c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| io::Error::other("an argument contains a NUL byte"))
        };
        let argv = command
            .iter()
            .map(|a| c(a.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let envp = env
            .into_iter()
            .map(|(k, v)| c(format!("{k}={v}").as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        Ok(Self {
            program: c(OsStr::new(&command[0]).as_bytes())?,
            argv,
            envp,
            cwd: c(cwd.as_os_str().as_bytes())?,
            null: null.into(),
        })
    }
}

/// Why [`spawn_in_cgroup`] did not start the process.
pub(super) enum CloneFailure {
    /// clone3 itself failed: nothing ran; the caller takes the other path.
    Clone(io::Error),
    /// The child failed before its program ran and exited: in writing the run record, or
    /// elsewhere (the exec, the working directory, the credentials), with the errno.
    RunRecord(io::Error),
    Exec(io::Error),
}

/// Tags of the child's report: which step failed, then its errno (4 bytes, native order).
const FAILED_RECORD: u8 = b'r';
const FAILED_EXEC: u8 = b'e';

/// Pointers into an [`Exec`], made before the clone.
struct Pointers {
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

/// Creates the unit's process in the cgroup `cgroup`, with `stdout` and `stderr` (or
/// /dev/null), writes `record` in the child, switches to `creds`, and execs. Returns once the
/// program runs (its exec succeeded) or failed. Blocks for as long as the child takes to get
/// to its exec, as `Command::spawn` does.
pub(super) fn spawn_in_cgroup(
    exec: &Exec,
    cgroup: BorrowedFd<'_>,
    stdout: Option<RawFd>,
    stderr: Option<RawFd>,
    record: Option<&SelfRecord>,
    creds: Option<&Credentials>,
) -> Result<PidfdChild, CloneFailure> {
    let ptrs = Pointers {
        argv: exec
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect(),
        envp: exec
            .envp
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect(),
    };
    let null = exec.null.as_raw_fd();
    let stdio = [null, stdout.unwrap_or(null), stderr.unwrap_or(null)];
    let (report_reader, report_writer) = cloexec_pipe().map_err(CloneFailure::Clone)?;
    let report = report_writer.as_raw_fd();

    let mut pidfd: RawFd = -1;
    let args = CloneArgs {
        flags: CLONE_PIDFD | CLONE_INTO_CGROUP,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    let registered = register_pidfd_child(|| {
        // No signal handler of the daemon may run in the child before its exec: blocked here,
        // inherited blocked, and unblocked in the child once every handler is reset.
        let all = full_mask();
        let mut old = empty_mask();
        // SAFETY: pthread_sigmask on local sets.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) };
        // SAFETY: clone3 without CLONE_VM gives the child a copy of this address space, as
        // fork does; the child runs `in_child` on memory that exists before the call and
        // never returns from it.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if pid == 0 {
            in_child(exec, &ptrs, stdio, report, record, creds);
        }
        let error = io::Error::last_os_error();
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        if pid < 0 {
            return Err(error);
        }
        // SAFETY: CLONE_PIDFD stored a new descriptor (close-on-exec) that we now own.
        Ok((pid as u32, unsafe { OwnedFd::from_raw_fd(pidfd) }))
    });
    let child = match registered {
        Ok(child) => child,
        Err(e) => {
            if let Some(errno @ (libc::ENOSYS | libc::EINVAL | libc::EPERM | libc::E2BIG)) =
                e.raw_os_error()
                && REFUSED.swap(errno, Ordering::Relaxed) == 0
            {
                tracing::warn!(
                    error = %e,
                    "cannot create units' processes in their cgroups (clone3 with \
                     CLONE_INTO_CGROUP); processes that leave their unit's process group \
                     (setsid) will not be attributed to their unit nor stopped with it"
                );
            }
            return Err(CloneFailure::Clone(e));
        }
    };
    // Our copy of the write end: once closed, the end of the pipe is the child's exec.
    drop(report_writer);
    let mut said = [0u8; 5];
    let mut file = std::fs::File::from(report_reader);
    let mut got = 0;
    while got < said.len() {
        match io::Read::read(&mut file, &mut said[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if got == 0 {
        return Ok(child);
    }
    // The child reported a failure and exits (127): collect it, so its pid is not left behind.
    child.reap_blocking();
    let errno = i32::from_ne_bytes([said[1], said[2], said[3], said[4]]);
    let error = io::Error::from_raw_os_error(errno);
    Err(match said[0] {
        FAILED_RECORD => CloneFailure::RunRecord(error),
        _ => CloneFailure::Exec(error),
    })
}

fn full_mask() -> libc::sigset_t {
    // SAFETY: sigfillset initialises the set it is given.
    unsafe {
        let mut set = std::mem::zeroed();
        libc::sigfillset(&mut set);
        set
    }
}

fn empty_mask() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe {
        let mut set = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    }
}

/// The child, between clone and exec. System calls only, on memory prepared before the
/// clone; never returns.
fn in_child(
    exec: &Exec,
    ptrs: &Pointers,
    stdio: [RawFd; 3],
    report: RawFd,
    record: Option<&SelfRecord>,
    creds: Option<&Credentials>,
) -> ! {
    let fail = |tag: u8, errno: i32| -> ! {
        let e = errno.to_ne_bytes();
        let bytes = [tag, e[0], e[1], e[2], e[3]];
        // SAFETY: write and _exit, both async-signal-safe, on a local buffer.
        unsafe {
            libc::write(report, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    };
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    // What std's Command does first: the standard streams, then the working directory.
    for (target, fd) in stdio.into_iter().enumerate() {
        let target = target as RawFd;
        // SAFETY: descriptor numbers only. dup2 onto itself keeps close-on-exec: cleared then.
        let done = unsafe {
            if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, target)
            }
        };
        if done < 0 {
            fail(FAILED_EXEC, errno());
        }
    }
    // SAFETY: a NUL-terminated path prepared before the clone.
    if unsafe { libc::chdir(exec.cwd.as_ptr()) } != 0 {
        fail(FAILED_EXEC, errno());
    }
    // Then what the unit's `pre_exec` does on the other path, in its order.
    close_inherited_on_exec();
    // The daemon's handlers are inherited as they are by a fork: reset, as exec would, so
    // that none runs here once signals are unblocked. Then what is ignored, as on the other
    // path, and the empty mask std's child starts its program with.
    reset_handled_signals();
    reset_ignored_signals();
    let empty = empty_mask();
    // SAFETY: sigprocmask on a local set.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) };
    // SAFETY: no arguments.
    if unsafe { libc::setsid() } == -1 {
        fail(FAILED_EXEC, errno());
    }
    if let Some(record) = record
        && let Err(errno) = record.write_for_this_process()
    {
        fail(FAILED_RECORD, errno);
    }
    if let Some(creds) = creds
        && let Err(errno) = switch_credentials(creds)
    {
        fail(FAILED_EXEC, errno);
    }
    // SAFETY: NUL-terminated strings and NULL-terminated arrays of them, prepared before the
    // clone and alive in this copy of the address space.
    unsafe {
        libc::execve(
            exec.program.as_ptr(),
            ptrs.argv.as_ptr(),
            ptrs.envp.as_ptr(),
        )
    };
    fail(FAILED_EXEC, errno())
}

/// Every signal with a handler back to its default action, as exec does; async-signal-safe.
fn reset_handled_signals() {
    for signal in 1..65 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction on zeroed local structs (SIG_DFL is 0).
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut current) == 0
                && current.sa_sigaction != libc::SIG_DFL
                && current.sa_sigaction != libc::SIG_IGN
            {
                let default: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signal, &default, std::ptr::null_mut());
            }
        }
    }
}

/// `creds` for this process, with the kernel's system calls: in the child the C library's
/// wrappers would signal threads that exist only in the parent.
fn switch_credentials(creds: &Credentials) -> Result<(), i32> {
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    // SAFETY: system calls on memory owned by `creds`, prepared before the clone.
    unsafe {
        if libc::syscall(
            libc::SYS_setgroups,
            creds.groups.len() as libc::c_long,
            creds.groups.as_ptr(),
        ) != 0
        {
            return Err(errno());
        }
        if libc::syscall(libc::SYS_setgid, creds.gid as libc::c_long) != 0 {
            return Err(errno());
        }
        if libc::syscall(libc::SYS_setuid, creds.uid as libc::c_long) != 0 {
            return Err(errno());
        }
    }
    Ok(())
}
