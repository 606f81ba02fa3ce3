//! Each `exec` unit's processes in a cgroup v2 of their own (Linux, as root), so that every
//! descendant stays attributed to its unit whatever it does with sessions and process groups
//! (`setsid`, `setpgid`), and is killed when the unit stops.
//!
//! Layout: `<the daemon's own cgroup>/launchgraph.<owner>/<unit>`, one directory per unit,
//! created before its first process and kept for its later runs, emptied at the end of each
//! run: a process is created in a cgroup that has held one before in a third of the time it
//! takes in a fresh one (clone3 with CLONE_INTO_CGROUP, measured with strace on Linux 6.18:
//! 0.4 ms instead of 1.4 ms; a fork outside cgroups takes 0.35 ms). [`remove_all`] removes
//! them once every unit is stopped, at the daemon's end.
//! The owner is the daemon's state directory ([`set_owner`]; a short hash of its path), which
//! one daemon at a time may hold (it is locked): daemons that share a cgroup are kept apart,
//! and a daemon killed outright leaves its directories to the next daemon of the same state
//! directory, which stops what is still in them once it stopped what the previous one left
//! running ([`stop_stale_cgroups`]), and removes them. It never touches another state
//! directory's units. Without an owner (a unit spawned outside a daemon) the process's pid
//! names the directory, which the next launchgraph removes once that process is gone. No controller is enabled, so the
//! "no internal processes" rule does not apply and the daemon may stay in its own cgroup
//! (https://docs.kernel.org/admin-guide/cgroup-v2.html#no-internal-process-constraint).
//!
//! The unit's process is created inside its cgroup (clone3(2) with CLONE_INTO_CGROUP, see
//! `clone`), so no process is ever moved between cgroups: moving one (a write to
//! `cgroup.procs`) waits for an RCU grace period, milliseconds per spawn. When cgroups cannot
//! be used (not root, no cgroup v2 hierarchy, not writable, clone3 refused, or not Linux) this
//! says so once, and units run as before: in their process group only.
//!
//! It does not decide when a unit stops: `running` calls [`UnitCgroup::stop_rest`] once the
//! unit's main process has exited and its process group was killed.

// Without cgroups (not Linux) units never get one: most of this is then unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::fsutil::read_regular;
use crate::reason::Reason;

/// Far more than any `/proc` or cgroup file read here holds, for a unit with many processes.
const READ_CAP: u64 = 4 << 20;
/// How long killing what is left of a unit may take, after SIGKILL, before giving up on it:
/// SIGKILL only fails to end a process stuck in the kernel.
const KILL_DEADLINE: Duration = Duration::from_secs(5);

/// Whose units these are: set once, before the first unit is spawned.
static OWNER: OnceLock<String> = OnceLock::new();

/// Names this daemon's cgroups after its state directory (see the module documentation).
/// Call it before anything is spawned; later calls change nothing.
pub(crate) fn set_owner(state_dir: &Path) {
    use sha2::{Digest, Sha256};
    let path = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    let key: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let _ = OWNER.set(key);
}

/// Where this daemon keeps its units' cgroups.
struct Hierarchy {
    /// `<mount><own cgroup>/launchgraph.<pid>`.
    base: PathBuf,
    /// The same as `/proc/PID/cgroup` shows it, with a trailing `/`.
    shown: String,
}

/// The hierarchy, or why there is none; decided once, and logged then.
fn hierarchy() -> Option<&'static Hierarchy> {
    static HIERARCHY: OnceLock<Option<Hierarchy>> = OnceLock::new();
    HIERARCHY
        .get_or_init(|| match detect() {
            Ok(h) => {
                tracing::debug!(base = %h.base.display(), "units run in cgroups of their own");
                Some(h)
            }
            Err(why) => {
                tracing::warn!(
                    "processes that leave their unit's process group (setsid) cannot be \
                     attributed to their unit nor stopped with it: {why}"
                );
                None
            }
        })
        .as_ref()
}

/// Decides, once, whether units get cgroups of their own, and logs the reason when not. Call
/// it at startup, so that the reason is logged then; spawning a unit decides it otherwise.
pub(crate) fn init() {
    let _ = hierarchy();
}

#[cfg(not(target_os = "linux"))]
fn detect() -> Result<Hierarchy, String> {
    Err("this system has no cgroups".into())
}

