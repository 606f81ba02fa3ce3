//! A started unit's process: learning of its exit the moment it happens, killing what is left
//! of its process group then, stopping it, and signalling its group.
//!
//! A monitor task owns the child. When the main process exits it sends SIGKILL to the rest of
//! the process group, as launchd does ("When a job dies, launchd kills any remaining processes
//! with the same process group ID"), so no grandchild outlives its unit, then stops whatever is
//! left in the unit's cgroup (Linux, as root: what left the group with `setsid`) as the unit is
//! stopped, then publishes the [`ExitReport`]. This module does not decide whether to restart:
//! that is the engine's call.

use std::fmt;
use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cgroup::UnitCgroup;
#[cfg(target_os = "linux")]
use super::track::PidfdChild;
use super::track::TrackedChild;
use crate::unit::ExecSpec;

/// How a unit's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitReport {
    pub pid: u32,
    /// `None` only when the status was lost: waiting failed, which means something reaped the
    /// process behind launchgraph's back. Count it as a failure.
    pub status: Option<ExitStatus>,
    /// The exit code, when it exited.
    pub code: Option<i32>,
    /// The signal number, when a signal killed it.
    pub signal: Option<i32>,
    pub core_dumped: bool,
    /// When launchgraph learned of the exit.
    pub at: Instant,
}

impl ExitReport {
    fn new(pid: u32, status: Option<ExitStatus>, at: Instant) -> Self {
        Self {
            pid,
            status,
            code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            core_dumped: status.is_some_and(|s| s.core_dumped()),
            at,
        }
    }

    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}"),
            (None, Some(sig)) => {
                match Signal::try_from(sig) {
                    Ok(s) => write!(f, "killed by {s} (signal {sig})")?,
                    Err(_) => write!(f, "killed by signal {sig}")?,
                }
                if self.core_dumped {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
            (None, None) => f.write_str("ended with an unknown status"),
        }
    }
}

/// How [`UnitProcess::stop`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// It had exited before the stop signal was sent.
    AlreadyExited,
    /// It exited within the timeout after the stop signal.
    Exited,
    /// It outlived the timeout and was killed with SIGKILL.
    Killed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    pub outcome: StopOutcome,
    pub exit: ExitReport,
}

/// Sends `signal` to every process of the process group `pgid`.
///
/// Refuses (`EINVAL`) pgid 0 and 1 and launchgraph's own group: `killpg` would read them as
/// "my own group" or reach far more than a unit. `ESRCH` means the group is gone.
pub fn signal_group(pgid: u32, signal: Signal) -> nix::Result<()> {
    let pgid = i32::try_from(pgid).map_err(|_| Errno::EINVAL)?;
    if pgid <= 1 || pgid == nix::unistd::getpgrp().as_raw() {
        return Err(Errno::EINVAL);
    }
    killpg(Pid::from_raw(pgid), signal)
}

/// A running (or exited) `exec` unit, the leader of its own session and process group.
///
/// Dropping it does not stop the process: the monitor task still collects its exit and kills
/// the rest of its group then. Stop it first with [`stop`](Self::stop).
#[derive(Debug)]
pub struct UnitProcess {
    unit: String,
    pid: u32,
    stop_signal: Signal,
    stop_timeout: Duration,
    exit: watch::Receiver<Option<ExitReport>>,
    logs: Option<JoinHandle<()>>,
}

/// A unit's main process, however it was started.
pub(crate) enum UnitChild {
    /// Started by `Command`: its process group is all there is of the unit.
    Command(TrackedChild),
    /// Created in the unit's cgroup (see `clone`), which holds everything it starts.
    #[cfg(target_os = "linux")]
    InCgroup(PidfdChild, UnitCgroup),
}

impl UnitChild {
    fn pid(&self) -> u32 {
        match self {
            Self::Command(c) => c.pid(),
            #[cfg(target_os = "linux")]
            Self::InCgroup(c, _) => c.pid(),
        }
    }

    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            Self::Command(c) => c.wait().await,
            #[cfg(target_os = "linux")]
            Self::InCgroup(c, _) => c.wait().await,
        }
    }

    fn into_cgroup(self) -> Option<UnitCgroup> {
        match self {
            Self::Command(_) => None,
            #[cfg(target_os = "linux")]
            Self::InCgroup(_, cgroup) => Some(cgroup),
        }
    }
}

