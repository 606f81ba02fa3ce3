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
//! On x86_64 the child also shares the daemon's memory and, until its first step, its
//! descriptor table (CLONE_VM | CLONE_VFORK | CLONE_FILES, what the C library's posix_spawn
//! does: bminor/glibc:sysdeps/unix/sysv/linux/spawni.c): the daemon's page tables are not
//! copied at the clone nor torn down at the exec, and the child's first step,
//! close_range(2) with CLOSE_RANGE_UNSHARE (Linux 5.9), gives it a table of its own holding
//! only the few lowest descriptors, where the three it needs wait ([`Slots`]). Both costs
//! grew with the daemon's size, which grows with its units: a spawn now costs the same with
//! 3,000 units as with 3. The child runs on a stack of its own while the calling thread is
//! suspended until the child's exec (or exit), and reports a failure through memory instead
//! of a pipe.
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
use super::spawn::{close_inherited_on_exec, reset_signal_actions};
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

impl Pointers {
    fn of(exec: &Exec) -> Self {
        let pointers = |strings: &[CString]| {
            strings
                .iter()
                .map(|a| a.as_ptr())
                .chain([std::ptr::null()])
                .collect()
        };
        Self {
            argv: pointers(&exec.argv),
            envp: pointers(&exec.envp),
        }
    }
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
    #[cfg(target_arch = "x86_64")]
    if shared::usable() {
        match shared::spawn(exec, cgroup, stdout, stderr, record, creds) {
            Err(shared::Refused) => {}
            Ok(done) => return done,
        }
    }
    spawn_copying(exec, cgroup, stdout, stderr, record, creds)
}

