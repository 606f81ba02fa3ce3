//! The `launchd` backend: one run of a unit is a job started, observed and stopped, all
//! through `launchctl`.
//!
//! This module owns the launchd sequences (Homebrew/brew Library/Homebrew/services/cli.rb `launchctl_load`; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html): retrying bootstrap on the
//! transient 5/37 while a previous `bootout` drains (openclaw#136453), adopting a job that is
//! already running instead of kickstarting it, and stopping a KeepAlive job with `bootout`
//! (`kill` would only make launchd relaunch it). A relaunch by launchd itself is observed, not
//! fought: the run reports [`Event::Relaunching`] and keeps watching for the new pid. When
//! launchd does not relaunch it within its ThrottleInterval plus [`RELAUNCH_GRACE`] (a
//! throttled respawn that never came, its penalty box after a crash burst), the backend
//! kickstarts it itself, as OpenClaw's troubleshooting guide has a watchdog do
//! (openclaw/openclaw docs/gateway/troubleshooting.md; nix-darwin/nix-darwin#1709), and says
//! so ([`Event::RelaunchMissed`], `LAUNCHD_NOT_RELAUNCHED`).
//!
//! The owner of a job has the last word (`crate::launchd::owner`): a job that is not running
//! is not started while its owner has it disabled (`DISABLED_BY_OWNER`: no `enable`, no
//! bootstrap, no kickstart; a disable persists across bootout and reinstall, openclaw#80384,
//! and only its owner lifts it), nor while its label is loaded in another domain
//! (`LOADED_IN_OTHER_DOMAIN`); the unit waits, re-checked every few seconds. A KeepAlive job
//! its owner disables and stops (a self-update's maintenance park) is not relaunched either.
//!
//! launchd runs what it loaded, not what the plist says now: before it kickstarts a loaded job
//! that is not running, the backend compares `print` with the file and, when they differ
//! (`LOADED_DEFINITION_STALE`), boots the job out, waits until it is gone and bootstraps the
//! file (openclaw/openclaw#34829). A running job is adopted as it is, with a warning.
//!
//! launchd also records 78 (EX_CONFIG) when *it* cannot spawn the program (`job state =
//! spawn failed`): that is reported as [`Reason::LaunchdSpawnFailed`], naming the path it
//! tried, never as an exit of the program, so `no-restart-exit-codes` does not take the unit
//! down for it (github.com/codechimp-org/ha-menu/issues/51, github.com/LrGenius/LrGeniusAI/pull/298).
//!
//! It never bootstraps one user's LaunchAgent into another user's domain: once the domain is
//! resolved (`gui/console` to whoever is at the console now), a plist that belongs to another
//! user defers the start with [`Reason::AgentDomainOtherUser`] and no launchctl call.
//!
//! It reports to the decision core exactly as an `exec` run does, so the engine gives launchd
//! jobs the same guarantees (ordered start on readiness, ordered restart, bounded stops).

use std::path::Path;
use std::time::{Duration, Instant};

use super::Run;
use crate::engine::events::{Event, ExitInfo};
use crate::launchd::owner::{OwnerHold, check_disabled, check_elsewhere};
use crate::launchd::{
    ConsoleUser, LastExit, Launchctl, LaunchctlError, PrintOutcome, ServiceInfo, service_target,
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
/// The stop bound when neither `print` (`exit timeout`) nor the plist says: modern launchd
/// sends SIGKILL 5 s after SIGTERM (github.com/elastic/elastic-agent/issues/593; launchd.plist(5)
/// still documents 20 s).
const DEFAULT_EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// launchd's default ThrottleInterval: a KeepAlive job is not spawned more than once every 10 s
/// (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html).
const DEFAULT_THROTTLE: Duration = Duration::from_secs(10);
/// The longest ThrottleInterval taken as is; a larger value is read as this.
const MAX_THROTTLE: Duration = Duration::from_secs(60 * 60);
/// How much later than its ThrottleInterval launchd's relaunch may come before the backend
/// kickstarts the job itself. A kickstart that meets launchd's own relaunch is harmless: a
/// job that runs is not started twice.
pub(crate) const RELAUNCH_GRACE: Duration = Duration::from_secs(3);
/// How long a kickstart after a missed relaunch may take to show a running process.
const KICKSTART_SETTLE: Duration = Duration::from_secs(5);

/// What the runtime needs to drive launchd.
#[derive(Clone)]
pub struct LaunchdContext {
    pub launchctl: Launchctl,
    pub console: ConsoleUser,
}

/// When launchd relaunches the job by itself (launchd.plist(5) KeepAlive,
/// https://keith.github.io/xcode-man-pages/launchd.plist.5.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeepAlive {
    No,
    Always,
    /// A dictionary: its conditions are ORed. `SuccessfulExit = true` relaunches after exit
    /// 0, `false` after any other end; `Crashed = true` after a crash-type signal, `false`
    /// otherwise. Any other key (PathState, OtherJobEnabled, ...) may relaunch it at any time.
    Conditions {
        successful_exit: Option<bool>,
        crashed: Option<bool>,
        other: bool,
    },
}

