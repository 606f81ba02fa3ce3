//! The decision core: a pure function from (state, event, now) to effects.
//!
//! This module owns every supervision decision: when a unit may start (all of its
//! requirements ready, none of its dependents still running), when it must stop (dependents
//! first), backoff with jitter and its reset, the start limit, restart policies and
//! no-restart exit codes, start timeouts and liveness failures, and shutdown in reverse order.
//! It performs no I/O and reads no clock: the runtime feeds it [`Event`]s with the current
//! [`Instant`] and carries out the [`Effect`]s it returns. Every run of a unit has a generation
//! number; an event from an older generation is ignored, so a stale probe result or exit can
//! never act on a newer run.
//!
//! The rule that gives ordered restarts is local and checked to a fixpoint after each event:
//! a running unit whose requirement is not ready (or that must cycle) is stopped as soon as
//! none of its dependents is running; a down unit that is wanted starts as soon as all of its
//! requirements are ready and none of its dependents is running.
//!
//! Because the rule is local, the fixpoint is reached on a worklist: a change to a unit marks
//! the unit, its dependents and its requirements, and only marked units are looked at,
//! requirements first. An event costs the size of its neighbourhood, not the number of units.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::later;
use crate::compile::Compiled;
use crate::reason::Reason;
use crate::unit::{RestartPolicy, RestartSpec};

pub use super::events::{
    Command, Event, ExitInfo, Generation, ProbeKind, RunPid, Timer, UnitId, WatchedTask,
};

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Spawn {
        unit: UnitId,
        generation: Generation,
    },
    /// Stop the run: its stop signal, then SIGKILL after its stop timeout. The runtime
    /// reports [`Event::Exited`] when it is gone.
    Stop {
        unit: UnitId,
        generation: Generation,
        /// Why: a backend may stop differently for a hung job than for a shutdown.
        reason: Reason,
    },
    StartProbe {
        unit: UnitId,
        generation: Generation,
        kind: ProbeKind,
        /// The run's main process: a readiness probe checks that the listener it reaches is
        /// this process's (or its group's, or a descendant's).
        pid: RunPid,
    },
    StopProbes {
        unit: UnitId,
    },
    SetTimer {
        unit: UnitId,
        generation: Generation,
        timer: Timer,
        at: Instant,
    },
    /// Forget the `timer`s of run `generation` of `unit` that have not fired: what they were
    /// for is settled. Firing anyway would be harmless (the core checks), but would wake the
    /// supervisor for nothing.
    CancelTimer {
        unit: UnitId,
        generation: Generation,
        timer: Timer,
    },
    Transition(Transition),
    /// Everything is down after [`Command::Shutdown`].
    Exit,
}

/// One state change, with its reason and the facts behind it, as typed values: one log line,
/// one event, one status row and the metrics are all rendered from it, at the edge. The core
/// never composes text; `cause` only carries text that came from outside (what a probe said,
/// a spawn error, a preflight finding).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub unit: UnitId,
    pub from: StateName,
    pub to: StateName,
    pub reason: Reason,
    /// The unit's run counter when this happened.
    pub generation: Generation,
    /// The requirement this is about (waiting on it, or stopped because of it).
    pub related: Option<UnitId>,
    /// The process of the run this is about.
    pub pid: Option<u32>,
    /// How the run ended.
    pub exit: Option<ExitInfo>,
    /// How long the run lasted.
    pub ran: Option<Duration>,
    /// Consecutive failures so far (into `backoff`).
    pub failures: Option<u32>,
    /// The backoff before the next start (into `backoff`).
    pub delay: Option<Duration>,
    /// The latency of the probe that passed (into `ready`).
    pub latency: Option<Duration>,
    /// From spawn (or launchd's relaunch) to ready (into `ready`).
    pub time_to_ready: Option<Duration>,
    /// A fact the reason code alone does not say.
    pub note: Option<Note>,
    /// Text from outside the core: what a probe said, a spawn error, a preflight finding.
    pub cause: Option<String>,
}

impl Transition {
    /// A transition with no facts beyond its unit, states, reason and generation.
    pub fn new(
        unit: UnitId,
        from: StateName,
        to: StateName,
        reason: Reason,
        generation: Generation,
    ) -> Self {
        Self {
            unit,
            from,
            to,
            reason,
            generation,
            related: None,
            pid: None,
            exit: None,
            ran: None,
            failures: None,
            delay: None,
            latency: None,
            time_to_ready: None,
            note: None,
            cause: None,
        }
    }
}

/// Facts of a transition that are not figures of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// Into `ready` without a `[ready]` probe: ready when started.
    NoReadyProbe,
    /// Into `ready` without a `[ready]` probe after launchd relaunched the job.
    RelaunchedNoReadyProbe,
    /// Into `started`: launchd relaunches the job itself (KeepAlive).
    LaunchdRelaunches,
    /// The stop signal was not enough: killed after its stop timeout (`STOP_TIMEOUT`).
    KilledAfterStopTimeout,
    /// A clean exit under `on-failure`: not restarted (`RESTART_POLICY`).
    CleanExitNotRestarted,
    /// An exit under policy `never` (`RESTART_POLICY`).
    PolicyNever,
    /// Into `failed`: `starts` restarts after failures within `period`.
    StartLimit { starts: u32, period: Duration },
}

