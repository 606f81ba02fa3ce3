//! The guard state machine: a pure function from (state, input, time) to transitions and
//! effects. No tokio, no I/O, no clock reads: every input carries the monotonic [`Instant`] it
//! happened at, and the shell that samples signals and runs commands feeds them in.
//!
//! A guard is `ok → pending → tripped → clearing → ok`. It trips when its trip condition has
//! held for its trip window and clears when its clear condition (the far side of the
//! hysteresis band) has held for its clear window; crossing back inside a window returns to
//! where it came from (`pending → ok`, `clearing → tripped`) without any action. Actions run on
//! the two edges only, `→ tripped` and `tripped|clearing → ok`, as monit's exec-once and
//! Prometheus' pending→firing do (https://mmonit.com/monit/documentation/monit.html, FAULT
//! TOLERANCE; https://prometheus.io/docs/prometheus/latest/configuration/alerting_rules/).
//!
//! A sample that cannot be taken is `unknown`: it neither advances nor resets a window (the
//! time it covers does not count toward a `for` duration either) and the guard keeps, and
//! reports, its last real state alongside. A guard never stops sampling after an action.
//!
//! Actions are time-boxed: what an edge starts at T must be done and verified by
//! T + `complete-within`, else the action is timed out, and stays so, visibly, until its
//! verify command confirms it after all or the next edge supersedes it. Every action carries
//! an [`ActionId`]; an outcome for an older one is ignored, so a late report can never touch a
//! newer edge.
//!
//! A [`SwitchMachine`] combines guards of one unit: it trips when all (or any) of them are
//! tripped and clears only when none is, and owns the actions.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::clock;
use crate::guard::signal::{Quantity as Sampled, Unit};
use crate::reason::Reason;
use crate::unit::UnitName;
use crate::unit::guard::{
    Action, Guard, GuardName, Mode, Quantity, Stat, StatWindow, Switch, When, Window,
};

/// The most samples a statistic window keeps (the loader refuses windows that would hold more
/// at their `every`; this bounds memory even if samples arrive faster than configured).
pub const MAX_WINDOW_SAMPLES: usize = 10_000;

/// A guard's last real state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Ok,
    Pending,
    Tripped,
    Clearing,
}

impl Phase {
    /// Tripped or on its way back: the guard counts as tripped (for holds and switches).
    pub fn is_tripped(self) -> bool {
        matches!(self, Phase::Tripped | Phase::Clearing)
    }

    fn state(self) -> State {
        match self {
            Phase::Ok => State::Ok,
            Phase::Pending => State::Pending,
            Phase::Tripped => State::Tripped,
            Phase::Clearing => State::Clearing,
        }
    }

    fn reason(self) -> Reason {
        match self {
            Phase::Ok => Reason::GuardCleared,
            Phase::Pending => Reason::GuardPending,
            Phase::Tripped => Reason::GuardTripped,
            Phase::Clearing => Reason::GuardClearing,
        }
    }
}

/// The state a guard shows: its phase, or `Unknown` while its signal cannot be sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ok,
    Pending,
    Tripped,
    Clearing,
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Pending => "pending",
            State::Tripped => "tripped",
            State::Clearing => "clearing",
            State::Unknown => "unknown",
        }
    }
}

/// One sample: a value in the signal's unit ([`Quantity::canonical`]: seconds, bytes per
/// second, percent, the number, the level's value), or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Value(f64),
    Unknown(String),
}

impl Reading {
    /// A sampler's number, in the unit the guard's threshold `threshold` is compared in: a
    /// ratio becomes a percent, seconds, bytes per second, counts and pressure levels stay as
    /// they are. A unit the threshold cannot be compared with (macOS reports memory pressure as
    /// a level, and the threshold is a percent) is unknown, with the reason.
    pub fn from_sampled(threshold: &Quantity, q: Sampled) -> Reading {
        let value = match (threshold, q.unit) {
            (Quantity::Latency(_), Unit::Seconds)
            | (Quantity::Rate(_), Unit::BytesPerSecond)
            | (Quantity::Number(_), Unit::Count)
            | (Quantity::Level(_), Unit::PressureLevel) => q.value,
            (Quantity::Percent(_), Unit::Ratio) => q.value * 100.0,
            (t, unit) => {
                return Reading::Unknown(format!(
                    "this host measures the signal in {}, which cannot be compared with {}, {t}",
                    unit.as_str(),
                    t.noun()
                ));
            }
        };
        Reading::Value(value)
    }
}

