//! The runtime: the one task that owns the supervisor's state and carries out the decision
//! core's effects.
//!
//! [`supervise`] owns the [`Core`], the current configuration, the runs of the units, their
//! timers (one [`DelayQueue`]), the [`journal`] and the metrics. It feeds the
//! core the events its runs report ([`backend`](super::backend), [`probing`](super::probing)),
//! the timers that fire and the commands that come over the control socket, and turns the
//! effects the core returns into work. It starts with the empty configuration: loading the
//! units directory, at start and on every reload, is one path ([`reload`](super::reload)'s
//! plan, then the swap once the units it replaces are down).
//!
//! The loop and the state are here; [`requests`] answers the control requests,
//! [`reloading`] carries out a reload, and [`shell`] carries out the core's effects.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{DelayQueue, delay_queue};

mod guarding;
mod reloading;
mod requests;
mod shell;

use self::reloading::finding_statuses;
use self::shell::Shell;

use super::backend::launchd::LaunchdContext;
use super::core::{Command, Core, Effect, Event, Generation, Timer};
use super::events::{self, Epoch, EpochTx, EventTx, ProbeKind, UnitId};
use super::gate::gate;
use super::journal::{self, EventLog, LogLimiter};
use super::reload::Plan;
use super::watch::FileWatch;
use crate::compile::Compiled;
use crate::control::protocol::{FindingStatus, Request, Response};
use crate::launchd::{ConsoleUser, Launchctl};
use crate::metrics::Metrics;
use crate::preflight::PreflightContext;
use crate::probe::Prober;
use crate::unit::UnitName;

pub(crate) use super::journal::EVENT_RING;

/// A request from the control socket, with where to send the answer (one response, or for
/// `events --follow` one per event until the receiver is dropped).
pub(crate) struct ControlRequest {
    pub request: Request,
    pub reply: mpsc::Sender<Response>,
}

/// How the supervisor reaches the outside world.
#[derive(Clone)]
pub struct SupervisorConfig {
    pub launchd: LaunchdContext,
    /// How preflight sees this host.
    pub preflight: PreflightContext,
    /// Where fingerprints and run records are kept.
    pub state_dir: PathBuf,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            launchd: LaunchdContext {
                launchctl: Launchctl::new("/bin/launchctl"),
                console: ConsoleUser::default(),
            },
            preflight: PreflightContext::host(),
            state_dir: crate::fingerprint::default_state_dir(),
        }
    }
}

/// How supervision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Every unit stopped after the shutdown.
    AllStopped,
    /// The units directory was never valid: nothing ran.
    NeverLoaded,
}

/// Supervises the units of `dir` until `shutdown` is cancelled and everything is down.
/// Control requests (status, start, stop, restart, reload, events, metrics) come in on
/// `control`.
///
/// An invalid directory does not end it: every error is logged and given to whoever asks, and
/// the directory is read again on `reload` (SIGHUP).
pub(crate) async fn supervise(
    dir: PathBuf,
    config: SupervisorConfig,
    mut control: mpsc::Receiver<ControlRequest>,
    shutdown: CancellationToken,
) -> Ended {
    // Units' cgroups are named after the state directory this daemon holds (Linux, as root).
    crate::process::set_cgroup_owner(&config.state_dir);
    if let Err(e) = crate::process::start_reaper() {
        tracing::warn!(error = %e, "cannot reap orphaned grandchildren; they will be reaped by init instead");
    }
    let (tx, mut rx) = events::channel::<Event>(0);
    let (changed_tx, mut changed_rx) = events::channel::<UnitId>(0);
    let (guard_tx, mut guard_rx) = mpsc::unbounded_channel();
    let mut sup = Supervisor::new(dir, config, tx, changed_tx, guard_tx);
    // The first load is a reload from the empty configuration.
    let _ = sup.reload(false);
    let mut done = sup.finish_reload().await;
    let mut shutting_down = false;
    let mut quiet = QuietRelease::new(Instant::now());
    while !done {
        let event = tokio::select! {
            biased;
            Some((epoch, e)) = rx.recv() => match sup.current_event(epoch, e) {
                Some(e) => {
                    sup.observe(&e);
                    if !is_idle_work(&e) {
                        quiet.worked(Instant::now());
                    }
                    e
                }
                None => continue,
            },
            Some(expired) = std::future::poll_fn(|cx| sup.shell.timers.poll_expired(cx)) => {
                quiet.worked(Instant::now());
                let key = expired.key();
                match sup.timer_fired(key, expired.into_inner()) {
                    Some(e) => e,
                    None => continue,
                }
            }
            Some((epoch, msg)) = guard_rx.recv() => {
                for e in sup.guard_message(epoch, msg) {
                    let fx = sup.core.handle(e, Instant::now());
                    done |= sup.apply(fx);
                }
                done = done || sup.finish_reload().await;
                continue;
            }
            Some((epoch, unit)) = changed_rx.recv() => {
                quiet.worked(Instant::now());
                let Some(unit) = sup.remap(epoch, unit) else { continue };
                sup.files_changed(unit)
            }
            Some(req) = control.recv() => {
                quiet.worked(Instant::now());
                match sup.control(req) {
                    Some(e) => e,
                    None => {
                        done = sup.finish_reload().await;
                        continue;
                    }
                }
            }
            () = limiter_close(sup.log.next_close()) => {
                journal::write(sup.log.close_expired(Instant::now()));
                continue;
            }
            () = quiet.sleep.as_mut(), if quiet.armed => {
                quiet.fired(Instant::now());
                continue;
            }
            () = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                if sup.loaded {
                    tracing::info!("stopping every unit in reverse dependency order");
                }
                Event::Command(Command::Shutdown)
            }
        };
        let fx = sup.core.handle(event, Instant::now());
        done = sup.apply(fx) || sup.finish_reload().await;
    }
    journal::write(sup.log.flush_all());
    // Every unit is down: their cgroups are empty (Linux, as root).
    crate::process::remove_unit_cgroups();
    if !sup.loaded {
        return Ended::NeverLoaded;
    }
    tracing::info!("all units stopped");
    Ended::AllStopped
}

