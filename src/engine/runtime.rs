//! The runtime: the imperative shell around the decision core.
//!
//! One task owns the [`Core`] and all state. It turns the core's effects into work (spawning a
//! unit, stopping it, running its probes, arming timers) done in tasks of their own, which
//! report back as [`Event`]s carrying the run's generation number. It also owns the log of
//! transitions, one line each, with repeated lines of a crash loop summarized.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::core::{
    Command, Core, Effect, Event, ExitInfo, Generation, ProbeKind, State, StateName, Transition,
    UnitId,
};
use super::journal::{EventLog, LogLimiter};
use super::launchd_run::{LaunchdContext, run_launchd};
use super::upkeep::{
    FileWatch, PREFLIGHT_RETRY, forget_run, gate, record_fingerprint, record_run, stop_leftovers,
};
use crate::compile::{Compiled, compile_dir};
use crate::control::protocol::{
    ErrorCode, FindingStatus, ProbeStatus, ReloadReport, Request, Response, UnitStatus,
};
use crate::control::render::fmt_ms;
use crate::launchd::{ConsoleUser, Launchctl};
use crate::metrics::Metrics;
use crate::preflight::PreflightContext;
use crate::probe::{Prober, ready_poll_delays};
use crate::process::{StopOutcome, spawn_unit};
use crate::reason::Reason;
use crate::unit::{Runner, Unit, UnitName};
use std::path::PathBuf;
use tokio::sync::broadcast;

/// A request from the control socket, with where to send the answer (one response, or for
/// `events --follow` one per event until the receiver is dropped).
pub struct ControlRequest {
    pub request: Request,
    pub reply: mpsc::Sender<Response>,
}

/// Events from the tasks of one configuration: each carries the epoch it was sent under, so
/// that after a reload (which renumbers units) it can be mapped to the unit it was about.
#[derive(Clone)]
pub struct EventTx {
    epoch: u64,
    inner: mpsc::UnboundedSender<(u64, Event)>,
}

impl EventTx {
    pub fn send(&self, e: Event) -> Result<(), Event> {
        self.inner.send((self.epoch, e)).map_err(|e| e.0.1)
    }
}

/// A unit's current run: how to ask it to stop.
struct Run {
    generation: Generation,
    stop: Option<oneshot::Sender<Reason>>,
}
/// How the supervisor reaches the outside world.
#[derive(Clone)]
pub struct SupervisorConfig {
    pub launchd: LaunchdContext,
    /// How preflight sees this host.
    pub preflight: PreflightContext,
    /// Where fingerprints are kept.
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

pub use super::journal::EVENT_RING;

/// Runs the supervisor until everything is down after a [`Command::Shutdown`] (a cancelled
/// `shutdown`). Control requests (status, start, stop, restart, reload, events, metrics) come
/// in on `control`. Returns when every unit has stopped.
pub async fn supervise(
    compiled: Compiled,
    config: SupervisorConfig,
    mut control: mpsc::Receiver<ControlRequest>,
    shutdown: CancellationToken,
) {
    if let Err(e) = crate::process::start_reaper() {
        tracing::warn!(error = %e, "cannot reap orphaned grandchildren; they will be reaped by init instead");
    }
    stop_leftovers(&compiled, &config.state_dir).await;
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Event)>();
    let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<(u64, UnitId)>();
    let mut sup = Supervisor::new(compiled, config, tx, changed_tx);
    tracing::info!(
        units = sup.compiled.units.len(),
        dir = %sup.compiled.dir.display(),
        "starting {} units in dependency order",
        sup.compiled.units.len()
    );
    let fx = sup.core.start_all(Instant::now());
    if sup.apply(fx) {
        return;
    }
    let mut shutting_down = false;
    loop {
        let event = tokio::select! {
            biased;
            Some((epoch, e)) = rx.recv() => match sup.current_event(epoch, e) {
                Some(e) => {
                    sup.observe(&e);
                    e
                }
                None => continue,
            },
            Some((epoch, unit)) = changed_rx.recv() => {
                let Some(unit) = sup.remap(epoch, unit) else { continue };
                sup.files_changed(unit)
            }
            Some(req) = control.recv() => match sup.control(req) {
                Some(e) => e,
                None => {
                    if sup.finish_reload() {
                        break;
                    }
                    continue;
                }
            },
            () = limiter_close(sup.log.next_close()) => {
                sup.log.close_expired(Instant::now());
                continue;
            }
            () = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                tracing::info!("stopping every unit in reverse dependency order");
                Event::Command(Command::Shutdown)
            }
        };
        let fx = sup.core.handle(event, Instant::now());
        if sup.apply(fx) || sup.finish_reload() {
            break;
        }
    }
    sup.log.flush_all();
    tracing::info!("all units stopped");
}