/// The facts of a transition besides its unit, states, reason and generation.
#[derive(Debug, Clone, Default, PartialEq)]
struct Facts {
    pid: Option<u32>,
    exit: Option<ExitInfo>,
    ran: Option<Duration>,
    failures: Option<u32>,
    delay: Option<Duration>,
    latency: Option<Duration>,
    time_to_ready: Option<Duration>,
    note: Option<Note>,
    cause: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateName {
    Inactive,
    Waiting,
    Starting,
    Started,
    Ready,
    Stopping,
    Backoff,
    Failed,
    Stopped,
}

impl StateName {
    /// How many states there are.
    pub(crate) const COUNT: usize = 9;

    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Inactive => "inactive",
            StateName::Waiting => "waiting",
            StateName::Starting => "starting",
            StateName::Started => "started",
            StateName::Ready => "ready",
            StateName::Stopping => "stopping",
            StateName::Backoff => "backoff",
            StateName::Failed => "failed",
            StateName::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for StateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every `(from, to)` state change the core may emit, and no other: [`Core`] checks each
/// transition against it as it makes it (an illegal one is logged as `ILLEGAL_TRANSITION`, and
/// fails debug builds), and tests/engine_core.rs drives event sequences to show that every
/// entry is reached. Kept as a table, like Horust's
/// (FedericoPonzi/Horust:src/horust/supervisor/service_handler.rs), so the life of a unit can
/// be read in one place.
pub const LEGAL_TRANSITIONS: &[(StateName, StateName)] = {
    use StateName::*;
    &[
        // First wanted: start, or wait for a requirement.
        (Inactive, Starting),
        (Inactive, Waiting),
        // Waiting: its requirements are ready; a requirement's state changed the reason; not
        // wanted any more; or the start limit is reached at the start after a failure.
        (Waiting, Starting),
        (Waiting, Waiting),
        (Waiting, Stopped),
        (Waiting, Failed),
        // Starting: the pid came; the spawn failed (or it exited before its pid was reported,
        // restarted or not); the start was deferred (no GUI session, a failed preflight).
        (Starting, Started),
        (Starting, Backoff),
        (Starting, Stopped),
        (Starting, Failed),
        (Starting, Waiting),
        // Started: ready; stopped (start timeout, a requirement down, not wanted); exited on its
        // own (restarted, not restarted, failed); launchd relaunched it again; an external
        // unit's probe task died (its readiness is awaited again).
        (Started, Ready),
        (Started, Stopping),
        (Started, Backoff),
        (Started, Stopped),
        (Started, Failed),
        (Started, Started),
        // Started: a launchd job waiting for its relaunch, disabled by its owner meanwhile.
        (Started, Waiting),
        // Ready: stopped (liveness, a requirement down, not wanted); exited on its own;
        // launchd relaunched it (KeepAlive); an external unit stopped answering (liveness
        // failed: not stopped, awaited again).
        (Ready, Stopping),
        (Ready, Backoff),
        (Ready, Stopped),
        (Ready, Failed),
        (Ready, Started),
        // Stopping, once it is down: a failure's backoff (timeout, liveness); waiting for the
        // requirement it went down for; stopped; failed (a launchd job's no-restart code).
        (Stopping, Backoff),
        (Stopping, Waiting),
        (Stopping, Stopped),
        (Stopping, Failed),
        // Backoff over: start, or wait for a requirement; the start limit; an admin's stop or
        // start (which clears the backoff).
        (Backoff, Starting),
        (Backoff, Waiting),
        (Backoff, Failed),
        (Backoff, Stopped),
        // Stopped and wanted again: start, or wait; the start limit, when it was stopped in
        // the backoff of a failure.
        (Stopped, Starting),
        (Stopped, Waiting),
        (Stopped, Failed),
        // An admin's start clears a failed state.
        (Failed, Stopped),
    ]
};

/// Whether the core may change a unit's state from `from` to `to` ([`LEGAL_TRANSITIONS`]).
pub fn is_legal(from: StateName, to: StateName) -> bool {
    LEGAL[from as usize][to as usize]
}

// The matrix is indexed by the states' discriminants: `Stopped` is the last of them.
const _: () = assert!(StateName::Stopped as usize + 1 == StateName::COUNT);

/// [`LEGAL_TRANSITIONS`] as a matrix, for a check without a scan.
const LEGAL: [[bool; StateName::COUNT]; StateName::COUNT] = {
    let mut m = [[false; StateName::COUNT]; StateName::COUNT];
    let mut i = 0;
    while i < LEGAL_TRANSITIONS.len() {
        let (from, to) = LEGAL_TRANSITIONS[i];
        m[from as usize][to as usize] = true;
        i += 1;
    }
    m
};

/// A unit's state; each variant holds what only that state has.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Never started.
    Inactive,
    /// Wanted, but a requirement is not ready (`on` names it).
    Waiting { reason: Reason, on: Option<UnitId> },
    /// Wanted, but its start was deferred (`NO_GUI_SESSION`, `PREFLIGHT_FAILED`): tried again
    /// at `retry_at` (if any) or on [`Event::Retry`]. Not a failure: no backoff, no limit.
    Deferred {
        reason: Reason,
        detail: String,
        retry_at: Option<Instant>,
    },
    /// Spawn requested; no pid yet.
    Starting { generation: Generation },
    /// Running, not ready yet.
    Started {
        generation: Generation,
        pid: Option<u32>,
        deadline: Option<Instant>,
    },
    Ready {
        generation: Generation,
        pid: Option<u32>,
        alive_failures: u32,
    },
    Stopping {
        generation: Generation,
        pid: Option<u32>,
        reason: Reason,
        /// The requirement that went down, for `DEPENDENCY_RESTARTING`.
        because_of: Option<UnitId>,
    },
    Backoff {
        until: Instant,
        delay: Duration,
        reason: Reason,
    },
    /// Given up on, until an admin acts.
    Failed { reason: Reason },
    /// Down and not wanted, or exited cleanly under a policy that does not restart it.
    Stopped { reason: Reason },
}

impl State {
    pub fn name(&self) -> StateName {
        match self {
            State::Inactive => StateName::Inactive,
            State::Waiting { .. } | State::Deferred { .. } => StateName::Waiting,
            State::Starting { .. } => StateName::Starting,
            State::Started { .. } => StateName::Started,
            State::Ready { .. } => StateName::Ready,
            State::Stopping { .. } => StateName::Stopping,
            State::Backoff { .. } => StateName::Backoff,
            State::Failed { .. } => StateName::Failed,
            State::Stopped { .. } => StateName::Stopped,
        }
    }

    /// A process exists (or is being created) for this unit.
    pub(crate) fn is_running(&self) -> bool {
        matches!(
            self,
            State::Starting { .. }
                | State::Started { .. }
                | State::Ready { .. }
                | State::Stopping { .. }
        )
    }