#[cfg(target_os = "linux")]
fn detect() -> Result<Hierarchy, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("launchgraph does not run as root".into());
    }
    super::clone::usable()?;
    let read = |path: &str| {
        read_regular(Path::new(path), READ_CAP)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| format!("{path} {e}"))
    };
    let mount =
        cgroup2_mount(&read("/proc/self/mountinfo")?).ok_or("no cgroup v2 hierarchy is mounted")?;
    let own = read("/proc/self/cgroup")?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        .ok_or("launchgraph is in no cgroup v2 (/proc/self/cgroup has no 0:: line)")?;
    let name = match OWNER.get() {
        Some(owner) => format!("launchgraph.{owner}"),
        None => format!("launchgraph.{}", std::process::id()),
    };
    let base = mount.join(own.trim_start_matches('/')).join(&name);
    // Trying is the only way to know: a read-only mount, a delegation that stops above us.
    make_dir(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    let is_cgroup = base.join("cgroup.procs").exists();
    let _ = fs::remove_dir(&base);
    if !is_cgroup {
        return Err(format!("{} is not a cgroup v2 hierarchy", mount.display()));
    }
    remove_stale(base.parent().unwrap_or(&base));
    let shown = format!("{}/{name}/", own.trim_end_matches('/'));
    Ok(Hierarchy { base, shown })
}

/// The mount point of the cgroup v2 hierarchy, from the text of `/proc/self/mountinfo`
/// (https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html): the fifth field, with
/// the filesystem type after the ` - ` separator.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let point = left.split_whitespace().nth(4)?;
        // Spaces and a few others are octal escapes; such a mount point is not worth decoding.
        (right.split_whitespace().next() == Some("cgroup2") && !point.contains('\\'))
            .then(|| PathBuf::from(point))
    })
}

fn make_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// The `launchgraph.<pid>` directories (units spawned outside a daemon) in `parent` of
/// processes no longer alive. A live pid may be creating a unit's cgroup right now: its
/// directory is left alone.
fn stale_dirs(parent: &Path) -> Vec<PathBuf> {
    let me = std::process::id();
    fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            name.to_str()
                .and_then(|n| n.strip_prefix("launchgraph."))
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(|pid| {
                    pid > 0
                        && pid as u32 != me
                        && kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH)
                })
        })
        .map(|entry| entry.path())
        .collect()
}

/// Removes the empty cgroups that daemons no longer alive left in `parent` (killed, they could
/// not). One with a live process in it stays until that process is gone: whoever stops it
/// (a new daemon stops what the previous one left running) ends a unit of ours later, and
/// every end of a unit calls this again.
fn remove_stale(parent: &Path) {
    for dir in stale_dirs(parent) {
        for unit in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if unit.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = fs::remove_dir(unit.path());
            }
        }
        if fs::remove_dir(&dir).is_ok() {
            tracing::debug!(dir = %dir.display(), "removed the cgroups a previous launchgraph left");
        }
    }
}

/// The unit whose cgroup `pid` is in, if it is one of this daemon's: read from
/// `/proc/PID/cgroup`, which a zombie still has until it is reaped.
pub(crate) fn unit_of(pid: u32) -> Option<String> {
    let h = hierarchy()?;
    let text = read_regular(Path::new(&format!("/proc/{pid}/cgroup")), READ_CAP).ok()?;
    unit_in(&String::from_utf8_lossy(&text), &h.shown).map(str::to_owned)
}

/// The unit in the text of a `/proc/PID/cgroup` whose cgroup v2 line (`0::PATH`) is
/// `<shown><unit>`. A cgroup removed while the process was a zombie reads ` (deleted)`
/// (torvalds/linux:kernel/cgroup/cgroup.c, `proc_cgroup_show`).
fn unit_in<'a>(text: &'a str, shown: &str) -> Option<&'a str> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let unit = path.strip_prefix(shown)?.trim_end_matches(" (deleted)");
    (!unit.is_empty() && !unit.contains('/')).then_some(unit)
}

/// How a process reads in a report: its command line, or `[comm]` once it has none (a zombie).
pub(crate) fn command_line(pid: u32) -> String {
    let read = |what: &str| read_regular(Path::new(&format!("/proc/{pid}/{what}")), READ_CAP);
    if let Ok(args) = read("cmdline") {
        let args: Vec<_> = args
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(String::from_utf8_lossy)
            .collect();
        if !args.is_empty() {
            return args.join(" ");
        }
    }
    let comm = read("comm").unwrap_or_default();
    format!("[{}]", String::from_utf8_lossy(&comm).trim_end())
}

/// The process group of a live process, from `/proc/PID/stat`.
fn pgid_of(pid: u32) -> Option<u32> {
    let stat = read_regular(Path::new(&format!("/proc/{pid}/stat")), READ_CAP).ok()?;
    let stat = String::from_utf8_lossy(&stat);
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
    let mut fields = stat[stat.rfind(')')? + 1..].split_ascii_whitespace();
    fields.nth(2)?.parse().ok()
}