/// A trip or clear by hand (`launchgraph guard trip|clear UNIT/NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forced {
    /// Tripped until cleared by hand: samples are still taken and shown, but do not move it.
    Trip,
    /// Back to ok with fresh windows; samples drive it again.
    Clear,
}

/// The two edges actions run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Trip,
    Clear,
}

/// Names one edge's action: its edge and the guard's count of edges so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionId {
    pub edge: Edge,
    pub seq: u64,
}

/// What the shell reports about an action it was told to carry out.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The `run` commands finished: all exited 0, or one failed (and the rest were not run).
    Ran {
        id: ActionId,
        ok: bool,
        detail: String,
    },
    /// The verify command confirmed the action.
    Verified { id: ActionId },
    /// The time box's timer fired. (Any later input past the deadline counts too.)
    TimeBoxExpired { id: ActionId },
}

/// An input to a guard.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Sample {
        at: Instant,
        reading: Reading,
    },
    Force {
        at: Instant,
        to: Forced,
    },
    Outcome {
        at: Instant,
        outcome: Outcome,
    },
    /// Time passed; checks time boxes.
    Tick {
        at: Instant,
    },
}

/// What a transition was decided on.
#[derive(Debug, Clone, PartialEq)]
pub enum Basis {
    /// A sample compared with a threshold.
    Sample(Measurement),
    /// By hand.
    Forced,
    /// No sample could be taken, and why.
    Unknown(String),
    /// A switch: how many of its guards are tripped.
    Members { tripped: usize, of: usize },
    /// A sample came after an unknown stretch while the statistic's first window is still
    /// filling: nothing was compared yet.
    Collecting,
}

/// The numbers behind a sample-driven transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The value compared: the sample, or the statistic over the window.
    pub value: f64,
    /// The raw sample.
    pub sample: f64,
    /// The statistic `value` is, when the guard has one.
    pub statistic: Option<StatWindow>,
    /// The threshold compared with (trip or clear, whichever applied).
    pub threshold: Quantity,
    /// The window the condition must hold for.
    pub window: Window,
    /// How long it has held: consecutive real samples, and time.
    pub held_samples: u32,
    pub held_for: Duration,
}

/// A change of the state a guard or switch shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub at: Instant,
    pub from: State,
    pub to: State,
    /// The last real state after the transition (equal to `to` unless `to` is unknown).
    pub phase: Phase,
    pub reason: Reason,
    pub basis: Basis,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Keep these units from starting (reason `HELD_BY_GUARD`) until `Unhold`.
    Hold {
        units: Vec<UnitName>,
    },
    Unhold {
        units: Vec<UnitName>,
    },
    /// Run the commands in order, stopping at the first failure; report `Outcome::Ran`.
    Run {
        id: ActionId,
        commands: Vec<Vec<String>>,
        user: Option<String>,
        deadline: Instant,
    },
    /// Restart these units in dependency order.
    Restart {
        id: ActionId,
        units: Vec<UnitName>,
    },
    /// Poll the verify command until it confirms (`Outcome::Verified`); past `deadline` the
    /// action is timed out, but a confirmation still resolves it.
    StartVerify {
        id: ActionId,
        argv: Vec<String>,
        contains: Option<String>,
        user: Option<String>,
        deadline: Instant,
    },
    /// Arm a timer that reports `Outcome::TimeBoxExpired` at `deadline`.
    ArmTimeBox {
        id: ActionId,
        deadline: Instant,
    },
    /// Stop polling or waiting for this action: a newer edge superseded it.
    Abandon {
        id: ActionId,
    },
    /// `mode = "advise"`: log and export what would be done; do none of it.
    Advise {
        edge: Edge,
        would: Vec<Effect>,
    },
}

impl Effect {
    /// Whether it changes anything (everything but advice does).
    pub fn acts(&self) -> bool {
        !matches!(self, Effect::Advise { .. })
    }
}

/// Something worth a log line that is not a state change.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    ActionFailed {
        id: ActionId,
        detail: String,
    },
    ActionTimedOut {
        id: ActionId,
        deadline: Instant,
    },
    /// Done and verified; `late` when after its time box.
    ActionConfirmed {
        id: ActionId,
        late: bool,
    },
    /// The guard's signal is still unknown, for a new reason.
    StillUnknown {
        cause: String,
    },
}

