//! Starting an `exec` unit: its exact environment, working directory, identity, standard
//! streams (and no other descriptor) and its own session. Why a start failed is `error`'s.
//!
//! Everything that can fail with a useful message is checked before the fork (program,
//! working directory, user and group, log files), so a failed start names the unit, the
//! program and the cause. What runs after the start is `running`'s business.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

#[cfg(target_os = "linux")]
use super::cgroup::UnitCgroup;
#[cfg(target_os = "linux")]
use super::clone::{CloneFailure, Exec, spawn_in_cgroup};
use super::credentials::{Credentials, plan_credentials, switch_in_child};
use super::error::{SpawnCause, SpawnError};
use super::logs::{LogFile, Sink, cloexec_pipe, pump};
use super::record::SelfRecord;
use super::running::{UnitChild, UnitProcess};
use super::track::spawn_tracked;
use crate::unit::{CANONICAL_PATH, ExecSpec};

/// The environment a unit's process gets, exactly: the unit's `env`, plus
/// `PATH = CANONICAL_PATH` when `env` has no `PATH`, plus `HOME`, `USER` and `LOGNAME` from
/// the user entry when the unit runs as another user and `env` does not set them. Nothing is
/// inherited from launchgraph's own environment.
pub fn unit_environment(spec: &ExecSpec, creds: Option<&Credentials>) -> BTreeMap<String, String> {
    let mut env = spec.env.clone();
    env.entry("PATH".into())
        .or_insert_with(|| CANONICAL_PATH.into());
    if let Some(account) = creds.and_then(|c| c.account.as_ref()) {
        env.entry("HOME".into())
            .or_insert_with(|| account.home.to_string_lossy().into_owned());
        env.entry("USER".into())
            .or_insert_with(|| account.name.clone());
        env.entry("LOGNAME".into())
            .or_insert_with(|| account.name.clone());
    }
    env
}

/// What the blocking preparation hands to the fork.
struct Prepared {
    creds: Option<Credentials>,
    env: BTreeMap<String, String>,
    stdout: Option<LogFile>,
    /// `None` with `merged`: stderr shares stdout's file.
    stderr: Option<LogFile>,
    merged: bool,
    /// The unit's cgroup and what its child execs, when the process is created in it (Linux,
    /// as root; see `clone`).
    #[cfg(target_os = "linux")]
    in_cgroup: Option<(UnitCgroup, Exec)>,
}

/// Starts the unit's process. Must be called inside a tokio runtime: the process's exit and
/// its log copies are handled by tasks spawned on it.
///
/// The process gets: `spec.command` (argv[0] absolute), the environment of
/// [`unit_environment`], `spec.working_directory`, stdin from `/dev/null`, stdout and stderr
/// into their log files (or `/dev/null` when unset; into one pipe and one file when both name
/// the same path, compared as written, so their lines keep their order), a new session and
/// process group of its own (so no terminal signal reaches it and the group can be signalled
/// as a whole), and, when `user`/`group` is set, that identity with its supplementary groups.
/// On Linux as root it is created in a cgroup of its own (see `cgroup`), which every
/// descendant stays in, whatever session or process group it moves to.
pub async fn spawn_unit(spec: &ExecSpec, unit: &str) -> Result<UnitProcess, SpawnError> {
    spawn(spec, unit, None).await
}

/// [`spawn_unit`], and the process writes its run record (`record`) between fork and exec, as
/// root, after it leads its own session: the program never runs unrecorded. When the record
/// cannot be written the program does not run and the error is [`SpawnCause::RunRecord`].
pub async fn spawn_unit_recorded(
    spec: &ExecSpec,
    unit: &str,
    record: SelfRecord,
) -> Result<UnitProcess, SpawnError> {
    spawn(spec, unit, Some(record)).await
}

