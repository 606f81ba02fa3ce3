//! The `exec` backend: one run is one process, spawned by [`crate::process`], watched until it
//! exits or is stopped (its stop signal, then SIGKILL after its stop timeout), with a run
//! record written while it runs ([`crate::engine::runs`]).

use std::path::PathBuf;

use super::Run;
use crate::engine::events::{Event, ExitInfo};
use crate::engine::runs::{forget_run, record_run};
use crate::process::{StopOutcome, spawn_unit};
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
        } = run;
        let mut process = match spawn_unit(&self.spec, &self.name).await {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Event::SpawnFailed {
                    unit,
                    generation,
                    error: e.to_string(),
                });
                return;
            }
        };
        record_run(&self.state_dir, &self.name, process.pid());
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