impl KeepAlive {
    fn from_plist(value: Option<&plist::Value>) -> Self {
        match value {
            Some(plist::Value::Boolean(true)) => KeepAlive::Always,
            Some(plist::Value::Dictionary(d)) => {
                let flag = |k: &str| d.get(k).and_then(plist::Value::as_boolean);
                KeepAlive::Conditions {
                    successful_exit: flag("SuccessfulExit"),
                    crashed: flag("Crashed"),
                    other: d.keys().any(|k| k != "SuccessfulExit" && k != "Crashed"),
                }
            }
            _ => KeepAlive::No,
        }
    }

    /// Whether launchd may relaunch the job at all (and would undo a `kill`).
    fn any(self) -> bool {
        self != KeepAlive::No
    }

    /// Whether launchd relaunches the job after it ended with `exit`.
    fn relaunches_after(self, exit: ExitInfo) -> bool {
        match self {
            KeepAlive::No => false,
            KeepAlive::Always => true,
            KeepAlive::Conditions {
                successful_exit,
                crashed,
                other,
            } => {
                let clean = exit.code == Some(0) && exit.signal.is_none();
                let crash = exit.signal.is_some_and(|s| {
                    [
                        libc::SIGILL,
                        libc::SIGABRT,
                        libc::SIGFPE,
                        libc::SIGBUS,
                        libc::SIGSEGV,
                        libc::SIGSYS,
                        libc::SIGTRAP,
                    ]
                    .contains(&s)
                });
                let unknown = successful_exit.is_none() && crashed.is_none();
                other
                    || unknown
                    || successful_exit.is_some_and(|want| want == clean)
                    || crashed.is_some_and(|want| want == crash)
            }
        }
    }
}

/// What the plist (and, once loaded, `print`) says that changes how the job is driven.
struct PlistFacts {
    keepalive: KeepAlive,
    exit_timeout: Duration,
    /// ThrottleInterval: how soon launchd relaunches a KeepAlive job at the earliest.
    throttle: Duration,
}

fn throttle_of(seconds: Option<i64>) -> Duration {
    seconds.filter(|s| *s >= 0).map_or(DEFAULT_THROTTLE, |s| {
        Duration::from_secs(s as u64).min(MAX_THROTTLE)
    })
}

fn exit_timeout_of(seconds: Option<i64>) -> Duration {
    seconds
        .filter(|s| *s > 0)
        .map_or(DEFAULT_EXIT_TIMEOUT, |s| {
            Duration::from_secs(s as u64).min(MAX_EXIT_TIMEOUT)
        })
}

fn read_plist_facts(path: &Path) -> PlistFacts {
    // Read like every other file: a FIFO or a device swapped in after preflight must not hang
    // the run, nor an endless file fill memory.
    let dict = crate::fsutil::read_regular(path, crate::preflight::MAX_PLIST_BYTES)
        .ok()
        .and_then(|bytes| plist::Value::from_reader(std::io::Cursor::new(bytes)).ok())
        .and_then(|v| v.into_dictionary());
    let keepalive = KeepAlive::from_plist(dict.as_ref().and_then(|d| d.get("KeepAlive")));
    let exit_timeout = exit_timeout_of(
        dict.as_ref()
            .and_then(|d| d.get("ExitTimeOut"))
            .and_then(|v| v.as_signed_integer()),
    );
    let throttle = throttle_of(
        dict.as_ref()
            .and_then(|d| d.get("ThrottleInterval"))
            .and_then(|v| v.as_signed_integer()),
    );
    PlistFacts {
        keepalive,
        exit_timeout,
        throttle,
    }
}

impl PlistFacts {
    /// A running job adopted with a stale definition behaves as *loaded*: its KeepAlive and
    /// exit timeout are what `print` shows, when it shows them.
    fn with_loaded(self, info: &ServiceInfo) -> Self {
        let keepalive = match (info.properties.is_empty(), info.keepalive()) {
            (true, _) => self.keepalive,
            (false, false) => KeepAlive::No,
            (false, true) if self.keepalive.any() => self.keepalive,
            (false, true) => KeepAlive::Always,
        };
        Self {
            keepalive,
            ..self.with_loaded_timing(info)
        }
    }

