//! The runtime: the one task that owns the supervisor's state and carries out the decision
//! core's effects.
//!
//! [`supervise`] owns the [`Core`], the current configuration, the runs of the units, their
//! timers (one [`DelayQueue`]), the [`journal`] and the metrics. It feeds the
//! core the events its runs report ([`backend`](super::backend), [`probing`](super::probing)),
//! the timers that fire and the commands that come over the control socket, and turns the
//! effects the core returns into work. It starts with the empty configuration: loading the
//! units directory, at start and on every reload, is one path ([`reload`]'s plan,
//! then the swap once the units it replaces are down).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::time::{DelayQueue, delay_queue};

use super::backend::launchd::LaunchdContext;
use super::backend::{Backend, BackendConfig, Run};
use super::core::{Command, Core, Effect, Event, Generation, StateName, Timer, Transition};
use super::events::{self, Epoch, EpochTx, EventTx, UnitId};
use super::gate::{PREFLIGHT_RETRY, gate, record_fingerprint};
use super::journal::{self, EventLog, LogLimiter};
use super::reload::{self, Plan};
use super::runs::stop_leftovers;
use super::watch::FileWatch;
use crate::compile::{Compiled, compile_dir};
use crate::control::protocol::{ErrorCode, FindingStatus, Request, Response, UnitStatus};
use crate::diag::Diagnostic;
use crate::launchd::{ConsoleUser, Launchctl};
use crate::metrics::Metrics;
use crate::preflight::PreflightContext;
use crate::probe::Prober;
use crate::reason::Reason;
use crate::unit::{Unit, UnitName};

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
    if let Err(e) = crate::process::start_reaper() {
        tracing::warn!(error = %e, "cannot reap orphaned grandchildren; they will be reaped by init instead");
    }
    let (tx, mut rx) = events::channel::<Event>(0);
    let (changed_tx, mut changed_rx) = events::channel::<UnitId>(0);
    let mut sup = Supervisor::new(dir, config, tx, changed_tx);
    // The first load is a reload from the empty configuration.
    let _ = sup.reload(false);
    let mut done = sup.finish_reload().await;
    let mut shutting_down = false;
    while !done {
        let event = tokio::select! {
            biased;
            Some((epoch, e)) = rx.recv() => match sup.current_event(epoch, e) {
                Some(e) => {
                    sup.observe(&e);
                    e
                }
                None => continue,
            },
            Some(expired) = std::future::poll_fn(|cx| sup.shell.timers.poll_expired(cx)) => {
                let key = expired.key();
                match sup.timer_fired(key, expired.into_inner()) {
                    Some(e) => e,
                    None => continue,
                }
            }
            Some((epoch, unit)) = changed_rx.recv() => {
                let Some(unit) = sup.remap(epoch, unit) else { continue };
                sup.files_changed(unit)
            }
            Some(req) = control.recv() => match sup.control(req) {
                Some(e) => e,
                None => {
                    done = sup.finish_reload().await;
                    continue;
                }
            },
            () = limiter_close(sup.log.next_close()) => {
                journal::write(sup.log.close_expired(Instant::now()));
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
    if !sup.loaded {
        return Ended::NeverLoaded;
    }
    tracing::info!("all units stopped");
    Ended::AllStopped
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
}

impl Supervisor {
    /// A supervisor of the empty configuration of `dir`.
    fn new(
        dir: PathBuf,
        config: SupervisorConfig,
        tx: EventTx,
        changed_tx: EpochTx<UnitId>,
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
                runs: Vec::new(),
                probes: Vec::new(),
                timers: DelayQueue::new(),
                timer_keys: Vec::new(),
                events: Vec::new(),
            },
            remaps: HashMap::new(),
            events: EventLog::new(EVENT_RING),
            log: LogLimiter::default(),
            findings: Vec::new(),
            pending: None,
            changed_tx,
            _watch: None,
            metrics: Metrics::new(std::iter::empty::<&str>()),
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
        self.shell.timer_keys[unit].retain(|(_, k)| *k != key);
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

    /// Answers a control request; returns the event it turns into, if any.
    fn control(&mut self, req: ControlRequest) -> Option<Event> {
        let reply = |r: Response| {
            let _ = req.reply.try_send(r);
        };
        if self.core.is_shutting_down() && req.request.is_acting() {
            reply(Response::Error {
                code: ErrorCode::ShuttingDown,
                message: "launchgraph is shutting down".into(),
            });
            return None;
        }
        if let Some(text) = &self.invalid
            && !matches!(req.request, Request::Reload { .. })
        {
            reply(Response::Error {
                code: ErrorCode::InvalidConfiguration,
                message: format!("nothing is running: the units directory is invalid\n{text}"),
            });
            return None;
        }
        let unknown = |name: &str| Response::Error {
            code: ErrorCode::UnknownUnit,
            message: format!("no unit named {name:?}"),
        };
        match req.request {
            Request::Status { unit } => {
                let all = self.status();
                match unit {
                    None => reply(Response::Status { units: all }),
                    Some(name) => match all.into_iter().find(|s| s.name == name) {
                        Some(s) => reply(Response::Status { units: vec![s] }),
                        None => reply(unknown(&name)),
                    },
                }
                None
            }
            Request::Start { .. } | Request::Stop { .. } | Request::Restart { .. }
                if self.pending.is_some() =>
            {
                reply(Response::Error {
                    code: ErrorCode::Busy,
                    message: "a reload is being applied; try again in a moment".into(),
                });
                None
            }
            Request::Start { unit } => {
                self.unit_command(&unit, Command::Start, "starting", &req.reply)
            }
            Request::Stop { unit } => {
                self.unit_command(&unit, Command::Stop, "stopping", &req.reply)
            }
            Request::Restart { unit } => {
                self.unit_command(&unit, Command::Restart, "restarting", &req.reply)
            }
            Request::Reload { dry_run } => {
                let answer = self.reload(dry_run);
                reply(answer);
                None
            }
            Request::Events { follow } => {
                for e in self.events.ring() {
                    if req
                        .reply
                        .try_send(Response::Event(Box::new(e.record())))
                        .is_err()
                    {
                        return None;
                    }
                }
                if follow {
                    let mut live = self.events.subscribe();
                    let out = req.reply;
                    tokio::spawn(async move {
                        loop {
                            match live.recv().await {
                                Ok(r) => {
                                    let r = Box::new(Arc::unwrap_or_clone(r));
                                    if out.send(Response::Event(r)).await.is_err() {
                                        return;
                                    }
                                }
                                // Too slow a reader: the sequence numbers show the gap.
                                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                                Err(broadcast::error::RecvError::Closed) => return,
                            }
                        }
                    });
                }
                None
            }
            Request::Metrics => {
                reply(Response::Metrics {
                    text: self.metrics.render(),
                });
                None
            }
        }
    }

    fn unit_command(
        &mut self,
        name: &str,
        command: fn(UnitId) -> Command,
        verb: &str,
        reply: &mpsc::Sender<Response>,
    ) -> Option<Event> {
        match self.unit_index(name) {
            Some(u) => {
                let _ = reply.try_send(Response::Done {
                    message: format!("{verb} {name}"),
                });
                Some(Event::Command(command(u)))
            }
            None => {
                let _ = reply.try_send(Response::Error {
                    code: ErrorCode::UnknownUnit,
                    message: format!("no unit named {name:?}"),
                });
                None
            }
        }
    }

    fn status(&self) -> Vec<UnitStatus> {
        super::status::of(&self.compiled, &self.core, &self.findings, Instant::now())
    }

    /// Reads the units directory and plans the difference from the running configuration
    /// (the first time, from the empty one: every unit is added). Invalid: nothing changes,
    /// every error is logged and returned. Valid: unless `dry_run`, the removed and changed
    /// units (and what depends on them) start stopping in order here; [`finish_reload`] then
    /// swaps the new configuration in, keeping every unchanged unit exactly as it is, and
    /// starts the new and changed units in order.
    ///
    /// [`finish_reload`]: Supervisor::finish_reload
    fn reload(&mut self, dry_run: bool) -> Response {
        if self.pending.is_some() {
            return Response::Error {
                code: ErrorCode::Busy,
                message: "a reload is already being applied".into(),
            };
        }
        let next = match compile_dir(&self.compiled.dir) {
            Ok(c) => c,
            Err(diags) => return self.refuse(&diags, dry_run),
        };
        let mut plan = reload::plan(&self.compiled, &next);
        plan.report.dry_run = dry_run;
        if dry_run {
            return Response::Reload(plan.report);
        }
        self.invalid = None;
        if self.loaded {
            let r = &plan.report;
            tracing::info!(
                added = ?r.added, removed = ?r.removed, changed = ?r.changed, cycled = ?r.cycled,
                "reloading {}", self.compiled.dir.display()
            );
        }
        let now = Instant::now();
        let mut fx = Vec::new();
        for &u in &plan.going {
            fx.extend(self.core.handle(Event::Command(Command::Unload(u)), now));
        }
        let report = plan.report.clone();
        self.pending = Some(PendingReload { next, plan });
        // The stops start now; the swap waits for them in `finish_reload`.
        let _ = self.apply(fx);
        Response::Reload(report)
    }

    /// An invalid units directory: every error logged (unless only a dry run asked), and
    /// returned.
    fn refuse(&mut self, diags: &[Diagnostic], dry_run: bool) -> Response {
        let message = diags
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        let n = diags.len();
        let problems = if n == 1 { "problem" } else { "problems" };
        if self.loaded {
            tracing::error!("reload refused: {n} {problems}; nothing was changed\n{message}");
        } else if !dry_run {
            for d in diags {
                tracing::error!("{d}");
            }
            tracing::error!(
                "{n} {problems} in {}; nothing started. Fix them, then send SIGHUP or run `launchgraph reload`",
                self.compiled.dir.display()
            );
            self.invalid = Some(message.clone());
        }
        Response::Error {
            code: ErrorCode::InvalidConfiguration,
            message,
        }
    }

    /// Swaps in a pending configuration once the units it replaces are down, and starts its
    /// new units. True if the supervisor is done (a shutdown finished meanwhile).
    async fn finish_reload(&mut self) -> bool {
        let Some(p) = &self.pending else { return false };
        if p.plan
            .going
            .iter()
            .any(|&u| self.core.slot(u).state.is_running())
        {
            return false;
        }
        let PendingReload { next, plan } = self.pending.take().expect("checked");
        if !self.loaded {
            // What a previous daemon left running goes first, so that it starts again in order
            // and once.
            stop_leftovers(&next, &self.shell.config.state_dir).await;
        }
        let now = Instant::now();
        let core = Core::reloaded(&next, &self.core, &plan.carried, now, fastrand::u64(..));
        // old index -> new index, for events still in flight from the old epoch.
        let mut back = vec![None; self.compiled.units.len()];
        for (new, old) in plan.carried.iter().enumerate() {
            if let Some(o) = old {
                back[*o] = Some(new);
            }
        }
        for map in self.remaps.values_mut() {
            for m in map.iter_mut() {
                *m = m.and_then(|o| back[o]);
            }
        }
        let epoch = self.shell.tx_epoch();
        self.remaps.insert(epoch, back);
        let epoch = epoch + 1;
        let mut findings = vec![Vec::new(); next.units.len()];
        for (new, old) in plan.carried.iter().enumerate() {
            if let Some(o) = old {
                findings[new] = std::mem::take(&mut self.findings[*o]);
            }
        }
        self.findings = findings;
        self.shell
            .swap(Arc::new(next.units.clone()), &plan.carried, epoch);
        self._watch = Some(FileWatch::start(
            &self.shell.units,
            &self.shell.config.preflight,
            self.changed_tx.for_epoch(epoch),
        ));
        self.metrics
            .set_units(next.units.iter().map(|u| u.name.as_str()));
        let fresh = plan.fresh();
        for &new in &fresh {
            let u = &next.units[new];
            let found = crate::preflight::preflight(u, &self.shell.config.preflight);
            self.metrics.set_preflight(u.name.as_str(), &found);
            self.findings[new] = finding_statuses(found);
        }
        if self.loaded {
            tracing::info!("reload applied: {} unit(s) to start", fresh.len());
        } else {
            tracing::info!(
                units = next.units.len(),
                dir = %next.dir.display(),
                "starting {} units in dependency order",
                next.units.len()
            );
        }
        self.loaded = true;
        self.compiled = next;
        self.core = core;
        let fx = self.core.want_up(&fresh, now);
        self.apply(fx)
    }
}

/// Preflight findings as status shows them.
fn finding_statuses(found: Vec<crate::preflight::Finding>) -> Vec<FindingStatus> {
    found
        .into_iter()
        .map(|f| FindingStatus {
            code: f.code.to_string(),
            severity: f.severity.to_string(),
            message: f.message,
        })
        .collect()
}

/// A unit's current run: how to ask it to stop.
struct RunHandle {
    generation: Generation,
    stop: Option<oneshot::Sender<Reason>>,
}

/// The imperative side: carries out the core's effects for the current configuration.
struct Shell {
    units: Arc<Vec<Unit>>,
    config: SupervisorConfig,
    tx: EventTx,
    prober: Arc<Prober>,
    runs: Vec<Option<RunHandle>>,
    probes: Vec<Option<CancellationToken>>,
    /// Every unit's timers, in one queue.
    timers: DelayQueue<TimerEntry>,
    /// The keys of each unit's pending timers, to cancel them when its generation moves on.
    timer_keys: Vec<Vec<(Generation, delay_queue::Key)>>,
    /// Transitions applied since the supervisor last collected them.
    events: Vec<Transition>,
}

impl Shell {
    fn tx_epoch(&self) -> Epoch {
        self.tx.epoch()
    }

    /// Carries out effects in order; true once the core says everything is down.
    fn apply(&mut self, fx: Vec<Effect>) -> bool {
        let mut exit = false;
        // Fingerprints of units that became ready are taken after the spawns these effects
        // ask for are under way: a dependent's start does not queue behind them.
        let mut fingerprints = Vec::new();
        for e in fx {
            match e {
                Effect::Spawn { unit, generation } => {
                    self.cancel_timers_before(unit, generation);
                    self.spawn(unit, generation);
                }
                Effect::Stop {
                    unit,
                    generation,
                    reason,
                } => {
                    if let Some(run) = &mut self.runs[unit]
                        && run.generation == generation
                        && let Some(stop) = run.stop.take()
                    {
                        let _ = stop.send(reason);
                    }
                }
                Effect::StartProbe {
                    unit,
                    generation,
                    kind,
                } => {
                    let token = self.probes[unit]
                        .get_or_insert_with(CancellationToken::new)
                        .clone();
                    super::probing::start(
                        self.prober.clone(),
                        Arc::new(self.units[unit].clone()),
                        unit,
                        generation,
                        kind,
                        token,
                        self.tx.clone(),
                    );
                }
                Effect::StopProbes { unit } => {
                    if let Some(token) = self.probes[unit].take() {
                        token.cancel();
                    }
                }
                Effect::SetTimer {
                    unit,
                    generation,
                    timer,
                    at,
                } => {
                    let entry = TimerEntry {
                        epoch: self.tx_epoch(),
                        unit,
                        generation,
                        timer,
                    };
                    let key = self.timers.insert_at(entry, at.into());
                    self.timer_keys[unit].push((generation, key));
                }
                Effect::Transition(t) => {
                    if t.to == StateName::Ready {
                        fingerprints.push(t.unit);
                    }
                    self.events.push(t);
                }
                Effect::Exit => exit = true,
            }
        }
        for unit in fingerprints {
            let unit = Arc::new(self.units[unit].clone());
            let ctx = self.config.preflight.clone();
            let dir = self.config.state_dir.clone();
            tokio::spawn(record_fingerprint(unit, ctx, dir));
        }
        exit
    }

    /// Cancels `unit`'s timers of runs before `generation`: they can no longer matter.
    fn cancel_timers_before(&mut self, unit: UnitId, generation: Generation) {
        let timers = &mut self.timers;
        self.timer_keys[unit].retain(|(g, key)| {
            if *g < generation {
                timers.try_remove(key);
                false
            } else {
                true
            }
        });
    }

    fn spawn(&mut self, unit: UnitId, generation: Generation) {
        let (stop_tx, stop_rx) = oneshot::channel();
        self.runs[unit] = Some(RunHandle {
            generation,
            stop: Some(stop_tx),
        });
        let tx = self.tx.clone();
        let units = self.units.clone();
        let preflight = self.config.preflight.clone();
        let backend = BackendConfig {
            launchd: self.config.launchd.clone(),
            state_dir: self.config.state_dir.clone(),
        };
        tokio::spawn(async move {
            let u = &units[unit];
            // Never start what preflight says is broken: wait, with the reason, instead.
            if let Some(blocking) = gate(u, &preflight) {
                let _ = tx.send(Event::StartDeferred {
                    unit,
                    generation,
                    reason: Reason::PreflightFailed,
                    detail: blocking,
                    retry_after: Some(PREFLIGHT_RETRY),
                });
                return;
            }
            let run = Run {
                unit,
                generation,
                stop: stop_rx,
                tx,
            };
            Backend::of(u, &backend).run(run).await;
        });
    }

    /// Takes over `units` (a new configuration, epoch `epoch`): the runs, probes and timers
    /// of carried units move to their new index (`carried[new] = Some(old)`); those of units
    /// not carried are down by now, and their timers are cancelled.
    fn swap(&mut self, units: Arc<Vec<Unit>>, carried: &[Option<UnitId>], epoch: Epoch) {
        let n = units.len();
        let mut runs: Vec<Option<RunHandle>> = (0..n).map(|_| None).collect();
        let mut probes: Vec<Option<CancellationToken>> = (0..n).map(|_| None).collect();
        let mut timer_keys: Vec<Vec<(Generation, delay_queue::Key)>> = vec![Vec::new(); n];
        for (new, old) in carried.iter().enumerate() {
            if let Some(o) = old {
                runs[new] = self.runs[*o].take();
                probes[new] = self.probes[*o].take();
                timer_keys[new] = std::mem::take(&mut self.timer_keys[*o]);
            }
        }
        for keys in &self.timer_keys {
            for (_, key) in keys {
                self.timers.try_remove(key);
            }
        }
        self.runs = runs;
        self.probes = probes;
        self.timer_keys = timer_keys;
        self.units = units;
        self.tx = self.tx.for_epoch(epoch);
    }
}