async fn spawn(
    spec: &ExecSpec,
    unit: &str,
    record: Option<SelfRecord>,
) -> Result<UnitProcess, SpawnError> {
    let fail = |cause| SpawnError::new(unit, spec, cause);
    // Shared with the child's closure, which reads it after the fork.
    let record = record.map(std::sync::Arc::new);
    let Some(program) = spec.command.first().map(PathBuf::from) else {
        return Err(fail(SpawnCause::EmptyCommand));
    };

    // User lookups may block on directory services, and opening logs on the disk.
    let prepared = {
        let (spec, unit, record) = (spec.clone(), unit.to_owned(), record.clone());
        tokio::task::spawn_blocking(move || prepare(&spec, &unit, record.as_deref()))
            .await
            .map_err(|e| fail(SpawnCause::Io(io::Error::other(e))))??
    };

    let mut sinks = Vec::new();
    let mut open_sink = |log: LogFile| -> io::Result<OwnedFd> {
        let (reader, writer) = cloexec_pipe()?;
        sinks.push(Sink { log, reader });
        Ok(writer)
    };
    let pipe_failed = |e| fail(SpawnCause::Io(e));
    let stdout_writer = match prepared.stdout {
        Some(log) => Some(open_sink(log).map_err(pipe_failed)?),
        None => None,
    };
    let stderr_writer = match (prepared.stderr, prepared.merged, &stdout_writer) {
        (Some(log), _, _) => Some(open_sink(log).map_err(pipe_failed)?),
        (None, true, Some(w)) => Some(w.try_clone().map_err(pipe_failed)?),
        (None, _, _) => None,
    };
    let uid = prepared.creds.as_ref().map(|c| c.uid);
    let started = Started {
        spec,
        unit,
        program: &program,
        env: &prepared.env,
        creds: prepared.creds.as_ref(),
        record: record.as_ref(),
        stdout: stdout_writer,
        stderr: stderr_writer,
    };
    #[cfg(target_os = "linux")]
    let child = match prepared.in_cgroup {
        Some((cgroup, exec)) => start_in_cgroup(started, cgroup, &exec),
        None => start_with_command(started),
    };
    #[cfg(not(target_os = "linux"))]
    let child = start_with_command(started);
    let child = match child {
        Ok(child) => child,
        Err(failed) => {
            // Nothing ran; a record the child may have left names a dead pid.
            if let Some(record) = &record {
                let _ = std::fs::remove_file(record.path());
            }
            return Err(fail(match (failed, &record) {
                (Failed::RunRecord(error), Some(record)) => SpawnCause::RunRecord {
                    path: record.path().to_owned(),
                    error,
                },
                (Failed::RunRecord(error) | Failed::Exec(error), _) => {
                    classify_exec_error(error, uid)
                }
            }));
        }
    };

    let pumps: Vec<_> = sinks
        .into_iter()
        .map(|sink| tokio::spawn(pump(unit.to_owned(), sink)))
        .collect();
    let logs = (!pumps.is_empty()).then(|| {
        tokio::spawn(async move {
            for pump in pumps {
                let _ = pump.await;
            }
        })
    });
    Ok(UnitProcess::start(unit, spec, child, logs))
}

/// What both ways of starting the process take. The write ends of the log pipes are closed
/// once the process has them, or the log copies would never see the end of the output.
struct Started<'a> {
    spec: &'a ExecSpec,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    unit: &'a str,
    program: &'a Path,
    env: &'a BTreeMap<String, String>,
    creds: Option<&'a Credentials>,
    record: Option<&'a std::sync::Arc<SelfRecord>>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

/// Why the child did not get to run its program.
enum Failed {
    /// Writing its run record failed, with this error.
    RunRecord(io::Error),
    /// Anything else: the exec, the working directory, the credentials.
    Exec(io::Error),
}

/// Creates the process in `cgroup`; when clone3 is refused, takes the `Command` path.
#[cfg(target_os = "linux")]
fn start_in_cgroup(s: Started<'_>, cgroup: UnitCgroup, exec: &Exec) -> Result<UnitChild, Failed> {
    use std::os::fd::AsRawFd;
    let spawned = spawn_in_cgroup(
        exec,
        cgroup.dir_fd(),
        s.stdout.as_ref().map(AsRawFd::as_raw_fd),
        s.stderr.as_ref().map(AsRawFd::as_raw_fd),
        s.record.map(|r| &**r),
        s.creds,
    );
    match spawned {
        Ok(child) => Ok(UnitChild::InCgroup(child, cgroup)),
        Err(CloneFailure::RunRecord(e)) => Err(Failed::RunRecord(e)),
        Err(CloneFailure::Exec(e)) => Err(Failed::Exec(e)),
        Err(CloneFailure::Clone(e)) => {
            // A refusal was said once (see `clone`); anything else is said here.
            if super::clone::usable().is_ok() {
                tracing::warn!(unit = s.unit, error = %e, "cannot create the process in the unit's cgroup; starting it without");
            }
            cgroup.forget();
            start_with_command(s)
        }
    }
}

