//! The `launchd` backend: one run of a unit is a job started, observed and stopped, all
//! through `launchctl`.
//!
//! This module owns the launchd sequences (Homebrew/brew Library/Homebrew/services/cli.rb `launchctl_load`; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html): `enable` before every `bootstrap`
//! (a persisted disable makes bootstrap fail, openclaw#80384), retrying bootstrap on the
//! transient 5/37 while a previous `bootout` drains (openclaw#136453), adopting a job that is
//! already running instead of kickstarting it, and stopping a KeepAlive job with `bootout`
//! (`kill` would only make launchd relaunch it). A relaunch by launchd itself is observed, not
//! fought: the run reports [`Event::Relaunching`] and keeps watching for the new pid.
//!
//! It reports to the decision core exactly as an `exec` run does, so the engine gives launchd
//! jobs the same guarantees (ordered start on readiness, ordered restart, bounded stops).

use std::path::Path;
use std::time::{Duration, Instant};

use super::Run;
use crate::engine::events::{Event, ExitInfo};
use crate::launchd::{
    ConsoleUser, LastExit, Launchctl, LaunchctlError, PrintOutcome, ServiceInfo, domain_target,
    service_target,
};
use crate::reason::Reason;
use crate::unit::LaunchdSpec;

/// How long to wait before trying a unit again whose GUI domain does not exist.
pub(crate) const NO_GUI_SESSION_RETRY: Duration = Duration::from_secs(30);
/// The bound on bootstrap retries while launchd drains an earlier bootout.
const BOOTSTRAP_RETRY_FOR: Duration = Duration::from_secs(15);
/// How often `print` is asked while waiting for launchd to act (a relaunch, a drain).
const PRINT_POLL: Duration = Duration::from_millis(200);
/// The longest stop bound taken from a plist's ExitTimeOut: a day, like the longest
/// `stop-timeout` a unit file may set; a larger value is read as this.
const MAX_EXIT_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// The stop bound when the plist sets no ExitTimeOut.
const DEFAULT_EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// What the runtime needs to drive launchd.
#[derive(Clone)]
pub struct LaunchdContext {
    pub launchctl: Launchctl,
    pub console: ConsoleUser,
}

/// What the plist says that changes how the job is driven.
struct PlistFacts {
    keepalive: bool,
    exit_timeout: Duration,
}

fn read_plist_facts(path: &Path) -> PlistFacts {
    // Read like every other file: a FIFO or a device swapped in after preflight must not hang
    // the run, nor an endless file fill memory.
    let dict = crate::fsutil::read_regular(path, crate::preflight::MAX_PLIST_BYTES)
        .ok()
        .and_then(|bytes| plist::Value::from_reader(std::io::Cursor::new(bytes)).ok())
        .and_then(|v| v.into_dictionary());
    let keepalive = dict
        .as_ref()
        .and_then(|d| d.get("KeepAlive"))
        .is_some_and(|v| match v {
            plist::Value::Boolean(b) => *b,
            // A dict of conditions (SuccessfulExit, Crashed, ...): launchd may relaunch it.
            plist::Value::Dictionary(_) => true,
            _ => false,
        });
    let exit_timeout = dict
        .as_ref()
        .and_then(|d| d.get("ExitTimeOut"))
        .and_then(|v| v.as_signed_integer())
        .filter(|s| *s > 0)
        .map_or(DEFAULT_EXIT_TIMEOUT, |s| {
            Duration::from_secs(s as u64).min(MAX_EXIT_TIMEOUT)
        });
    PlistFacts {
        keepalive,
        exit_timeout,
    }
}

fn exit_info(last: LastExit) -> ExitInfo {
    match last {
        LastExit::Code(c) => ExitInfo {
            code: Some(c),
            signal: None,
        },
        LastExit::Signal(s) => ExitInfo {
            code: None,
            signal: Some(s),
        },
        LastExit::Never | LastExit::Unknown => ExitInfo {
            code: None,
            signal: None,
        },
    }
}

struct Reporter {
    tx: crate::engine::events::EventTx,
}

impl Reporter {
    fn send(&self, e: Event) {
        let _ = self.tx.send(e);
    }
}

