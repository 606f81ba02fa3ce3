//! The events that drive the supervisor, and the channel they travel on.
//!
//! [`Event`]s are facts reported to the decision core (a spawn, an exit, a probe's word, a
//! timer) and the [`Command`]s admins give it. Tasks report them on an [`EpochTx`]: each
//! message carries the epoch (the configuration) it was sent under, so that after a reload,
//! which renumbers units, the runtime maps it to the unit it was about, or drops it when that
//! unit is gone. This module holds no state and decides nothing.

use serde::Serialize;
use tokio::sync::mpsc;

use crate::reason::Reason;
use std::time::Duration;

/// A unit's index in the current configuration.
pub type UnitId = usize;
/// Counts the runs of one unit; starts at 1 for the first spawn.
pub type Generation = u64;
/// Counts configurations: one more per reload applied.
pub(crate) type Epoch = u64;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    Ready,
    Alive,
}

/// The process a readiness probe's answer must come from: the listener it reaches is checked
/// against it ([`crate::listener`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPid {
    /// The run's main process.
    Known(u32),
    /// launchd said the job's process ended and is relaunching it: until it reports the new
    /// process, the job has none, so whatever answers is not the job.
    Relaunching,
    /// Not known (launchd has not said): the answer is taken as the unit's.
    Unknown,
}

impl RunPid {
    pub fn from_pid(pid: Option<u32>) -> Self {
        pid.map_or(RunPid::Unknown, RunPid::Known)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    StartTimeout,
    BackoffOver,
    /// The end of a deferred start's wait.
    RetryStart,
}

/// What admins (and the supervisor's own lifecycle) ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Bring the unit up, with its requirements first. Clears a failed state.
    Start(UnitId),
    /// Take the unit down, with its dependents first.
    Stop(UnitId),
    /// Take the unit down, with its dependents first, for a reload (reason `RELOAD`).
    Unload(UnitId),
    /// Cycle the unit, and its dependents in order. Clears a failed state and the backoff.
    Restart(UnitId),
    /// Stop everything in reverse order, then [`Effect::Exit`](super::core::Effect::Exit).
    Shutdown,
}

/// Facts reported to the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Spawned {
        unit: UnitId,
        generation: Generation,
        pid: Option<u32>,
    },
    SpawnFailed {
        unit: UnitId,
        generation: Generation,
        /// `SPAWN_FAILED`, or `RUN_UNRECORDED` when the process could not record itself.
        reason: Reason,
        error: String,
    },
    Exited {
        unit: UnitId,
        generation: Generation,
        exit: ExitInfo,
        /// The stop signal was not enough; it was killed after its stop timeout.
        killed_after_timeout: bool,
    },
    ProbeReported {
        unit: UnitId,
        generation: Generation,
        kind: ProbeKind,
        ok: bool,
        latency: Duration,
        detail: String,
    },
    TimerFired {
        unit: UnitId,
        generation: Generation,
        timer: Timer,
    },
    /// The job's process ended and launchd itself is relaunching it (KeepAlive). The run goes
    /// on: the unit is no longer ready, its dependents cycle, and it is ready again once its
    /// probe passes (or, without a probe, once [`Event::Spawned`] reports the new pid).
    Relaunching {
        unit: UnitId,
        generation: Generation,
        exit: ExitInfo,
    },
    /// launchd did not relaunch a KeepAlive job within its ThrottleInterval plus a grace, and
    /// the backend kickstarted it itself (`LAUNCHD_NOT_RELAUNCHED`, `detail` says what was
    /// waited for). The run goes on: [`Event::Spawned`] follows with the new pid.
    RelaunchMissed {
        unit: UnitId,
        generation: Generation,
        detail: String,
    },
    /// The start cannot happen now for a reason that is not the unit's failure (no GUI
    /// session, a failed preflight, the job's owner disabled it): the unit waits, with that
    /// reason, and is tried again after `retry_after` or on [`Event::Retry`]. Also ends a run
    /// whose job launchd was to relaunch when its owner disabled it meanwhile.
    StartDeferred {
        unit: UnitId,
        generation: Generation,
        reason: Reason,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// Something a deferred unit waits for may have changed (its files): try it again now.
    Retry {
        unit: UnitId,
    },
    /// A task that watched a run of the unit died on a panic ([`TaskWatch`]): the run, or
    /// its probe, is no longer watched.
    TaskFailed {
        unit: UnitId,
        generation: Generation,
        task: WatchedTask,
    },
    Command(Command),
}

/// What a task that died was watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchedTask {
    /// The run itself (the backend's task): whatever it ran has been killed.
    Run,
    /// One of its probes.
    Probe(ProbeKind),
}

impl WatchedTask {
    /// "its run", "its readiness probe", "its liveness probe".
    pub fn describe(self) -> &'static str {
        match self {
            WatchedTask::Run => "the task watching its run",
            WatchedTask::Probe(ProbeKind::Ready) => "the task running its readiness probe",
            WatchedTask::Probe(ProbeKind::Alive) => "the task running its liveness probe",
        }
    }
}

