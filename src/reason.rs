//! Reason codes: the stable identifiers that say why a unit is in its state.
//!
//! One table, used alike in the log, in status, in events and in metrics. The codes never
//! change meaning; new ones may be added. docs/reason-codes.md documents each one, and a test
//! keeps that table and this enum in step.

use std::fmt;

use serde::Serialize;

macro_rules! reasons {
    ($($variant:ident => $code:literal, $doc:literal;)*) => {
        /// Why a unit is where it is. See docs/reason-codes.md.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(into = "&'static str")]
        pub enum Reason {
            $(#[doc = $doc] $variant,)*
        }

        impl Reason {
            #[cfg(test)]
            pub(crate) const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The stable identifier, e.g. `READY_TIMEOUT`.
            pub(crate) fn code(self) -> &'static str {
                match self { $(Reason::$variant => $code,)* }
            }

            /// One sentence saying what it means.
            #[cfg(test)]
            pub(crate) fn meaning(self) -> &'static str {
                match self { $(Reason::$variant => $doc,)* }
            }
        }
    };
}

reasons! {
    StartRequested => "START_REQUESTED", "The unit is wanted up: at supervisor start, or by an admin.";
    WaitingForDependency => "WAITING_FOR_DEPENDENCY", "A requirement is not ready yet; the unit starts as soon as it is.";
    Spawned => "SPAWNED", "The process was started (or the launchd job kickstarted); it is not ready yet.";
    Watching => "WATCHING", "An [external] unit is watched: launchgraph does not run it, and it is ready once its readiness probe passes, however long that takes.";
    Ready => "READY", "The readiness probe passed (or the unit has none and has started).";
    Exited => "EXITED", "The process exited with a non-zero status.";
    ExitedCleanly => "EXITED_CLEANLY", "The process exited with status 0.";
    KilledBySignal => "KILLED_BY_SIGNAL", "The process was ended by a signal it did not ask for.";
    SpawnFailed => "SPAWN_FAILED", "The process could not be started (program missing, not executable, bad user, ...).";
    LaunchdSpawnFailed => "LAUNCHD_SPAWN_FAILED", "launchd could not spawn the job's program (print shows job state = spawn failed, usually with last exit code 78: EX_CONFIG): the program it tried is missing, not executable, quarantined or refused, or a log file could not be opened. Not the program's own exit, so no-restart-exit-codes does not apply; retried with backoff up to the start limit, a KeepAlive job booted out meanwhile.";
    LoadedDefinitionStale => "LOADED_DEFINITION_STALE", "The job launchd has loaded differs from its plist file (program, arguments, KeepAlive, exit timeout or the plist path), because launchd reads a plist only at bootstrap; launchgraph boots it out and bootstraps the file before it starts the job.";
    RunUnrecorded => "RUN_UNRECORDED", "The process could not write its run record (state directory full, read-only or missing), so it was not started: launchgraph never runs what it could not find again after a crash. Retried with backoff.";
    PortHeldByOther => "PORT_HELD_BY_OTHER", "The readiness probe's loopback port answered, but the listener is held by a process outside the unit's run (pid and command in the cause); the unit is not marked ready. Also warned before an exec unit's start when a stranger already listens there.";
    ReadyTimeout => "READY_TIMEOUT", "The unit was not ready within its start-timeout; it was stopped.";
    LivenessFailed => "LIVENESS_FAILED", "The liveness probe failed the configured number of times in a row. An [external] unit is not stopped: it goes back to started (watched), its dependents stop, and they start again once it is ready.";
    Backoff => "BACKOFF", "Waiting out the restart delay after a failure.";
    DependencyRestarting => "DEPENDENCY_RESTARTING", "Stopped because a requirement went down; it starts again once the requirement is ready.";
    DependencyFailed => "DEPENDENCY_FAILED", "A requirement is failed; the unit waits until an admin acts on it.";
    DependencyStopped => "DEPENDENCY_STOPPED", "A requirement is stopped and not wanted up; the unit waits.";
    StartLimitReached => "START_LIMIT_REACHED", "Too many starts after failures within start-limit-period; failed until an admin acts.";
    NoRestartExitCode => "NO_RESTART_EXIT_CODE", "Exited with a code listed in no-restart-exit-codes; failed until an admin acts.";
    RestartPolicy => "RESTART_POLICY", "The restart policy says not to restart after this exit.";
    StopRequested => "STOP_REQUESTED", "An admin asked for the unit to stop.";
    RestartRequested => "RESTART_REQUESTED", "An admin asked for the unit to restart.";
    Shutdown => "SHUTDOWN", "The supervisor is shutting down.";
    Reload => "RELOAD", "Stopped by a reload: its unit file changed or was removed, or so did a unit it requires.";
    StopTimeout => "STOP_TIMEOUT", "The unit did not stop within its stop-timeout and was killed.";
    RelaunchedByLaunchd => "RELAUNCHED_BY_LAUNCHD", "launchd relaunched the job itself (KeepAlive); launchgraph waits for it to be ready again and cycles its dependents.";
    NoGuiSession => "NO_GUI_SESSION", "The job's GUI domain does not exist (nobody is logged in at the console); the unit waits and retries slowly.";
    AgentDomainOtherUser => "AGENT_DOMAIN_OTHER_USER", "The plist is one user's LaunchAgent and the unit's domain, resolved at start (gui/console: whoever is at the console), is another user's: it is not bootstrapped there, where it would run as that user; the unit waits and retries slowly (the console user may change). The cause names both users and the domain to set.";
    DisabledByOwner => "DISABLED_BY_OWNER", "The job is disabled in launchd (launchctl print-disabled, or Disabled in its plist) and launchgraph never disables a job, so its owner did (openclaw gateway stop --disable, OpenClaw's self-update parking it, an admin): it is not enabled, bootstrapped or kickstarted behind the owner's back; the unit waits, is re-checked every few seconds, on reload and on launchgraph start or restart, and starts once the job is enabled again. Not a failure. Fix: launchctl enable DOMAIN/LABEL (OpenClaw: openclaw gateway start).";
    LoadedInOtherDomain => "LOADED_IN_OTHER_DOMAIN", "The job's label is already loaded in another launchd domain that can hold it (system, gui/UID or user/UID of the plist's owner; brew services loads into user/UID over SSH): bootstrapping it into the unit's domain would run a second copy on the same port, so the unit waits, re-checked every few seconds, and the cause names the domain. Not a failure. Fix: launchctl bootout DOMAIN/LABEL for the other copy, or set the unit's domain to the one it is loaded in.";
    LaunchdNotRelaunched => "LAUNCHD_NOT_RELAUNCHED", "A KeepAlive job exited and launchd did not relaunch it within its ThrottleInterval (print's minimum runtime, else the plist's, else 10 s) plus a grace: a throttled respawn that never came, or launchd's penalty box after a crash burst. launchgraph kickstarted it itself and waits for it to be ready.";
    PreflightFailed => "PREFLIGHT_FAILED", "A preflight check found an error in what would be executed; the unit waits until its files change.";
    RunRecordInvalid => "RUN_RECORD_INVALID", "At start, a unit's run record was unreadable, not a record, or named a process no unit can be; it was moved aside and nothing was signalled.";
    RunRecordStale => "RUN_RECORD_STALE", "At start, a unit's run record named a pid that now belongs to another process; it was removed and nothing was signalled.";
    TaskFailed => "TASK_FAILED", "A task of the supervisor that watched the unit (its run, or one of its probes) died on a bug in launchgraph; what the run left was killed, or the unit stopped, and it is restarted so that it is watched again.";
    IllegalTransition => "ILLEGAL_TRANSITION", "The supervisor made a state change its table of legal transitions does not list: a bug in launchgraph, logged where it happened.";
    OrphanAdopted => "ORPHAN_ADOPTED", "A process of the unit that had left its process group (setsid) was found in the unit's cgroup: adopted by launchgraph after its parent died, or stopped (the unit's stop signal, then SIGKILL) because the unit's main process had exited or was stopped. Logged with the unit, the pid and the command line (Linux, as root).";
    GuardPending => "GUARD_PENDING", "A guard's trip condition is met but has not yet held for its trip window (`for` or `samples`); nothing is done yet. Fix: none needed; if it is pending often without tripping, the threshold sits inside normal variation: raise it or lengthen the trip window.";
    GuardTripped => "GUARD_TRIPPED", "A guard's trip condition held for its whole trip window, or an admin tripped it by hand: its on-trip actions run and the units it holds wait (HELD_BY_GUARD). Also logged when a clearing guard's signal crosses its clear threshold again, without running anything again. Fix: act on the cause the signal names (a model too large for the host, a deep queue, swap, a full disk); a trip by hand is cleared by hand.";
    GuardClearing => "GUARD_CLEARING", "A tripped guard's clear condition is met but has not yet held for its clear window (`clear-for` or `clear-samples`); it is still tripped. Fix: none needed; it clears by itself once its clear window has passed.";
    GuardCleared => "GUARD_CLEARED", "A guard is back to ok: its clear condition held for its clear window (its on-clear actions run and held units may start), an admin cleared it by hand, or a pending trip's condition lapsed before its window. Fix: none needed.";
    GuardKnown => "GUARD_KNOWN", "A guard's signal was sampled after a time it could not be, or for the first time since the guard was loaded: the guard shows its state again, which the gap did not change (no trip, no clear, nothing run); its windows go on where they were. Fix: none needed.";
    GuardUnknown => "GUARD_UNKNOWN", "A guard's signal could not be sampled (model not loaded, counter unreadable, command failed; the cause says which). Its windows neither advance nor reset, and it keeps its last real state, shown alongside, until a sample is taken again. Fix: make the signal readable as the cause says (load the model, fix the command, the URL or the path); if a model is meant to be unloaded at times, expect unknown then.";
    GuardActionFailed => "GUARD_ACTION_FAILED", "A command of a guard's on-trip or on-clear action exited non-zero or could not run; the rest of that action was not done. Shown until the guard's next edge (trip or clear) or a forced re-run. Fix: run the failed command by hand as the action's user to see why, fix it, then trip the guard by hand to run the action again.";
    GuardActionTimeout => "GUARD_ACTION_TIMEOUT", "A guard's action was not done and verified within its complete-within time box. Shown until its verify command confirms it after all, or the guard's next edge (trip or clear) supersedes it. Fix: run the action's verify command by hand to see what it reports; if the change is slow but sure, raise complete-within.";
    HeldByGuard => "HELD_BY_GUARD", "The unit is not started because a tripped guard (or switch) holds it (`hold`); it starts once that guard clears. Not a failure: nothing is counted toward the start limit. Fix: let the guard clear (free the disk, ease the load), or clear it by hand to start the unit now.";
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl From<Reason> for &'static str {
    fn from(r: Reason) -> &'static str {
        r.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented table and the enum list the same codes with the same meanings.
    #[test]
    fn docs_table_matches_the_enum() {
        let doc = include_str!("../docs/reason-codes.md");
        let mut documented = Vec::new();
        for line in doc.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() >= 3 && cells[1].starts_with('`') && cells[1].ends_with('`') {
                documented.push((cells[1].trim_matches('`').to_string(), cells[2].to_string()));
            }
        }
        let ours: Vec<(String, String)> = Reason::ALL
            .iter()
            .map(|r| (r.code().to_string(), r.meaning().to_string()))
            .collect();
        assert_eq!(
            documented, ours,
            "docs/reason-codes.md and src/reason.rs disagree"
        );
    }
}
