//! Run records: what the daemon writes of each running `exec` unit (its pid and the process's
//! start time), so that the next daemon, after a crash, an upgrade or
//! `launchctl kickstart -k`, stops what the previous one left running instead of starting it
//! a second time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::SelfRecord;
use crate::reason::Reason;

/// What the daemon records of a running `exec` unit, so that the next daemon (after a crash,
/// an upgrade or `launchctl kickstart -k`) does not start it a second time.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RunRecord {
    pub unit: String,
    pub pid: u32,
    /// The process's start time, so a recycled pid is never mistaken for the unit: clock ticks
    /// since boot on Linux, microseconds since the epoch on macOS. A record without it is
    /// never acted on.
    pub start_ticks: Option<u64>,
}

fn run_file(state_dir: &Path, unit: &str) -> PathBuf {
    state_dir.join("runs").join(format!("{unit}.json"))
}

/// The largest record read: the daemon writes under 100 bytes, so anything near this was not
/// written by it.
const MAX_RECORD_BYTES: u64 = 4096;

/// What the system says now of a live process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    /// See [`RunRecord::start_ticks`].
    start_ticks: u64,
    pgid: i32,
}

/// A live process's start time and process group; `None` when it is gone or a zombie (the
/// killed orphans of a previous daemon wait for their new parent, often init, to reap them).
#[cfg(not(target_os = "macos"))]
fn proc_now(pid: u32) -> Option<Proc> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let (state, pgid, start_ticks) = crate::process::parse_stat(&stat)?;
    if matches!(state, b'Z' | b'X') {
        return None;
    }
    Some(Proc {
        start_ticks,
        pgid: i32::try_from(pgid).ok()?,
    })
}

/// A live process's start time (microseconds since the epoch) and process group, from
/// `proc_pidinfo(PROC_PIDTBSDINFO)` (apple-oss-distributions/xnu:bsd/sys/proc_info.h).
#[cfg(target_os = "macos")]
fn proc_now(pid: u32) -> Option<Proc> {
    let info = crate::process::bsd_info(i32::try_from(pid).ok()?)?;
    if info.pbi_status == libc::SZOMB {
        return None;
    }
    Some(Proc {
        start_ticks: crate::process::bsd_start(&info),
        pgid: i32::try_from(info.pbi_pgid).ok()?,
    })
}

/// The daemon itself, which no record may name.
#[derive(Debug, Clone, Copy)]
struct Me {
    pid: u32,
    pgid: i32,
}

impl Me {
    fn now() -> Self {
        Me {
            pid: std::process::id(),
            pgid: nix::unistd::getpgrp().as_raw(),
        }
    }
}

/// What a record read at startup calls for.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The unit's process from a previous daemon, still running, leading its own process
    /// group: stop that group.
    Leftover,
    /// Nothing runs under the pid any more: forget the record.
    Gone,
    /// The pid belongs to another process now: forget the record, signal nothing.
    Stale(String),
    /// Not a record the daemon wrote for this unit, or one naming what no unit can be: set it
    /// aside, signal nothing.
    Invalid(String),
}

/// Judges a record of `unit` against what runs now (`now`: the recorded pid's process).
///
/// Only a process that still has the recorded start time and leads a process group of its own
/// (every unit is started with `setsid`) is ever signalled: `killpg` on pid 0 or 1, on the
/// daemon's own group, or on a recycled pid would hit what the daemon never started.
fn judge(record: &RunRecord, unit: &str, me: Me, now: Option<Proc>) -> Verdict {
    let pid = record.pid;
    if record.unit != unit {
        return Verdict::Invalid(format!("it is a record of unit {:?}", record.unit));
    }
    if pid <= 1 || i32::try_from(pid).is_err() {
        return Verdict::Invalid(format!("pid {pid} is never a unit's"));
    }
    if pid == me.pid {
        return Verdict::Invalid(format!("pid {pid} is this daemon's own"));
    }
    // Nothing runs under the pid: whatever the record says, there is nothing to act on.
    let Some(now) = now else {
        return Verdict::Gone;
    };
    let Some(recorded) = record.start_ticks else {
        return Verdict::Invalid(format!(
            "pid {pid} has no start time, so nothing tells it from a process that got the pid since"
        ));
    };
    if now.start_ticks != recorded {
        return Verdict::Stale(format!(
            "pid {pid} now belongs to another process (started at {}, the record says {recorded})",
            now.start_ticks
        ));
    }
    if now.pgid <= 1 || now.pgid == me.pgid {
        return Verdict::Invalid(format!(
            "pid {pid} is in process group {}, which is this daemon's own or the system's",
            now.pgid
        ));
    }
    if i64::from(now.pgid) != i64::from(pid) {
        return Verdict::Invalid(format!(
            "pid {pid} does not lead its own process group (it is in process group {})",
            now.pgid
        ));
    }
    Verdict::Leftover
}