    pub(crate) fn generation(&self) -> Option<Generation> {
        match self {
            State::Starting { generation }
            | State::Started { generation, .. }
            | State::Ready { generation, .. }
            | State::Stopping { generation, .. } => Some(*generation),
            _ => None,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            State::Started { pid, .. } | State::Ready { pid, .. } | State::Stopping { pid, .. } => {
                *pid
            }
            _ => None,
        }
    }
}

/// A probe's last word, kept for status.
#[derive(Debug, Clone, PartialEq)]
pub struct LastProbe {
    pub kind: ProbeKind,
    pub ok: bool,
    pub latency: Duration,
    pub detail: String,
    pub at: Instant,
}

/// What the core needs to know of one unit, taken from its validated spec.
#[derive(Debug, Clone)]
pub struct UnitPolicy {
    pub requires: Vec<UnitId>,
    pub dependents: Vec<UnitId>,
    pub has_ready_probe: bool,
    pub has_alive_probe: bool,
    pub start_timeout: Option<Duration>,
    pub alive_failures: u32,
    pub restart: RestartSpec,
    /// launchgraph only watches the unit (`[external]`): its run starts nothing, it has no
    /// start timeout, and a failed liveness probe takes it out of `ready` (its dependents
    /// stop) without any stop of the run: it is awaited again.
    pub external: bool,
}

/// Everything the core tracks for one unit.
#[derive(Debug, Clone)]
pub struct Slot {
    pub state: State,
    /// Since when it is in `state`.
    pub since: Instant,
    pub generation: Generation,
    /// The admin's intent (and the supervisor's): up or down.
    pub wanted: bool,
    /// Why it is not wanted: `STOP_REQUESTED`, `RELOAD` or `SHUTDOWN`.
    pub down_reason: Reason,
    /// It must go down and come back (liveness failed, start timeout, restart requested).
    pub cycle: Option<Reason>,
    /// What the failed probe said, for a liveness cycle: the cause of its stop.
    pub cycle_cause: Option<String>,
    /// Consecutive failures, for the backoff.
    pub failures: u32,
    /// The next start is a restart after this unit's own failure (it counts toward the start
    /// limit); a start after a requirement's restart is not.
    pub restart_after_failure: bool,
    /// Starts after failures within the start-limit period.
    pub restart_starts: VecDeque<Instant>,
    /// Completed restarts of this unit, whatever the cause.
    pub restarts: u32,
    pub last_exit: Option<ExitInfo>,
    pub last_probe: Option<LastProbe>,
    pub started_at: Option<Instant>,
    /// The unit's latest transition, for status: it outlives the event ring.
    pub last_transition: Option<Transition>,
}

pub struct Core {
    policies: Vec<UnitPolicy>,
    /// Requirements before dependents.
    topo: Vec<UnitId>,
    /// Each unit's position in `topo`.
    position: Vec<usize>,
    slots: Vec<Slot>,
    shutting_down: bool,
    exited: bool,
    /// Something the rules look at changed while handling the current event (a state, an
    /// intent, a cycle, a retry, the passing of a backoff): the rules must be applied. Most
    /// probe reports change nothing of the kind, and skip the rules altogether.
    moved: bool,
    /// The units the rules must look at, by position in `topo`: lowest (requirements) first.
    dirty: BinaryHeap<Reverse<usize>>,
    /// Whether a unit is in `dirty`, by unit.
    queued: Vec<bool>,
    /// Running units that must go down (see [`Core::is_doomed`]); exact for every unit not in
    /// `dirty`, recomputed for a unit as it is taken from it.
    doomed: Vec<bool>,
    /// When a backoff or a deferred start is over, by unit: due ones are marked at the next
    /// application of the rules, as a pass over every unit would find them.
    due: BinaryHeap<Reverse<(Instant, UnitId)>>,
    /// How many units are running, for the end of a shutdown.
    running: usize,
    /// How many times the rules looked at a unit, since the core was made.
    visits: u64,
    rng: fastrand::Rng,
}

impl Core {
    /// A core for a compiled configuration, every unit inactive and not yet wanted.
    pub(crate) fn new(compiled: &Compiled, now: Instant, seed: u64) -> Self {
        let policies = compiled
            .units
            .iter()
            .enumerate()
            .map(|(i, u)| UnitPolicy {
                requires: compiled.graph.requires(i).to_vec(),
                dependents: compiled.graph.dependents(i).to_vec(),
                has_ready_probe: u.ready.is_some(),
                has_alive_probe: u.alive.is_some(),
                start_timeout: u
                    .ready
                    .as_ref()
                    .filter(|_| !u.runner.is_external())
                    .map(|r| r.start_timeout),
                alive_failures: u.alive.as_ref().map_or(u32::MAX, |a| a.failures),
                restart: u.restart.clone(),
                external: u.runner.is_external(),
            })
            .collect();
        Self::from_policies(policies, now, seed)
    }