/// A unit's cgroup directory, made once and kept for the unit's later runs.
#[derive(Debug)]
struct Dir {
    dir: PathBuf,
    /// The directory, open, for clone3's CLONE_INTO_CGROUP.
    fd: OwnedFd,
    /// A run holds it: a unit has one run at a time, and a run's end stops everything in
    /// its cgroup, so two runs of one unit name (possible outside the daemon) never share one.
    leased: bool,
}

/// The units' cgroups this process made, by unit.
static MADE: Mutex<BTreeMap<String, Dir>> = Mutex::new(BTreeMap::new());

fn made() -> std::sync::MutexGuard<'static, BTreeMap<String, Dir>> {
    MADE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One run's hold on its unit's cgroup, from before its process is created until everything
/// in the cgroup is gone. Dropping it lets the next run of the unit have the cgroup.
#[derive(Debug)]
pub(crate) struct UnitCgroup {
    unit: String,
    dir: PathBuf,
    /// A copy of the directory's descriptor, for CLONE_INTO_CGROUP.
    fd: Arc<OwnedFd>,
}

impl UnitCgroup {
    /// `unit`'s cgroup for one run, made when it has none yet. `None` when cgroups cannot be
    /// used (said once at startup), when this one cannot be made (said now), or when another
    /// run of the unit holds it (only outside the daemon, which runs a unit once at a time).
    pub(crate) fn create(unit: &str) -> Option<Self> {
        let h = hierarchy()?;
        // clone3 may have been refused since the hierarchy was found (said once, then).
        #[cfg(target_os = "linux")]
        super::clone::usable().ok()?;
        let mut made = made();
        if let Some(d) = made.get_mut(unit) {
            if d.leased {
                tracing::debug!(
                    unit,
                    "another run of the unit holds its cgroup; this one runs without"
                );
                return None;
            }
            d.leased = true;
            return Some(Self {
                unit: unit.to_owned(),
                dir: d.dir.clone(),
                fd: Arc::new(d.fd.try_clone().ok()?),
            });
        }
        let dir = h.base.join(unit);
        match Self::open(&h.base, &dir) {
            Ok(fd) => {
                let copy = fd.try_clone().ok()?;
                made.insert(
                    unit.to_owned(),
                    Dir {
                        dir: dir.clone(),
                        fd,
                        leased: true,
                    },
                );
                Some(Self {
                    unit: unit.to_owned(),
                    dir,
                    fd: Arc::new(copy),
                })
            }
            Err(e) => {
                tracing::warn!(
                    unit,
                    error = %e,
                    "cannot create the unit's cgroup; what leaves its process group will not be stopped with it"
                );
                None
            }
        }
    }

    fn open(base: &Path, dir: &Path) -> io::Result<OwnedFd> {
        make_dir(base)?;
        make_dir(dir)?;
        use std::os::unix::fs::OpenOptionsExt;
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(dir)?;
        Ok(file.into())
    }

    /// The cgroup's directory, for CLONE_INTO_CGROUP.
    pub(crate) fn dir_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The cgroup could not take a process (removed behind our back, say): the next run of
    /// the unit makes it again.
    pub(crate) fn forget(self) {
        made().remove(&self.unit);
    }

    /// Once the unit's main process has exited and its process group `pgid` was killed: stops
    /// everything still in the cgroup as the unit is stopped (`stop_signal`, then SIGKILL
    /// after `stop_timeout`) and reports each process that had left the process group. What
    /// was in the group is being killed already: it is neither reported nor given a grace.
    pub(crate) async fn stop_rest(&self, pgid: u32, stop_signal: Signal, stop_timeout: Duration) {
        stop_members(
            &self.unit,
            &self.dir,
            Some((pgid, stop_signal, stop_timeout)),
        )
        .await;
    }
}

impl Drop for UnitCgroup {
    fn drop(&mut self) {
        if let Some(d) = made().get_mut(&self.unit) {
            d.leased = false;
        }
    }
}

/// Removes the units' cgroups this process made, once no run holds them (at the daemon's end,
/// when every unit is stopped), the daemon's directory with them, and the empty ones that
/// processes no longer alive left beside it.
pub(crate) fn remove_all() {
    let Some(h) = hierarchy() else { return };
    made().retain(|unit, d| {
        if d.leased {
            return true;
        }
        match fs::remove_dir(&d.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(unit, dir = %d.dir.display(), error = %e, "cannot remove the unit's cgroup");
                true
            }
            _ => false,
        }
    });
    let _ = fs::remove_dir(&h.base);
    if let Some(parent) = h.base.parent() {
        remove_stale(parent);
    }
}