/// Starts the process with `tokio::process::Command` and the unit's steps in `pre_exec`.
fn start_with_command(s: Started<'_>) -> Result<UnitChild, Failed> {
    let mut cmd = tokio::process::Command::new(s.program);
    cmd.args(&s.spec.command[1..])
        .env_clear()
        .envs(s.env)
        .current_dir(&s.spec.working_directory)
        .stdin(Stdio::null());
    cmd.stdout(s.stdout.map_or_else(Stdio::null, Stdio::from));
    cmd.stderr(s.stderr.map_or_else(Stdio::null, Stdio::from));

    // The child says through this pipe that it was the run record that failed, not the exec.
    let (record_failed_reader, record_failed_writer) = match &s.record {
        Some(_) => {
            let (r, w) = cloexec_pipe().map_err(Failed::Exec)?;
            (Some(r), Some(w))
        }
        None => (None, None),
    };
    let creds = s.creds.cloned();
    // SAFETY: the closure runs in the forked child and only makes async-signal-safe system
    // calls (close_range or fcntl, setsid, open, write, rename, setgroups, setgid, setuid) on
    // memory prepared before the fork.
    unsafe {
        use std::os::fd::AsRawFd;
        let record = s.record.cloned();
        let record_failed = record_failed_writer.as_ref().map(|w| w.as_raw_fd());
        cmd.pre_exec(move || {
            close_inherited_on_exec();
            reset_ignored_signals();
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            if let (Some(record), Some(report)) = (&record, record_failed) {
                if let Err(errno) = record.write_for_this_process() {
                    libc::write(report, b"r".as_ptr().cast(), 1);
                    return Err(io::Error::from_raw_os_error(errno));
                }
            }
            match &creds {
                Some(c) => switch_in_child(c),
                None => Ok(()),
            }
        });
    }

    let spawned = spawn_tracked(&mut cmd);
    // Our copies of the pipes' write ends live in `cmd`: close them now, or the log copies
    // would never see the end of the output.
    drop(cmd);
    drop(record_failed_writer);
    match spawned {
        Ok(child) => Ok(UnitChild::Command(child)),
        // The child wrote to the pipe before it reported the error and exited.
        Err(error) if said_something(record_failed_reader) => Err(Failed::RunRecord(error)),
        Err(error) => Err(Failed::Exec(error)),
    }
}

/// In a forked child: marks every descriptor above 2 close-on-exec, so that none that
/// launchgraph inherited without the flag (a shell's redirection, a root-only file) reaches
/// the program, whoever it runs as. Marked rather than closed, so that the standard library's
/// own close-on-exec pipe, which reports a failed exec to the parent, works until the exec.
///
/// Async-signal-safe: close_range(2) with CLOSE_RANGE_CLOEXEC (Linux 5.11,
/// https://man7.org/linux/man-pages/man2/close_range.2.html), else getrlimit(2) and fcntl(2)
/// on every descriptor number below the soft limit (macOS, older kernels).
pub(crate) fn close_inherited_on_exec() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a system call on descriptor numbers only.
        let marked = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if marked == 0 {
            return;
        }
    }
    mark_close_on_exec_below_the_limit();
}

/// Sets every signal that is ignored back to its default action, SIGPIPE included: an ignored
/// signal stays ignored across exec (signal(7), https://man7.org/linux/man-pages/man7/signal.7.html),
/// so a daemon started under `nohup`, or in the background of a shell (SIGINT and SIGQUIT
/// ignored), would otherwise hand that to every program it starts, which then no longer
/// stops on its stop signal. Handled signals need nothing: exec resets them.
///
/// Async-signal-safe (sigaction(2)); for the daemon at start, and in a unit's forked child.
pub(crate) fn reset_ignored_signals() {
    for signal in 1..SIGNALS {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP && is_ignored(signal) {
            set_default(signal);
        }
    }
}

/// Every signal whose action is not the default back to it, in one pass: the handled ones, as
/// exec would (so that no handler of the daemon runs in a child that shares its memory, once
/// signals are unblocked there), and the ignored ones, as [`reset_ignored_signals`] does. One
/// query a signal: this runs between a unit's clone and its exec, while the daemon waits.
///
/// Async-signal-safe (rt_sigaction(2)), for a unit's cloned child.
#[cfg(target_os = "linux")]
pub(super) fn reset_signal_actions() {
    for signal in 1..SIGNALS {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP && !has_default_action(signal) {
            set_default(signal);
        }
    }
}

/// The kernel's `struct sigaction` for rt_sigaction(2), which, unlike the C library's
/// sigaction, also reaches the signals the C library keeps for itself (32 and 33 on glibc).
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: libc::c_ulong,
    flags: libc::c_ulong,
    restorer: libc::c_ulong,
    mask: u64,
}

