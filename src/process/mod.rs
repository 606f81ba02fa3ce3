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
//! - `running`: [`UnitProcess`]: exit reports, stopping, signalling the group.
//! - `logs`: log files and their rotation.
//!
//! One rule holds it together: **every child goes through [`spawn_tracked`]**. Once
//! [`start_reaper`] runs, a child spawned any other way (`std::process::Command`,
//! `tokio::process::Command::output`, ...) may be collected by the reaper as soon as it exits,
//! and its own wait then fails with ECHILD.

mod bounded;
mod credentials;
mod error;
mod logs;
mod reaper;
mod running;
mod spawn;
mod track;

pub use bounded::{BoundedCommand, BoundedError, BoundedOutput, Capture};
pub(crate) use credentials::group_list;
pub use credentials::{Account, Credentials, job_credentials, plan_credentials};
pub use error::{SpawnCause, SpawnError};
pub use reaper::{OrphanReaping, ReapedOrphan, reaped_count, start_reaper, subscribe_reaped};
pub use running::{ExitReport, StopOutcome, StopReport, UnitProcess, signal_group};
pub use spawn::{spawn_unit, unit_environment};
pub use track::{TrackedChild, is_tracked, spawn_tracked};

/// Marks every descriptor above 2 that this process holds close-on-exec, so that none it
/// inherited without the flag (a shell's redirection, a root-only file) reaches a program it
/// starts. The daemon does it once, at start; units also get it in the child.
pub fn mark_inherited_close_on_exec() {
    spawn::close_inherited_on_exec();
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