/// How to run one `launchd` unit.
pub(crate) struct LaunchdBackend {
    pub ctx: LaunchdContext,
    pub spec: LaunchdSpec,
}

impl LaunchdBackend {
    /// Drives one run until it is stopped or its job exits for good.
    pub(crate) async fn run(self, run: Run) {
        let Run {
            unit,
            generation,
            stop,
            tx,
            // Held while the job is driven: launchd keeps the job itself should this task die.
            watch: _watch,
        } = run;
        run_launchd(self.ctx, self.spec, unit, generation, stop, tx).await;
    }
}

async fn run_launchd(
    ctx: LaunchdContext,
    spec: LaunchdSpec,
    unit: crate::engine::events::UnitId,
    generation: crate::engine::events::Generation,
    mut stop_rx: tokio::sync::oneshot::Receiver<Reason>,
    tx: crate::engine::events::EventTx,
) {
    let r = Reporter { tx };
    let domain = match domain_target(&spec.domain, &ctx.console) {
        Ok(d) => d,
        Err(e) => {
            r.send(Event::StartDeferred {
                unit,
                generation,
                reason: Reason::NoGuiSession,
                detail: e.to_string(),
                retry_after: Some(NO_GUI_SESSION_RETRY),
            });
            return;
        }
    };
    let target = service_target(&domain, &spec.label.0);
    let facts = read_plist_facts(&spec.plist);
    let lc = &ctx.launchctl;

    let mut info = match start_job(lc, &domain, &target, &spec.plist, facts.keepalive).await {
        Ok(info) => info,
        Err(StartFailure::Deferred(reason, detail)) => {
            r.send(Event::StartDeferred {
                unit,
                generation,
                reason,
                detail,
                retry_after: Some(NO_GUI_SESSION_RETRY),
            });
            return;
        }
        Err(StartFailure::Failed(error)) => {
            r.send(Event::SpawnFailed {
                unit,
                generation,
                reason: Reason::SpawnFailed,
                error,
            });
            return;
        }
    };
    r.send(Event::Spawned {
        unit,
        generation,
        pid: info.pid,
    });

    loop {
        let pid = info.pid;
        let gone = async {
            match pid {
                Some(p) => wait_pid_exit(p).await,
                // No pid to watch (launchd has not said): fall back to asking it.
                None => loop {
                    tokio::time::sleep(PRINT_POLL).await;
                    if !matches!(lc.print(&target).await, Ok(PrintOutcome::Loaded(i)) if i.pid == pid)
                    {
                        break;
                    }
                },
            }
        };
        let stop_reason = tokio::select! {
            () = gone => None,
            Ok(reason) = &mut stop_rx => Some(reason),
        };
        if let Some(reason) = stop_reason {
            let (exit, killed) = stop(lc, &target, &info, &facts, reason).await;
            r.send(Event::Exited {
                unit,
                generation,
                exit,
                killed_after_timeout: killed,
            });
            return;
        }
        // The process is gone. Did launchd keep the job, and will it relaunch it?
        let after = match lc.print(&target).await {
            Ok(PrintOutcome::Loaded(i)) => Some(*i),
            _ => None,
        };
        match after {
            Some(now) if facts.keepalive => {
                let exit = exit_info(now.last_exit);
                r.send(Event::Relaunching {
                    unit,
                    generation,
                    exit,
                });
                // Wait for launchd's relaunch (its ThrottleInterval), or a stop.
                let relaunched = tokio::select! {
                    i = wait_relaunch(lc, &target, pid, now.runs) => i,
                    Ok(reason) = &mut stop_rx => {
                        let (exit, killed) = stop(lc, &target, &now, &facts, reason).await;
                        r.send(Event::Exited { unit, generation, exit, killed_after_timeout: killed });
                        return;
                    }
                };
                match relaunched {
                    Some(i) => {
                        r.send(Event::Spawned {
                            unit,
                            generation,
                            pid: i.pid,
                        });
                        info = i;
                    }
                    None => {
                        r.send(Event::Exited {
                            unit,
                            generation,
                            exit,
                            killed_after_timeout: false,
                        });
                        return;
                    }
                }
            }
            Some(now) => {
                r.send(Event::Exited {
                    unit,
                    generation,
                    exit: exit_info(now.last_exit),
                    killed_after_timeout: false,
                });
                return;
            }
            None => {
                // Unloaded behind our back (someone ran bootout): the run is over.
                r.send(Event::Exited {
                    unit,
                    generation,
                    exit: ExitInfo {
                        code: None,
                        signal: None,
                    },
                    killed_after_timeout: false,
                });
                return;
            }
        }
    }
}

