//! Reaping the children nobody waits for: grandchildren orphaned when their parent died.
//!
//! On Linux, [`start_reaper`] makes launchgraph a child subreaper, so a unit's orphaned
//! descendants are re-parented to launchgraph instead of to init, and reaps every such child as
//! it exits: on each SIGCHLD it lists launchgraph's children and collects every one that is not
//! tracked (see `track`). Children spawned through `spawn_tracked` are left to their waiters.
//!
//! On macOS there is no subreaper: orphans go to launchd (pid 1), which reaps them. Because
//! launchgraph kills a unit's whole process group when its main process exits, no orphan of a
//! unit outlives it for long there either.
//!
//! An orphan found in one of the units' cgroups (see `cgroup`) is reported once, when the
//! reaper first sees it, as adopted from that unit (`ORPHAN_ADOPTED`). Stopping it is the
//! unit's business: this module only collects exit statuses that would otherwise leave zombies
//! behind.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use tokio::sync::broadcast;

/// How orphaned descendants of units are reaped on this platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanReaping {
    /// launchgraph is a child subreaper and reaps them itself (Linux).
    Subreaper,
    /// They are re-parented to pid 1, which reaps them (macOS: launchd).
    Init,
}

/// One orphan the reaper collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReapedOrphan {
    pub pid: u32,
    /// Exit code, when it exited normally.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
}

static STARTED: Mutex<Option<OrphanReaping>> = Mutex::new(None);
static REAPED_COUNT: AtomicU64 = AtomicU64::new(0);

fn reaped_channel() -> &'static broadcast::Sender<ReapedOrphan> {
    static CHANNEL: OnceLock<broadcast::Sender<ReapedOrphan>> = OnceLock::new();
    CHANNEL.get_or_init(|| broadcast::channel(1024).0)
}

/// Starts reaping orphaned descendants; call it once at startup, before spawning units.
/// Calling it again returns the first result and changes nothing.
///
/// On Linux it sets `PR_SET_CHILD_SUBREAPER` and starts one dedicated thread (named
/// `launchgraph-reaper`) that waits for SIGCHLD. The thread has its own small runtime rather
/// than being a task of the caller's: reaping must go on for as long as the process lives,
/// whichever runtime called this, and listing children reads `/proc` with blocking calls. So
/// it needs no runtime and can be called from anywhere.
///
/// Once it runs, a child spawned other than through `spawn_tracked` is collected by the reaper
/// as soon as it exits, and waiting for it elsewhere fails with ECHILD.
pub fn start_reaper() -> io::Result<OrphanReaping> {
    let mut started = STARTED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(mode) = *started {
        return Ok(mode);
    }
    // Said once, at startup: whether escaped processes can be attributed to their unit.
    super::cgroup::init();
    let mode = platform::start()?;
    *started = Some(mode);
    Ok(mode)
}

/// Every orphan the reaper collects from now on. Receivers that fall more than 1024 behind
/// lose the oldest (`RecvError::Lagged`).
pub fn subscribe_reaped() -> broadcast::Receiver<ReapedOrphan> {
    reaped_channel().subscribe()
}

/// How many orphans the reaper has collected since the process started.
pub fn reaped_count() -> u64 {
    REAPED_COUNT.load(Ordering::Relaxed)
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn record(reaped: ReapedOrphan) {
    REAPED_COUNT.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        pid = reaped.pid,
        code = reaped.code,
        signal = reaped.signal,
        "reaped an orphaned process"
    );
    // No receiver is the normal case.
    let _ = reaped_channel().send(reaped);
}

#[cfg(not(target_os = "linux"))]
mod platform {
    use super::OrphanReaping;
    use std::io;

    pub(super) fn start() -> io::Result<OrphanReaping> {
        Ok(OrphanReaping::Init)
    }
}

#[cfg(target_os = "linux")]
mod platform {
    use std::collections::BTreeSet;
    use std::fs;
    use std::io;
    use std::path::Path;

    use nix::errno::Errno;
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    use nix::unistd::Pid;
    use tokio::signal::unix::{SignalKind, signal};

    use super::{OrphanReaping, ReapedOrphan, record};
    use crate::process::cgroup;
    use crate::process::track::registry;
    use crate::reason::Reason;

    pub(super) fn start() -> io::Result<OrphanReaping> {
        // From here on, a dropped child is left to tokio rather than forgotten, or the first
        // scan could collect it under tokio's feet.
        registry().set_reaper_active(true);
        nix::sys::prctl::set_child_subreaper(true)?;
        if let Err(e) = spawn_thread() {
            // Without a reaper, orphans must go back to init or they would stay zombies.
            let _ = nix::sys::prctl::set_child_subreaper(false);
            registry().set_reaper_active(false);
            return Err(e);
        }
        Ok(OrphanReaping::Subreaper)
    }