/// Stops every process in the cgroup `dir` of `unit` and returns once none is left (or
/// [`KILL_DEADLINE`] after SIGKILL). With `group` = (pgid, signal, timeout), each process
/// outside the process group pgid is reported with [`Reason::OrphanAdopted`] and sent
/// `signal`, and whatever is left after `timeout` is killed; without, every process is
/// reported and killed at once. Killed with `cgroup.kill` (Linux 5.14), else SIGKILL to each
/// member until none is left.
async fn stop_members(unit: &str, dir: &Path, group: Option<(u32, Signal, Duration)>) {
    let cgroup_kill = dir.join("cgroup.kill");
    let grace = group.map_or(Duration::ZERO, |(_, _, timeout)| timeout);
    let killing_from = Instant::now() + grace;
    let mut seen = BTreeSet::new();
    let mut killing = false;
    loop {
        let members = members(dir);
        if members.is_empty() {
            return;
        }
        let now = Instant::now();
        if !killing && now >= killing_from {
            killing = true;
        }
        for &pid in &members {
            if !seen.insert(pid) {
                continue;
            }
            match group {
                Some((pgid, _, _)) if pgid_of(pid).is_none_or(|g| g == pgid) => {}
                Some((_, signal, _)) => {
                    tracing::warn!(
                        reason = %Reason::OrphanAdopted,
                        unit,
                        pid,
                        command = command_line(pid),
                        "stopping a process that had left the unit's process group"
                    );
                    if !killing && let Ok(raw) = i32::try_from(pid) {
                        let _ = kill(Pid::from_raw(raw), signal);
                    }
                }
                None => tracing::warn!(
                    reason = %Reason::OrphanAdopted,
                    unit,
                    pid,
                    command = command_line(pid),
                    "killing a process a previous launchgraph left in the unit's cgroup"
                ),
            }
        }
        if killing {
            let killed = fs::write(&cgroup_kill, "1");
            if killed.is_err() {
                // Before Linux 5.14 there is no cgroup.kill: one by one.
                for &pid in &members {
                    if let Ok(pid) = i32::try_from(pid) {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            }
            if now >= killing_from + KILL_DEADLINE {
                tracing::warn!(
                    unit,
                    pids = ?members,
                    "processes of the unit's cgroup outlived SIGKILL"
                );
                return;
            }
        }
        // Nothing announces that a process is gone: poll, briefly.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The live processes of the cgroup `dir`.
fn members(dir: &Path) -> Vec<u32> {
    read_regular(&dir.join("cgroup.procs"), READ_CAP)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split_ascii_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// At startup, once what a previous daemon of the same state directory left running was
/// stopped (see `engine::runs::stop_leftovers`): kills what is still in that daemon's units'
/// cgroups (what had left its unit's process group), reports each, and removes them. Empty
/// directories that processes no longer alive left are removed too; nothing of another state
/// directory's daemon is touched.
pub(crate) async fn stop_stale_cgroups() {
    let Some(h) = hierarchy() else {
        return;
    };
    for entry in fs::read_dir(&h.base).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let unit = entry.file_name().to_string_lossy().into_owned();
            stop_members(&unit, &entry.path(), None).await;
            let _ = fs::remove_dir(entry.path());
        }
    }
    let _ = fs::remove_dir(&h.base);
    if let Some(parent) = h.base.parent() {
        remove_stale(parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_is_read_from_proc_pid_cgroup() {
        let shown = "/system.slice/lg.service/launchgraph.7/";
        let line = |path: &str| format!("1:name=systemd:/\n0::{path}\n");
        let text = line("/system.slice/lg.service/launchgraph.7/model");
        assert_eq!(unit_in(&text, shown), Some("model"));
        let text = line("/system.slice/lg.service/launchgraph.7/model (deleted)");
        assert_eq!(unit_in(&text, shown), Some("model"));
        for other in [
            "/system.slice/lg.service",
            "/system.slice/lg.service/launchgraph.7/",
            "/system.slice/lg.service/launchgraph.70/model",
            "/system.slice/lg.service/launchgraph.7/model/sub",
        ] {
            assert_eq!(unit_in(&line(other), shown), None, "{other}");
        }
    }

    #[test]
    fn the_cgroup2_mount_is_found_among_v1_mounts() {
        let info = "\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
35 25 0:31 / /sys/fs/cgroup/unified rw,relatime shared:14 - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(info),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_mount("30 25 0:26 / /sys rw - sysfs sysfs rw\n"),
            None
        );
    }
}
