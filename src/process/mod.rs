//! The process layer: every child launchgraph starts, how an `exec` unit runs, and how every
//! child, down to orphaned grandchildren, is reaped.
//!
//! It owns spawning (exact environment, own session and process group, privilege drop), log
//! files and their rotation, stopping a process group, reaping, and running short-lived
//! helpers within bounds. It does not decide when to
//! start, stop or restart anything: the supervisor's engine does, through [`spawn_unit`],
//! [`UnitProcess`] and [`signal_group`], and turns a [`SpawnError`] or an [`ExitReport`] into
//! an event.
//!
//! - `track`: [`spawn_tracked`], the one way any child is spawned, and the registry of children
//!   someone will wait for.
//! - `reaper`: [`start_reaper`], which collects the children nobody waits for.
//! - `bounded`: [`BoundedCommand`], the one way to run a short-lived helper (a probe command,
//!   `launchctl`, a version query) with an exact environment, a deadline, capped output and
//!   its whole process group killed at the end.
//! - `credentials`: `user` and `group` (or a job's uid and gid: [`job_credentials`]), resolved
//!   before the fork and applied in the child.
//! - `error`: [`SpawnError`] and [`SpawnCause`], why a start failed; imports nothing above it.
//! - `spawn`: [`spawn_unit`] and the unit's environment.
//! - `cgroup`: each `exec` unit's cgroup (Linux, as root), which keeps track of what leaves its
//!   process group, and stops it with the unit.
//! - `clone`: creating a unit's process inside its cgroup (clone3, Linux).
//! - `record`: [`SelfRecord`], the run record a unit's process writes of itself before exec.
//! - `exit_watch`: [`ExitWatch`], the exit of a process launchgraph did not fork, from the
//!   kernel's notification (pidfd, kqueue).
//! - `running`: [`UnitProcess`]: exit reports, stopping, signalling the group.
//! - `logs`: log files and their rotation.
//!
//! One rule holds it together: **every child goes through [`spawn_tracked`]** (or, for a unit
//! created in its cgroup, through the same registry: see `clone`). Once
//! [`start_reaper`] runs, a child spawned any other way (`std::process::Command`,
//! `tokio::process::Command::output`, ...) may be collected by the reaper as soon as it exits,
//! and its own wait then fails with ECHILD.

mod bounded;
mod cgroup;
#[cfg(target_os = "linux")]
mod clone;
mod credentials;
mod error;
mod exit_watch;
mod logs;
mod reaper;
mod record;
mod running;
mod spawn;
mod track;

pub use bounded::{BoundedCommand, BoundedError, BoundedOutput, Capture};
pub(crate) use cgroup::{
    remove_all as remove_unit_cgroups, set_owner as set_cgroup_owner, stop_stale_cgroups,
};
pub(crate) use credentials::group_list;
pub use credentials::{Account, Credentials, job_credentials, plan_credentials, user_credentials};
pub use error::{SpawnCause, SpawnError};
pub use exit_watch::{ExitWatch, exited};
pub use reaper::{OrphanReaping, ReapedOrphan, reaped_count, start_reaper, subscribe_reaped};
#[cfg(target_os = "linux")]
pub(crate) use record::parse_stat;
pub use record::{SelfRecord, start_ticks};
#[cfg(target_os = "macos")]
pub(crate) use record::{bsd_info, bsd_start};
pub use running::{ExitReport, StopOutcome, StopReport, UnitProcess, signal_group};
pub use spawn::{spawn_unit, spawn_unit_recorded, unit_environment};
pub use track::{TrackedChild, is_tracked, spawn_tracked};

/// Marks every descriptor above 2 that this process holds close-on-exec, so that none it
/// inherited without the flag (a shell's redirection, a root-only file) reaches a program it
/// starts. The daemon does it once, at start; units also get it in the child.
pub fn mark_inherited_close_on_exec() {
    spawn::close_inherited_on_exec();
}

/// Sets every signal the daemon inherited as ignored (from `nohup`, or a shell's background)
/// back to its default, except SIGPIPE, which the daemon itself keeps ignored (a peer that
/// goes away must not kill it): what it starts, helpers included, then starts with defaults.
/// Call it after the daemon's own signal handlers are installed.
pub fn reset_inherited_ignored_signals() {
    // SAFETY: reads and restores one disposition around a reset of all others.
    unsafe {
        let mut pipe: libc::sigaction = std::mem::zeroed();
        let kept = libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut pipe) == 0;
        spawn::reset_ignored_signals();
        if kept {
            libc::sigaction(libc::SIGPIPE, &pipe, std::ptr::null_mut());
        }
    }
}

/// An `exec` spec of `/bin/true` with `env` and every other key at its default, for the
/// tests of this module's files.
#[cfg(test)]
pub(crate) fn test_spec(env: &[(&str, &str)]) -> crate::unit::ExecSpec {
    crate::unit::ExecSpec {
        command: vec!["/bin/true".into()],
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        working_directory: "/".into(),
        user: None,
        group: None,
        stop_signal: crate::unit::Signal(nix::sys::signal::Signal::SIGTERM),
        stop_timeout: std::time::Duration::from_secs(10),
        stdout: None,
        stderr: None,
        log_max_bytes: 10 << 20,
        log_keep: 3,
    }
}