/// Reads a record without blocking on what the file turns out to be, and with a bound.
/// `Ok(None)` when there is none; `Err` says what is wrong with it.
fn read_record(path: &Path) -> Result<Option<RunRecord>, String> {
    use std::io::Read;
    let (file, meta) = match crate::fsutil::open_regular(path) {
        Ok(Some(opened)) => opened,
        Ok(None) => return Err("it is not a regular file".to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("it cannot be opened: {e}")),
    };
    let mut bytes = Vec::new();
    if meta.len() <= MAX_RECORD_BYTES {
        file.take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("it cannot be read: {e}"))?;
    }
    if meta.len() > MAX_RECORD_BYTES || bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(format!("it is larger than {MAX_RECORD_BYTES} bytes"));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("it is not a run record: {e}"))
}

/// The pid of `unit`'s run as its record says, when the record is readable and that process
/// still runs with the recorded start time (a recycled pid is not the unit).
pub(crate) fn recorded_pid(state_dir: &Path, unit: &str) -> Option<u32> {
    let record = read_record(&run_file(state_dir, unit)).ok()??;
    let now = proc_now(record.pid)?;
    (Some(now.start_ticks) == record.start_ticks).then_some(record.pid)
}

/// Moves a bad record aside (`UNIT.json.bad`, for a look), so it is never read again; removes
/// it if even that fails.
fn set_aside(path: &Path) -> PathBuf {
    let mut bad = path.as_os_str().to_owned();
    bad.push(".bad");
    let bad = PathBuf::from(bad);
    if std::fs::rename(path, &bad).is_err() {
        let _ = std::fs::remove_file(path);
    }
    bad
}

