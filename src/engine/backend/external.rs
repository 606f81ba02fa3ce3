//! The `external` backend: a run of a unit launchgraph only watches. It starts nothing: it
//! reports [`Event::Spawned`] without a pid at once (the unit is now watched, and its probes
//! say when it is ready), then waits for the run's stop and reports [`Event::Exited`] without
//! an exit status, having signalled nothing. The service it names belongs to whoever runs it
//! (Ollama.app, a job of another tool); launchgraph never touches it.

use super::Run;
use crate::engine::events::{Event, ExitInfo};

/// How to "run" one `external` unit: watch it until told to stop.
pub(crate) struct ExternalBackend;

impl ExternalBackend {
    pub(crate) async fn run(self, run: Run) {
        let Run {
            unit,
            generation,
            stop,
            tx,
            // Nothing to kill should this task die: it holds no process.
            watch: _watch,
        } = run;
        let _ = tx.send(Event::Spawned {
            unit,
            generation,
            pid: None,
        });
        // A dropped sender (the run was replaced or the supervisor is going away) ends the
        // watch as a stop does.
        let _ = stop.await;
        let _ = tx.send(Event::Exited {
            unit,
            generation,
            exit: ExitInfo {
                code: None,
                signal: None,
            },
            killed_after_timeout: false,
        });
    }
}
