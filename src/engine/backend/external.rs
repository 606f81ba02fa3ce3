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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::events::{Epoch, TaskWatch, WatchedTask, channel};
    use crate::reason::Reason;

    /// The watch begins with a pid-less `Spawned`, stays silent until told to stop, then ends
    /// with an `Exited` that claims no exit status.
    #[tokio::test]
    async fn a_watch_reports_no_pid_and_ends_only_when_stopped() {
        let (tx, mut rx) = channel(Epoch::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let run = Run {
            unit: 2,
            generation: 5,
            stop: stop_rx,
            tx: tx.clone(),
            watch: TaskWatch::new(&tx, 2, "ollama", 5, WatchedTask::Run),
        };
        let task = tokio::spawn(ExternalBackend.run(run));
        let (_, first) = rx.recv().await.unwrap();
        assert_eq!(
            first,
            Event::Spawned {
                unit: 2,
                generation: 5,
                pid: None
            }
        );
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "nothing more until it is stopped");
        assert!(!task.is_finished());
        stop_tx.send(Reason::StopRequested).unwrap();
        let (_, last) = rx.recv().await.unwrap();
        assert_eq!(
            last,
            Event::Exited {
                unit: 2,
                generation: 5,
                exit: ExitInfo {
                    code: None,
                    signal: None
                },
                killed_after_timeout: false
            }
        );
        task.await.unwrap();
    }
}