/// A reload waiting for the units it replaces to be down.
struct PendingReload {
    next: Compiled,
    report: ReloadReport,
    /// Old indices that must be down before the swap.
    going: Vec<UnitId>,
}

/// Everything the supervising task owns.
struct Supervisor {
    compiled: Compiled,
    core: Core,
    shell: Shell,
    epoch: u64,
    /// For each older epoch still sending: old index -> current index.
    remaps: HashMap<u64, Vec<Option<UnitId>>>,
    events: EventLog,
    log: LogLimiter,
    /// The latest preflight findings of each unit, for status.
    findings: Vec<Vec<FindingStatus>>,
    pending: Option<PendingReload>,
    changed_tx: mpsc::UnboundedSender<(u64, UnitId)>,
    _watch: FileWatch,
    metrics: Metrics,
}

impl Supervisor {
    fn new(
        compiled: Compiled,
        config: SupervisorConfig,
        tx: mpsc::UnboundedSender<(u64, Event)>,
        changed_tx: mpsc::UnboundedSender<(u64, UnitId)>,
    ) -> Self {
        let units = Arc::new(compiled.units.clone());
        let watch = FileWatch::start(
            &units,
            &config.preflight,
            epoch_sender(0, changed_tx.clone()),
        );
        let core = Core::new(&compiled, Instant::now(), fastrand::u64(..));
        let n = units.len();
        let shell = Shell {
            units,
            config,
            tx: EventTx {
                epoch: 0,
                inner: tx,
            },
            prober: Arc::new(Prober::new()),
            runs: (0..n).map(|_| None).collect(),
            probes: (0..n).map(|_| None).collect(),
            events: Vec::new(),
        };
        let mut metrics = Metrics::new(compiled.units.iter().map(|u| u.name.as_str()));
        let mut findings = Vec::with_capacity(n);
        for u in &compiled.units {
            let found = crate::preflight::preflight(u, &shell.config.preflight);
            metrics.set_preflight(u.name.as_str(), &found);
            findings.push(finding_statuses(found));
        }
        Self {
            compiled,
            core,
            shell,
            epoch: 0,
            remaps: HashMap::new(),
            events: EventLog::new(EVENT_RING),
            log: LogLimiter::default(),
            findings,
            pending: None,
            changed_tx,
            _watch: watch,
            metrics,
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

    /// Carries out effects; records transitions for `events`. True once everything is down
    /// after a shutdown.
    fn apply(&mut self, fx: Vec<Effect>) -> bool {
        let exit = self.shell.apply(fx);
        let now = Instant::now();
        for t in std::mem::take(&mut self.shell.events) {
            let r = self.events.push(&self.shell.units, &t);
            self.log.transition(&t, r, now);
            self.metrics.on_transition(&r.unit, &t);
        }
        exit
    }

    /// The unit an index of `epoch` is now, if it is still there.
    fn remap(&self, epoch: u64, unit: UnitId) -> Option<UnitId> {
        if epoch == self.epoch {
            return Some(unit);
        }
        self.remaps.get(&epoch)?.get(unit).copied().flatten()
    }

    /// An event as the current core must see it; `None` for one about a unit that is gone.
    fn current_event(&self, epoch: u64, mut e: Event) -> Option<Event> {
        if let Some(unit) = e.unit_mut() {
            *unit = self.remap(epoch, *unit)?;
        }
        Some(e)
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
        let unknown = |name: &str| Response::Error {
            code: ErrorCode::UnknownUnit,
            message: format!("no unit named {name:?}"),
        };
        if self.core.is_shutting_down() && req.request.is_acting() {
            reply(Response::Error {
                code: ErrorCode::ShuttingDown,
                message: "launchgraph is shutting down".into(),
            });
            return None;
        }
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
            Request::Start { unit } | Request::Stop { unit } | Request::Restart { unit }
                if self.pending.is_some() =>
            {
                let _ = unit;
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
                for r in self.events.ring().cloned() {
                    if req.reply.try_send(Response::Event(Box::new(r))).is_err() {
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
                                    if out.send(Response::Event(Box::new(r))).await.is_err() {
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
        let now = Instant::now();
        self.compiled
            .units
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let slot = self.core.slot(i);
                let last = slot.last_transition.as_ref();
                let facts = last.map(super::journal::facts);
                UnitStatus {
                    name: u.name.to_string(),
                    kind: u.runner.kind().to_string(),
                    state: slot.state.name().to_string(),
                    since_secs: now.saturating_duration_since(slot.since).as_secs_f64(),
                    reason: last
                        .map(|t| t.reason.code().to_string())
                        .unwrap_or_default(),
                    detail: last
                        .zip(facts.as_ref())
                        .map(|(t, f)| crate::control::render::facts_text(t.to.as_str(), f))
                        .unwrap_or_default(),
                    last_transition: facts,
                    waiting_on: match &slot.state {
                        State::Waiting { on: Some(r), .. } => {
                            Some(self.compiled.units[*r].name.to_string())
                        }
                        _ => None,
                    },
                    pid: slot.state.pid(),
                    generation: slot.generation,
                    last_exit: slot.last_exit.map(|e| {
                        crate::control::render::exit_text(&crate::control::protocol::ExitRecord {
                            code: e.code,
                            signal: e.signal,
                        })
                    }),
                    restarts: slot.restarts,
                    backoff_remaining_secs: match slot.state {
                        State::Backoff { until, .. } => {
                            Some(until.saturating_duration_since(now).as_secs_f64())
                        }
                        _ => None,
                    },
                    last_probe: slot.last_probe.as_ref().map(|p| ProbeStatus {
                        kind: match p.kind {
                            ProbeKind::Ready => "ready".into(),
                            ProbeKind::Alive => "alive".into(),
                        },
                        ok: p.ok,
                        latency_ms: p.latency.as_secs_f64() * 1000.0,
                        age_secs: now.saturating_duration_since(p.at).as_secs_f64(),
                        detail: p.detail.clone(),
                    }),
                    preflight: self.findings[i].clone(),
                }
            })
            .collect()
    }

    /// Re-reads the units directory. Invalid: nothing changes, every error is returned. Valid:
    /// the difference is applied (unless `dry_run`): removed and changed units (and what
    /// depends on them) stop in order; then the new configuration takes over, keeping every
    /// unchanged unit exactly as it is, and the new and changed units start in order.
    fn reload(&mut self, dry_run: bool) -> Response {
        if self.pending.is_some() {
            return Response::Error {
                code: ErrorCode::Busy,
                message: "a reload is already being applied".into(),
            };
        }
        let next = match compile_dir(&self.compiled.dir) {
            Ok(c) => c,
            Err(diags) => {
                let message = diags
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n");
                tracing::error!(
                    "reload refused: {} problem(s); nothing was changed\n{message}",
                    diags.len()
                );
                return Response::Error {
                    code: ErrorCode::InvalidConfiguration,
                    message,
                };
            }
        };
        let (report, going) = diff(&self.compiled, &next);
        let mut report = report;
        report.dry_run = dry_run;
        if dry_run {
            return Response::Reload(report);
        }
        tracing::info!(
            added = ?report.added, removed = ?report.removed, changed = ?report.changed, cycled = ?report.cycled,
            "reloading {}", self.compiled.dir.display()
        );
        let now = Instant::now();
        let mut fx = Vec::new();
        for &u in &going {
            fx.extend(self.core.handle(Event::Command(Command::Unload(u)), now));
        }
        self.pending = Some(PendingReload {
            next,
            report: report.clone(),
            going,
        });
        // Effects of the stops are applied by the caller's loop through `finish_reload`.
        let _ = self.apply(fx);
        Response::Reload(report)
    }

    /// Swaps in a pending configuration once the units it replaces are down. True if the
    /// supervisor is done (a shutdown finished meanwhile).
    fn finish_reload(&mut self) -> bool {
        let Some(p) = &self.pending else { return false };
        if p.going
            .iter()
            .any(|&u| self.core.slot(u).state.is_running())
        {
            return false;
        }
        let p = self.pending.take().expect("checked");
        let old_index: HashMap<&str, UnitId> = self
            .compiled
            .units
            .iter()
            .enumerate()
            .map(|(i, u)| (u.name.as_str(), i))
            .collect();
        let fresh: std::collections::HashSet<&str> = p
            .report
            .added
            .iter()
            .chain(&p.report.changed)
            .chain(&p.report.cycled)
            .map(String::as_str)
            .collect();
        // new index -> old index, for units carried over untouched.
        let carried: Vec<Option<UnitId>> = p
            .next
            .units
            .iter()
            .map(|u| {
                (!fresh.contains(u.name.as_str()))
                    .then(|| old_index.get(u.name.as_str()).copied())
                    .flatten()
            })
            .collect();
        let now = Instant::now();
        let core = Core::reloaded(&p.next, &self.core, &carried, now, fastrand::u64(..));
        // old index -> new index, for events still in flight from the old epoch.
        let mut back = vec![None; self.compiled.units.len()];
        for (new, old) in carried.iter().enumerate() {
            if let Some(o) = old {
                back[*o] = Some(new);
            }
        }
        for map in self.remaps.values_mut() {
            for m in map.iter_mut() {
                *m = m.and_then(|o| back[o]);
            }
        }
        self.remaps.insert(self.epoch, back);
        self.epoch += 1;
        let n = p.next.units.len();
        let mut runs: Vec<Option<Run>> = (0..n).map(|_| None).collect();
        let mut probes: Vec<Option<CancellationToken>> = (0..n).map(|_| None).collect();
        let mut findings = vec![Vec::new(); n];
        for (new, old) in carried.iter().enumerate() {
            if let Some(o) = old {
                runs[new] = self.shell.runs[*o].take();
                probes[new] = self.shell.probes[*o].take();
                findings[new] = std::mem::take(&mut self.findings[*o]);
            }
        }
        self.shell.runs = runs;
        self.shell.probes = probes;
        self.findings = findings;
        self.shell.units = Arc::new(p.next.units.clone());
        self.shell.tx = EventTx {
            epoch: self.epoch,
            inner: self.shell.tx.inner.clone(),
        };
        self._watch = FileWatch::start(
            &self.shell.units,
            &self.shell.config.preflight,
            epoch_sender(self.epoch, self.changed_tx.clone()),
        );
        self.metrics
            .set_units(p.next.units.iter().map(|u| u.name.as_str()));
        for (new, old) in carried.iter().enumerate() {
            if old.is_none() {
                let u = &p.next.units[new];
                let found = crate::preflight::preflight(u, &self.shell.config.preflight);
                self.metrics.set_preflight(u.name.as_str(), &found);
                self.findings[new] = finding_statuses(found);
            }
        }
        self.compiled = p.next;
        self.core = core;
        let fresh_ids: Vec<UnitId> = carried
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_none())
            .map(|(i, _)| i)
            .collect();
        tracing::info!("reload applied: {} unit(s) to start", fresh_ids.len());
        let fx = self.core.want_up(&fresh_ids, now);
        self.apply(fx)
    }
}

/// A sender of `(epoch, unit)` for the file watcher of one configuration.
fn epoch_sender(
    epoch: u64,
    out: mpsc::UnboundedSender<(u64, UnitId)>,
) -> mpsc::UnboundedSender<UnitId> {
    let (tx, mut rx) = mpsc::unbounded_channel::<UnitId>();
    tokio::spawn(async move {
        while let Some(u) = rx.recv().await {
            if out.send((epoch, u)).is_err() {
                return;
            }
        }
    });
    tx
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

/// What a reload changes, and which old units must go down first: the removed and changed
/// ones and everything that depends on them.
fn diff(old: &Compiled, next: &Compiled) -> (ReloadReport, Vec<UnitId>) {
    let mut report = ReloadReport::default();
    let old_by_name: HashMap<&str, &Unit> =
        old.units.iter().map(|u| (u.name.as_str(), u)).collect();
    let next_by_name: HashMap<&str, &Unit> =
        next.units.iter().map(|u| (u.name.as_str(), u)).collect();
    for u in &next.units {
        match old_by_name.get(u.name.as_str()) {
            None => report.added.push(u.name.to_string()),
            Some(o) if *o != u => report.changed.push(u.name.to_string()),
            Some(_) => {}
        }
    }
    for u in &old.units {
        if !next_by_name.contains_key(u.name.as_str()) {
            report.removed.push(u.name.to_string());
        }
    }
    // Unchanged units that (transitively) require a changed unit cycle with it.
    let mut cycled = std::collections::BTreeSet::new();
    for name in &report.changed {
        let i = next
            .index_of(&UnitName::parse(name).expect("a unit's name"))
            .expect("in next");
        for d in next.graph.transitive_dependents(i) {
            let n = next.units[d].name.as_str();
            if !report.changed.iter().any(|c| c == n) && !report.added.iter().any(|a| a == n) {
                cycled.insert(n.to_string());
            }
        }
    }
    report.cycled = cycled.into_iter().collect();
    for u in &next.units {
        let n = u.name.to_string();
        if !report.added.contains(&n) && !report.changed.contains(&n) && !report.cycled.contains(&n)
        {
            report.unchanged.push(n);
        }
    }
    let going: Vec<UnitId> = old
        .units
        .iter()
        .enumerate()
        .filter(|(_, u)| {
            let n = u.name.to_string();
            report.removed.contains(&n) || report.changed.contains(&n) || report.cycled.contains(&n)
        })
        .map(|(i, _)| i)
        .collect();
    (report, going)
}

struct Shell {
    units: Arc<Vec<Unit>>,
    config: SupervisorConfig,
    tx: EventTx,
    prober: Arc<Prober>,
    runs: Vec<Option<Run>>,
    probes: Vec<Option<CancellationToken>>,
    /// Transitions applied since the supervisor last collected them.
    events: Vec<Transition>,
}

impl Shell {
    /// Carries out effects in order; true once the core says everything is down.
    fn apply(&mut self, fx: Vec<Effect>) -> bool {
        let mut exit = false;
        for e in fx {
            match e {
                Effect::Spawn { unit, generation } => self.spawn(unit, generation),
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
                } => self.start_probe(unit, generation, kind),
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
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at.into()).await;
                        let _ = tx.send(Event::TimerFired {
                            unit,
                            generation,
                            timer,
                        });
                    });
                }
                Effect::Transition(t) => {
                    if t.to == StateName::Ready {
                        let unit = Arc::new(self.units[t.unit].clone());
                        let ctx = self.config.preflight.clone();
                        let dir = self.config.state_dir.clone();
                        tokio::spawn(record_fingerprint(unit, ctx, dir));
                    }
                    self.events.push(t);
                }
                Effect::Exit => exit = true,
            }
        }
        exit
    }

    fn spawn(&mut self, unit: UnitId, generation: Generation) {
        let (stop_tx, stop_rx) = oneshot::channel();
        self.runs[unit] = Some(Run {
            generation,
            stop: Some(stop_tx),
        });
        let tx = self.tx.clone();
        let units = self.units.clone();
        let launchd = self.config.launchd.clone();
        let preflight = self.config.preflight.clone();
        let state_dir = self.config.state_dir.clone();
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
            match &u.runner {
                Runner::Exec(spec) => {
                    run_exec(
                        u.name.as_str(),
                        spec,
                        unit,
                        generation,
                        stop_rx,
                        tx,
                        &state_dir,
                    )
                    .await;
                }
                Runner::Launchd(spec) => {
                    run_launchd(launchd, spec.clone(), unit, generation, stop_rx, tx).await;
                }
            }
        });
    }

    fn start_probe(&mut self, unit: UnitId, generation: Generation, kind: ProbeKind) {
        let token = self.probes[unit]
            .get_or_insert_with(CancellationToken::new)
            .clone();
        let tx = self.tx.clone();
        let prober = self.prober.clone();
        let units = self.units.clone();
        tokio::spawn(async move {
            let u = &units[unit];
            let (probe, interval, timeout) = match kind {
                ProbeKind::Ready => match &u.ready {
                    Some(r) => (&r.probe, r.interval, r.timeout),
                    None => return,
                },
                ProbeKind::Alive => match &u.alive {
                    Some(a) => (&a.probe, a.interval, a.timeout),
                    None => return,
                },
            };
            let report = |ok: bool, latency: Duration, detail: String| {
                let _ = tx.send(Event::ProbeReported {
                    unit,
                    generation,
                    kind,
                    ok,
                    latency,
                    detail,
                });
            };
            match kind {
                // Fast at first, so that dependents start within milliseconds of readiness;
                // then backing off to `interval`.
                ProbeKind::Ready => {
                    // Failures while starting are expected and frequent (every 5 ms at first):
                    // the supervisor hears of one at most every 250 ms, for status; a pass at once.
                    let mut last_failure_report: Option<Instant> = None;
                    for delay in ready_poll_delays(interval) {
                        tokio::select! {
                            () = token.cancelled() => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                        let outcome = tokio::select! {
                            () = token.cancelled() => return,
                            o = prober.run(probe, timeout) => o,
                        };
                        if outcome.ok {
                            report(true, outcome.latency, outcome.detail);
                            return;
                        }
                        if last_failure_report
                            .is_none_or(|t| t.elapsed() >= Duration::from_millis(250))
                        {
                            last_failure_report = Some(Instant::now());
                            report(false, outcome.latency, outcome.detail);
                        }
                    }
                }
                ProbeKind::Alive => loop {
                    tokio::select! {
                        () = token.cancelled() => return,
                        () = tokio::time::sleep(interval) => {}
                    }
                    let outcome = tokio::select! {
                        () = token.cancelled() => return,
                        o = prober.run(probe, timeout) => o,
                    };
                    if !outcome.ok {
                        tracing::warn!(
                            "{}: liveness probe failed in {}: {}",
                            u.name,
                            fmt_ms(outcome.latency.as_secs_f64() * 1000.0),
                            outcome.detail
                        );
                    }
                    report(outcome.ok, outcome.latency, outcome.detail);
                },
            }
        });
    }
}

async fn run_exec(
    name: &str,
    spec: &crate::unit::ExecSpec,
    unit: UnitId,
    generation: Generation,
    stop_rx: oneshot::Receiver<Reason>,
    tx: EventTx,
    state_dir: &std::path::Path,
) {
    let mut process = match spawn_unit(spec, name).await {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(Event::SpawnFailed {
                unit,
                generation,
                error: e.to_string(),
            });
            return;
        }
    };
    record_run(state_dir, name, process.pid());
    let _ = tx.send(Event::Spawned {
        unit,
        generation,
        pid: Some(process.pid()),
    });
    let exited = process.exited();
    let (report, killed) = tokio::select! {
        report = exited => (report, false),
        Ok(_) = stop_rx => {
            let r = process.stop_as_declared().await;
            (r.exit, r.outcome == StopOutcome::Killed)
        }
    };
    forget_run(state_dir, name);
    let _ = tx.send(Event::Exited {
        unit,
        generation,
        exit: ExitInfo {
            code: report.code,
            signal: report.signal,
        },
        killed_after_timeout: killed,
    });
}

/// Resolves when the log limiter's next window closes (never, if none is open).
async fn limiter_close(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
