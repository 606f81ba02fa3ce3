//! [`BoundedCommand`]: the one way launchgraph runs a short-lived helper (an exec probe,
//! `launchctl`, `node --version`, `openclaw doctor`) and gets its answer within known bounds.
//!
//! The helper gets exactly the environment it is given (nothing is inherited), stdin from
//! `/dev/null`, a process group of its own and, optionally, another identity. Its stdout and
//! stderr are read while it runs, each up to a cap (the excess is read and discarded, so the
//! helper never blocks on a full pipe). When it exits, or when its deadline passes, the whole
//! group is killed with SIGKILL, so nothing it started outlives the call; the same happens
//! when the future is dropped half way. Waiting for the helper after that kill is bounded too,
//! because a process in uninterruptible sleep does not die at once, and a caller must never
//! wait on it forever: the call then ends with [`BoundedError::NotReaped`].
//!
//! What a result means (a probe's verdict, a launchctl exit code) is the caller's business:
//! an exit, whatever its status, and a timeout are results, not errors.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::credentials::{Credentials, switch_in_child};
use super::running::signal_group;
use super::spawn::close_inherited_on_exec;
use super::track::spawn_tracked;

/// How long the pipes may stay open once the helper is gone and its group killed: only a
/// process that left the group can still hold them, and it is not worth waiting for.
pub(crate) const DEFAULT_OUTPUT_GRACE: Duration = Duration::from_millis(200);

/// How long to wait for the helper to be reaped once its group was killed. SIGKILL takes
/// effect at once unless the process sleeps uninterruptibly (a hung disk or network mount).
pub(crate) const DEFAULT_REAP_BOUND: Duration = Duration::from_secs(5);

/// What is kept of one output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// Not kept: the stream goes to `/dev/null`.
    Discard,
    /// The first `n` bytes.
    Head(usize),
    /// The last `n` bytes (where errors are).
    Tail(usize),
}

/// A helper command, its environment, identity and bounds. Build it, then [`run`](Self::run)
/// it, as often as needed.
#[derive(Debug, Clone)]
pub struct BoundedCommand {
    program: PathBuf,
    args: Vec<OsString>,
    env: BTreeMap<OsString, OsString>,
    dir: Option<PathBuf>,
    credentials: Option<Credentials>,
    deadline: Duration,
    stdout: Capture,
    stderr: Capture,
    output_grace: Duration,
    reap_bound: Duration,
}

/// How a helper ended and what it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedOutput {
    /// The helper's own exit status; after a timeout, the SIGKILL that ended it.
    pub status: ExitStatus,
    /// The deadline passed before the helper exited, and its group was killed.
    pub timed_out: bool,
    pub stdout: Vec<u8>,
    /// The helper wrote more to stdout than its cap: the excess was read and discarded.
    pub stdout_truncated: bool,
    pub stderr: Vec<u8>,
    /// As `stdout_truncated`, for stderr.
    pub stderr_truncated: bool,
    /// A pipe was still open when the output grace ran out: a process that left the group
    /// holds it, and what it writes later is not here.
    pub output_cut_short: bool,
    /// From the spawn to the exit, or to the deadline when it timed out.
    pub elapsed: Duration,
}

impl BoundedOutput {
    /// The exit code, when the helper exited (rather than being killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The signal that ended the helper, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }
}

/// Why a helper gave no result.
#[derive(Debug, thiserror::Error)]
pub enum BoundedError {
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot wait for {} (pid {pid}): {source}", program.display())]
    Wait {
        program: PathBuf,
        pid: u32,
        #[source]
        source: io::Error,
    },
    /// Its group was killed at the deadline, and it still had not exited `waited` later.
    #[error(
        "{} (pid {pid}) gave no answer within {}; its process group was killed, but it was \
         not gone {} later",
        program.display(),
        humantime::format_duration(*deadline),
        humantime::format_duration(*waited)
    )]
    NotReaped {
        program: PathBuf,
        pid: u32,
        deadline: Duration,
        waited: Duration,
    },
}

