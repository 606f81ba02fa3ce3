//! The `exec` backend: one run is one process, spawned by [`crate::process`], watched until it
//! exits or is stopped (its stop signal, then SIGKILL after its stop timeout), with a run
//! record ([`crate::engine::runs`]) that the process itself writes before it execs and the
//! backend forgets once it has exited. A unit whose record cannot be written is not started.

use std::path::PathBuf;

use super::Run;
use crate::engine::events::{Event, ExitInfo};
use crate::engine::runs::{forget_run, self_record};
use crate::process::{SpawnCause, StopOutcome, spawn_unit_recorded};
use crate::reason::Reason;
use crate::unit::ExecSpec;

/// How to run one `exec` unit.
pub(crate) struct ExecBackend {
    pub name: String,
    pub spec: ExecSpec,
    /// Where run records are kept.
    pub state_dir: PathBuf,
}

impl ExecBackend {
    pub(crate) async fn run(self, run: Run) {
        let Run {
            unit,
            generation,
            stop,
            tx,
            mut watch,
        } = run;
        let unrecorded = |error: String| Event::SpawnFailed {
            unit,
            generation,
            reason: Reason::RunUnrecorded,
            error,
        };
        let record = match self_record(&self.state_dir, &self.name) {
            Ok(record) => record,
            Err(e) => {
                let _ = tx.send(unrecorded(format!("unit {}: {e}", self.name)));
                return;
            }
        };
        let mut process = match spawn_unit_recorded(&self.spec, &self.name, record).await {
            Ok(p) => p,
            Err(e) => {
                let event = match e.cause {
                    SpawnCause::RunRecord { .. } => unrecorded(e.to_string()),
                    _ => Event::SpawnFailed {
                        unit,
                        generation,
                        reason: Reason::SpawnFailed,
                        error: e.to_string(),
                    },
                };
                let _ = tx.send(event);
                return;
            }
        };
        watch.guard_group(process.pid());
        let _ = tx.send(Event::Spawned {
            unit,
            generation,
            pid: Some(process.pid()),
        });
        let exited = process.exited();
        let (report, killed) = tokio::select! {
            report = exited => (report, false),
            Ok(_) = stop => {
                let r = process.stop_as_declared().await;
                (r.exit, r.outcome == StopOutcome::Killed)
            }
        };
        watch.release_group();
        forget_run(&self.state_dir, &self.name);
        let _ = tx.send(Event::Exited {
            unit,
            generation,
            exit: ExitInfo {
                code: report.code,
                signal: report.signal,
            },
            killed_after_timeout: killed,
        });
    }
}