/// Held by a task that watches a unit's run (the backend's task, a probe loop). Should the
/// task die on a panic, its drop, which runs as the panic unwinds, kills the run's process
/// group when it has one (nothing runs unwatched) and tells the core ([`Event::TaskFailed`]),
/// so a unit is never silently left without its supervision. Dropped otherwise, it says
/// nothing.
pub(crate) struct TaskWatch {
    tx: EventTx,
    unit: UnitId,
    name: String,
    generation: Generation,
    task: WatchedTask,
    group: Option<u32>,
}

impl TaskWatch {
    pub(crate) fn new(
        tx: &EventTx,
        unit: UnitId,
        name: &str,
        generation: Generation,
        task: WatchedTask,
    ) -> Self {
        Self {
            tx: tx.clone(),
            unit,
            name: name.to_owned(),
            generation,
            task,
            group: None,
        }
    }

    /// The process group to kill should the task die: the run's exec process.
    pub(crate) fn guard_group(&mut self, pgid: u32) {
        self.group = Some(pgid);
    }

    /// The run's process has exited and been reaped: nothing is left to kill.
    pub(crate) fn release_group(&mut self) {
        self.group = None;
    }
}

impl Drop for TaskWatch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(pgid) = self.group {
            let _ = crate::process::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
        }
        tracing::error!(
            reason = %Reason::TaskFailed,
            "{}: {} (run {}) died; the unit is restarted so that it is watched again",
            self.name,
            self.task.describe(),
            self.generation
        );
        let _ = self.tx.send(Event::TaskFailed {
            unit: self.unit,
            generation: self.generation,
            task: self.task,
        });
    }
}

impl Event {
    /// The unit the event is about (none for a command).
    pub(crate) fn unit_mut(&mut self) -> Option<&mut UnitId> {
        match self {
            Event::Spawned { unit, .. }
            | Event::SpawnFailed { unit, .. }
            | Event::Exited { unit, .. }
            | Event::ProbeReported { unit, .. }
            | Event::TimerFired { unit, .. }
            | Event::Relaunching { unit, .. }
            | Event::RelaunchMissed { unit, .. }
            | Event::StartDeferred { unit, .. }
            | Event::TaskFailed { unit, .. }
            | Event::Retry { unit } => Some(unit),
            Event::Command(_) => None,
        }
    }
}

/// A sender of messages stamped with the epoch they were sent under.
pub(crate) struct EpochTx<T> {
    epoch: Epoch,
    inner: mpsc::UnboundedSender<(Epoch, T)>,
}

// Derived Clone would ask `T: Clone`; a sender clones whatever it carries.
impl<T> Clone for EpochTx<T> {
    fn clone(&self) -> Self {
        Self {
            epoch: self.epoch,
            inner: self.inner.clone(),
        }
    }
}

impl<T> EpochTx<T> {
    /// Sends `m` stamped with this sender's epoch; gives it back if the receiver is gone.
    pub(crate) fn send(&self, m: T) -> Result<(), T> {
        self.inner.send((self.epoch, m)).map_err(|e| e.0.1)
    }

    /// The epoch it stamps.
    pub(crate) fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// A sender on the same channel for another epoch.
    pub(crate) fn for_epoch(&self, epoch: Epoch) -> Self {
        Self {
            epoch,
            inner: self.inner.clone(),
        }
    }
}

/// A channel of epoch-stamped messages, its sender stamping `epoch`.
pub(crate) fn channel<T>(epoch: Epoch) -> (EpochTx<T>, mpsc::UnboundedReceiver<(Epoch, T)>) {
    let (inner, rx) = mpsc::unbounded_channel();
    (EpochTx { epoch, inner }, rx)
}

/// Where the tasks of a run report their [`Event`]s.
pub(crate) type EventTx = EpochTx<Event>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that panics while it holds its watch: the process group it guarded is killed and
    /// the core hears of it. One that ends normally says nothing.
    #[tokio::test]
    async fn a_task_that_dies_is_reported_and_its_process_group_killed() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        let (tx, mut rx) = channel(Epoch::default());

        let quiet = TaskWatch::new(&tx, 3, "calm", 7, WatchedTask::Run);
        tokio::spawn(async move { drop(quiet) }).await.unwrap();
        assert!(rx.try_recv().is_err(), "a normal end says nothing");

        let mut watch = TaskWatch::new(&tx, 4, "doomed", 9, WatchedTask::Run);
        watch.guard_group(pgid);
        let died = tokio::spawn(async move {
            let _watch = watch;
            panic!("a bug");
        })
        .await;
        assert!(died.unwrap_err().is_panic());
        let (_, event) = rx.recv().await.unwrap();
        assert_eq!(
            event,
            Event::TaskFailed {
                unit: 4,
                generation: 9,
                task: WatchedTask::Run
            }
        );
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the guarded group was killed"
        );
    }
}