    fn spawn_thread() -> io::Result<()> {
        // Decided once: kernels without CONFIG_PROC_CHILDREN lack the per-thread list.
        let children_files = Path::new("/proc/thread-self/children").exists();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        std::thread::Builder::new()
            .name("launchgraph-reaper".into())
            .spawn(move || run(children_files, ready_tx))?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("the reaper thread ended before it started"))?
    }

    fn run(children_files: bool, ready: std::sync::mpsc::Sender<io::Result<()>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        runtime.block_on(async move {
            let mut sigchld = match signal(SignalKind::child()) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let _ = ready.send(Ok(()));
            // Untracked children already seen, so each adoption is reported once.
            let mut adopted = BTreeSet::new();
            // The first scan catches whatever exited before the listener existed; SIGCHLDs
            // that arrive during a scan are remembered, so the next `recv` returns at once.
            loop {
                reap_untracked(children_files, &mut adopted);
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
    }

    /// Reaps every untracked child that has exited, and reports each one first seen in a
    /// unit's cgroup (read before it is reaped: a zombie still has its cgroup).
    fn reap_untracked(children_files: bool, adopted: &mut BTreeSet<u32>) {
        let me = std::process::id();
        // Listing outside the lock is safe: a child that a spawn is registering right now is
        // registered by the time we hold the lock and check it.
        let children = match list_children(me, children_files) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list launchgraph's children to reap orphans");
                return;
            }
        };
        adopted.retain(|pid| children.contains(pid));
        let mut reaped = Vec::new();
        {
            let mut registry = registry();
            registry.forget_gone(&children);
            for &pid in &children {
                if registry.is_tracked(pid) {
                    continue;
                }
                if adopted.insert(pid)
                    && let Some(unit) = cgroup::unit_of(pid)
                {
                    tracing::warn!(
                        reason = %Reason::OrphanAdopted,
                        unit,
                        pid,
                        command = cgroup::command_line(pid),
                        "adopted a process of the unit whose parent died"
                    );
                }
                let Ok(raw) = i32::try_from(pid) else {
                    continue;
                };
                match waitpid(Pid::from_raw(raw), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, code)) => reaped.push(ReapedOrphan {
                        pid,
                        code: Some(code),
                        signal: None,
                    }),
                    Ok(WaitStatus::Signaled(_, sig, _)) => reaped.push(ReapedOrphan {
                        pid,
                        code: None,
                        signal: Some(sig as i32),
                    }),
                    // Still running, or already collected between the listing and now.
                    Ok(_) | Err(Errno::ECHILD) => {}
                    Err(e) => tracing::warn!(pid, error = %e, "waitpid on an orphan failed"),
                }
            }
        }
        // A reaped pid may come back as a new orphan.
        for r in &reaped {
            adopted.remove(&r.pid);
        }
        reaped.into_iter().for_each(record);
    }

    fn list_children(me: u32, children_files: bool) -> io::Result<BTreeSet<u32>> {
        if children_files {
            children_from_task_files()
        } else {
            children_from_proc_scan(me)
        }
    }

    /// `/proc/self/task/*/children`: a re-parented orphan is attached to any of our threads.
    fn children_from_task_files() -> io::Result<BTreeSet<u32>> {
        let mut out = BTreeSet::new();
        for task in fs::read_dir("/proc/self/task")? {
            match fs::read_to_string(task?.path().join("children")) {
                Ok(list) => out.extend(
                    list.split_ascii_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                ),
                // The thread ended while we listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Every process whose parent is `me`, from `/proc/<pid>/stat`.
    fn children_from_proc_scan(me: u32) -> io::Result<BTreeSet<u32>> {
        let mut out = BTreeSet::new();
        for entry in fs::read_dir("/proc")? {
            let entry = entry?;
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // A process that ended meanwhile has no stat file any more.
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if super::stat_ppid(&stat) == Some(me) {
                out.insert(pid);
            }
        }
        Ok(out)
    }
}

/// The parent pid from the text of `/proc/<pid>/stat`: `pid (comm) state ppid ...`, where
/// `comm` may itself contain spaces and parentheses, hence the search from the last `)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_is_read_past_a_command_name_with_spaces_and_parens() {
        assert_eq!(stat_ppid("123 (sleep) S 45 123 123 0 -1"), Some(45));
        assert_eq!(stat_ppid("9 (a (b) c)) Z 1 9 9 0"), Some(1));
        assert_eq!(stat_ppid("garbage"), None);
    }
}
