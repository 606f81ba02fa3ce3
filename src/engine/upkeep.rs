//! What the daemon does around starts besides starting: preflight before every start, a file
//! watcher that re-runs it when a unit's files change, and fingerprints of what ran.
//!
//! A failed preflight is not a crash: the start is deferred with `PREFLIGHT_FAILED` and tried
//! again when a file the unit depends on changes (or after [`PREFLIGHT_RETRY`] in case a change
//! was missed). When a unit becomes ready, its fingerprint is taken, compared with the last good
//! one (each difference logged, e.g. `openclaw 2026.9.6 -> 2026.10.1`), and stored atomically.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::fingerprint;
use crate::preflight::{self, Finding, PreflightContext};
use crate::unit::Unit;

use super::core::UnitId;

/// How long a unit blocked by preflight waits before it is checked again without a file event.
pub const PREFLIGHT_RETRY: Duration = Duration::from_secs(60);
/// File events closer together than this are one change (editors write in several steps).
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// The findings that block a start, as one line for the log and status; `None` when the
/// start may go ahead. Warnings are logged here, once per start.
pub fn gate(unit: &Unit, ctx: &PreflightContext) -> Option<String> {
    let findings = preflight::preflight(unit, ctx);
    for f in findings.iter().filter(|f| !f.blocks_start()) {
        tracing::warn!("{}: preflight {}", unit.name, one_line(f));
    }
    let blocking: Vec<String> = findings
        .iter()
        .filter(|f| f.blocks_start())
        .map(one_line)
        .collect();
    (!blocking.is_empty()).then(|| blocking.join("; "))
}

fn one_line(f: &Finding) -> String {
    let mut s = format!("{} {}", f.code, f.message);
    if !f.fix.is_empty() {
        s.push_str(&format!(" (fix: {})", f.fix));
    }
    s
}

/// Takes the fingerprint of a unit that just became ready, logs what drifted since the last
/// good run, and stores it.
pub async fn record_fingerprint(unit: Arc<Unit>, ctx: PreflightContext, state_dir: PathBuf) {
    let now = fingerprint::take(&unit, &ctx).await;
    match fingerprint::load(&state_dir, unit.name.as_str()) {
        Ok(Some(old)) => {
            for line in fingerprint::drift(&old, &now) {
                tracing::info!("{}: changed since the last good run: {line}", unit.name);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("{}: cannot read its last fingerprint: {e}", unit.name),
    }
    if let Err(e) = fingerprint::store(&state_dir, &now) {
        tracing::warn!(
            "{}: cannot store its fingerprint in {}: {e}",
            unit.name,
            state_dir.display()
        );
    }
}

/// Watches the directories holding each unit's files and reports, debounced, which units'
/// files changed. Dropping it stops the watching.
pub struct FileWatch {
    _watcher: Option<notify::RecommendedWatcher>,
}

impl FileWatch {
    /// Starts watching; changed units are sent on `changed`. A watcher that cannot start is
    /// logged and replaced by the periodic retry alone.
    pub fn start(
        units: &[Unit],
        ctx: &PreflightContext,
        changed: mpsc::UnboundedSender<UnitId>,
    ) -> Self {
        // Watch directories, not files: an upgrade replaces files (rename over, relink), which
        // a watch on the old inode would miss.
        let mut by_dir: BTreeMap<PathBuf, HashSet<UnitId>> = BTreeMap::new();
        let mut by_file: HashMap<PathBuf, HashSet<UnitId>> = HashMap::new();
        for (i, u) in units.iter().enumerate() {
            for p in preflight::watched_paths_with(u, ctx) {
                if let Some(dir) = p.parent() {
                    by_dir.entry(dir.to_path_buf()).or_default().insert(i);
                }
                by_file.entry(p).or_default().insert(i);
            }
        }
        let by_file = Arc::new(by_file);
        let pending: Arc<std::sync::Mutex<HashSet<UnitId>>> = Arc::default();
        let handle = tokio::runtime::Handle::current();
        let handler = {
            let by_file = by_file.clone();
            move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                // Opening or reading a file changes nothing a start depends on, and a
                // directory like /usr/bin is opened all day long by every exec on the host.
                if event.kind.is_access() || event.kind.is_other() {
                    return;
                }
                let mut hit = HashSet::new();
                for p in &event.paths {
                    if let Some(units) = by_file.get(p) {
                        hit.extend(units.iter().copied());
                    }
                }
                for u in hit {
                    // One report per burst of events for a unit.
                    if !pending.lock().expect("not poisoned").insert(u) {
                        continue;
                    }
                    let pending = pending.clone();
                    let changed = changed.clone();
                    handle.spawn(async move {
                        tokio::time::sleep(DEBOUNCE).await;
                        pending.lock().expect("not poisoned").remove(&u);
                        let _ = changed.send(u);
                    });
                }
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(
                    "cannot watch unit files ({e}); preflight is retried every {}s instead",
                    PREFLIGHT_RETRY.as_secs()
                );
                return Self { _watcher: None };
            }
        };
        let mut watched = 0;
        for dir in by_dir.keys() {
            if watch_existing(&mut watcher, dir) {
                watched += 1;
            }
        }
        tracing::debug!(directories = watched, "watching unit files");
        Self {
            _watcher: Some(watcher),
        }
    }
}

/// Watches `dir`, or its nearest existing ancestor when it does not exist yet (a missing
/// directory that appears later is itself a change worth noticing).
fn watch_existing(watcher: &mut notify::RecommendedWatcher, dir: &Path) -> bool {
    let mut d = Some(dir);
    while let Some(cur) = d {
        if cur.is_dir() {
            return watcher.watch(cur, RecursiveMode::NonRecursive).is_ok();
        }
        d = cur.parent();
    }
    false
}

/// What the daemon records of a running `exec` unit, so that the next daemon (after a crash,
/// an upgrade or `launchctl kickstart -k`) does not start it a second time.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
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
pub fn record_run(state_dir: &Path, unit: &str, pid: u32) {
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
pub fn forget_run(state_dir: &Path, unit: &str) {
    let _ = std::fs::remove_file(run_file(state_dir, unit));
}

/// At startup: `exec` units left running by a previous daemon are stopped, dependents before
/// their requirements, each with its stop signal and then SIGKILL after its stop timeout, so
/// that the new daemon starts them again in order instead of twice. (They cannot be adopted:
/// their output pipes went with the old daemon.) `launchd` units need nothing here: launchd
/// keeps them, and a start adopts a running job.
pub async fn stop_leftovers(compiled: &crate::compile::Compiled, state_dir: &Path) {
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
}