/// [`spawn_in_cgroup`] with a child that gets a copy of the daemon's memory and descriptors,
/// as fork gives, and reports a failure through a pipe.
fn spawn_copying(
    exec: &Exec,
    cgroup: BorrowedFd<'_>,
    stdout: Option<RawFd>,
    stderr: Option<RawFd>,
    record: Option<&SelfRecord>,
    creds: Option<&Credentials>,
) -> Result<PidfdChild, CloneFailure> {
    let ptrs = Pointers::of(exec);
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
        let (pid, error) = with_signals_blocked(|| {
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
                in_child(exec, &ptrs, stdio, Report::Pipe(report), record, creds);
            }
            (pid, io::Error::last_os_error())
        });
        if pid < 0 {
            return Err(error);
        }
        // SAFETY: CLONE_PIDFD stored a new descriptor (close-on-exec) that we now own.
        Ok((pid as u32, unsafe { OwnedFd::from_raw_fd(pidfd) }))
    });
    let child = match registered {
        Ok(child) => child,
        Err(e) => {
            note_refusal(&e);
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

/// A clone3 that failed with an errno meaning "never here" makes [`usable`] say so, once.
fn note_refusal(e: &io::Error) {
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
}

/// Runs `clone` with every signal blocked in this thread. No signal handler of the daemon may
/// run in the child before its exec (in a child sharing the daemon's memory it would run on
/// that memory): blocked here, inherited blocked, and unblocked in the child once every
/// handler is reset.
fn with_signals_blocked<T>(clone: impl FnOnce() -> T) -> T {
    let all = full_mask();
    let mut old = empty_mask();
    // SAFETY: pthread_sigmask on local sets.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) };
    let done = clone();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    done
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
/// Where the child says why it did not get to its program.
enum Report<'a> {
    /// A close-on-exec pipe to the parent: the tag, then the errno.
    Pipe(RawFd),
    /// Memory shared with the parent, which reads it once the child has exited.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Shared(&'a SharedReport),
}

/// A failure of a child that shares the parent's memory: written by the child, read by the
/// parent only after the child's exit has resumed it.
#[derive(Default)]
struct SharedReport {
    tag: std::sync::atomic::AtomicU8,
    errno: AtomicI32,
}

fn in_child(
    exec: &Exec,
    ptrs: &Pointers,
    stdio: [RawFd; 3],
    report: Report<'_>,
    record: Option<&SelfRecord>,
    creds: Option<&Credentials>,
) -> ! {
    let fail = |tag: u8, errno: i32| -> ! {
        match &report {
            Report::Pipe(fd) => {
                let e = errno.to_ne_bytes();
                let bytes = [tag, e[0], e[1], e[2], e[3]];
                // SAFETY: write, async-signal-safe, from a local buffer.
                unsafe { libc::write(*fd, bytes.as_ptr().cast(), bytes.len()) };
            }
            Report::Shared(shared) => {
                shared.errno.store(errno, Ordering::Relaxed);
                shared.tag.store(tag, Ordering::Release);
            }
        }
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(127) }
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
    // that none runs here once signals are unblocked; what is ignored too, as on the other
    // path. Then the empty mask std's child starts its program with.
    reset_signal_actions();
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

/// The child that shares the daemon's memory and, until its first step, its descriptor
/// table (see the module's comment). x86_64 only: the system call is made from a few lines
/// of assembly, since a child on a new stack cannot return into the C library's `syscall`.
#[cfg(target_arch = "x86_64")]
mod shared {
    use std::ffi::c_void;
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, PoisonError};

    use super::super::credentials::Credentials;
    use super::super::record::SelfRecord;
    use super::super::track::{PidfdChild, register_pidfd_child};
    use super::{
        CLONE_INTO_CGROUP, CLONE_PIDFD, CloneArgs, CloneFailure, Exec, FAILED_RECORD, Pointers,
        Report, SharedReport, in_child, with_signals_blocked,
    };

    const CLONE_VM: u64 = 0x100;
    const CLONE_FILES: u64 = 0x400;
    const CLONE_VFORK: u64 = 0x4000;
    /// close_range(2)'s flag (include/uapi/linux/close_range.h).
    const CLOSE_RANGE_UNSHARE: libc::c_uint = 1 << 1;
    /// The tag of a child that could not get a descriptor table of its own.
    const FAILED_UNSHARE: u8 = b'u';
    /// The child's stack: what `in_child` needs is a few KiB; untouched pages cost nothing.
    const STACK_SIZE: usize = 256 * 1024;

    /// Set once the kernel refused a step that only this way takes.
    static UNUSABLE: AtomicBool = AtomicBool::new(false);

    pub(super) fn usable() -> bool {
        !UNUSABLE.load(Ordering::Relaxed)
    }

    /// This way cannot be taken here: the caller takes the other.
    pub(super) struct Refused;

    /// Three descriptors at the lowest numbers the daemon had free when it first started a
    /// unit: `/dev/null`, and where the next child's stdout and stderr go. The child keeps
    /// only the descriptors up to these, so what it copies does not grow with the daemon's
    /// descriptors (pidfds, cgroup directories, log pipes: three or more a unit). One child at
    /// a time uses them: the lock is held from filling them to emptying them again. The
    /// child's stack is kept with them: one child at a time runs on it, and a stack mapped
    /// once is not unmapped (a TLB shootdown on every CPU) and faulted in again at each start.
    struct Slots {
        null: OwnedFd,
        out: OwnedFd,
        err: OwnedFd,
        stack: Stack,
    }

    static SLOTS: Mutex<Option<Slots>> = Mutex::new(None);

    fn open_null() -> io::Result<OwnedFd> {
        Ok(std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?
            .into())
    }

    /// dup3(from, onto, O_CLOEXEC): `onto` now names what `from` names.
    fn put(from: RawFd, onto: &OwnedFd) -> io::Result<()> {
        // SAFETY: descriptor numbers only; `onto` stays owned by its slot.
        if unsafe { libc::dup3(from, onto.as_raw_fd(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// What the child needs, on the parent's stack: the child reads it through the pointer
    /// it is given while the parent waits.
    struct ChildArgs<'a> {
        exec: &'a Exec,
        ptrs: &'a Pointers,
        stdio: [RawFd; 3],
        keep_below: libc::c_uint,
        report: &'a SharedReport,
        record: Option<&'a SelfRecord>,
        creds: Option<&'a Credentials>,
    }

    /// The child's first function, on its own stack. Its first step gives it a descriptor
    /// table of its own with only the descriptors below `keep_below` (the slots and the
    /// standard streams); until then it must not touch a descriptor.
    extern "C" fn child_main(arg: *mut c_void) -> ! {
        // SAFETY: `arg` is the `ChildArgs` the suspended parent keeps alive.
        let args = unsafe { &*(arg as *const ChildArgs<'_>) };
        // SAFETY: a system call on descriptor numbers only.
        let unshared = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                args.keep_below,
                libc::c_uint::MAX,
                CLOSE_RANGE_UNSHARE,
            )
        };
        if unshared != 0 {
            let errno = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            args.report.errno.store(errno, Ordering::Relaxed);
            args.report.tag.store(FAILED_UNSHARE, Ordering::Release);
            // SAFETY: _exit never returns and touches nothing of the parent's.
            unsafe { libc::_exit(127) }
        }
        in_child(
            args.exec,
            args.ptrs,
            args.stdio,
            Report::Shared(args.report),
            args.record,
            args.creds,
        )
    }

    /// clone3(args) with the child starting in `child(arg)` on the stack the arguments name.
    /// Returns the child's pid, or the negated errno. In the parent, a plain system call.
    ///
    /// SAFETY: `args` must name a stack that stays mapped until the child has exec'd or
    /// exited (CLONE_VFORK guarantees the caller waits that long), and `child` must never
    /// return.
    unsafe fn clone3_into(
        args: &CloneArgs,
        child: extern "C" fn(*mut c_void) -> !,
        arg: *mut c_void,
    ) -> libc::c_long {
        let ret: libc::c_long;
        // The child comes back from `syscall` with rax = 0 and rsp at the top of its new
        // stack; it clears the frame pointer, aligns the stack as the ABI wants at a call,
        // and calls `child(arg)`, which never returns (ud2 if it did).
        // SAFETY: upheld by the caller; the parent's path clobbers only rax, rcx and r11,
        // as any system call does.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "xor ebp, ebp",
                "and rsp, -16",
                "mov rdi, r13",
                "call r12",
                "ud2",
                "2:",
                inlateout("rax") libc::SYS_clone3 => ret,
                in("rdi") args as *const CloneArgs,
                in("rsi") std::mem::size_of::<CloneArgs>(),
                in("r12") child,
                in("r13") arg,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// A stack for the child, with an inaccessible page below it, unmapped on drop.
    struct Stack {
        base: *mut c_void,
        len: usize,
    }

    impl Stack {
        fn new() -> io::Result<Self> {
            let guard = 4096;
            let len = STACK_SIZE + guard;
            // SAFETY: a new anonymous private mapping; checked below.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let stack = Self { base, len };
            // SAFETY: the lowest page of the mapping made above: an overflow faults there.
            if unsafe { libc::mprotect(base, guard, libc::PROT_NONE) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(stack)
        }

        /// The lowest usable address and the usable size, as clone3 takes them.
        fn range(&self) -> (u64, u64) {
            let guard = self.len - STACK_SIZE;
            (self.base as u64 + guard as u64, STACK_SIZE as u64)
        }
    }

    // SAFETY: the mapping is owned by the `Stack` alone, and used by one child at a time,
    // under the slots' lock.
    unsafe impl Send for Stack {}

    impl Drop for Stack {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`, unmapped once; no child runs on it any more.
            unsafe { libc::munmap(self.base, self.len) };
        }
    }

    /// [`super::spawn_in_cgroup`] this way; `Err(Refused)` when the kernel refuses a step only
    /// this way takes (said once, and never tried again).
    pub(super) fn spawn(
        exec: &Exec,
        cgroup: BorrowedFd<'_>,
        stdout: Option<RawFd>,
        stderr: Option<RawFd>,
        record: Option<&SelfRecord>,
        creds: Option<&Credentials>,
    ) -> Result<Result<PidfdChild, CloneFailure>, Refused> {
        let mut slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.is_none() {
            let opened = (|| {
                Ok::<_, io::Error>(Slots {
                    null: open_null()?,
                    out: open_null()?,
                    err: open_null()?,
                    stack: Stack::new()?,
                })
            })();
            match opened {
                Ok(s) => *slots = Some(s),
                Err(e) => return Ok(Err(CloneFailure::Clone(e))),
            }
        }
        let Some(slots) = slots.as_ref() else {
            return Err(Refused);
        };
        let null = slots.null.as_raw_fd();
        if let Err(e) = put(stdout.unwrap_or(null), &slots.out)
            .and_then(|()| put(stderr.unwrap_or(null), &slots.err))
        {
            return Ok(Err(CloneFailure::Clone(e)));
        }
        let spawned = spawn_with_slots(exec, cgroup, slots, record, creds);
        // The slots must not keep the write ends of the unit's log pipes open: the log
        // copies would never see the end of its output.
        let emptied = put(null, &slots.out).and_then(|()| put(null, &slots.err));
        if let Err(e) = emptied {
            tracing::error!(error = %e, "cannot release a spawned unit's output descriptors");
        }
        spawned
    }

    fn spawn_with_slots(
        exec: &Exec,
        cgroup: BorrowedFd<'_>,
        slots: &Slots,
        record: Option<&SelfRecord>,
        creds: Option<&Credentials>,
    ) -> Result<Result<PidfdChild, CloneFailure>, Refused> {
        let ptrs = Pointers::of(exec);
        let report = SharedReport::default();
        let highest = [&slots.null, &slots.out, &slots.err]
            .iter()
            .map(|fd| fd.as_raw_fd())
            .max()
            .unwrap_or(2);
        let child_args = ChildArgs {
            exec,
            ptrs: &ptrs,
            stdio: [
                slots.null.as_raw_fd(),
                slots.out.as_raw_fd(),
                slots.err.as_raw_fd(),
            ],
            keep_below: (highest + 1) as libc::c_uint,
            report: &report,
            record,
            creds,
        };
        let (stack_base, stack_size) = slots.stack.range();
        let mut pidfd: RawFd = -1;
        let args = CloneArgs {
            flags: CLONE_PIDFD | CLONE_INTO_CGROUP | CLONE_VM | CLONE_VFORK | CLONE_FILES,
            pidfd: &mut pidfd as *mut RawFd as u64,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack_base,
            stack_size,
            cgroup: cgroup.as_raw_fd() as u64,
            ..CloneArgs::default()
        };
        let registered = register_pidfd_child(|| {
            // SAFETY: the stack lives as long as the slots, whose lock this thread holds, and
            // CLONE_VFORK suspends this thread until the child has exec'd or exited, after
            // which the child never runs on it again; `child_main` never returns.
            let ret = with_signals_blocked(|| unsafe {
                clone3_into(
                    &args,
                    child_main,
                    &child_args as *const ChildArgs<'_> as *mut c_void,
                )
            });
            if ret < 0 {
                return Err(io::Error::from_raw_os_error(-ret as i32));
            }
            // SAFETY: CLONE_PIDFD stored a new descriptor (close-on-exec) that we now own.
            Ok((ret as u32, unsafe { OwnedFd::from_raw_fd(pidfd) }))
        });
        let child = match registered {
            Ok(child) => child,
            // What the other way would be refused too: it tries and says so.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::EINVAL | libc::EPERM | libc::E2BIG)
                ) =>
            {
                return Err(Refused);
            }
            Err(e) => return Ok(Err(CloneFailure::Clone(e))),
        };
        // The child has exec'd (nothing reported) or exited (the tag says why).
        let tag = report.tag.load(Ordering::Acquire);
        if tag == 0 {
            return Ok(Ok(child));
        }
        child.reap_blocking();
        let error = io::Error::from_raw_os_error(report.errno.load(Ordering::Relaxed));
        match tag {
            FAILED_UNSHARE => {
                if !UNUSABLE.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %error,
                        "units' processes are created with a copy of the daemon's memory: \
                         close_range(CLOSE_RANGE_UNSHARE) was refused"
                    );
                }
                Err(Refused)
            }
            FAILED_RECORD => Ok(Err(CloneFailure::RunRecord(error))),
            _ => Ok(Err(CloneFailure::Exec(error))),
        }
    }
}