/// Why a job could not be started.
#[derive(Debug)]
pub(crate) enum StartFailure {
    /// Not the job's fault (no GUI session): wait and try again later.
    Deferred(Reason, String),
    Failed(String),
}

/// Ensures the job is loaded and running, returning what `print` says of it: adopts a running
/// job, enables then bootstraps an unloaded one, kickstarts a loaded idle one. Transient
/// failures (a bootout still draining: 5, 37) are retried from the top with backoff, for up
/// to 15 s.
pub(crate) async fn start_job(
    lc: &Launchctl,
    domain: &str,
    target: &str,
    plist: &Path,
    keepalive: bool,
) -> Result<ServiceInfo, StartFailure> {
    let until = crate::clock::deadline(BOOTSTRAP_RETRY_FOR);
    let mut delay = Duration::from_millis(100);
    loop {
        match start(lc, domain, target, plist, keepalive).await {
            Ok(info) => return Ok(info),
            Err(Attempt::Transient(e)) if Instant::now() < until => {
                tracing::debug!(target, error = %e, "launchd not ready for this yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(Attempt::Transient(e)) | Err(Attempt::Failed(e)) => {
                return Err(StartFailure::Failed(e.to_string()));
            }
            Err(Attempt::NoDomain(detail)) => {
                return Err(StartFailure::Deferred(Reason::NoGuiSession, detail));
            }
        }
    }
}

enum Attempt {
    Transient(LaunchctlError),
    NoDomain(String),
    Failed(LaunchctlError),
}

impl From<LaunchctlError> for Attempt {
    fn from(e: LaunchctlError) -> Self {
        if e.is_no_domain() {
            Attempt::NoDomain(e.to_string())
        } else if e.is_transient() || e.is_disabled() {
            Attempt::Transient(e)
        } else {
            Attempt::Failed(e)
        }
    }
}

/// One attempt of [`start_job`].
async fn start(
    lc: &Launchctl,
    domain: &str,
    target: &str,
    plist: &Path,
    keepalive: bool,
) -> Result<ServiceInfo, Attempt> {
    let mut just_loaded = false;
    match lc.print(target).await? {
        PrintOutcome::NoDomain { code, stderr } => {
            return Err(Attempt::NoDomain(format!(
                "{domain}: launchctl print exited {code}: {stderr}"
            )));
        }
        PrintOutcome::Loaded(info) if info.is_running() => return Ok(*info),
        PrintOutcome::Loaded(_) => {}
        PrintOutcome::NotLoaded => {
            // Always enable first: a disable persists across bootout and reinstall
            // (openclaw#80384).
            lc.enable(target).await?;
            if let Err(e) = lc.bootstrap(domain, plist).await {
                // Exit 5 also means "already loaded": only a print tells.
                if !matches!(lc.print(target).await, Ok(PrintOutcome::Loaded(_))) {
                    return Err(e.into());
                }
            }
            just_loaded = true;
        }
    }
    // A KeepAlive or RunAtLoad job is started by launchd on bootstrap: do not kickstart it
    // on top (openclaw#41952); wait briefly for its pid instead.
    if just_loaded {
        let deadline = crate::clock::deadline(Duration::from_secs(2));
        while Instant::now() < deadline {
            if let Ok(PrintOutcome::Loaded(i)) = lc.print(target).await
                && i.is_running()
            {
                return Ok(*i);
            }
            if !keepalive {
                break;
            }
            tokio::time::sleep(PRINT_POLL / 4).await;
        }
    }
    let pid = lc.kickstart(target, false).await?;
    match lc.print(target).await? {
        PrintOutcome::Loaded(mut info) => {
            if info.pid.is_none() {
                info.pid = pid;
            }
            Ok(*info)
        }
        PrintOutcome::NotLoaded => Err(Attempt::Failed(LaunchctlError {
            argv: vec!["print".into(), target.into()],
            code: Some(113),
            stderr: format!("{target} was kickstarted but is no longer loaded"),
            failure: crate::launchd::Failure::Exited,
        })),
        PrintOutcome::NoDomain { code, stderr } => {
            Err(Attempt::NoDomain(format!("{domain}: {code}: {stderr}")))
        }
    }
}

/// Stops the job: `kickstart -k` for a hung KeepAlive job (it comes back by itself), `bootout`
/// for other KeepAlive jobs (then waits until launchd has unloaded it, so a later bootstrap
/// does not race the drain), `kill` otherwise (SIGTERM, then SIGKILL after the exit timeout).
async fn stop(
    lc: &Launchctl,
    target: &str,
    info: &ServiceInfo,
    facts: &PlistFacts,
    reason: Reason,
) -> (ExitInfo, bool) {
    let unknown = ExitInfo {
        code: None,
        signal: None,
    };
    if facts.keepalive && reason == Reason::LivenessFailed {
        if let Err(e) = lc.kickstart(target, true).await {
            tracing::warn!(target, error = %e, "kickstart -k of a hung job failed");
        }
        return (
            ExitInfo {
                code: None,
                signal: Some(libc::SIGTERM),
            },
            false,
        );
    }
    if facts.keepalive {
        if let Err(e) = lc.bootout(target).await {
            tracing::warn!(target, error = %e, "bootout failed");
        }
        let deadline =
            crate::clock::deadline(facts.exit_timeout.saturating_add(Duration::from_secs(5)));
        let mut last = info.last_exit;
        while Instant::now() < deadline {
            match lc.print(target).await {
                Ok(PrintOutcome::Loaded(i)) => last = i.last_exit,
                Ok(_) => break,
                Err(_) => {}
            }
            tokio::time::sleep(PRINT_POLL / 2).await;
        }
        let exit = match last {
            LastExit::Never | LastExit::Unknown => ExitInfo {
                code: None,
                signal: Some(libc::SIGTERM),
            },
            other => exit_info(other),
        };
        return (exit, false);
    }
    let Some(pid) = info.pid else {
        return (unknown, false);
    };
    if let Err(e) = lc.kill("SIGTERM", target).await {
        tracing::debug!(target, error = %e, "kill SIGTERM");
    }
    let killed = tokio::time::timeout(facts.exit_timeout, wait_pid_exit(pid))
        .await
        .is_err();
    if killed {
        let _ = lc.kill("SIGKILL", target).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), wait_pid_exit(pid)).await;
    }
    let exit = match lc.print(target).await {
        Ok(PrintOutcome::Loaded(i)) => exit_info(i.last_exit),
        _ => unknown,
    };
    (exit, killed)
}