impl Notice {
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Notice::ActionFailed { .. } => Some(Reason::GuardActionFailed),
            Notice::ActionTimedOut { .. } => Some(Reason::GuardActionTimeout),
            Notice::ActionConfirmed { .. } => None,
            Notice::StillUnknown { .. } => Some(Reason::GuardUnknown),
        }
    }
}

/// Everything one input caused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub transitions: Vec<Transition>,
    pub effects: Vec<Effect>,
    pub notices: Vec<Notice>,
}

/// Where an edge's action stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The `run` commands are running.
    Running,
    /// Waiting for the verify command to confirm.
    Verifying,
    /// Done (and verified, when there is a verify command).
    Done,
    Failed(String),
    /// Not done within the time box; a confirmation may still come.
    TimedOut,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActionStatus {
    pub id: ActionId,
    pub started: Instant,
    pub deadline: Instant,
    pub progress: Progress,
}

/// What `status` shows of a guard.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub state: State,
    pub phase: Phase,
    /// Why, and since when, no sample could be taken.
    pub unknown: Option<(String, Instant)>,
    pub forced: bool,
    /// The last value compared (a sample, or the statistic).
    pub last_value: Option<f64>,
    /// How long the condition toward the next edge (a trip from ok or pending, a clear from
    /// tripped or clearing) has held: consecutive real samples, and time.
    pub held: Option<(u32, Duration)>,
    pub action: Option<ActionStatus>,
}

// ---------------------------------------------------------------------------------------------
// Windows.

/// A run of consecutive real samples that met one condition.
#[derive(Debug, Clone, Copy)]
struct Streak {
    samples: u32,
    held: Duration,
    last_at: Instant,
    /// An unknown sample came after `last_at`: the time until the next real one is not held.
    gap: bool,
}

impl Streak {
    fn start(at: Instant) -> Self {
        Self {
            samples: 1,
            held: Duration::ZERO,
            last_at: at,
            gap: false,
        }
    }

    fn extend(&mut self, at: Instant) {
        if !self.gap {
            self.held = self
                .held
                .saturating_add(at.saturating_duration_since(self.last_at));
        }
        self.samples = self.samples.saturating_add(1);
        self.last_at = at;
        self.gap = false;
    }

    fn satisfies(&self, w: Window) -> bool {
        match w {
            Window::Samples(n) => self.samples >= n,
            Window::Lasting(d) => self.held >= d,
        }
    }
}

/// The real samples of a statistic's sliding window.
#[derive(Debug, Clone)]
struct History {
    spec: StatWindow,
    samples: VecDeque<(Instant, f64)>,
    /// The first real sample: the statistic is taken only once a whole window has passed.
    first: Option<Instant>,
}

impl History {
    fn push(&mut self, at: Instant, v: f64) {
        self.first.get_or_insert(at);
        self.samples.push_back((at, v));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at.saturating_duration_since(*t) >= self.spec.window)
            || self.samples.len() > MAX_WINDOW_SAMPLES
        {
            self.samples.pop_front();
        }
    }

    /// The statistic at `at`, once the guard has sampled for a whole window.
    fn value(&self, at: Instant) -> Option<f64> {
        let first = self.first?;
        if at.saturating_duration_since(first) < self.spec.window || self.samples.is_empty() {
            return None;
        }
        let values: Vec<f64> = self.samples.iter().map(|(_, v)| *v).collect();
        Some(statistic(self.spec.stat, &values))
    }
}

