//! The backends: how one run of a unit is carried out. [`exec`] spawns a process and watches
//! it; [`launchd`] drives a job through `launchctl`; [`external`] runs nothing: it only marks
//! the span during which a service something else runs is watched. All are reached through
//! [`Backend`], take a [`Run`], and report to the decision core alike: [`Event::Spawned`]
//! (with the pid, when there is one), then [`Event::Exited`], or [`Event::SpawnFailed`],
//! [`Event::StartDeferred`], [`Event::Relaunching`]; and all stop when the run's `stop`
//! channel says so. The engine
//! gives every unit the same guarantees whatever runs it.
//!
//! Backends import nothing of the runtime: they get what they need in their [`Run`] and
//! [`BackendConfig`], and speak only in events.
//!
//! [`Event::Spawned`]: super::events::Event::Spawned
//! [`Event::Exited`]: super::events::Event::Exited
//! [`Event::SpawnFailed`]: super::events::Event::SpawnFailed
//! [`Event::StartDeferred`]: super::events::Event::StartDeferred
//! [`Event::Relaunching`]: super::events::Event::Relaunching

pub(crate) mod exec;
pub(crate) mod external;
pub(crate) mod launchd;

use std::path::PathBuf;

use tokio::sync::oneshot;

use super::events::{EventTx, Generation, TaskWatch, UnitId};
use crate::reason::Reason;
use crate::unit::{Runner, Unit};

/// One run of a unit, as the runtime hands it to a backend.
pub(crate) struct Run {
    pub unit: UnitId,
    pub generation: Generation,
    /// Resolves when the run must stop, with why (a backend may stop a hung job differently
    /// from one being shut down).
    pub stop: oneshot::Receiver<Reason>,
    /// Where the run reports.
    pub tx: EventTx,
    /// Tells the core if the run's task dies; the exec backend gives it the process group.
    pub watch: TaskWatch,
}

/// What the backends need of the host.
#[derive(Clone)]
pub(crate) struct BackendConfig {
    pub launchd: launchd::LaunchdContext,
    /// Where run records and the records of booted-out launchd jobs are kept.
    pub state_dir: PathBuf,
}

/// The backend of one unit.
pub(crate) enum Backend {
    Exec(exec::ExecBackend),
    Launchd(launchd::LaunchdBackend),
    External(external::ExternalBackend),
}

impl Backend {
    /// The backend that runs `unit`.
    pub(crate) fn of(unit: &Unit, config: &BackendConfig) -> Self {
        match &unit.runner {
            Runner::Exec(spec) => Backend::Exec(exec::ExecBackend {
                name: unit.name.to_string(),
                spec: spec.clone(),
                state_dir: config.state_dir.clone(),
            }),
            Runner::Launchd(spec) => Backend::Launchd(launchd::LaunchdBackend {
                name: unit.name.to_string(),
                ctx: config.launchd.clone(),
                spec: spec.clone(),
                state_dir: config.state_dir.clone(),
            }),
            Runner::External(_) => Backend::External(external::ExternalBackend),
        }
    }

    /// Carries out `run` until it is over, reporting as it goes.
    pub(crate) async fn run(self, run: Run) {
        match self {
            Backend::Exec(b) => b.run(run).await,
            Backend::Launchd(b) => b.run(run).await,
            Backend::External(b) => b.run(run).await,
        }
    }
}