#[cfg(target_os = "linux")]
fn is_ignored(signal: libc::c_int) -> bool {
    current_handler(signal) == Some(libc::SIG_IGN as libc::c_ulong)
}

#[cfg(target_os = "linux")]
fn has_default_action(signal: libc::c_int) -> bool {
    current_handler(signal).is_none_or(|handler| handler == libc::SIG_DFL as libc::c_ulong)
}

/// The handler of `signal` (SIG_DFL, SIG_IGN or a function); `None` when it cannot be read.
#[cfg(target_os = "linux")]
fn current_handler(signal: libc::c_int) -> Option<libc::c_ulong> {
    let mut current = KernelSigaction::default();
    // SAFETY: rt_sigaction reads nothing and writes `current`, of the size passed.
    let read = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            std::ptr::null::<KernelSigaction>(),
            &mut current as *mut KernelSigaction,
            std::mem::size_of::<u64>(),
        )
    };
    (read == 0).then_some(current.handler)
}

#[cfg(target_os = "linux")]
fn set_default(signal: libc::c_int) {
    let default = KernelSigaction::default(); // SIG_DFL is 0
    // SAFETY: rt_sigaction reads `default` and writes nothing.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            &default as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            std::mem::size_of::<u64>(),
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn is_ignored(signal: libc::c_int) -> bool {
    // SAFETY: sigaction writes the zeroed local struct it is given.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
    }
}

#[cfg(not(target_os = "linux"))]
fn set_default(signal: libc::c_int) {
    // SAFETY: sigaction reads the zeroed local struct (SIG_DFL, no flags, empty mask).
    unsafe {
        let default: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, &default, std::ptr::null_mut());
    }
}

/// One past the highest signal number: 64 real-time signals on Linux, 31 on macOS.
#[cfg(target_os = "linux")]
const SIGNALS: libc::c_int = 65;
#[cfg(not(target_os = "linux"))]
const SIGNALS: libc::c_int = 32;

/// The portable way of [`close_inherited_on_exec`]: fcntl(2) on every descriptor number
/// from 3 to the soft RLIMIT_NOFILE.
fn mark_close_on_exec_below_the_limit() {
    // Bounded even with an unlimited soft limit: Linux's default nr_open, far above macOS's.
    const MOST: u64 = 1 << 20;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given; fcntl takes descriptor numbers only.
    unsafe {
        let end = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur.min(MOST)
        } else {
            MOST
        };
        for fd in 3..end as libc::c_int {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Whether anything was written to a pipe. Never blocks: a child forked at the same moment by
/// another thread may hold a copy of the write end until its own exec.
fn said_something(reader: Option<OwnedFd>) -> bool {
    use std::os::fd::AsRawFd;
    let Some(reader) = reader else { return false };
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut file = std::fs::File::from(reader);
    let mut byte = [0u8; 1];
    matches!(io::Read::read(&mut file, &mut byte), Ok(1))
}

/// Checks what can be checked before the fork, creates the run records' directory (owner
/// only) and the record's temporary file, and opens the logs. Blocking.
///
/// The temporary file is created here, not by the child: creating a file is the slow part of
/// writing the record (on ext4 without a journal, a new inode skips every inode deleted in the
/// last minutes: torvalds/linux:fs/ext4/ialloc.c, `recently_deleted`), and the child runs
/// while the thread that cloned it waits, so whatever it does delays the next unit's start.
/// Here it runs beside the starts, and the child only opens the file, writes and renames it.
fn prepare(
    spec: &ExecSpec,
    unit: &str,
    record: Option<&SelfRecord>,
) -> Result<Prepared, SpawnError> {
    let fail = |cause| SpawnError::new(unit, spec, cause);
    if let Some(record) = record {
        use std::os::unix::fs::DirBuilderExt;
        let unrecorded = |path: &Path, error| {
            fail(SpawnCause::RunRecord {
                path: path.to_owned(),
                error,
            })
        };
        if let Some(dir) = record.path().parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|error| unrecorded(dir, error))?;
        }
        record
            .create_temp()
            .map_err(|error| unrecorded(record.temp_path(), error))?;
    }
    let running_as_root = nix::unistd::geteuid().is_root();
    let creds = plan_credentials(spec, unit, running_as_root)?;
    check_working_directory(&spec.working_directory).map_err(fail)?;
    check_program(Path::new(&spec.command[0])).map_err(fail)?;

    let owner = creds.as_ref().map(|c| (c.uid, c.gid));
    let open = |path: &PathBuf| {
        LogFile::open(path, spec.log_max_bytes, spec.log_keep, owner).map_err(|error| {
            fail(SpawnCause::Log {
                path: path.clone(),
                error,
            })
        })
    };
    let merged = spec.stdout.is_some() && spec.stdout == spec.stderr;
    let stdout = spec.stdout.as_ref().map(open).transpose()?;
    let stderr = match merged {
        true => None,
        false => spec.stderr.as_ref().map(open).transpose()?,
    };
    let env = unit_environment(spec, creds.as_ref());
    // Made last: a start refused by a check above creates no directory.
    #[cfg(target_os = "linux")]
    let in_cgroup = UnitCgroup::create(unit).and_then(|cgroup| {
        match Exec::new(&spec.command, &env, &spec.working_directory) {
            Ok(exec) => Some((cgroup, exec)),
            // The other path says what is wrong with it.
            Err(_) => None,
        }
    });
    Ok(Prepared {
        creds,
        env,
        stdout,
        stderr,
        merged,
        #[cfg(target_os = "linux")]
        in_cgroup,
    })
}