/// How long the supervisor must have had nothing but liveness probes to handle before the
/// code pages of the work before are given back ([`crate::code_pages`]).
const QUIET_BEFORE_RELEASE: Duration = Duration::from_secs(1);

/// When the pages are given back a second time after the same work: once the blocking threads
/// it started have idled out (tokio's keep-alive, 10 s) and exited, which runs code of its
/// own (thread teardown, the allocator's) that idling never runs again.
const RELEASE_AGAIN_AFTER: Duration = Duration::from_secs(12);

/// The least time between two releases: a unit that flaps keeps the supervisor busy, and each
/// release costs a walk of the page tables and the faults that map back what is still used.
const RELEASE_AT_MOST_EVERY: Duration = Duration::from_secs(5);

/// Whether handling `e` is what an idle supervisor does all day (a liveness probe's report):
/// anything else may run code that idling does not, whose pages are worth giving back after.
fn is_idle_work(e: &Event) -> bool {
    matches!(
        e,
        Event::ProbeReported {
            kind: ProbeKind::Alive,
            ..
        }
    )
}

/// Gives back the code pages touched by a burst of work once the supervisor has been quiet
/// for [`QUIET_BEFORE_RELEASE`] after it, and again [`RELEASE_AGAIN_AFTER`] it. One timer,
/// armed by the first work after the releases and moved on lazily when it fires early, so
/// that work costs a store of the time, not a timer reset per event.
struct QuietRelease {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The timer is set: a release is due.
    armed: bool,
    last_work: Instant,
    last_release: Option<Instant>,
    /// The releases since the last work: 0, 1 (quiet), 2 (after the blocking threads).
    released: u8,
}

impl QuietRelease {
    /// Start-up is work: armed from the start.
    fn new(now: Instant) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(
                (now + QUIET_BEFORE_RELEASE).into(),
            )),
            armed: true,
            last_work: now,
            last_release: None,
            released: 0,
        }
    }

    fn worked(&mut self, now: Instant) {
        self.last_work = now;
        self.released = 0;
        if !self.armed {
            self.armed = true;
            let due = self.due();
            self.sleep.as_mut().reset(due.into());
        }
    }

    /// When the next release may happen: quiet long enough (the first), or the blocking
    /// threads gone (the second), and not too soon after the last one.
    fn due(&self) -> Instant {
        let after = match self.released {
            0 => QUIET_BEFORE_RELEASE,
            _ => RELEASE_AGAIN_AFTER,
        };
        let due = self.last_work + after;
        match self.last_release {
            Some(at) => due.max(at + RELEASE_AT_MOST_EVERY),
            None => due,
        }
    }

    fn fired(&mut self, now: Instant) {
        let due = self.due();
        if now < due {
            self.sleep.as_mut().reset(due.into());
            return;
        }
        self.last_release = Some(now);
        self.released += 1;
        let released = crate::code_pages::release();
        tracing::trace!(released, "gave back the code pages of the work before");
        self.armed = self.released < 2;
        if self.armed {
            let due = self.due();
            self.sleep.as_mut().reset(due.into());
        }
    }
}