    /// launchd times what it loaded: its `exit timeout` and ThrottleInterval (`minimum
    /// runtime`) as `print` shows them win over the file's, when shown.
    fn with_loaded_timing(self, info: &ServiceInfo) -> Self {
        let exit_timeout = info.exit_timeout.map_or(self.exit_timeout, |s| {
            exit_timeout_of(i64::try_from(s).ok())
        });
        let throttle = info
            .minimum_runtime
            .map_or(self.throttle, |s| throttle_of(i64::try_from(s).ok()));
        Self {
            exit_timeout,
            throttle,
            ..self
        }
    }
}

/// The path launchd tried to spawn and how it said it failed, when `print` shows a spawn
/// failure (`job state = spawn failed`) and no running process.
fn spawn_failure(target: &str, info: &ServiceInfo) -> Option<String> {
    if info.is_running() || !info.spawn_failed() {
        return None;
    }
    let program = info.program_path().unwrap_or("(no program shown)");
    let how = match (info.last_exit, info.last_exit_reason.as_deref()) {
        (_, Some(reason)) => format!("last exit reason {reason}"),
        (LastExit::Code(78), None) => "last exit code 78: EX_CONFIG".to_owned(),
        (LastExit::Code(c), None) => format!("last exit code {c}"),
        _ => "no exit code".to_owned(),
    };
    let state = match Path::new(program) {
        p if !p.is_absolute() => "is not an absolute path",
        p if !p.exists() => "does not exist",
        _ => {
            "exists here, so launchd refused it (quarantine, code signature, permissions) or could not open a log file"
        }
    };
    Some(format!(
        "launchd could not spawn {program} for {target} (job state = spawn failed, {how}); \
         {program} {state}. This is launchd's failure, not an exit of the program. Fix: make \
         Program/ProgramArguments[0] an existing executable the job's user may run (for a \
         removed Homebrew Cellar path, the stable <prefix>/opt/<formula>/... path), clear a \
         quarantine with `xattr -d com.apple.quarantine {program}`, make the log \
         directories writable, then `launchctl bootout {target}` and bootstrap the plist again"
    ))
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
    /// The unit's name, for the log.
    pub name: String,
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
        run_launchd(self.name, self.ctx, self.spec, unit, generation, stop, tx).await;
    }
}

