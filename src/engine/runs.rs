//! Run records: what the daemon writes of each running `exec` unit (its pid and the process's
//! start time), so that the next daemon, after a crash, an upgrade or
//! `launchctl kickstart -k`, stops what the previous one left running instead of starting it
//! a second time.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the daemon records of a running `exec` unit, so that the next daemon (after a crash,
/// an upgrade or `launchctl kickstart -k`) does not start it a second time.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RunRecord {
    pub unit: String,
    pub pid: u32,
    /// The process's start time in clock ticks since boot (Linux), so a recycled pid is never
    /// mistaken for the unit.
    pub start_ticks: Option<u64>,
}

fn run_file(state_dir: &Path, unit: &str) -> PathBuf {
    state_dir.join("runs").join(format!("{unit}.json"))
}

/// The start time of a process, in clock ticks since boot (field 22 of /proc/PID/stat).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` still runs. A zombie does not: the killed orphans of a previous daemon wait
/// for their new parent (often init) to reap them, which can take a while.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok(),
    }
}

/// Records a freshly spawned `exec` unit (atomically, in `<state>/runs/<unit>.json`).
pub(crate) fn record_run(state_dir: &Path, unit: &str, pid: u32) {
    let record = RunRecord {
        unit: unit.to_owned(),
        pid,
        start_ticks: start_ticks(pid),
    };
    // Atomic, but not synced: after a power loss there is no leftover process to find
    // either, and a start should not wait for the disk.
    let written = serde_json::to_vec(&record)
        .map_err(std::io::Error::other)
        .and_then(|json| crate::fsutil::replace(&run_file(state_dir, unit), &json, 0o600));
    if let Err(e) = written {
        tracing::warn!(
            "{unit}: cannot record its pid in {}: {e}",
            state_dir.display()
        );
    }
}

/// Forgets a unit's run once it has exited.
pub(crate) fn forget_run(state_dir: &Path, unit: &str) {
    let _ = std::fs::remove_file(run_file(state_dir, unit));
}

/// At startup: `exec` units left running by a previous daemon are stopped, dependents before
/// their requirements, each with its stop signal and then SIGKILL after its stop timeout, so
/// that the new daemon starts them again in order instead of twice. (They cannot be adopted:
/// their output pipes went with the old daemon.) `launchd` units need nothing here: launchd
/// keeps them, and a start adopts a running job.
pub(crate) async fn stop_leftovers(compiled: &crate::compile::Compiled, state_dir: &Path) {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    for i in compiled.graph.stop_order() {
        let u = &compiled.units[i];
        let crate::unit::Runner::Exec(spec) = &u.runner else {
            continue;
        };
        let path = run_file(state_dir, u.name.as_str());
        let Some(record) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<RunRecord>(&b).ok())
        else {
            continue;
        };
        let alive = kill(Pid::from_raw(record.pid as i32), None).is_ok()
            && (record.start_ticks.is_none() || start_ticks(record.pid) == record.start_ticks);
        if alive {
            tracing::warn!(
                "{}: pid {} is left from a previous launchgraph; stopping it so it is started again in order",
                u.name,
                record.pid
            );
            let group = Pid::from_raw(record.pid as i32);
            let _ = killpg(group, spec.stop_signal.0);
            let deadline = std::time::Instant::now() + spec.stop_timeout;
            while running(record.pid) && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Whatever is left of the group, the leader included if it ignored the signal.
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = std::fs::remove_file(&path);
    }
    // What had left those groups is still in the previous daemon's cgroups (Linux, as root).
    crate::process::stop_stale_cgroups().await;
}