impl BoundedCommand {
    /// `program`, with no arguments, an empty environment, the caller's working directory and
    /// identity, both outputs discarded, and `deadline` as the bound on its run.
    pub fn new(program: impl Into<PathBuf>, deadline: Duration) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            dir: None,
            credentials: None,
            deadline,
            stdout: Capture::Discard,
            stderr: Capture::Discard,
            output_grace: DEFAULT_OUTPUT_GRACE,
            reap_bound: DEFAULT_REAP_BOUND,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Adds one variable to the helper's environment, which holds nothing else.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .insert(key.as_ref().to_owned(), value.as_ref().to_owned());
        self
    }

    pub(crate) fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Runs the helper as this identity (supplementary groups, group, user), which needs
    /// launchgraph to be root.
    pub fn credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.credentials = credentials;
        self
    }

    pub fn stdout(mut self, capture: Capture) -> Self {
        self.stdout = capture;
        self
    }

    pub fn stderr(mut self, capture: Capture) -> Self {
        self.stderr = capture;
        self
    }

    /// How long to keep reading output once the helper is gone (default
    /// [`DEFAULT_OUTPUT_GRACE`]).
    pub fn output_grace(mut self, grace: Duration) -> Self {
        self.output_grace = grace;
        self
    }

    /// How long to wait for the helper after killing its group (default
    /// [`DEFAULT_REAP_BOUND`]).
    pub fn reap_bound(mut self, bound: Duration) -> Self {
        self.reap_bound = bound;
        self
    }

    /// Runs the helper (see the module documentation). Must be called inside a tokio runtime.
    ///
    /// Takes at most the deadline, plus the reap bound when the deadline passed, plus the
    /// output grace.
    pub async fn run(&self) -> Result<BoundedOutput, BoundedError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(stdio(self.stdout))
            .stderr(stdio(self.stderr))
            // Its own group, so one signal reaches everything it started.
            .process_group(0)
            // Belt and braces for the helper itself; the guard below kills its group.
            .kill_on_drop(true);
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        // Descriptors the daemon inherited are marked close-on-exec once, when it starts
        // (`mark_inherited_close_on_exec`). Without another identity to take on, no code runs
        // in the child: the standard library then starts the helper with posix_spawn rather
        // than a fork of the whole daemon, which every probe would pay for.
        if let Some(creds) = self.credentials.clone() {
            // SAFETY: the closure runs in the forked child and only makes async-signal-safe
            // system calls (close_range or fcntl, setgroups, setgid, setuid) on memory
            // prepared before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    close_inherited_on_exec();
                    switch_in_child(&creds)
                });
            }
        }

        let start = Instant::now();
        let mut child = spawn_tracked(&mut cmd).map_err(|source| BoundedError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        drop(cmd);
        let pid = child.pid();
        let mut group = GroupGuard(Some(pid));
        let mut stdout = Reader::new(child.child.stdout.take(), self.stdout);
        let mut stderr = Reader::new(child.child.stderr.take(), self.stderr);

        let deadline = crate::clock::deadline_tokio(self.deadline);
        let exited = loop {
            tokio::select! {
                status = child.wait() => break Some(status),
                () = stdout.read_some() => {}
                () = stderr.read_some() => {}
                () = tokio::time::sleep_until(deadline) => break None,
            }
        };
        let elapsed = start.elapsed();

        // Whatever is left of the group goes now, at the deadline and after an exit alike.
        // Once the helper is reaped its pid (the group's id) is not reused while the group
        // still has members, so this reaches only what the helper left behind.
        group.kill();
        let wait_failed = |source| BoundedError::Wait {
            program: self.program.clone(),
            pid,
            source,
        };
        let (status, timed_out) = match exited {
            Some(status) => (status.map_err(wait_failed)?, false),
            None => match tokio::time::timeout(self.reap_bound, child.wait()).await {
                Ok(status) => (status.map_err(wait_failed)?, true),
                Err(_) => {
                    return Err(BoundedError::NotReaped {
                        program: self.program.clone(),
                        pid,
                        deadline: self.deadline,
                        waited: self.reap_bound,
                    });
                }
            },
        };

        let drained = tokio::time::timeout(self.output_grace, async {
            while !(stdout.done() && stderr.done()) {
                tokio::select! {
                    () = stdout.read_some() => {}
                    () = stderr.read_some() => {}
                }
            }
        })
        .await
        .is_ok();
        if !drained {
            stdout.close();
            stderr.close();
        }
        group.disarm();

        Ok(BoundedOutput {
            status,
            timed_out,
            stdout_truncated: stdout.truncated,
            stdout: stdout.into_bytes(),
            stderr_truncated: stderr.truncated,
            stderr: stderr.into_bytes(),
            output_cut_short: !drained,
            elapsed,
        })
    }
}