/// Resolves when the log limiter's next window closes (never, if none is open).
async fn limiter_close(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A reload waiting for the units it replaces to be down.
struct PendingReload {
    next: Compiled,
    plan: Plan,
}

/// What the timer queue holds: a unit's timer, with the epoch it was set under.
struct TimerEntry {
    epoch: Epoch,
    unit: UnitId,
    generation: Generation,
    timer: Timer,
}

/// Everything the supervising task owns.
struct Supervisor {
    compiled: Compiled,
    /// A valid configuration was loaded at least once.
    loaded: bool,
    /// While none was: the errors of the last read, for whoever asks.
    invalid: Option<String>,
    core: Core,
    shell: Shell,
    /// For each older epoch still sending: old index -> current index.
    remaps: HashMap<Epoch, Vec<Option<UnitId>>>,
    events: EventLog,
    log: LogLimiter,
    /// The latest preflight findings of each unit, for status.
    findings: Vec<Vec<FindingStatus>>,
    pending: Option<PendingReload>,
    changed_tx: EpochTx<UnitId>,
    _watch: Option<FileWatch>,
    metrics: Metrics,
    guards: guarding::Guarding,
}

impl Supervisor {
    /// A supervisor of the empty configuration of `dir`.
    fn new(
        dir: PathBuf,
        config: SupervisorConfig,
        tx: EventTx,
        changed_tx: EpochTx<UnitId>,
        guard_tx: guarding::GuardTx,
    ) -> Self {
        let compiled = Compiled::empty(dir);
        let core = Core::new(&compiled, Instant::now(), fastrand::u64(..));
        Self {
            compiled,
            loaded: false,
            invalid: None,
            core,
            shell: Shell {
                units: Arc::new(Vec::new()),
                config,
                tx,
                prober: Arc::new(Prober::new()),
                grid_clock: crate::engine::grid_clock::GridClock::new(),
                runs: Vec::new(),
                probes: Vec::new(),
                timers: DelayQueue::new(),
                timer_keys: Vec::new(),
                events: Vec::new(),
                held: std::collections::HashMap::new(),
            },
            remaps: HashMap::new(),
            events: EventLog::new(EVENT_RING),
            log: LogLimiter::default(),
            findings: Vec::new(),
            pending: None,
            changed_tx,
            _watch: None,
            metrics: Metrics::new(std::iter::empty::<&str>()),
            guards: guarding::Guarding::new(guard_tx),
        }
    }

    /// Feeds the metrics what an event says before the core sees it.
    fn observe(&mut self, e: &Event) {
        if let Event::ProbeReported {
            unit,
            kind,
            ok,
            latency,
            ..
        } = e
        {
            let name = self.compiled.units[*unit].name.as_str();
            self.metrics.on_probe(name, *kind, *ok, *latency);
        }
    }

    /// Carries out effects; records, logs and counts transitions. True once everything is
    /// down after a shutdown.
    fn apply(&mut self, fx: Vec<Effect>) -> bool {
        let exit = self.shell.apply(fx);
        let now = Instant::now();
        for t in std::mem::take(&mut self.shell.events) {
            let e = self.events.push(&self.shell.units, t);
            journal::write(self.log.transition(e, now));
            self.metrics.on_transition(&e.unit, &e.transition);
        }
        exit
    }

    /// The unit an index of `epoch` is now, if it is still there.
    fn remap(&self, epoch: Epoch, unit: UnitId) -> Option<UnitId> {
        if epoch == self.shell.tx_epoch() {
            return Some(unit);
        }
        self.remaps.get(&epoch)?.get(unit).copied().flatten()
    }

    /// An event as the current core must see it; `None` for one about a unit that is gone.
    fn current_event(&self, epoch: Epoch, mut e: Event) -> Option<Event> {
        if let Some(unit) = e.unit_mut() {
            *unit = self.remap(epoch, *unit)?;
        }
        Some(e)
    }

    /// A timer that fired, as the event the core must see (none if its unit is gone).
    fn timer_fired(&mut self, key: delay_queue::Key, t: TimerEntry) -> Option<Event> {
        let unit = self.remap(t.epoch, t.unit)?;
        // Its key is no longer in the queue, and may be given to a later timer.
        self.shell.timer_keys[unit].retain(|(_, _, k)| *k != key);
        Some(Event::TimerFired {
            unit,
            generation: t.generation,
            timer: t.timer,
        })
    }

    /// A file the unit depends on changed: say now what a start would meet, and let a unit
    /// blocked by preflight try again.
    fn files_changed(&mut self, unit: UnitId) -> Event {
        let u = &self.shell.units[unit];
        let found = crate::preflight::preflight(u, &self.shell.config.preflight);
        self.metrics.set_preflight(u.name.as_str(), &found);
        self.findings[unit] = finding_statuses(found);
        if let Some(blocking) = gate(u, &self.shell.config.preflight)
            && self.core.slot(unit).state.is_running()
        {
            tracing::warn!(
                "{}: its files changed; its next start would be refused: {blocking}",
                u.name
            );
        }
        Event::Retry { unit }
    }

    fn unit_index(&self, name: &str) -> Option<UnitId> {
        UnitName::parse(name)
            .ok()
            .and_then(|n| self.compiled.index_of(&n))
    }
}