/// The state directory's lock, held for the daemon's life (it is released when the daemon
/// exits, however it exits): a second daemon on the same directory would take the first one's
/// live units for leftovers and stop them.
#[derive(Debug)]
pub(crate) struct StateLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Why the state directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error(
        "the state directory {} is in use by another launchgraph{}: stop it, or give this one another --state-dir",
        dir.display(),
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Held { dir: PathBuf, holder: Option<u32> },
    #[error("cannot lock the state directory {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How long a daemon waits for the state directory's lock before it refuses to start.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Locks `<state_dir>/lock` (`flock`, exclusive, waiting at most [`LOCK_WAIT`]), creating the
/// directory when missing, and writes this daemon's pid in it so that a refused daemon can
/// name the holder. Blocking: called before the supervisor runs.
pub(crate) fn lock_state_dir(state_dir: &Path) -> Result<StateLock, LockError> {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| LockError::Io {
        dir: state_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let path = state_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path)
        .map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(io(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        ))));
    }
    // A lock still held a moment after a daemon was killed is held by a unit's child between
    // its fork and its exec (it inherited the descriptor), writing its run record: wait for it
    // rather than read the records without it. A previous daemon may also still be exiting.
    let deadline = crate::clock::deadline(LOCK_WAIT);
    let mut file = file;
    let mut lock = loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => break lock,
            Err((held, nix::errno::Errno::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                file = held;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((mut held, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = (&mut held).take(32).read_to_string(&mut text);
                return Err(LockError::Held {
                    dir: state_dir.to_path_buf(),
                    holder: text.trim().parse().ok(),
                });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        }
    };
    // Only for naming the holder in a refusal: a full state directory must not keep the
    // daemon from running (its units then refuse to start unrecorded, with a reason).
    if let Err(e) = lock
        .set_len(0)
        .and_then(|()| writeln!(&mut *lock, "{}", std::process::id()))
    {
        tracing::warn!("cannot write this daemon's pid in {}: {e}", path.display());
    }
    Ok(StateLock { _lock: lock })
}

/// The run record a unit's process writes of itself before it execs
/// ([`crate::process::SelfRecord`]), in `<state>/runs/<unit>.json`.
pub(crate) fn self_record(state_dir: &Path, unit: &str) -> std::io::Result<SelfRecord> {
    SelfRecord::new(&run_file(state_dir, unit), unit)
}

/// The file a unit's process writes its record to before renaming it over the record
/// (`<state>/runs/.<unit>.json.tmp`): nothing reads it.
fn temp_file(state_dir: &Path, unit: &str) -> PathBuf {
    state_dir.join("runs").join(format!(".{unit}.json.tmp"))
}

/// Forgets a unit's run once it has exited. The record is renamed back to the unit's
/// temporary file, not removed: its next start then writes into a file that exists instead of
/// creating one. Creating a file is the slow part of a start's record (on ext4 without a
/// journal a new inode skips every inode deleted in the last minutes:
/// torvalds/linux:fs/ext4/ialloc.c, `recently_deleted`), and a restart of many units would
/// otherwise create, and free, one file per unit each time.
pub(crate) fn forget_run(state_dir: &Path, unit: &str) {
    let record = run_file(state_dir, unit);
    if std::fs::rename(&record, temp_file(state_dir, unit)).is_err() {
        let _ = std::fs::remove_file(&record);
    }
}

/// At startup: `exec` units left running by a previous daemon are stopped, dependents before
/// their requirements, each with its stop signal and then SIGKILL after its stop timeout, so
/// that the new daemon starts them again in order instead of twice. (They cannot be adopted:
/// their output pipes went with the old daemon.) `launchd` units need nothing here: launchd
/// keeps them, and a start adopts a running job.
///
/// Each record is judged first ([`judge`]): one that is unreadable, oversized, not a regular
/// file or names what no unit can be is logged (`RUN_RECORD_INVALID`) and moved aside; one
/// whose pid now belongs to another process is logged (`RUN_RECORD_STALE`) and removed.
/// Neither is ever signalled.
pub(crate) async fn stop_leftovers(compiled: &crate::compile::Compiled, state_dir: &Path) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let me = Me::now();
    let exec_units = compiled
        .units
        .iter()
        .filter(|u| matches!(u.runner, crate::unit::Runner::Exec(_)))
        .map(|u| u.name.as_str())
        .collect();
    remove_unused_temps(&state_dir.join("runs"), &exec_units);
    for i in compiled.graph.stop_order() {
        let u = &compiled.units[i];
        let crate::unit::Runner::Exec(spec) = &u.runner else {
            continue;
        };
        let path = run_file(state_dir, u.name.as_str());
        let record = match read_record(&path) {
            Ok(Some(record)) => record,
            Ok(None) => continue,
            Err(why) => {
                invalid(u.name.as_str(), &path, &why);
                continue;
            }
        };
        match judge(&record, u.name.as_str(), me, proc_now(record.pid)) {
            Verdict::Leftover => {}
            Verdict::Gone => {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            Verdict::Stale(why) => {
                tracing::warn!(
                    reason = %Reason::RunRecordStale,
                    "{}: run record {}: {why}; removed, nothing signalled",
                    u.name,
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
                continue;
            }
            Verdict::Invalid(why) => {
                invalid(u.name.as_str(), &path, &why);
                continue;
            }
        }
        tracing::warn!(
            "{}: pid {} is left from a previous launchgraph; stopping it so it is started again in order",
            u.name,
            record.pid
        );
        let group = Pid::from_raw(record.pid as i32);
        // Watched before the signal, and bound to the process judged above.
        let exit = crate::process::ExitWatch::new(record.pid, record.start_ticks);
        let _ = killpg(group, spec.stop_signal.0);
        let _ = tokio::time::timeout(spec.stop_timeout, exit.exited()).await;
        // Whatever is left of the group, the leader included if it ignored the signal.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = std::fs::remove_file(&path);
    }
    // What had left those groups is still in the previous daemon's cgroups (Linux, as root).
    crate::process::stop_stale_cgroups().await;
}

/// Removes the temporary files that no unit of this configuration will write again:
/// `.UNIT.json.tmp` of a unit that is not an `exec` unit here, and `.UNIT.json.tmp.XXXXXX` of
/// daemons that wrote records themselves. Nothing reads them; the others are kept for their
/// unit's next start (see [`forget_run`]), which writes over what an interrupted write left.
fn remove_unused_temps(runs: &Path, exec_units: &std::collections::HashSet<&str>) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    let used = |name: &str| {
        name.strip_prefix('.')
            .and_then(|n| n.strip_suffix(".json.tmp"))
            .is_some_and(|unit| exec_units.contains(unit))
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".json.tmp") && !used(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn invalid(unit: &str, path: &Path, why: &str) {
    let bad = set_aside(path);
    tracing::warn!(
        reason = %Reason::RunRecordInvalid,
        "{unit}: run record {}: {why}; moved to {}, nothing signalled",
        path.display(),
        bad.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Me = Me {
        pid: 4000,
        pgid: 3900,
    };

    fn rec(unit: &str, pid: u32, start_ticks: Option<u64>) -> RunRecord {
        RunRecord {
            unit: unit.to_owned(),
            pid,
            start_ticks,
        }
    }

    fn leader(pid: i32, start_ticks: u64) -> Option<Proc> {
        Some(Proc {
            start_ticks,
            pgid: pid,
        })
    }

    fn is_invalid(v: &Verdict) -> bool {
        matches!(v, Verdict::Invalid(_))
    }

    #[test]
    fn only_a_live_group_leader_with_the_recorded_start_time_is_a_leftover() {
        assert_eq!(
            judge(&rec("u", 5000, Some(7)), "u", ME, leader(5000, 7)),
            Verdict::Leftover
        );
        // Gone, or a zombie.
        assert_eq!(
            judge(&rec("u", 5000, Some(7)), "u", ME, None),
            Verdict::Gone
        );
        // The pid was reused.
        assert!(matches!(
            judge(&rec("u", 5000, Some(7)), "u", ME, leader(5000, 8)),
            Verdict::Stale(_)
        ));
    }

    #[test]
    fn records_naming_what_no_unit_can_be_are_invalid() {
        let table = [
            (rec("u", 0, Some(7)), leader(0, 7)),
            (rec("u", 1, Some(7)), leader(1, 7)),
            (rec("u", u32::MAX, Some(7)), None),
            // The daemon itself.
            (rec("u", ME.pid, Some(7)), leader(ME.pid as i32, 7)),
            // No start time.
            (rec("u", 5000, None), leader(5000, 7)),
            // Another unit's record.
            (rec("v", 5000, Some(7)), leader(5000, 7)),
            // In the daemon's own group, or the system's.
            (
                rec("u", 5000, Some(7)),
                Some(Proc {
                    start_ticks: 7,
                    pgid: ME.pgid,
                }),
            ),
            (rec("u", ME.pgid as u32, Some(7)), leader(ME.pgid, 7)),
            (
                rec("u", 5000, Some(7)),
                Some(Proc {
                    start_ticks: 7,
                    pgid: 0,
                }),
            ),
            // Not leading its own group.
            (
                rec("u", 5000, Some(7)),
                Some(Proc {
                    start_ticks: 7,
                    pgid: 4500,
                }),
            ),
        ];
        for (record, now) in table {
            let verdict = judge(&record, "u", ME, now);
            assert!(is_invalid(&verdict), "{record:?} {now:?}: {verdict:?}");
        }
    }

    #[test]
    fn a_record_is_read_with_a_bound_and_only_from_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.json");
        assert_eq!(read_record(&path), Ok(None));
        std::fs::write(&path, br#"{"unit":"u","pid":5000,"start_ticks":7}"#).unwrap();
        assert_eq!(read_record(&path), Ok(Some(rec("u", 5000, Some(7)))));
        std::fs::write(&path, vec![b' '; MAX_RECORD_BYTES as usize + 1]).unwrap();
        assert!(read_record(&path).unwrap_err().contains("larger"));
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(read_record(&path).unwrap_err().contains("regular"));
    }

    #[test]
    fn this_process_is_seen_with_its_group_and_start_time() {
        let me = proc_now(std::process::id()).expect("this process runs");
        assert_eq!(me.pgid, nix::unistd::getpgrp().as_raw());
        assert_eq!(
            proc_now(std::process::id()).map(|p| p.start_ticks),
            Some(me.start_ticks)
        );
    }

    #[test]
    fn only_the_temporary_files_of_units_still_run_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            ".kept.json.tmp",
            ".gone.json.tmp",
            ".kept.json.tmp.Ab12Cd",
            "kept.json",
            "other.txt",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        remove_unused_temps(dir.path(), &["kept"].into_iter().collect());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // Records and other files are not this function's to remove.
        assert_eq!(left, [".kept.json.tmp", "kept.json", "other.txt"]);
    }

    #[test]
    fn a_forgotten_run_leaves_its_file_for_the_next_start_and_no_record() {
        use std::os::unix::fs::MetadataExt;
        let state = tempfile::tempdir().unwrap();
        std::fs::create_dir(state.path().join("runs")).unwrap();
        let record = run_file(state.path(), "u");
        std::fs::write(&record, b"{}").unwrap();
        let inode = std::fs::metadata(&record).unwrap().ino();
        forget_run(state.path(), "u");
        assert!(!record.exists(), "the record is gone");
        let temp = std::fs::metadata(temp_file(state.path(), "u")).unwrap();
        assert_eq!(temp.ino(), inode, "the same file, renamed back");
        // And the writer's view: a record made for the unit writes into that file.
        assert_eq!(
            self_record(state.path(), "u").unwrap().temp_path(),
            temp_file(state.path(), "u")
        );
    }
}