fn stdio(capture: Capture) -> Stdio {
    match capture {
        Capture::Discard => Stdio::null(),
        Capture::Head(_) | Capture::Tail(_) => Stdio::piped(),
    }
}

/// Kills the helper's process group with SIGKILL when dropped (the future was dropped half
/// way) or when told to.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            // ESRCH: the group is already gone, which is the point. `signal_group` refuses
            // launchgraph's own group, so a helper that failed to get its own never takes
            // launchgraph down with it.
            let _ = signal_group(pgid, Signal::SIGKILL);
        }
    }

    /// The helper is reaped and its group killed: nothing is left to kill.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One output pipe, read as it comes, kept up to its cap.
struct Reader<R> {
    pipe: Option<R>,
    capture: Capture,
    kept: Vec<u8>,
    truncated: bool,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(pipe: Option<R>, capture: Capture) -> Self {
        Self {
            pipe,
            capture,
            kept: Vec::new(),
            truncated: false,
        }
    }

    fn done(&self) -> bool {
        self.pipe.is_none()
    }

    /// Reads one chunk; at the end of the stream (or a read error) the pipe is closed. Never
    /// returns once closed, so it can sit in a `select!` beside the others.
    async fn read_some(&mut self) {
        let Some(pipe) = &mut self.pipe else {
            return std::future::pending().await;
        };
        let mut chunk = [0u8; 8192];
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => self.pipe = None,
            Ok(n) => self.keep(&chunk[..n]),
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        match self.capture {
            Capture::Discard => {}
            Capture::Head(cap) => {
                let room = cap.saturating_sub(self.kept.len());
                if bytes.len() > room {
                    self.truncated = true;
                }
                self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Capture::Tail(cap) => {
                self.kept.extend_from_slice(bytes);
                if self.kept.len() > cap {
                    self.truncated = true;
                    let cut = self.kept.len() - cap;
                    self.kept.drain(..cut);
                }
            }
        }
    }

    /// Stops reading a pipe that someone outside the group still holds open.
    fn close(&mut self) {
        self.pipe = None;
    }

    fn into_bytes(self) -> Vec<u8> {
        self.kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(capture: Capture, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut r = Reader::<tokio::io::Empty>::new(None, capture);
        for c in chunks {
            r.keep(c);
        }
        (r.kept, r.truncated)
    }

    #[test]
    fn head_keeps_the_first_bytes_and_flags_the_rest() {
        assert_eq!(
            kept(Capture::Head(4), &[b"ab", b"cd"]),
            (b"abcd".to_vec(), false)
        );
        assert_eq!(
            kept(Capture::Head(4), &[b"abc", b"def"]),
            (b"abcd".to_vec(), true)
        );
    }

    #[test]
    fn tail_keeps_the_last_bytes_and_flags_the_rest() {
        assert_eq!(
            kept(Capture::Tail(4), &[b"abcd"]),
            (b"abcd".to_vec(), false)
        );
        assert_eq!(
            kept(Capture::Tail(4), &[b"abc", b"def"]),
            (b"cdef".to_vec(), true)
        );
    }
}