/// A statistic of a non-empty set of values. Percentiles interpolate linearly between the two
/// nearest ranks, so the median of an even count is the mean of the middle two.
pub fn statistic(stat: Stat, values: &[f64]) -> f64 {
    debug_assert!(!values.is_empty());
    match stat {
        Stat::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Stat::Mean => values.iter().sum::<f64>() / values.len() as f64,
        Stat::P50 | Stat::P90 => {
            let q = if stat == Stat::P50 { 0.5 } else { 0.9 };
            let mut v = values.to_vec();
            v.sort_by(f64::total_cmp);
            let pos = q * (v.len() - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Actions, shared by guards and switches.

#[derive(Debug, Clone)]
struct Actor {
    mode: Mode,
    hold: Vec<UnitName>,
    on_trip: Option<Action>,
    on_clear: Option<Action>,
    seq: u64,
    current: Option<ActionStatus>,
}

impl Actor {
    fn new(
        mode: Mode,
        hold: Vec<UnitName>,
        on_trip: Option<Action>,
        on_clear: Option<Action>,
    ) -> Self {
        Self {
            mode,
            hold,
            on_trip,
            on_clear,
            seq: 0,
            current: None,
        }
    }

    /// An edge: supersedes the current action, holds or unholds, starts the edge's action.
    fn edge(&mut self, at: Instant, edge: Edge, step: &mut Step) {
        self.seq += 1;
        let id = ActionId {
            edge,
            seq: self.seq,
        };
        let mut effects = Vec::new();
        if let Some(cur) = self.current.take()
            && matches!(
                cur.progress,
                Progress::Running | Progress::Verifying | Progress::TimedOut
            )
        {
            effects.push(Effect::Abandon { id: cur.id });
        }
        if !self.hold.is_empty() {
            let units = self.hold.clone();
            effects.push(match edge {
                Edge::Trip => Effect::Hold { units },
                Edge::Clear => Effect::Unhold { units },
            });
        }
        let action = match edge {
            Edge::Trip => self.on_trip.clone(),
            Edge::Clear => self.on_clear.clone(),
        };
        if let Some(a) = action {
            let deadline = clock::later(at, a.complete_within);
            effects.push(Effect::ArmTimeBox { id, deadline });
            let progress = if a.run.is_empty() {
                after_run(id, &a, deadline, &mut effects)
            } else {
                effects.push(Effect::Run {
                    id,
                    commands: a.run.clone(),
                    user: a.user.clone(),
                    deadline,
                });
                Progress::Running
            };
            if self.mode == Mode::Act {
                self.current = Some(ActionStatus {
                    id,
                    started: at,
                    deadline,
                    progress,
                });
            }
        }
        self.emit(edge, effects, step);
    }

    fn emit(&self, edge: Edge, effects: Vec<Effect>, step: &mut Step) {
        match self.mode {
            Mode::Act => step.effects.extend(effects),
            Mode::Advise if effects.is_empty() => {}
            Mode::Advise => step.effects.push(Effect::Advise {
                edge,
                would: effects,
            }),
        }
    }

    fn action(&self, edge: Edge) -> Option<&Action> {
        match edge {
            Edge::Trip => self.on_trip.as_ref(),
            Edge::Clear => self.on_clear.as_ref(),
        }
    }

    /// Marks the current action timed out when `at` is past its deadline.
    fn tick(&mut self, at: Instant, step: &mut Step) {
        if let Some(cur) = &mut self.current
            && matches!(cur.progress, Progress::Running | Progress::Verifying)
            && at >= cur.deadline
        {
            cur.progress = Progress::TimedOut;
            step.notices.push(Notice::ActionTimedOut {
                id: cur.id,
                deadline: cur.deadline,
            });
        }
    }

    fn outcome(&mut self, at: Instant, outcome: Outcome, step: &mut Step) {
        let id = match &outcome {
            Outcome::Ran { id, .. } | Outcome::Verified { id } | Outcome::TimeBoxExpired { id } => {
                *id
            }
        };
        let Some(cur) = self.current.as_ref() else {
            return;
        };
        if cur.id != id {
            return;
        }
        let action = self.action(id.edge).cloned();
        let cur = self.current.as_mut().expect("checked above");
        match outcome {
            Outcome::Ran { ok: true, .. }
                if matches!(cur.progress, Progress::Running | Progress::TimedOut) =>
            {
                let timed_out = cur.progress == Progress::TimedOut;
                let mut effects = Vec::new();
                let progress = match &action {
                    Some(a) => after_run(id, a, cur.deadline, &mut effects),
                    None => Progress::Done,
                };
                step.effects.extend(effects);
                if progress == Progress::Done {
                    cur.progress = Progress::Done;
                    step.notices.push(Notice::ActionConfirmed {
                        id,
                        late: timed_out || at > cur.deadline,
                    });
                } else if !timed_out {
                    cur.progress = progress;
                }
                // Else it stays timed out, visibly, until the verify it started confirms it.
            }
            Outcome::Ran {
                ok: false, detail, ..
            } if matches!(cur.progress, Progress::Running | Progress::TimedOut) => {
                cur.progress = Progress::Failed(detail.clone());
                step.notices.push(Notice::ActionFailed { id, detail });
            }
            Outcome::Verified { .. }
                if matches!(cur.progress, Progress::Verifying | Progress::TimedOut) =>
            {
                let late = cur.progress == Progress::TimedOut || at > cur.deadline;
                cur.progress = Progress::Done;
                step.notices.push(Notice::ActionConfirmed { id, late });
            }
            Outcome::TimeBoxExpired { .. } => {
                if matches!(cur.progress, Progress::Running | Progress::Verifying) {
                    cur.progress = Progress::TimedOut;
                    step.notices.push(Notice::ActionTimedOut {
                        id,
                        deadline: cur.deadline,
                    });
                }
            }
            _ => {}
        }
    }
}

/// The part of an action after its commands succeeded: restarts, then verify.
fn after_run(id: ActionId, a: &Action, deadline: Instant, effects: &mut Vec<Effect>) -> Progress {
    if !a.restart.is_empty() {
        effects.push(Effect::Restart {
            id,
            units: a.restart.clone(),
        });
    }
    match &a.verify {
        Some(argv) => {
            effects.push(Effect::StartVerify {
                id,
                argv: argv.clone(),
                contains: a.verify_contains.clone(),
                user: a.user.clone(),
                deadline,
            });
            Progress::Verifying
        }
        None => Progress::Done,
    }
}

// ---------------------------------------------------------------------------------------------
// Guards.

/// One guard's state.
#[derive(Debug, Clone)]
pub struct GuardMachine {
    guard: Guard,
    phase: Phase,
    unknown: Option<(String, Instant)>,
    forced: bool,
    /// Toward a trip (in ok/pending) or a clear (in tripped/clearing).
    streak: Option<Streak>,
    history: Option<History>,
    last_value: Option<f64>,
    actor: Actor,
}

impl GuardMachine {
    pub fn new(guard: Guard) -> Self {
        let actor = Actor::new(
            guard.mode,
            guard.hold.clone(),
            guard.on_trip.clone(),
            guard.on_clear.clone(),
        );
        let history = guard.stat.map(|spec| History {
            spec,
            samples: VecDeque::new(),
            first: None,
        });
        Self {
            guard,
            phase: Phase::Ok,
            unknown: None,
            forced: false,
            streak: None,
            history,
            last_value: None,
            actor,
        }
    }

    pub fn name(&self) -> &GuardName {
        &self.guard.name
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn state(&self) -> State {
        if self.unknown.is_some() {
            State::Unknown
        } else {
            self.phase.state()
        }
    }

    pub fn status(&self) -> Status {
        Status {
            state: self.state(),
            phase: self.phase,
            unknown: self.unknown.clone(),
            forced: self.forced,
            last_value: self.last_value,
            held: self.streak.map(|s| (s.samples, s.held)),
            action: self.actor.current.clone(),
        }
    }

    pub fn step(&mut self, input: Input) -> Step {
        let mut step = Step::default();
        match input {
            Input::Sample { at, reading } => {
                self.actor.tick(at, &mut step);
                match reading {
                    Reading::Value(v) if v.is_finite() => self.sample(at, v, &mut step),
                    Reading::Value(v) => self.unknown_sample(
                        at,
                        format!("the sample is not a number ({v})"),
                        &mut step,
                    ),
                    Reading::Unknown(why) => self.unknown_sample(at, why, &mut step),
                }
            }
            Input::Force { at, to } => {
                self.actor.tick(at, &mut step);
                self.force(at, to, &mut step);
            }
            Input::Outcome { at, outcome } => {
                self.actor.outcome(at, outcome, &mut step);
                self.actor.tick(at, &mut step);
            }
            Input::Tick { at } => self.actor.tick(at, &mut step),
        }
        step
    }

    fn unknown_sample(&mut self, at: Instant, why: String, step: &mut Step) {
        if let Some(s) = &mut self.streak {
            s.gap = true;
        }
        match &mut self.unknown {
            Some((cause, _)) if *cause == why => {}
            Some((cause, _)) => {
                *cause = why.clone();
                step.notices.push(Notice::StillUnknown { cause: why });
            }
            None => {
                self.unknown = Some((why.clone(), at));
                step.transitions.push(Transition {
                    at,
                    from: self.phase.state(),
                    to: State::Unknown,
                    phase: self.phase,
                    reason: Reason::GuardUnknown,
                    basis: Basis::Unknown(why),
                });
            }
        }
    }

    fn sample(&mut self, at: Instant, sample: f64, step: &mut Step) {
        let from = self.state();
        self.unknown = None;
        let value = match &mut self.history {
            Some(h) => {
                h.push(at, sample);
                h.value(at)
            }
            None => Some(sample),
        };
        let Some(value) = value else {
            // Still filling the statistic's first window: nothing to compare yet.
            if from == State::Unknown {
                self.show(at, from, None, false, step);
            }
            return;
        };
        self.last_value = Some(value);
        if self.forced {
            if from == State::Unknown {
                self.show(at, from, None, false, step);
            }
            return;
        }
        let g = &self.guard;
        let (next, window, threshold) = match self.phase {
            Phase::Ok | Phase::Pending if g.trips_at(value) => {
                let s = extend(&mut self.streak, at);
                let next = if s.satisfies(g.trip_window) {
                    Phase::Tripped
                } else {
                    Phase::Pending
                };
                (next, g.trip_window, g.trip)
            }
            Phase::Ok | Phase::Pending => {
                self.streak = None;
                (Phase::Ok, g.trip_window, g.trip)
            }
            Phase::Tripped | Phase::Clearing if g.clears_at(value) => {
                let s = extend(&mut self.streak, at);
                let next = if s.satisfies(g.clear_window) {
                    Phase::Ok
                } else {
                    Phase::Clearing
                };
                (next, g.clear_window, g.clear)
            }
            Phase::Tripped | Phase::Clearing => {
                self.streak = None;
                (Phase::Tripped, g.clear_window, g.clear)
            }
        };
        let (held_samples, held_for) = self
            .streak
            .map_or((0, Duration::ZERO), |s| (s.samples, s.held));
        let m = Measurement {
            value,
            sample,
            statistic: g.stat,
            threshold,
            window,
            held_samples,
            held_for,
        };
        let prev = self.phase;
        self.phase = next;
        if next != prev || from == State::Unknown {
            // A window that completes starts the other side's afresh.
            if next == Phase::Tripped && !prev.is_tripped()
                || next == Phase::Ok && prev.is_tripped()
            {
                self.streak = None;
            }
            self.show(at, from, Some(m), next != prev, step);
        }
        if next == Phase::Tripped && !prev.is_tripped() {
            self.actor.edge(at, Edge::Trip, step);
        } else if next == Phase::Ok && prev.is_tripped() {
            self.actor.edge(at, Edge::Clear, step);
        }
    }

    /// A transition from `from` to the current phase; `moved` when the phase itself changed
    /// (otherwise the signal is only known again, and the reason must not claim a trip or a
    /// clear that did not happen).
    fn show(&self, at: Instant, from: State, m: Option<Measurement>, moved: bool, step: &mut Step) {
        step.transitions.push(Transition {
            at,
            from,
            to: self.phase.state(),
            phase: self.phase,
            reason: if from == State::Unknown && !moved {
                Reason::GuardKnown
            } else {
                self.phase.reason()
            },
            basis: match m {
                Some(m) => Basis::Sample(m),
                None if self.forced => Basis::Forced,
                None => Basis::Collecting,
            },
        });
    }

    fn force(&mut self, at: Instant, to: Forced, step: &mut Step) {
        let from = self.state();
        let prev = self.phase;
        self.streak = None;
        match to {
            Forced::Trip => {
                self.forced = true;
                self.phase = Phase::Tripped;
            }
            Forced::Clear => {
                self.forced = false;
                self.phase = Phase::Ok;
            }
        }
        // An unknown signal stays unknown (and shown so): forcing does not make a sample.
        if prev != self.phase || to == Forced::Trip {
            step.transitions.push(Transition {
                at,
                from,
                to: self.state(),
                phase: self.phase,
                reason: self.phase.reason(),
                basis: Basis::Forced,
            });
        }
        // A trip by hand runs the trip actions again even when already tripped: it is how an
        // admin re-runs a failed or timed-out action.
        match to {
            Forced::Trip => self.actor.edge(at, Edge::Trip, step),
            Forced::Clear if prev.is_tripped() => self.actor.edge(at, Edge::Clear, step),
            Forced::Clear => {}
        }
    }
}

fn extend(streak: &mut Option<Streak>, at: Instant) -> Streak {
    match streak {
        Some(s) => s.extend(at),
        None => *streak = Some(Streak::start(at)),
    }
    streak.expect("set above")
}

// ---------------------------------------------------------------------------------------------
// Switches.

/// An input to a switch.
#[derive(Debug, Clone, PartialEq)]
pub enum SwitchInput {
    /// Whether each of its guards (in the switch's order) is tripped now
    /// ([`Phase::is_tripped`] of each guard's last real phase: an unknown guard counts as what
    /// it last was).
    Members {
        at: Instant,
        tripped: Vec<bool>,
    },
    Force {
        at: Instant,
        to: Forced,
    },
    Outcome {
        at: Instant,
        outcome: Outcome,
    },
    Tick {
        at: Instant,
    },
}

/// A switch's state: ok or tripped (its guards have the windows).
#[derive(Debug, Clone)]
pub struct SwitchMachine {
    name: GuardName,
    when: When,
    tripped: bool,
    forced: bool,
    members: Vec<bool>,
    actor: Actor,
}

impl SwitchMachine {
    pub fn new(switch: Switch) -> Self {
        let n = switch.guards.len();
        Self {
            name: switch.name,
            when: switch.when,
            tripped: false,
            forced: false,
            members: vec![false; n],
            actor: Actor::new(switch.mode, switch.hold, switch.on_trip, switch.on_clear),
        }
    }

    pub fn name(&self) -> &GuardName {
        &self.name
    }

    pub fn state(&self) -> State {
        if self.tripped {
            State::Tripped
        } else {
            State::Ok
        }
    }

    pub fn action(&self) -> Option<&ActionStatus> {
        self.actor.current.as_ref()
    }

    /// Tripped by hand, until cleared by hand.
    pub fn forced(&self) -> bool {
        self.forced
    }

    pub fn step(&mut self, input: SwitchInput) -> Step {
        let mut step = Step::default();
        match input {
            SwitchInput::Members { at, tripped } => {
                self.actor.tick(at, &mut step);
                debug_assert_eq!(tripped.len(), self.members.len());
                self.members = tripped;
                if self.forced {
                    return step;
                }
                let count = self.members.iter().filter(|t| **t).count();
                let of = self.members.len();
                let next = if self.tripped {
                    // Clears only when every guard is clear.
                    count > 0
                } else {
                    match self.when {
                        When::All => of > 0 && count == of,
                        When::Any => count > 0,
                    }
                };
                if next != self.tripped {
                    self.set(at, next, Basis::Members { tripped: count, of }, &mut step);
                }
            }
            SwitchInput::Force { at, to } => {
                self.actor.tick(at, &mut step);
                match to {
                    Forced::Trip => {
                        self.forced = true;
                        if self.tripped {
                            // Re-runs the trip actions, as for a guard.
                            step.transitions.push(self.transition(
                                at,
                                State::Tripped,
                                Basis::Forced,
                            ));
                            self.actor.edge(at, Edge::Trip, &mut step);
                        } else {
                            self.set(at, true, Basis::Forced, &mut step);
                        }
                    }
                    Forced::Clear => {
                        self.forced = false;
                        if self.tripped {
                            self.set(at, false, Basis::Forced, &mut step);
                        }
                    }
                }
            }
            SwitchInput::Outcome { at, outcome } => {
                self.actor.outcome(at, outcome, &mut step);
                self.actor.tick(at, &mut step);
            }
            SwitchInput::Tick { at } => self.actor.tick(at, &mut step),
        }
        step
    }

    fn transition(&self, at: Instant, from: State, basis: Basis) -> Transition {
        let phase = if self.tripped {
            Phase::Tripped
        } else {
            Phase::Ok
        };
        Transition {
            at,
            from,
            to: phase.state(),
            phase,
            reason: phase.reason(),
            basis,
        }
    }

    fn set(&mut self, at: Instant, tripped: bool, basis: Basis, step: &mut Step) {
        let from = self.state();
        self.tripped = tripped;
        step.transitions.push(self.transition(at, from, basis));
        let edge = if tripped { Edge::Trip } else { Edge::Clear };
        self.actor.edge(at, edge, step);
    }
}

#[cfg(test)]
mod tests;