fn check_working_directory(dir: &Path) -> Result<(), SpawnCause> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(SpawnCause::WorkingDirectoryNotADirectory(dir.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(SpawnCause::WorkingDirectoryMissing(dir.to_owned()))
        }
        Err(e) => Err(SpawnCause::Io(e)),
    }
}

/// Whether the target user may execute it is only known at exec (see `classify_exec_error`).
fn check_program(program: &Path) -> Result<(), SpawnCause> {
    match std::fs::metadata(program) {
        Ok(m) if !m.is_file() => Err(SpawnCause::NotExecutable("not a regular file")),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(SpawnCause::NotExecutable(
            "no execute permission bit is set",
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SpawnCause::ProgramNotFound),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            Err(SpawnCause::PermissionDenied { uid: None })
        }
        Err(e) => Err(SpawnCause::Io(e)),
    }
}

/// Maps the error of a spawn whose program passed `check_program`.
fn classify_exec_error(e: io::Error, uid: Option<u32>) -> SpawnCause {
    match e.raw_os_error() {
        Some(libc::ENOENT) => SpawnCause::InterpreterNotFound,
        Some(libc::EACCES) | Some(libc::EPERM) => SpawnCause::PermissionDenied { uid },
        Some(libc::ENOEXEC) => SpawnCause::NotExecutable("not a format this system can execute"),
        _ => SpawnCause::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::credentials::Account;

    use crate::process::test_spec as spec;

    #[test]
    fn environment_is_the_units_plus_the_canonical_path() {
        let env = unit_environment(&spec(&[("A", "1")]), None);
        assert_eq!(
            env,
            BTreeMap::from([
                ("A".into(), "1".into()),
                ("PATH".into(), CANONICAL_PATH.into())
            ])
        );
        let env = unit_environment(&spec(&[("PATH", "/x")]), None);
        assert_eq!(env["PATH"], "/x");
    }

    #[test]
    fn a_user_adds_home_user_logname_unless_the_unit_set_them() {
        let creds = Credentials {
            uid: 501,
            gid: 20,
            groups: vec![20],
            account: Some(Account {
                name: "ann".into(),
                home: "/Users/ann".into(),
            }),
        };
        let env = unit_environment(&spec(&[("HOME", "/srv/app")]), Some(&creds));
        assert_eq!(env["HOME"], "/srv/app");
        assert_eq!(env["USER"], "ann");
        assert_eq!(env["LOGNAME"], "ann");
    }

    /// The fallback for kernels without close_range (and macOS) marks a descriptor that
    /// lacks close-on-exec. Run in this process: marking its own descriptors is harmless.
    #[test]
    fn the_portable_fallback_marks_descriptors_close_on_exec() {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: dup of a descriptor this test owns; closed below.
        let leaked = unsafe { libc::dup(file.as_raw_fd()) };
        assert!(leaked > 2);
        let cloexec = || unsafe { libc::fcntl(leaked, libc::F_GETFD) } & libc::FD_CLOEXEC;
        assert_eq!(cloexec(), 0, "dup leaves close-on-exec unset");
        mark_close_on_exec_below_the_limit();
        assert_eq!(cloexec(), libc::FD_CLOEXEC);
        // SAFETY: the descriptor dup made above.
        unsafe { libc::close(leaked) };
    }
}