impl UnitProcess {
    pub(crate) fn start(
        unit: &str,
        spec: &ExecSpec,
        mut child: UnitChild,
        logs: Option<JoinHandle<()>>,
    ) -> Self {
        let pid = child.pid();
        let (tx, exit) = watch::channel(None);
        let unit_name = unit.to_owned();
        let (stop_signal, stop_timeout) = (spec.stop_signal.0, spec.stop_timeout);
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(unit = unit_name, pid, error = %e, "lost the exit status of a unit's process");
                    None
                }
            };
            let at = Instant::now();
            // The group outlives its leader while any member lives, and a pgid is not reused
            // while its group exists, so this reaches only what is left of this unit. (Once
            // empty, its id could only be taken by a new group leader between the reap above
            // and this call.)
            match signal_group(pid, Signal::SIGKILL) {
                Ok(()) => {
                    tracing::debug!(
                        unit = unit_name,
                        pgid = pid,
                        "killed what was left of the process group"
                    );
                }
                Err(Errno::ESRCH) => {}
                Err(e) => {
                    tracing::warn!(unit = unit_name, pgid = pid, error = %e, "cannot kill the rest of the process group");
                }
            }
            // What left the group is still in the unit's cgroup. The report waits for it to
            // be gone, so that a stopped unit has nothing left running.
            if let Some(cgroup) = child.into_cgroup() {
                cgroup.stop_rest(pid, stop_signal, stop_timeout).await;
            }
            tx.send_replace(Some(ExitReport::new(pid, status, at)));
        });
        Self {
            unit: unit.to_owned(),
            pid,
            stop_signal: spec.stop_signal.0,
            stop_timeout: spec.stop_timeout,
            exit,
            logs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The process group (and session) id: the process leads both.
    pub fn pgid(&self) -> u32 {
        self.pid
    }

    /// The exit report, if the process has exited.
    pub fn try_exit(&self) -> Option<ExitReport> {
        *self.exit.borrow()
    }

    /// Waits for the main process to exit. Cancel-safe; once it has exited, returns at once.
    pub async fn wait(&mut self) -> ExitReport {
        exit_of(self.exit.clone()).await
    }

    /// A future that resolves when the main process exits, independent of `self`: for
    /// `select!`, or to hand to a task that reports the exit as an event.
    pub fn exited(&self) -> impl Future<Output = ExitReport> + Send + 'static {
        exit_of(self.exit.clone())
    }

    /// Sends `signal` to the process group, waits up to `timeout` for the main process to
    /// exit, then sends SIGKILL to the group and waits for the exit. Either way the rest of
    /// the group is killed when the main process exits.
    ///
    /// The wait after SIGKILL is not bounded: a process only ignores SIGKILL while stuck in
    /// the kernel. Callers that must bound it wrap this in a timeout.
    pub async fn stop(&mut self, signal: Signal, timeout: Duration) -> StopReport {
        if let Some(exit) = self.try_exit() {
            return StopReport {
                outcome: StopOutcome::AlreadyExited,
                exit,
            };
        }
        self.send_to_group(signal);
        if let Ok(exit) = tokio::time::timeout(timeout, self.wait()).await {
            return StopReport {
                outcome: StopOutcome::Exited,
                exit,
            };
        }
        tracing::info!(
            unit = self.unit,
            pgid = self.pid,
            ?timeout,
            "did not stop in time; sending SIGKILL"
        );
        self.send_to_group(Signal::SIGKILL);
        StopReport {
            outcome: StopOutcome::Killed,
            exit: self.wait().await,
        }
    }

    /// [`stop`](Self::stop) with the unit's `stop-signal` and `stop-timeout`.
    pub async fn stop_as_declared(&mut self) -> StopReport {
        self.stop(self.stop_signal, self.stop_timeout).await
    }

    /// Waits until the copies of the unit's output into its log files have finished: every
    /// writer of the pipes (the process and any descendant that kept them open) is gone and
    /// everything read has been written. Returns at once when there are no log files.
    /// Cancel-safe.
    pub async fn logs_closed(&mut self) {
        if let Some(task) = &mut self.logs {
            let _ = task.await;
            self.logs = None;
        }
    }

    fn send_to_group(&self, signal: Signal) {
        match signal_group(self.pgid(), signal) {
            // It is exiting right now; its report is on its way.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                tracing::warn!(unit = self.unit, pgid = self.pid, %signal, error = %e, "cannot signal the process group");
            }
        }
    }
}

async fn exit_of(mut rx: watch::Receiver<Option<ExitReport>>) -> ExitReport {
    if let Ok(report) = rx.wait_for(Option::is_some).await {
        if let Some(report) = *report {
            return report;
        }
    }
    // The monitor is gone without a report: only when the runtime shuts down.
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_group_refuses_groups_that_are_not_a_units() {
        assert_eq!(signal_group(0, Signal::SIGTERM), Err(Errno::EINVAL));
        assert_eq!(signal_group(1, Signal::SIGTERM), Err(Errno::EINVAL));
        let own = nix::unistd::getpgrp().as_raw() as u32;
        assert_eq!(signal_group(own, Signal::SIGTERM), Err(Errno::EINVAL));
        assert_eq!(signal_group(u32::MAX, Signal::SIGTERM), Err(Errno::EINVAL));
    }

    #[test]
    fn exit_reports_read_like_a_sentence() {
        let at = Instant::now();
        let code = ExitReport::new(1, Some(ExitStatus::from_raw(3 << 8)), at);
        assert_eq!((code.code, code.signal), (Some(3), None));
        assert_eq!(code.to_string(), "exited with code 3");
        let killed = ExitReport::new(1, Some(ExitStatus::from_raw(9)), at);
        assert_eq!((killed.code, killed.signal), (None, Some(9)));
        assert_eq!(killed.to_string(), "killed by SIGKILL (signal 9)");
        assert_eq!(
            ExitReport::new(1, None, at).to_string(),
            "ended with an unknown status"
        );
    }
}