/// Waits for launchd to relaunch a KeepAlive job: a new pid, or more runs. `None` when it
/// was unloaded instead.
async fn wait_relaunch(
    lc: &Launchctl,
    target: &str,
    old_pid: Option<u32>,
    old_runs: Option<u64>,
) -> Option<ServiceInfo> {
    loop {
        match lc.print(target).await {
            Ok(PrintOutcome::Loaded(i)) => {
                if i.is_running() && (i.pid != old_pid || i.runs > old_runs) {
                    return Some(*i);
                }
            }
            Ok(_) => return None,
            Err(_) => {}
        }
        tokio::time::sleep(PRINT_POLL).await;
    }
}

/// Resolves when process `pid` (not our child) has exited.
///
/// Linux: a pidfd, readable the moment the process exits. Elsewhere: `kill(pid, 0)` every
/// 50 ms, cheap and good enough to notice an exit between `print` polls.
async fn wait_pid_exit(pid: u32) {
    #[cfg(target_os = "linux")]
    {
        if let Some(fd) = pidfd_open(pid) {
            // SAFETY: `fd` is an owned pidfd that stays open, and is used by nobody else, for
            // as long as the registration lives.
            if let Ok(afd) = unsafe { tokio::io::unix::AsyncFd::register(fd) } {
                let _ = afd.readable().await;
            }
            return;
        }
    }
    loop {
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
            Err(nix::errno::Errno::ESRCH) => return,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(target_os = "linux")]
fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}