async fn run_launchd(
    name: String,
    ctx: LaunchdContext,
    spec: LaunchdSpec,
    unit: crate::engine::events::UnitId,
    generation: crate::engine::events::Generation,
    mut stop_rx: tokio::sync::oneshot::Receiver<Reason>,
    tx: crate::engine::events::EventTx,
) {
    let r = Reporter { tx };
    let (domain, domain_uid) = match crate::launchd::domain::resolve(&spec.domain, &ctx.console) {
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
    // Never one user's agent into another user's domain: `gui/console` is whoever is at the
    // console now, which may not be the plist's user. Waits: the console may change.
    if let Some(detail) = domain_uid.and_then(|uid| other_user(&spec, uid)) {
        r.send(Event::StartDeferred {
            unit,
            generation,
            reason: Reason::AgentDomainOtherUser,
            detail,
            retry_after: Some(NO_GUI_SESSION_RETRY),
        });
        return;
    }
    let target = service_target(&domain, &spec.label.0);
    let mut facts = read_plist_facts(&spec.plist);
    let lc = &ctx.launchctl;
    let owner_uids =
        crate::launchd::owner::owner_uids(&spec.plist, domain_uid, ctx.console.uid().ok());
    let job = JobRef {
        name: &name,
        spec: &spec,
        domain: &domain,
        target: &target,
        owner_uids: &owner_uids,
    };

    let mut info = match start_job(lc, &job, facts.keepalive.any()).await {
        Ok(Started::Fresh(info)) => {
            facts = facts.with_loaded_timing(&info);
            *info
        }
        Ok(Started::AdoptedStale(info)) => {
            facts = facts.with_loaded(&info);
            *info
        }
        Err(StartFailure::SpawnFailed(error)) => {
            if facts.keepalive.any() {
                // launchd would retry the spawn every ThrottleInterval forever; the engine's
                // backoff and start limit decide instead.
                bootout_and_wait(lc, &target, facts.exit_timeout).await;
            }
            r.send(Event::SpawnFailed {
                unit,
                generation,
                reason: Reason::LaunchdSpawnFailed,
                error,
            });
            return;
        }
        Err(StartFailure::Deferred(reason, detail)) => {
            let retry_after = match reason {
                Reason::NoGuiSession => NO_GUI_SESSION_RETRY,
                // The owner's decisions: an enable or a bootout is noticed within seconds.
                _ => crate::launchd::owner::OWNER_RECHECK,
            };
            r.send(Event::StartDeferred {
                unit,
                generation,
                reason,
                detail,
                retry_after: Some(retry_after),
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
                Some(p) => crate::process::exited(p, None).await,
                // No pid to watch (launchd has not said): fall back to asking it.
                // A spawn launchd reports as failed ends the wait too.
                None => loop {
                    tokio::time::sleep(PRINT_POLL).await;
                    match lc.print(&target).await {
                        Ok(PrintOutcome::Loaded(i))
                            if i.pid == pid && spawn_failure(&target, &i).is_none() => {}
                        _ => break,
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
        // launchd may already have tried to relaunch it and failed to spawn: its 78 is not
        // the program's exit.
        if let Some(detail) = after.as_ref().and_then(|now| spawn_failure(&target, now)) {
            spawn_failed_after_run(lc, &r, &name, &target, &facts, detail, unit, generation).await;
            return;
        }
        match after {
            Some(now) if facts.keepalive.relaunches_after(exit_info(now.last_exit)) => {
                let exit = exit_info(now.last_exit);
                r.send(Event::Relaunching {
                    unit,
                    generation,
                    exit,
                });
                // An owner that disabled the job before stopping it (a self-update's
                // maintenance park, `openclaw gateway stop --disable`) keeps launchd from
                // relaunching it, and launchgraph too.
                let owner_disabled = check_disabled(lc, &domain, &spec.label.0, &spec.plist).await;
                // Wait for launchd's relaunch (its ThrottleInterval), kickstart it when it
                // does not come, or stop.
                let relaunched = tokio::select! {
                    i = async {
                        match owner_disabled {
                            Some(hold) => Some(Relaunch::Disabled(hold)),
                            None => {
                                relaunch_or_kickstart(
                                    lc, &r, &job, facts.throttle, pid, now.runs, unit, generation,
                                )
                                .await
                            }
                        }
                    } => i,
                    Ok(reason) = &mut stop_rx => {
                        let (exit, killed) = stop(lc, &target, &now, &facts, reason).await;
                        r.send(Event::Exited { unit, generation, exit, killed_after_timeout: killed });
                        return;
                    }
                };
                match relaunched {
                    Some(Relaunch::Disabled(hold)) => {
                        r.send(Event::StartDeferred {
                            unit,
                            generation,
                            reason: hold.reason,
                            detail: hold.detail(),
                            retry_after: Some(crate::launchd::owner::OWNER_RECHECK),
                        });
                        return;
                    }
                    Some(Relaunch::SpawnFailed(detail)) => {
                        spawn_failed_after_run(
                            lc, &r, &name, &target, &facts, detail, unit, generation,
                        )
                        .await;
                        return;
                    }
                    Some(Relaunch::Running(i)) => {
                        r.send(Event::Spawned {
                            unit,
                            generation,
                            pid: i.pid,
                        });
                        info = *i;
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

/// `AGENT_DOMAIN_OTHER_USER`'s message and fix when the plist is one user's LaunchAgent and
/// `domain_uid` another user's. A plist that cannot be read is preflight's finding, not this.
fn other_user(spec: &LaunchdSpec, domain_uid: u32) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&spec.plist).ok()?.uid();
    let f = crate::preflight::agent_domain_other_user(
        spec,
        owner,
        domain_uid,
        &crate::preflight::SystemAccounts,
    )?;
    Some(format!("{} Fix: {}", f.message, f.fix))
}

/// Why a job could not be started.
#[derive(Debug)]
pub(crate) enum StartFailure {
    /// Not the job's fault (no GUI session): wait and try again later.
    Deferred(Reason, String),
    /// launchd could not spawn the program ([`spawn_failure`]'s text).
    SpawnFailed(String),
    Failed(String),
}

/// How a start ended well.
pub(crate) enum Started {
    /// Started now, or adopted running with a definition that matches the plist file.
    Fresh(Box<ServiceInfo>),
    /// Adopted running, but loaded from an older definition than the file (logged).
    AdoptedStale(Box<ServiceInfo>),
}

/// The job a run drives, for messages and calls.
pub(crate) struct JobRef<'a> {
    pub name: &'a str,
    pub spec: &'a LaunchdSpec,
    pub domain: &'a str,
    pub target: &'a str,
    /// Whose other domains may hold the label too ([`crate::launchd::owner::owner_uids`]).
    pub owner_uids: &'a [u32],
}

/// Ensures the job is loaded and running, returning what `print` says of it: adopts a running
/// job, enables then bootstraps an unloaded one, kickstarts a loaded idle one, and boots out
/// then bootstraps again a loaded idle one whose definition is stale. Transient failures (a
/// bootout still draining: 5, 37) are retried from the top with backoff, for up to 15 s.
pub(crate) async fn start_job(
    lc: &Launchctl,
    job: &JobRef<'_>,
    keepalive: bool,
) -> Result<Started, StartFailure> {
    let until = crate::clock::deadline(BOOTSTRAP_RETRY_FOR);
    let mut delay = Duration::from_millis(100);
    loop {
        match start(lc, job, keepalive).await {
            Ok(started) => return Ok(started),
            Err(Attempt::Transient(e)) if Instant::now() < until => {
                tracing::debug!(target = job.target, error = %e, "launchd not ready for this yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(Attempt::Transient(e)) | Err(Attempt::Failed(e)) => {
                return Err(StartFailure::Failed(e.to_string()));
            }
            Err(Attempt::NoDomain(detail)) => {
                return Err(StartFailure::Deferred(Reason::NoGuiSession, detail));
            }
            Err(Attempt::SpawnFailed(detail)) => return Err(StartFailure::SpawnFailed(detail)),
            // Said by the unit's transition (reason and cause), which the log holds back
            // when it repeats at every re-check.
            Err(Attempt::Held(hold)) => {
                return Err(StartFailure::Deferred(hold.reason, hold.detail()));
            }
        }
    }
}

enum Attempt {
    Transient(LaunchctlError),
    /// The owner's decision holds the start ([`crate::launchd::owner`]).
    Held(OwnerHold),
    NoDomain(String),
    SpawnFailed(String),
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
async fn start(lc: &Launchctl, job: &JobRef<'_>, keepalive: bool) -> Result<Started, Attempt> {
    let (domain, target, plist) = (job.domain, job.target, job.spec.plist.as_path());
    // Runs before the kickstart: a spawn failure counts only when launchd tried again.
    let mut runs_before = None;
    let load = match lc.print(target).await? {
        PrintOutcome::NoDomain { code, stderr } => {
            return Err(Attempt::NoDomain(format!(
                "{domain}: launchctl print exited {code}: {stderr}"
            )));
        }
        PrintOutcome::Loaded(info) if info.is_running() => {
            return Ok(
                match crate::preflight::loaded_definition_of(job.spec, domain, &info) {
                    // Adopted as it is: restarting a working service at launchgraph's own
                    // start is worse than running the old definition a while longer.
                    Some(f) => {
                        tracing::warn!(
                            reason = %Reason::LoadedDefinitionStale,
                            "{}: adopted running; {} Fix: {}",
                            job.name,
                            f.message,
                            f.fix
                        );
                        Started::AdoptedStale(info)
                    }
                    None => Started::Fresh(info),
                },
            );
        }
        PrintOutcome::Loaded(info) => {
            owner_holds(lc, job).await?;
            match crate::preflight::loaded_definition_of(job.spec, domain, &info) {
                Some(f) => {
                    tracing::warn!(
                        reason = %Reason::LoadedDefinitionStale,
                        "{}: {} Booting it out and bootstrapping {} before the start.",
                        job.name,
                        f.message,
                        plist.display()
                    );
                    let bound =
                        exit_timeout_of(info.exit_timeout.and_then(|s| i64::try_from(s).ok()));
                    if !bootout_and_wait(lc, target, bound).await {
                        return Err(Attempt::Transient(LaunchctlError {
                            argv: vec!["bootout".into(), target.into()],
                            code: None,
                            stderr: format!("{target} is still loaded after bootout"),
                            failure: crate::launchd::Failure::Exited,
                        }));
                    }
                    true
                }
                None => {
                    runs_before = info.runs;
                    false
                }
            }
        }
        PrintOutcome::NotLoaded => {
            owner_holds(lc, job).await?;
            true
        }
    };
    if load {
        // No `enable` first: a job disabled here is its owner's (checked above), and the
        // owner enables it (openclaw#80384, openclaw#66390).
        if let Err(e) = lc.bootstrap(domain, plist).await {
            // Exit 5 also means "already loaded": only a print tells.
            if !matches!(lc.print(target).await, Ok(PrintOutcome::Loaded(_))) {
                return Err(e.into());
            }
        }
        runs_before = Some(0);
    }
    // A KeepAlive or RunAtLoad job is started by launchd on bootstrap: do not kickstart it
    // on top (openclaw#41952); wait briefly for its pid instead.
    if load {
        let deadline = crate::clock::deadline(Duration::from_secs(2));
        while Instant::now() < deadline {
            if let Ok(PrintOutcome::Loaded(i)) = lc.print(target).await {
                if i.is_running() {
                    return Ok(Started::Fresh(i));
                }
                if let Some(detail) = spawn_failure(target, &i) {
                    return Err(Attempt::SpawnFailed(detail));
                }
            }
            if !keepalive {
                break;
            }
            tokio::time::sleep(PRINT_POLL / 4).await;
        }
    }
    let kicked = lc.kickstart(target, false).await;
    let after = lc.print(target).await;
    // Whether kickstart answers an error for a spawn failure is not attested: print decides.
    if let Ok(PrintOutcome::Loaded(i)) = &after
        && i.runs > runs_before
        && let Some(detail) = spawn_failure(target, i)
    {
        return Err(Attempt::SpawnFailed(detail));
    }
    let pid = kicked?;
    match after? {
        PrintOutcome::Loaded(mut info) => {
            if info.pid.is_none() {
                info.pid = pid;
            }
            Ok(Started::Fresh(info))
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

/// Whether the owner holds the start of a job that is not running: disabled, or its label
/// loaded in another domain.
async fn owner_holds(lc: &Launchctl, job: &JobRef<'_>) -> Result<(), Attempt> {
    let label = &job.spec.label.0;
    let hold = match check_disabled(lc, job.domain, label, &job.spec.plist).await {
        Some(hold) => Some(hold),
        None => check_elsewhere(lc, job.domain, label, job.owner_uids).await,
    };
    hold.map_or(Ok(()), |h| Err(Attempt::Held(h)))
}

/// `bootout`, then waits until `print` says the job is gone (113), for up to its exit timeout
/// plus 5 s, so that a following bootstrap does not race the drain (openclaw#136453). True
/// once it is gone.
async fn bootout_and_wait(lc: &Launchctl, target: &str, exit_timeout: Duration) -> bool {
    if let Err(e) = lc.bootout(target).await {
        tracing::warn!(target, error = %e, "bootout failed");
    }
    let deadline = crate::clock::deadline(exit_timeout.saturating_add(Duration::from_secs(5)));
    while Instant::now() < deadline {
        if let Ok(PrintOutcome::NotLoaded | PrintOutcome::NoDomain { .. }) = lc.print(target).await
        {
            return true;
        }
        tokio::time::sleep(PRINT_POLL / 2).await;
    }
    false
}

/// launchd failed to spawn the job after a run of it ended: logged with
/// [`Reason::LaunchdSpawnFailed`], a KeepAlive job booted out (launchd would retry the spawn
/// forever), and the run ends as an exit with no code, so that `no-restart-exit-codes`
/// never mistakes launchd's 78 for the program's and the engine's backoff and start limit
/// apply; the next start reports the spawn failure itself if it persists.
#[allow(clippy::too_many_arguments)]
async fn spawn_failed_after_run(
    lc: &Launchctl,
    r: &Reporter,
    name: &str,
    target: &str,
    facts: &PlistFacts,
    detail: String,
    unit: crate::engine::events::UnitId,
    generation: crate::engine::events::Generation,
) {
    tracing::warn!(reason = %Reason::LaunchdSpawnFailed, "{name}: {detail}");
    if facts.keepalive.any() {
        bootout_and_wait(lc, target, facts.exit_timeout).await;
    }
    r.send(Event::Exited {
        unit,
        generation,
        exit: ExitInfo {
            code: None,
            signal: None,
        },
        killed_after_timeout: false,
    });
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
    if facts.keepalive.any() && reason == Reason::LivenessFailed {
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
    if facts.keepalive.any() {
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
    let killed = tokio::time::timeout(facts.exit_timeout, crate::process::exited(pid, None))
        .await
        .is_err();
    if killed {
        let _ = lc.kill("SIGKILL", target).await;
        let _ =
            tokio::time::timeout(Duration::from_secs(5), crate::process::exited(pid, None)).await;
    }
    let exit = match lc.print(target).await {
        Ok(PrintOutcome::Loaded(i)) => exit_info(i.last_exit),
        _ => unknown,
    };
    (exit, killed)
}

/// What launchd did after a KeepAlive job's process ended.
enum Relaunch {
    Running(Box<ServiceInfo>),
    /// It tried, and could not spawn the program ([`spawn_failure`]'s text).
    SpawnFailed(String),
    /// Its owner disabled it: launchd does not relaunch it, nor does launchgraph.
    Disabled(OwnerHold),
}

/// Waits for launchd's relaunch of a KeepAlive job for its ThrottleInterval plus
/// [`RELAUNCH_GRACE`]; when launchd has not run it again by then (`runs` unchanged: a
/// throttled respawn that never came, launchd's penalty box after a crash burst), kickstarts
/// the job itself, unless its owner disabled it meanwhile, and says so
/// ([`Event::RelaunchMissed`]). `None` when the job was unloaded, or
/// did not run after the kickstart either: the run is over.
#[allow(clippy::too_many_arguments)]
async fn relaunch_or_kickstart(
    lc: &Launchctl,
    r: &Reporter,
    job: &JobRef<'_>,
    throttle: Duration,
    old_pid: Option<u32>,
    old_runs: Option<u64>,
    unit: crate::engine::events::UnitId,
    generation: crate::engine::events::Generation,
) -> Option<Relaunch> {
    let target = job.target;
    let bound = throttle.saturating_add(RELAUNCH_GRACE);
    if let Ok(found) =
        tokio::time::timeout(bound, wait_relaunch(lc, target, old_pid, old_runs)).await
    {
        return found;
    }
    // More runs: launchd did relaunch it, only each run ended before a poll saw it (a crash
    // loop). It is not in its penalty box; wait on, as for any relaunch (the unit's start
    // timeout bounds it).
    if let Ok(PrintOutcome::Loaded(i)) = lc.print(target).await
        && i.runs > old_runs
    {
        return wait_relaunch(lc, target, old_pid, old_runs).await;
    }
    let label = &job.spec.label.0;
    if let Some(hold) = check_disabled(lc, job.domain, label, &job.spec.plist).await {
        return Some(Relaunch::Disabled(hold));
    }
    let detail = format!(
        "launchd did not relaunch {target} within its ThrottleInterval ({}s) plus {}s: a \
         throttled respawn that never came, or launchd's penalty box after a crash burst; \
         launchgraph ran `launchctl kickstart {target}` itself",
        throttle.as_secs(),
        RELAUNCH_GRACE.as_secs()
    );
    tracing::warn!(reason = %Reason::LaunchdNotRelaunched, "{}: {detail}", job.name);
    r.send(Event::RelaunchMissed {
        unit,
        generation,
        detail,
    });
    // Without -k: should launchd's relaunch come at the same moment, the instance it started
    // is kept, not killed.
    if let Err(e) = lc.kickstart(target, false).await {
        tracing::warn!(target, error = %e, "kickstart after a missed relaunch failed");
    }
    tokio::time::timeout(
        KICKSTART_SETTLE,
        wait_relaunch(lc, target, old_pid, old_runs),
    )
    .await
    .unwrap_or(None)
}

/// Waits for launchd to relaunch a KeepAlive job: a new pid, or more runs. `None` when it
/// was unloaded instead.
async fn wait_relaunch(
    lc: &Launchctl,
    target: &str,
    old_pid: Option<u32>,
    old_runs: Option<u64>,
) -> Option<Relaunch> {
    loop {
        match lc.print(target).await {
            Ok(PrintOutcome::Loaded(i)) => {
                if i.is_running() && (i.pid != old_pid || i.runs > old_runs) {
                    return Some(Relaunch::Running(i));
                }
                if i.runs > old_runs
                    && let Some(detail) = spawn_failure(target, &i)
                {
                    return Some(Relaunch::SpawnFailed(detail));
                }
            }
            Ok(_) => return None,
            Err(_) => {}
        }
        tokio::time::sleep(PRINT_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: Option<i32>, signal: Option<i32>) -> ExitInfo {
        ExitInfo { code, signal }
    }

    #[test]
    fn keepalive_dictionaries_relaunch_only_when_a_condition_holds() {
        let dict = |pairs: &[(&str, bool)]| {
            let d: plist::Dictionary = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), plist::Value::Boolean(*v)))
                .collect();
            KeepAlive::from_plist(Some(&plist::Value::Dictionary(d)))
        };
        let (clean, failed, segv, term) = (
            exit(Some(0), None),
            exit(Some(1), None),
            exit(None, Some(libc::SIGSEGV)),
            exit(None, Some(libc::SIGTERM)),
        );
        // Homebrew's `keep_alive successful_exit: false`: relaunch unless it exited 0.
        let k = dict(&[("SuccessfulExit", false)]);
        assert!(k.any());
        assert!(!k.relaunches_after(clean));
        assert!(k.relaunches_after(failed) && k.relaunches_after(segv));
        let k = dict(&[("SuccessfulExit", true)]);
        assert!(k.relaunches_after(clean) && !k.relaunches_after(failed));
        let k = dict(&[("Crashed", true)]);
        assert!(k.relaunches_after(segv));
        assert!(!k.relaunches_after(term) && !k.relaunches_after(clean));
        // Keys not evaluated here (PathState, ...) may relaunch it at any time.
        let k = dict(&[("SuccessfulExit", false), ("PathState", true)]);
        assert!(k.relaunches_after(clean));
        let always = KeepAlive::from_plist(Some(&plist::Value::Boolean(true)));
        assert!(always.relaunches_after(clean));
        let never = KeepAlive::from_plist(Some(&plist::Value::Boolean(false)));
        assert!(!never.any() && !never.relaunches_after(failed));
    }

    #[test]
    fn timings_follow_what_launchd_loaded_else_the_plist_else_launchd_s_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, extra: &str| {
            let path = dir.path().join(name);
            std::fs::write(
                &path,
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\"><dict>\
                     <key>Label</key><string>x</string>{extra}</dict></plist>\n"
                ),
            )
            .unwrap();
            path
        };
        // Neither said: modern launchd's 5 s SIGKILL delay and 10 s ThrottleInterval.
        let bare = read_plist_facts(&write("bare.plist", ""));
        assert_eq!(bare.exit_timeout, Duration::from_secs(5));
        assert_eq!(bare.throttle, Duration::from_secs(10));
        let set = read_plist_facts(&write(
            "set.plist",
            "<key>ExitTimeOut</key><integer>9</integer>\
             <key>ThrottleInterval</key><integer>3</integer>",
        ));
        assert_eq!(set.exit_timeout, Duration::from_secs(9));
        assert_eq!(set.throttle, Duration::from_secs(3));
        // What launchd loaded wins: print's `exit timeout` and `minimum runtime`.
        let loaded = crate::launchd::parse_print("\texit timeout = 7\n\tminimum runtime = 2\n");
        let facts = set.with_loaded_timing(&loaded);
        assert_eq!(facts.exit_timeout, Duration::from_secs(7));
        assert_eq!(facts.throttle, Duration::from_secs(2));
        // A print without them changes nothing.
        let silent = crate::launchd::parse_print("\tstate = running\n");
        let facts = facts.with_loaded_timing(&silent);
        assert_eq!(facts.exit_timeout, Duration::from_secs(7));
        assert_eq!(facts.throttle, Duration::from_secs(2));
    }

    #[test]
    fn a_spawn_failure_names_the_path_and_is_not_a_program_exit() {
        let info = crate::launchd::parse_print(
            "\tstate = spawn scheduled\n\tprogram = /nonexistent/opt/node/bin/node\n\
             \truns = 3\n\tlast exit code = 78: EX_CONFIG\n\tjob state = spawn failed\n",
        );
        let text = spawn_failure("system/ai.openclaw.gateway", &info).expect("a spawn failure");
        assert!(
            text.starts_with(
                "launchd could not spawn /nonexistent/opt/node/bin/node for \
             system/ai.openclaw.gateway (job state = spawn failed, last exit code 78: EX_CONFIG); \
             /nonexistent/opt/node/bin/node does not exist."
            ),
            "{text}"
        );
        assert!(text.contains("not an exit of the program"), "{text}");
        let signed = crate::launchd::parse_print(
            "\tstate = spawn scheduled\n\tlast exit reason = OS_REASON_CODESIGNING\n\
             \tjob state = spawn failed\n\targuments = {\n\t\t/bin/sh\n\t}\n",
        );
        let text = spawn_failure("gui/501/x", &signed).unwrap();
        assert!(
            text.contains("last exit reason OS_REASON_CODESIGNING"),
            "{text}"
        );
        assert!(text.contains("/bin/sh exists here"), "{text}");
        // The program's own 78 (a job that ran and exited) is not a spawn failure.
        let ran = crate::launchd::parse_print(
            "\tstate = not running\n\tlast exit code = 78: EX_CONFIG\n\tjob state = exited\n",
        );
        assert_eq!(spawn_failure("system/x", &ran), None);
    }
}
