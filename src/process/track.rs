//! [`spawn_tracked`], the one way launchgraph starts any child, and the registry of children
//! that somebody is going to wait for.
//!
//! The registry exists for the orphan reaper (see `reaper`): it reaps every child of this
//! process that nobody waits for, and must never reap one that a [`TrackedChild`] will wait
//! for, or that wait would lose the exit status. So a child is registered under the same lock
//! that spawned it (the reaper cannot see it unregistered), the reaper checks and reaps under
//! that lock, and a pid leaves the registry only after its status has been collected.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io;
use std::process::ExitStatus;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// What the registry knows about one live child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// A [`TrackedChild`] will wait for it.
    Waiter,
    /// Its `TrackedChild` was dropped before the exit was collected: tokio's own orphan queue
    /// reaps it, so the reaper leaves it alone and forgets it once it is gone.
    TokioOrphanQueue,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Tells a registration apart from a later one of the same (reused) pid.
    token: u64,
    holder: Holder,
}

pub(crate) struct Registry {
    entries: BTreeMap<u32, Entry>,
    next_token: u64,
    /// Set once the orphan reaper runs. Before that, nobody else reaps our children, so a
    /// dropped child can simply be forgotten.
    reaper_active: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    entries: BTreeMap::new(),
    next_token: 0,
    reaper_active: false,
});

/// The registry lock. A panic while holding it leaves the map consistent (every update is one
/// insert or remove), so a poisoned lock is simply taken over.
pub(crate) fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    fn register(&mut self, pid: u32) -> u64 {
        self.next_token += 1;
        let token = self.next_token;
        // An older entry for the same pid is stale: a pid is only reused once reaped.
        self.entries.insert(
            pid,
            Entry {
                token,
                holder: Holder::Waiter,
            },
        );
        token
    }

    fn unregister(&mut self, pid: u32, token: u64) {
        if self.entries.get(&pid).is_some_and(|e| e.token == token) {
            self.entries.remove(&pid);
        }
    }

    fn hand_to_tokio(&mut self, pid: u32, token: u64) {
        if !self.reaper_active {
            self.unregister(pid, token);
            return;
        }
        if let Some(e) = self.entries.get_mut(&pid).filter(|e| e.token == token) {
            e.holder = Holder::TokioOrphanQueue;
        }
    }

    pub fn is_tracked(&self, pid: u32) -> bool {
        self.entries.contains_key(&pid)
    }

    /// Forgets dropped children that are no longer our children (tokio reaped them).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn forget_gone(&mut self, children: &BTreeSet<u32>) {
        self.entries
            .retain(|pid, e| e.holder == Holder::Waiter || children.contains(pid));
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn set_reaper_active(&mut self, active: bool) {
        self.reaper_active = active;
    }
}

/// Whether `pid` is a child spawned through [`spawn_tracked`] whose exit has not been
/// collected yet. For diagnostics and tests.
pub fn is_tracked(pid: u32) -> bool {
    registry().is_tracked(pid)
}

/// A child process spawned through [`spawn_tracked`].
///
/// Dropping it before its exit was collected is fine: tokio reaps it in the background (and
/// kills it first when the command had `kill_on_drop(true)`), and the orphan reaper keeps
/// its hands off it.
pub struct TrackedChild {
    pub child: tokio::process::Child,
    pid: u32,
    token: u64,
    /// The exit status has been collected and the pid unregistered.
    collected: bool,
}

impl TrackedChild {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the child to exit. Cancel-safe; later calls return the same status.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        self.collected();
        Ok(status)
    }

    fn collected(&mut self) {
        if !self.collected {
            self.collected = true;
            registry().unregister(self.pid, self.token);
        }
    }
}

impl Drop for TrackedChild {
    fn drop(&mut self) {
        if self.collected {
            return;
        }
        match self.child.try_wait() {
            Ok(Some(_)) | Err(_) => registry().unregister(self.pid, self.token),
            // Still running: the `Child` about to be dropped goes to tokio's orphan queue.
            Ok(None) => registry().hand_to_tokio(self.pid, self.token),
        }
    }
}

/// Spawns `cmd`; every child launchgraph starts goes through here.
///
/// The child is registered before the lock that the orphan reaper also takes is released, so
/// the reaper can never collect its exit status.
pub fn spawn_tracked(cmd: &mut tokio::process::Command) -> io::Result<TrackedChild> {
    let mut registry = registry();
    let child = cmd.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("a freshly spawned child has no pid"))?;
    let token = registry.register(pid);
    Ok(TrackedChild {
        child,
        pid,
        token,
        collected: false,
    })
}

/// A child created with a pidfd (see `clone`), registered like a [`TrackedChild`]: the orphan
/// reaper leaves it to [`wait`](Self::wait), which waits for the pidfd to become readable (the
/// process exited) and collects the status with waitid(P_PIDFD) (Linux 5.4,
/// https://man7.org/linux/man-pages/man2/waitid.2.html).
///
/// Dropped before its exit was collected, it is unregistered: the orphan reaper collects it.
#[cfg(target_os = "linux")]
pub(crate) struct PidfdChild {
    pid: u32,
    token: u64,
    /// The pidfd until the first wait, which moves it into `watcher`.
    pidfd: Option<std::os::fd::OwnedFd>,
    watcher: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
    status: Option<ExitStatus>,
}