    pub fn from_policies(policies: Vec<UnitPolicy>, now: Instant, seed: u64) -> Self {
        let slots = policies
            .iter()
            .map(|_| Slot {
                state: State::Inactive,
                since: now,
                generation: 0,
                wanted: false,
                down_reason: Reason::StopRequested,
                cycle: None,
                cycle_cause: None,
                failures: 0,
                restart_after_failure: false,
                restart_starts: VecDeque::new(),
                restarts: 0,
                last_exit: None,
                last_probe: None,
                started_at: None,
                last_transition: None,
            })
            .collect();
        let topo = topological_order(&policies);
        let mut position = vec![0; policies.len()];
        for (k, &u) in topo.iter().enumerate() {
            position[u] = k;
        }
        let n = policies.len();
        Self {
            policies,
            topo,
            position,
            slots,
            shutting_down: false,
            exited: false,
            moved: false,
            dirty: BinaryHeap::new(),
            queued: vec![false; n],
            doomed: vec![false; n],
            due: BinaryHeap::new(),
            running: 0,
            visits: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// How many times the rules have looked at a unit since this core was made: what an
    /// event costs, for tests and benchmarks to see that it does not grow with the number of
    /// units.
    pub fn visits(&self) -> u64 {
        self.visits
    }

    pub fn slot(&self, unit: UnitId) -> &Slot {
        &self.slots[unit]
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// A core for a reloaded configuration: units carried over (`carried[new] = Some(old)`)
    /// keep everything the old core knew of them (state, generation, counters, intent), so a
    /// reload does not touch them; the others start inactive and not wanted (see [`want_up`]).
    ///
    /// [`want_up`]: Core::want_up
    pub(crate) fn reloaded(
        compiled: &Compiled,
        old: &Core,
        carried: &[Option<UnitId>],
        now: Instant,
        seed: u64,
    ) -> Self {
        let mut core = Core::new(compiled, now, seed);
        for (new, o) in carried.iter().enumerate() {
            if let Some(o) = o {
                core.slots[new] = old.slots[*o].clone();
            }
        }
        core.shutting_down = old.shutting_down;
        core.running = core.slots.iter().filter(|s| s.state.is_running()).count();
        for u in 0..core.slots.len() {
            core.note_due(u);
        }
        // Carried units come with their states: look at every unit once.
        core.mark_all();
        core
    }

    /// Wants these units up (the new and changed units of a reload).
    pub(crate) fn want_up(&mut self, units: &[UnitId], now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        if !self.shutting_down {
            for &u in units {
                self.slots[u].wanted = true;
                self.touch(u);
            }
        }
        self.reconcile(now, &mut fx);
        fx
    }

    /// Wants every unit up: what `launchgraph up` does first.
    pub fn start_all(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        for slot in &mut self.slots {
            slot.wanted = true;
        }
        self.mark_all();
        self.reconcile(now, &mut fx);
        fx
    }

    /// Applies one event; returns what must be done, in order.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.moved = false;
        match event {
            Event::Command(c) => self.command(c, now, &mut fx),
            Event::Spawned {
                unit,
                generation,
                pid,
            } => self.spawned(unit, generation, pid, now, &mut fx),
            Event::SpawnFailed {
                unit,
                generation,
                reason,
                error,
            } => {
                if self.current(unit, generation)
                    && matches!(self.slots[unit].state, State::Starting { .. })
                {
                    let facts = Facts {
                        cause: Some(error),
                        ..Facts::default()
                    };
                    self.failure(unit, reason, facts, now, &mut fx);
                }
            }
            Event::Exited {
                unit,
                generation,
                exit,
                killed_after_timeout,
            } => {
                if self.current(unit, generation) {
                    self.exited(unit, exit, killed_after_timeout, now, &mut fx);
                }
            }
            Event::TaskFailed {
                unit,
                generation,
                task,
            } => {
                if self.current(unit, generation) {
                    self.task_failed(unit, task, now, &mut fx);
                }
            }
            Event::ProbeReported {
                unit,
                generation,
                kind,
                ok,
                latency,
                detail,
            } => {
                if self.current(unit, generation) {
                    self.probe(unit, kind, ok, latency, detail, now, &mut fx);
                }
            }
            Event::Relaunching {
                unit,
                generation,
                exit,
            } => {
                if self.current(unit, generation) {
                    self.relaunching(unit, generation, exit, now, &mut fx);
                }
            }
            Event::RelaunchMissed {
                unit,
                generation,
                detail,
            } => {
                if self.current(unit, generation)
                    && let State::Started { pid: None, .. } = &self.slots[unit].state
                {
                    let state = self.slots[unit].state.clone();
                    let facts = Facts {
                        cause: Some(detail),
                        ..Facts::default()
                    };
                    self.set(
                        unit,
                        state,
                        Reason::LaunchdNotRelaunched,
                        facts,
                        now,
                        &mut fx,
                    );
                }
            }
            Event::StartDeferred {
                unit,
                generation,
                reason,
                detail,
                retry_after,
            } => {
                // A launchd job waiting for its relaunch (no pid) whose owner disabled it.
                let relaunch_pending = unit < self.slots.len()
                    && !self.policies[unit].external
                    && matches!(self.slots[unit].state, State::Started { pid: None, .. });
                if self.current(unit, generation)
                    && (matches!(self.slots[unit].state, State::Starting { .. })
                        || relaunch_pending)
                {
                    if relaunch_pending {
                        fx.push(Effect::StopProbes { unit });
                    }
                    let retry_at = retry_after.map(|d| later(now, d));
                    if let Some(at) = retry_at {
                        fx.push(Effect::SetTimer {
                            unit,
                            generation,
                            timer: Timer::RetryStart,
                            at,
                        });
                    }
                    let state = State::Deferred {
                        reason,
                        detail: detail.clone(),
                        retry_at,
                    };
                    let facts = Facts {
                        cause: Some(detail),
                        ..Facts::default()
                    };
                    self.set(unit, state, reason, facts, now, &mut fx);
                }
            }
            Event::Retry { unit } => {
                if let Some(State::Deferred { retry_at, .. }) =
                    self.slots.get_mut(unit).map(|s| &mut s.state)
                {
                    *retry_at = Some(now);
                    self.moved = true;
                    self.mark(unit);
                }
            }
            Event::TimerFired {
                unit,
                generation,
                timer,
            } => match timer {
                Timer::StartTimeout => {
                    if self.current(unit, generation)
                        && let State::Started {
                            deadline: Some(d), ..
                        } = self.slots[unit].state
                        && now >= d
                    {
                        self.slots[unit].cycle = Some(Reason::ReadyTimeout);
                        // What the last failed readiness attempt said (refused, held by
                        // another process, ...) becomes the cause of the stop: one made since
                        // this start, which launchd's relaunches do not renew (the deadline
                        // is kept), so an attempt made before the latest relaunch counts.
                        let since = self.policies[unit]
                            .start_timeout
                            .and_then(|t| d.checked_sub(t))
                            .or(self.slots[unit].started_at);
                        self.slots[unit].cycle_cause = self.slots[unit]
                            .last_probe
                            .as_ref()
                            .filter(|p| p.kind == ProbeKind::Ready && !p.ok)
                            .filter(|p| since.is_none_or(|s| p.at >= s))
                            .map(|p| p.detail.clone());
                        self.moved = true;
                        self.touch(unit);
                    }
                }
                // Backoff timers carry no generation worth checking: reconcile looks at
                // `until` itself, so an early or duplicate timer is harmless.
                Timer::BackoffOver | Timer::RetryStart => {
                    self.moved = true;
                    if unit < self.slots.len() {
                        self.mark(unit);
                    }
                }
            },
        }
        if self.moved {
            self.reconcile(now, &mut fx);
        }
        fx
    }

    /// Applies the rules to every unit until nothing changes; returns what must be done. After
    /// [`Core::handle`] there is never anything left to do: this is for tests to check that
    /// the worklist missed nothing.
    pub fn settle(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.mark_all();
        self.reconcile(now, &mut fx);
        fx
    }

    fn current(&self, unit: UnitId, generation: Generation) -> bool {
        unit < self.slots.len()
            && self.slots[unit].generation == generation
            && self.slots[unit].state.generation() == Some(generation)
    }

    fn command(&mut self, c: Command, now: Instant, fx: &mut Vec<Effect>) {
        self.moved = true;
        match c {
            Command::Start(u) => {
                for r in self.closure(u, |p| &p.requires) {
                    self.want(r, now, fx);
                }
                self.want(u, now, fx);
            }
            Command::Stop(u) | Command::Unload(u) => {
                let why = match c {
                    Command::Unload(_) => Reason::Reload,
                    _ => Reason::StopRequested,
                };
                for d in self.closure(u, |p| &p.dependents).into_iter().chain([u]) {
                    self.slots[d].wanted = false;
                    self.slots[d].down_reason = why;
                    self.touch(d);
                }
            }
            Command::Restart(u) => {
                if self.slots[u].state.is_running() {
                    self.slots[u].cycle = Some(Reason::RestartRequested);
                    self.slots[u].failures = 0;
                    self.slots[u].restart_after_failure = false;
                    self.slots[u].restart_starts.clear();
                    self.touch(u);
                }
                for r in self.closure(u, |p| &p.requires) {
                    self.want(r, now, fx);
                }
                self.want(u, now, fx);
                // Dependents an admin stopped stay stopped; running ones cycle by the rule.
            }
            Command::Shutdown => {
                self.shutting_down = true;
                for s in &mut self.slots {
                    s.wanted = false;
                    s.down_reason = Reason::Shutdown;
                }
                self.mark_all();
            }
        }
    }

    /// Marks a unit wanted; a failed or backing-off unit is given a fresh start.
    fn want(&mut self, u: UnitId, now: Instant, fx: &mut Vec<Effect>) {
        if self.shutting_down {
            return;
        }
        self.touch(u);
        let slot = &mut self.slots[u];
        slot.wanted = true;
        // An admin's start looks again at once at what deferred it (the owner may have
        // enabled the job just now).
        if let State::Deferred { retry_at, .. } = &mut slot.state {
            *retry_at = Some(now);
        }
        if matches!(slot.state, State::Failed { .. } | State::Backoff { .. }) {
            slot.failures = 0;
            slot.restart_after_failure = false;
            slot.restart_starts.clear();
            self.set(
                u,
                State::Stopped {
                    reason: Reason::StartRequested,
                },
                Reason::StartRequested,
                Facts::default(),
                now,
                fx,
            );
        }
    }

    fn closure(&self, u: UnitId, edges: impl Fn(&UnitPolicy) -> &Vec<UnitId>) -> Vec<UnitId> {
        let mut seen = vec![false; self.slots.len()];
        let mut stack = vec![u];
        let mut out = Vec::new();
        while let Some(x) = stack.pop() {
            for &y in edges(&self.policies[x]) {
                if !seen[y] {
                    seen[y] = true;
                    out.push(y);
                    stack.push(y);
                }
            }
        }
        out
    }

    fn spawned(
        &mut self,
        u: UnitId,
        generation: Generation,
        pid: Option<u32>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        if !self.current(u, generation) {
            return;
        }
        // An external unit's run reports once, when the watch begins; nothing relaunches it.
        if self.policies[u].external && !matches!(self.slots[u].state, State::Starting { .. }) {
            return;
        }
        // A relaunch by launchd: the new pid of a run that goes on.
        if let State::Started {
            pid: known @ None, ..
        } = &mut self.slots[u].state
        {
            *known = pid;
            if self.policies[u].has_ready_probe {
                // The readiness probe started when launchd said the job was relaunching,
                // while it had no process: start it again with the new one, so the listener
                // it reaches is checked against it.
                fx.push(Effect::StopProbes { unit: u });
                fx.push(Effect::StartProbe {
                    unit: u,
                    generation,
                    kind: ProbeKind::Ready,
                    pid: RunPid::from_pid(pid),
                });
            } else {
                let facts = Facts {
                    pid,
                    note: Some(Note::RelaunchedNoReadyProbe),
                    ..Facts::default()
                };
                self.become_ready(u, generation, pid, facts, now, fx);
            }
            return;
        }
        if !matches!(self.slots[u].state, State::Starting { .. }) {
            return;
        }
        self.slots[u].started_at = Some(now);
        let facts = Facts {
            pid,
            ..Facts::default()
        };
        let policy = &self.policies[u];
        // An external unit is not spawned: from now on it is watched.
        let reason = if policy.external {
            Reason::Watching
        } else {
            Reason::Spawned
        };
        if policy.has_ready_probe {
            let deadline = policy.start_timeout.map(|t| later(now, t));
            self.set(
                u,
                State::Started {
                    generation,
                    pid,
                    deadline,
                },
                reason,
                facts,
                now,
                fx,
            );
            fx.push(Effect::StartProbe {
                unit: u,
                generation,
                kind: ProbeKind::Ready,
                pid: RunPid::from_pid(pid),
            });
            if let Some(at) = deadline {
                fx.push(Effect::SetTimer {
                    unit: u,
                    generation,
                    timer: Timer::StartTimeout,
                    at,
                });
            }
        } else {
            self.set(
                u,
                State::Started {
                    generation,
                    pid,
                    deadline: None,
                },
                reason,
                facts.clone(),
                now,
                fx,
            );
            let facts = Facts {
                note: Some(Note::NoReadyProbe),
                ..facts
            };
            self.become_ready(u, generation, pid, facts, now, fx);
        }
    }

    fn become_ready(
        &mut self,
        u: UnitId,
        generation: Generation,
        pid: Option<u32>,
        facts: Facts,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let facts = Facts {
            time_to_ready: self.slots[u]
                .started_at
                .map(|s| now.saturating_duration_since(s)),
            ..facts
        };
        self.set(
            u,
            State::Ready {
                generation,
                pid,
                alive_failures: 0,
            },
            Reason::Ready,
            facts,
            now,
            fx,
        );
        if self.policies[u].has_alive_probe {
            fx.push(Effect::StartProbe {
                unit: u,
                generation,
                kind: ProbeKind::Alive,
                pid: RunPid::from_pid(pid),
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn probe(
        &mut self,
        u: UnitId,
        kind: ProbeKind,
        ok: bool,
        latency: Duration,
        detail: String,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        self.slots[u].last_probe = Some(LastProbe {
            kind,
            ok,
            latency,
            detail: detail.clone(),
            at: now,
        });
        match (kind, &self.slots[u].state) {
            (
                ProbeKind::Ready,
                State::Started {
                    generation, pid, ..
                },
            ) if ok => {
                let (generation, pid) = (*generation, *pid);
                let facts = Facts {
                    pid,
                    latency: Some(latency),
                    ..Facts::default()
                };
                self.become_ready(u, generation, pid, facts, now, fx);
            }
            (ProbeKind::Alive, State::Ready { .. }) => {
                let threshold = self.policies[u].alive_failures;
                let slot = &mut self.slots[u];
                let mut down = false;
                if let State::Ready { alive_failures, .. } = &mut slot.state {
                    if ok {
                        *alive_failures = 0;
                    } else {
                        *alive_failures += 1;
                        down = *alive_failures >= threshold && slot.cycle.is_none();
                    }
                }
                if down && self.policies[u].external {
                    // Not launchgraph's to stop: wait for it to answer again.
                    self.unwatched_down(u, Reason::LivenessFailed, detail, now, fx);
                } else if down {
                    // What the last failed probe said becomes the cause of the stop.
                    let slot = &mut self.slots[u];
                    slot.cycle = Some(Reason::LivenessFailed);
                    slot.cycle_cause = Some(detail);
                    self.moved = true;
                    self.touch(u);
                }
            }
            _ => {}
        }
    }

    /// A task that watched the unit's current run died. Its run's task: the run is gone (its
    /// process group was killed), so it is a failure, restarted whatever the policy says (the
    /// fault is launchgraph's, not the unit's). A probe's task: the unit is stopped and
    /// restarted, as after a failed liveness probe, so its probes run again.
    fn task_failed(&mut self, u: UnitId, task: WatchedTask, now: Instant, fx: &mut Vec<Effect>) {
        let cause = format!("{} died (see the daemon's log)", task.describe());
        match task {
            WatchedTask::Run => {
                if !matches!(
                    self.slots[u].state,
                    State::Starting { .. }
                        | State::Started { .. }
                        | State::Ready { .. }
                        | State::Stopping { .. }
                ) {
                    return;
                }
                fx.push(Effect::StopProbes { unit: u });
                let facts = Facts {
                    pid: self.slots[u].state.pid(),
                    cause: Some(cause),
                    ..Facts::default()
                };
                self.failure(u, Reason::TaskFailed, facts, now, fx);
            }
            WatchedTask::Probe(_)
                if self.policies[u].external
                    && matches!(
                        self.slots[u].state,
                        State::Started { .. } | State::Ready { .. }
                    )
                    && self.slots[u].cycle.is_none() =>
            {
                // Its probes are all launchgraph has of it: start them again, stop nothing.
                self.unwatched_down(u, Reason::TaskFailed, cause, now, fx);
            }
            WatchedTask::Probe(_) => {
                let slot = &mut self.slots[u];
                if matches!(slot.state, State::Started { .. } | State::Ready { .. })
                    && slot.cycle.is_none()
                {
                    slot.cycle = Some(Reason::TaskFailed);
                    slot.cycle_cause = Some(cause);
                    self.moved = true;
                    self.touch(u);
                }
            }
        }
    }

    /// An external unit stopped answering (its liveness failed, or its probes' task died):
    /// it leaves `ready`, so its dependents stop in order, and its readiness is awaited again,
    /// as at the start of the watch. Nothing is stopped and nothing counts as a restart: it
    /// was not launchgraph's to run.
    fn unwatched_down(
        &mut self,
        u: UnitId,
        reason: Reason,
        cause: String,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let generation = match self.slots[u].state {
            State::Started { generation, .. } | State::Ready { generation, .. } => generation,
            _ => return,
        };
        fx.push(Effect::StopProbes { unit: u });
        self.slots[u].started_at = Some(now);
        let facts = Facts {
            cause: Some(cause),
            ..Facts::default()
        };
        self.set(
            u,
            State::Started {
                generation,
                pid: None,
                deadline: None,
            },
            reason,
            facts,
            now,
            fx,
        );
        if self.policies[u].has_ready_probe {
            // Whoever runs an external service, its answer is the service's.
            fx.push(Effect::StartProbe {
                unit: u,
                generation,
                kind: ProbeKind::Ready,
                pid: RunPid::Unknown,
            });
        } else {
            let facts = Facts {
                note: Some(Note::NoReadyProbe),
                ..Facts::default()
            };
            self.become_ready(u, generation, None, facts, now, fx);
        }
    }

    /// launchd relaunches the job itself: observe it, do not fight it (no kickstart during
    /// its throttle), and take the unit out of `ready` so its dependents cycle in order.
    fn relaunching(
        &mut self,
        u: UnitId,
        generation: Generation,
        exit: ExitInfo,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        if self.policies[u].external
            || !matches!(
                self.slots[u].state,
                State::Started { .. } | State::Ready { .. }
            )
        {
            return;
        }
        fx.push(Effect::StopProbes { unit: u });
        // A job that was never ready since its start keeps that start's deadline: launchd
        // relaunching a job that crash-loops must not push its start timeout back forever.
        // After it was ready, a relaunch is a new start with a deadline of its own.
        let kept_deadline = match self.slots[u].state {
            State::Started { deadline, .. } => deadline,
            _ => None,
        };
        let slot = &mut self.slots[u];
        slot.last_exit = Some(exit);
        slot.restarts += 1;
        let facts = Facts {
            pid: slot.state.pid(),
            exit: Some(exit),
            ran: slot.started_at.map(|s| now.saturating_duration_since(s)),
            note: Some(Note::LaunchdRelaunches),
            ..Facts::default()
        };
        slot.started_at = Some(now);
        if let Some(code) = exit.code
            && self.policies[u]
                .restart
                .no_restart_exit_codes
                .contains(&code)
        {
            // launchd would relaunch it forever: take the job down, then mark it failed.
            slot.cycle = Some(Reason::NoRestartExitCode);
        }
        let deadline =
            kept_deadline.or_else(|| self.policies[u].start_timeout.map(|t| later(now, t)));
        self.set(
            u,
            State::Started {
                generation,
                pid: None,
                deadline,
            },
            Reason::RelaunchedByLaunchd,
            facts,
            now,
            fx,
        );
        if self.policies[u].has_ready_probe {
            fx.push(Effect::StartProbe {
                unit: u,
                generation,
                kind: ProbeKind::Ready,
                pid: RunPid::Relaunching,
            });
        }
        if let Some(at) = deadline {
            fx.push(Effect::SetTimer {
                unit: u,
                generation,
                timer: Timer::StartTimeout,
                at,
            });
        }
    }

    fn exited(
        &mut self,
        u: UnitId,
        exit: ExitInfo,
        killed: bool,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        fx.push(Effect::StopProbes { unit: u });
        // The end of an external unit's watch: nothing of it exited.
        let exit = (!self.policies[u].external).then_some(exit);
        let slot = &mut self.slots[u];
        if exit.is_some() {
            slot.last_exit = exit;
        }
        let facts = Facts {
            pid: slot.state.pid(),
            exit,
            ran: slot.started_at.map(|s| now.saturating_duration_since(s)),
            note: killed.then_some(Note::KilledAfterStopTimeout),
            ..Facts::default()
        };
        let cycle = slot.cycle.take();
        slot.cycle_cause = None;
        if let State::Stopping {
            reason, because_of, ..
        } = slot.state
        {
            match reason {
                Reason::ReadyTimeout | Reason::LivenessFailed | Reason::TaskFailed => {
                    self.failure(u, reason, facts, now, fx);
                }
                Reason::DependencyRestarting => {
                    self.slots[u].restarts += 1;
                    self.set(
                        u,
                        State::Waiting {
                            reason,
                            on: because_of,
                        },
                        reason,
                        facts,
                        now,
                        fx,
                    );
                }
                Reason::NoRestartExitCode => {
                    self.slots[u].wanted = false;
                    self.set(u, State::Failed { reason }, reason, facts, now, fx);
                }
                Reason::RestartRequested => {
                    self.slots[u].restarts += 1;
                    self.set(u, State::Stopped { reason }, reason, facts, now, fx);
                }
                _ => self.set(u, State::Stopped { reason }, reason, facts, now, fx),
            }
            return;
        }
        // An exit nobody asked for. A pending cycle is moot: it is down already.
        let _ = cycle;
        let restart = &self.policies[u].restart;
        let exit = exit.unwrap_or(ExitInfo {
            code: None,
            signal: None,
        });
        if let Some(code) = exit.code
            && restart.no_restart_exit_codes.contains(&code)
        {
            self.slots[u].wanted = false;
            let reason = Reason::NoRestartExitCode;
            self.set(u, State::Failed { reason }, reason, facts, now, fx);
            return;
        }
        let reason = match (exit.code, exit.signal) {
            (_, Some(_)) => Reason::KilledBySignal,
            (Some(0), None) => Reason::ExitedCleanly,
            _ => Reason::Exited,
        };
        match (restart.policy, reason) {
            (RestartPolicy::Always, _)
            | (RestartPolicy::OnFailure, Reason::Exited | Reason::KilledBySignal) => {
                self.failure(u, reason, facts, now, fx);
            }
            (_, Reason::ExitedCleanly) => {
                self.slots[u].wanted = false;
                let facts = Facts {
                    note: Some(Note::CleanExitNotRestarted),
                    ..facts
                };
                self.set(u, State::Stopped { reason }, reason, facts, now, fx);
            }
            _ => {
                self.slots[u].wanted = false;
                let facts = Facts {
                    note: Some(Note::PolicyNever),
                    ..facts
                };
                self.set(u, State::Failed { reason }, reason, facts, now, fx);
            }
        }
    }

    /// A failed run: backoff (reset after a stable run), or failed past the start limit at the
    /// next start.
    fn failure(
        &mut self,
        u: UnitId,
        reason: Reason,
        facts: Facts,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let spec = self.policies[u].restart.clone();
        let slot = &mut self.slots[u];
        if slot
            .started_at
            .is_some_and(|s| now.saturating_duration_since(s) >= spec.reset_after)
        {
            slot.failures = 0;
        }
        slot.failures = slot.failures.saturating_add(1);
        slot.restart_after_failure = true;
        let delay = backoff_delay(&spec, slot.failures, self.rng.f64());
        let until = later(now, delay);
        let generation = self.slots[u].generation;
        let facts = Facts {
            failures: Some(self.slots[u].failures),
            delay: Some(delay),
            ..facts
        };
        self.set(
            u,
            State::Backoff {
                until,
                delay,
                reason,
            },
            reason,
            facts,
            now,
            fx,
        );
        if !delay.is_zero() {
            fx.push(Effect::SetTimer {
                unit: u,
                generation,
                timer: Timer::BackoffOver,
                at: until,
            });
        }
    }

    /// Brings states in line with the rules until nothing changes, looking only at marked
    /// units, requirements first. A unit's rule reads only the unit, its requirements and its
    /// dependents, so a change marks just those (see [`Core::touch`]); requirements come
    /// before dependents, so each unit is looked at with its requirements' `doomed` exact.
    fn reconcile(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        while let Some(&Reverse((at, u))) = self.due.peek() {
            if at > now {
                break;
            }
            self.due.pop();
            self.mark(u);
        }
        while let Some(Reverse(k)) = self.dirty.pop() {
            let u = self.topo[k];
            self.queued[u] = false;
            self.visits += 1;
            let doomed = self.is_doomed(u);
            if doomed != self.doomed[u] {
                self.doomed[u] = doomed;
                for d in 0..self.policies[u].dependents.len() {
                    let d = self.policies[u].dependents[d];
                    self.mark(d);
                }
            }
            self.reconcile_one(u, now, fx);
        }
        if self.shutting_down && !self.exited && self.running == 0 {
            self.exited = true;
            fx.push(Effect::Exit);
        }
    }

    /// Whether a running unit must go down: not wanted, asked to cycle, or with a requirement
    /// that is not ready or itself must go down. Reads the requirements' `doomed`.
    fn is_doomed(&self, u: UnitId) -> bool {
        let s = &self.slots[u];
        s.state.is_running()
            && (!s.wanted
                || s.cycle.is_some()
                || self.policies[u]
                    .requires
                    .iter()
                    .any(|&r| self.doomed[r] || !self.is_ready(r)))
    }

    /// Marks a unit for the rules.
    fn mark(&mut self, u: UnitId) {
        if !self.queued[u] {
            self.queued[u] = true;
            self.dirty.push(Reverse(self.position[u]));
        }
    }

    /// Marks a unit whose state, intent or cycle changed, and every unit whose rule reads it:
    /// its dependents (their requirement) and its requirements (their dependent).
    fn touch(&mut self, u: UnitId) {
        self.mark(u);
        for k in 0..self.policies[u].dependents.len() {
            let d = self.policies[u].dependents[k];
            self.mark(d);
        }
        for k in 0..self.policies[u].requires.len() {
            let r = self.policies[u].requires[k];
            self.mark(r);
        }
    }

    /// Remembers when `u`'s backoff or deferred start is over, if it is in one.
    fn note_due(&mut self, u: UnitId) {
        match &self.slots[u].state {
            State::Backoff { until: at, .. }
            | State::Deferred {
                retry_at: Some(at), ..
            } => self.due.push(Reverse((*at, u))),
            _ => {}
        }
    }

    fn mark_all(&mut self) {
        for u in 0..self.slots.len() {
            self.mark(u);
        }
    }

    /// Whether `r` counts as ready for its dependents.
    fn is_ready(&self, r: UnitId) -> bool {
        let s = &self.slots[r];
        matches!(s.state, State::Ready { .. }) && s.cycle.is_none() && s.wanted && !self.doomed[r]
    }

    /// Applies the rule to one unit; whether it changed anything.
    fn reconcile_one(&mut self, u: UnitId, now: Instant, fx: &mut Vec<Effect>) -> bool {
        let reqs_ready = self.policies[u].requires.iter().all(|&r| self.is_ready(r));
        let dependents_down = self.policies[u]
            .dependents
            .iter()
            .all(|&d| !self.slots[d].state.is_running());
        let slot = &self.slots[u];
        match &slot.state {
            State::Started { .. } | State::Ready { .. } => {
                let stop_reason = if !slot.wanted {
                    Some(slot.down_reason)
                } else if let Some(c) = slot.cycle {
                    Some(c)
                } else if !reqs_ready {
                    Some(Reason::DependencyRestarting)
                } else {
                    None
                };
                let Some(reason) = stop_reason else {
                    return false;
                };
                if !dependents_down {
                    return false;
                }
                let generation = slot.generation;
                let pid = slot.state.pid();
                let because_of = if reason == Reason::DependencyRestarting {
                    self.policies[u]
                        .requires
                        .iter()
                        .copied()
                        .find(|&r| !self.is_ready(r))
                } else {
                    None
                };
                fx.push(Effect::StopProbes { unit: u });
                fx.push(Effect::Stop {
                    unit: u,
                    generation,
                    reason,
                });
                let cause = match reason {
                    Reason::LivenessFailed | Reason::TaskFailed | Reason::ReadyTimeout => {
                        self.slots[u].cycle_cause.take()
                    }
                    _ => None,
                };
                let facts = Facts {
                    pid,
                    cause,
                    ..Facts::default()
                };
                self.set(
                    u,
                    State::Stopping {
                        generation,
                        pid,
                        reason,
                        because_of,
                    },
                    reason,
                    facts,
                    now,
                    fx,
                );
                true
            }
            // Wait for the pid (or the spawn failure); then the rule above applies.
            State::Starting { .. } | State::Stopping { .. } | State::Failed { .. } => false,
            State::Inactive
            | State::Waiting { .. }
            | State::Deferred { .. }
            | State::Stopped { .. }
            | State::Backoff { .. } => {
                if !slot.wanted {
                    if matches!(
                        slot.state,
                        State::Waiting { .. } | State::Deferred { .. } | State::Backoff { .. }
                    ) {
                        let reason = slot.down_reason;
                        self.set(
                            u,
                            State::Stopped { reason },
                            reason,
                            Facts::default(),
                            now,
                            fx,
                        );
                        return true;
                    }
                    return false;
                }
                if let State::Backoff { until, .. } = slot.state
                    && until > now
                {
                    return false;
                }
                // A deferred start waits for its retry time or a retry event.
                if let State::Deferred { retry_at, .. } = &slot.state
                    && retry_at.is_none_or(|at| at > now)
                {
                    return false;
                }
                if !reqs_ready {
                    let (reason, on) = self.waiting_reason(u);
                    if let State::Waiting { reason: r, on: o } = &self.slots[u].state
                        && (*r == reason
                            || *r == Reason::DependencyRestarting
                                && reason == Reason::WaitingForDependency)
                        && *o == on
                    {
                        return false;
                    }
                    let keep_restarting = matches!(
                        self.slots[u].state,
                        State::Waiting {
                            reason: Reason::DependencyRestarting,
                            ..
                        }
                    ) && reason == Reason::WaitingForDependency;
                    let reason = if keep_restarting {
                        Reason::DependencyRestarting
                    } else {
                        reason
                    };
                    self.set(
                        u,
                        State::Waiting { reason, on },
                        reason,
                        Facts::default(),
                        now,
                        fx,
                    );
                    return true;
                }
                if !dependents_down {
                    return false;
                }
                self.start(u, now, fx);
                true
            }
        }
    }

    /// The first requirement that is not ready, and why.
    fn waiting_reason(&self, u: UnitId) -> (Reason, Option<UnitId>) {
        for &r in &self.policies[u].requires {
            if self.is_ready(r) {
                continue;
            }
            let s = &self.slots[r];
            let reason = match s.state {
                State::Failed { .. } => Reason::DependencyFailed,
                _ if !s.wanted => Reason::DependencyStopped,
                _ => Reason::WaitingForDependency,
            };
            return (reason, Some(r));
        }
        (Reason::WaitingForDependency, None)
    }

    fn start(&mut self, u: UnitId, now: Instant, fx: &mut Vec<Effect>) {
        let spec = &self.policies[u].restart;
        let (count, period) = (spec.start_limit_count, spec.start_limit_period);
        let slot = &mut self.slots[u];
        let after_failure = std::mem::take(&mut slot.restart_after_failure);
        if after_failure {
            while slot
                .restart_starts
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) > period)
            {
                slot.restart_starts.pop_front();
            }
            if slot.restart_starts.len() >= count as usize {
                slot.wanted = false;
                let facts = Facts {
                    note: Some(Note::StartLimit {
                        starts: u32::try_from(slot.restart_starts.len()).unwrap_or(u32::MAX),
                        period,
                    }),
                    ..Facts::default()
                };
                let reason = Reason::StartLimitReached;
                self.set(u, State::Failed { reason }, reason, facts, now, fx);
                return;
            }
            slot.restart_starts.push_back(now);
        }
        if after_failure {
            slot.restarts += 1;
        }
        slot.generation += 1;
        let generation = slot.generation;
        let reason = match slot.state {
            State::Backoff { reason, .. } => reason,
            State::Waiting {
                reason: Reason::DependencyRestarting,
                ..
            } => Reason::DependencyRestarting,
            State::Stopped {
                reason: Reason::RestartRequested,
            } => Reason::RestartRequested,
            _ => Reason::StartRequested,
        };
        self.set(
            u,
            State::Starting { generation },
            reason,
            Facts::default(),
            now,
            fx,
        );
        fx.push(Effect::Spawn {
            unit: u,
            generation,
        });
    }

    fn set(
        &mut self,
        u: UnitId,
        state: State,
        reason: Reason,
        facts: Facts,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let related = match &state {
            State::Waiting { on, .. } => *on,
            State::Stopping { because_of, .. } => *because_of,
            _ => None,
        };
        self.moved = true;
        self.touch(u);
        match (self.slots[u].state.is_running(), state.is_running()) {
            (false, true) => self.running += 1,
            (true, false) => self.running -= 1,
            _ => {}
        }
        let slot = &mut self.slots[u];
        let from = slot.state.name();
        let to = state.name();
        if !is_legal(from, to) {
            // A bug here, not a fault of the unit: say so where it happened, keep going in
            // production, stop a debug build and the tests.
            tracing::error!(
                unit = u,
                %from,
                %to,
                %reason,
                code = Reason::IllegalTransition.code(),
                "a state change outside the table of legal transitions"
            );
            debug_assert!(false, "illegal transition {from} -> {to} ({reason})");
        }
        let start_deadline = |s: &State| match s {
            State::Started { deadline, .. } => *deadline,
            _ => None,
        };
        // Leaving the start (ready, failed or stopped) settles its timeout, unless a launchd
        // relaunch keeps the same deadline.
        let deadline_settled =
            start_deadline(&slot.state).is_some_and(|d| start_deadline(&state) != Some(d));
        slot.state = state;
        slot.since = now;
        if deadline_settled {
            fx.push(Effect::CancelTimer {
                unit: u,
                generation: slot.generation,
                timer: Timer::StartTimeout,
            });
        }
        self.note_due(u);
        let slot = &mut self.slots[u];
        let Facts {
            pid,
            exit,
            ran,
            failures,
            delay,
            latency,
            time_to_ready,
            note,
            cause,
        } = facts;
        let t = Transition {
            unit: u,
            from,
            to: slot.state.name(),
            reason,
            generation: slot.generation,
            related,
            pid,
            exit,
            ran,
            failures,
            delay,
            latency,
            time_to_ready,
            note,
            cause,
        };
        slot.last_transition = Some(t.clone());
        fx.push(Effect::Transition(t));
    }
}

/// The delay before restart number `failures` (1-based): `initial * factor^(failures-1)`,
/// capped at `max`, then spread by ±`jitter` (and never above `max`). `random` is in [0, 1).
pub fn backoff_delay(spec: &RestartSpec, failures: u32, random: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(1000) as i32;
    let base = spec.initial.as_secs_f64() * spec.factor.powi(exp);
    let capped = base.min(spec.max.as_secs_f64());
    let spread = capped * spec.jitter * (2.0 * random - 1.0);
    let secs = (capped + spread).clamp(0.0, spec.max.as_secs_f64());
    crate::clock::seconds(secs)
}

/// Kahn's order over `requires`; the graph was checked acyclic when compiled.
fn topological_order(policies: &[UnitPolicy]) -> Vec<UnitId> {
    let mut left: Vec<usize> = policies.iter().map(|p| p.requires.len()).collect();
    let mut order: Vec<UnitId> = (0..policies.len()).filter(|&u| left[u] == 0).collect();
    let mut k = 0;
    while k < order.len() {
        let u = order[k];
        k += 1;
        for &d in &policies[u].dependents {
            left[d] -= 1;
            if left[d] == 0 {
                order.push(d);
            }
        }
    }
    // A cycle cannot reach here through `compile`; keep every unit reachable regardless.
    let mut placed = vec![false; policies.len()];
    for &u in &order {
        placed[u] = true;
    }
    order.extend((0..policies.len()).filter(|&u| !placed[u]));
    order
}