/// Creates a child with `spawn` (its pid and pidfd) under the registry lock and registers it
/// before the lock is released, as [`spawn_tracked`] does.
#[cfg(target_os = "linux")]
pub(crate) fn register_pidfd_child(
    spawn: impl FnOnce() -> io::Result<(u32, std::os::fd::OwnedFd)>,
) -> io::Result<PidfdChild> {
    let mut registry = registry();
    let (pid, pidfd) = spawn()?;
    let token = registry.register(pid);
    Ok(PidfdChild {
        pid,
        token,
        pidfd: Some(pidfd),
        watcher: None,
        status: None,
    })
}

#[cfg(target_os = "linux")]
impl PidfdChild {
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    fn raw_pidfd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match (&self.watcher, &self.pidfd) {
            (Some(w), _) => w.get_ref().as_raw_fd(),
            (None, Some(fd)) => fd.as_raw_fd(),
            (None, None) => -1,
        }
    }

    /// Collects the exit status if the child has exited; `block` waits for it.
    fn collect(&mut self, block: bool) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let status = waitid_pidfd(self.raw_pidfd(), block)?;
        if let Some(status) = status {
            self.collected(status);
        }
        Ok(status)
    }

    fn collected(&mut self, status: ExitStatus) {
        self.status = Some(status);
        registry().unregister(self.pid, self.token);
    }

    /// Waits for the child to exit. Cancel-safe; later calls return the same status.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        use std::os::fd::AsRawFd;
        if let Some(status) = self.status {
            return Ok(status);
        }
        if let Some(fd) = self.pidfd.take() {
            // SAFETY: an OwnedFd, moved in: it stays open and the same until the AsyncFd goes.
            let watcher = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            }
            .map_err(|e| e.into_parts().1)?;
            self.watcher = Some(watcher);
        }
        let watcher = self
            .watcher
            .as_ref()
            .ok_or_else(|| io::Error::other("the child's pidfd is gone"))?;
        let fd = watcher.get_ref().as_raw_fd();
        let status = loop {
            // A pidfd turns readable when its process exits, and stays so.
            let mut ready = watcher.readable().await?;
            match waitid_pidfd(fd, false)? {
                Some(status) => break status,
                None => ready.clear_ready(),
            }
        };
        self.collected(status);
        Ok(status)
    }

    /// Waits, blocking, for a child that is exiting anyway (it failed before its exec).
    pub(crate) fn reap_blocking(mut self) {
        let _ = self.collect(true);
    }
}

/// waitid(P_PIDFD, `pidfd`, WEXITED): the exit status, or `None` while it runs (`block` false).
#[cfg(target_os = "linux")]
fn waitid_pidfd(pidfd: std::os::fd::RawFd, block: bool) -> io::Result<Option<ExitStatus>> {
    use std::os::unix::process::ExitStatusExt;
    let flags = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: waitid writes the zeroed siginfo it is given.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above; a bad descriptor is an error, not undefined behaviour.
        let done = unsafe { libc::waitid(libc::P_PIDFD, pidfd as libc::id_t, &mut info, flags) };
        if done != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled in a SIGCHLD siginfo, or left it zeroed (WNOHANG).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        // The wait status encoding (torvalds/linux:kernel/exit.c, wait_task_zombie).
        let raw = match info.si_code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            libc::CLD_DUMPED => status | 0x80,
            _ => status,
        };
        return Ok(Some(ExitStatus::from_raw(raw)));
    }
}

#[cfg(target_os = "linux")]
impl Drop for PidfdChild {
    fn drop(&mut self) {
        if self.status.is_none() && !matches!(self.collect(false), Ok(Some(_))) {
            registry().unregister(self.pid, self.token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_unregister_does_not_remove_a_newer_registration() {
        let mut r = Registry {
            entries: BTreeMap::new(),
            next_token: 0,
            reaper_active: true,
        };
        let old = r.register(42);
        let new = r.register(42);
        r.unregister(42, old);
        assert!(r.is_tracked(42));
        r.unregister(42, new);
        assert!(!r.is_tracked(42));
    }

    #[test]
    fn dropped_children_are_forgotten_once_gone() {
        let mut r = Registry {
            entries: BTreeMap::new(),
            next_token: 0,
            reaper_active: true,
        };
        let a = r.register(10);
        r.register(11);
        r.hand_to_tokio(10, a);
        r.forget_gone(&BTreeSet::from([10, 11]));
        assert!(r.is_tracked(10), "still our child: tokio has not reaped it");
        r.forget_gone(&BTreeSet::new());
        assert!(!r.is_tracked(10));
        assert!(
            r.is_tracked(11),
            "a waited-for child stays until its waiter collects it"
        );
    }

    #[test]
    fn without_the_reaper_a_dropped_child_is_forgotten_at_once() {
        let mut r = Registry {
            entries: BTreeMap::new(),
            next_token: 0,
            reaper_active: false,
        };
        let t = r.register(7);
        r.hand_to_tokio(7, t);
        assert!(!r.is_tracked(7));
    }
}
