//! Guards at run time: the supervising task's side of them.
//!
//! Each guard of the loaded units has one sampling task ([`sample_loop`]) that takes a sample
//! every `every` and sends it here; samples of one guard never overlap (a slow probe delays
//! the next one, it does not stack) and the task never stops after an action: it ends only
//! when a reload replaces the configuration or the supervisor stops. The guard's
//! [`GuardMachine`] is owned by the supervising task, like the core: a sample, a forced trip
//! or clear, or an action's outcome goes in with the monotonic time it happened at, and its
//! transitions, notices and effects come out. This module carries out the effects:
//!
//! - `Run`: the action's commands, in order, each a [`CommandParams`] (the one bounded-child
//!   primitive: the action's `user`, only `PATH` in the environment, the time box as the
//!   deadline, output capped); what they printed, or why they failed, goes into the event.
//! - `StartVerify`: the verify command, polled (1 s, doubling to 10 s) until it exits 0 and
//!   prints `verify-contains`; past the time box it goes on every 30 s, so that a late
//!   confirmation still resolves a timed-out action, until the next edge abandons it.
//! - `ArmTimeBox`: a timer reporting the time box's end.
//! - `Restart`: the units, through the same command `launchgraph restart` gives the core.
//! - `Hold`/`Unhold`: the held units are kept in [`Shell::held`](super::shell::Shell); a held
//!   unit's start is deferred with `HELD_BY_GUARD` (a wait, not a failure, as
//!   `PREFLIGHT_FAILED` is), and once the last guard holding it lets go it is tried again. A
//!   hold never stops a unit that is already running.
//! - `Advise`: logged and recorded as an event; nothing is done.
//!
//! A `[[switch]]` has a [`SwitchMachine`] beside its guards': whenever one of its guards
//! changes state, the switch is told which of its guards are tripped, and its own edges run
//! its actions and holds the same way.
//!
//! A reload keeps the state of every guard (and switch) whose unit and configuration are
//! unchanged (tripped stays tripped, holds stay), and starts the others afresh at `ok`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::control::protocol::guards::{ActionStatusRecord, GuardTransitionStatus, WindowProgress};
use crate::control::protocol::{GuardEventFacts, GuardStatus};
use crate::guard::bind::{HostFacts, Sampler, Taken};
use crate::guard::machine::{
    ActionId, ActionStatus, Basis, Edge, Effect, Forced, GuardMachine, Input, Notice, Outcome,
    Progress, Reading, State, Step, SwitchInput, SwitchMachine, Transition,
};
use crate::guard::signal::exec::CommandParams;
use crate::guard::signal::{Sample, quote};
use crate::metrics::{ActionRun, GuardInfo};
use crate::reason::Reason;
use crate::unit::guard::{Guard, GuardName, Mode, Quantity, Switch, When};
use crate::unit::{Unit, UnitName};

/// Bytes of an action command's output kept for its event.
const ACTION_OUTPUT_CAP: usize = 16 * 1024;
/// The verify command's first pause, doubling up to the second; past the time box, the
/// third.
const VERIFY_FIRST: Duration = Duration::from_secs(1);
const VERIFY_MAX: Duration = Duration::from_secs(10);
const VERIFY_LATE: Duration = Duration::from_secs(30);

/// A guard, by its unit and name: what messages about it carry, since a reload renumbers.
pub(crate) type GuardKey = (UnitName, GuardName);

/// What guard tasks report to the supervising task.
#[derive(Debug)]
pub(crate) enum GuardMsg {
    /// Boxed: a ttft sample's phases make it much larger than an outcome.
    Sampled {
        key: GuardKey,
        at: Instant,
        taken: Box<Taken>,
    },
    Outcome {
        key: GuardKey,
        at: Instant,
        outcome: Outcome,
    },
}

/// Where guard tasks send: stamped with the epoch their task was started in, so that samples
/// of a replaced sampler are dropped.
pub(crate) type GuardTx = mpsc::UnboundedSender<(u64, GuardMsg)>;

/// A guard, or a switch over guards of its unit, with its machine. Guards outnumber switches
/// and each lives as long as its configuration: boxing the larger variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum What {
    Guard {
        guard: Guard,
        machine: GuardMachine,
    },
    Switch {
        switch: Switch,
        machine: SwitchMachine,
    },
}

/// One running guard or switch.
pub(super) struct Watched {
    pub(super) unit: UnitName,
    pub(super) what: What,
    pub(super) samples: u64,
    pub(super) last_sample: Option<Instant>,
    pub(super) last_transition: Option<(Transition, Instant)>,
    /// Cancels the tasks of each action still in flight (its commands, verify, time box).
    actions: HashMap<u64, CancellationToken>,
    /// Its sampling task: the epoch it was started in, and what stops it. A reload that
    /// leaves the guard as it was leaves the task running (a rate keeps its last reading).
    sampler: Option<(u64, CancellationToken)>,
    /// Whether its hold is in force.
    holding: bool,
}

impl Watched {
    fn new(unit: &UnitName, what: What) -> Self {
        Self {
            unit: unit.clone(),
            what,
            samples: 0,
            last_sample: None,
            last_transition: None,
            actions: HashMap::new(),
            sampler: None,
            holding: false,
        }
    }

    pub(super) fn name(&self) -> &GuardName {
        match &self.what {
            What::Guard { guard, .. } => &guard.name,
            What::Switch { switch, .. } => &switch.name,
        }
    }

    fn key(&self) -> GuardKey {
        (self.unit.clone(), self.name().clone())
    }

    /// The guard, unless it is a switch.
    pub(super) fn guard(&self) -> Option<&Guard> {
        match &self.what {
            What::Guard { guard, .. } => Some(guard),
            What::Switch { .. } => None,
        }
    }

    fn mode(&self) -> Mode {
        match &self.what {
            What::Guard { guard, .. } => guard.mode,
            What::Switch { switch, .. } => switch.mode,
        }
    }

    fn hold(&self) -> &[UnitName] {
        match &self.what {
            What::Guard { guard, .. } => &guard.hold,
            What::Switch { switch, .. } => &switch.hold,
        }
    }

    fn action_of(&self, edge: Edge) -> Option<&crate::unit::guard::Action> {
        let (on_trip, on_clear) = match &self.what {
            What::Guard { guard, .. } => (&guard.on_trip, &guard.on_clear),
            What::Switch { switch, .. } => (&switch.on_trip, &switch.on_clear),
        };
        match edge {
            Edge::Trip => on_trip.as_ref(),
            Edge::Clear => on_clear.as_ref(),
        }
    }

    pub(super) fn state(&self) -> State {
        match &self.what {
            What::Guard { machine, .. } => machine.state(),
            What::Switch { machine, .. } => machine.state(),
        }
    }

    fn action(&self) -> Option<ActionStatus> {
        match &self.what {
            What::Guard { machine, .. } => machine.status().action,
            What::Switch { machine, .. } => machine.action().cloned(),
        }
    }

    /// Whether it counts as tripped for a switch: tripped or clearing, or that before an
    /// unknown stretch.
    fn is_tripped(&self) -> bool {
        match &self.what {
            What::Guard { machine, .. } => machine.phase().is_tripped(),
            What::Switch { machine, .. } => machine.state() == State::Tripped,
        }
    }

    /// The unit of its values; none for a switch.
    fn value_unit(&self) -> Option<&'static str> {
        self.guard().map(value_unit)
    }

    fn step(&mut self, input: Input) -> Step {
        match &mut self.what {
            What::Guard { machine, .. } => machine.step(input),
            What::Switch { machine, .. } => {
                let input = match input {
                    Input::Force { at, to } => SwitchInput::Force { at, to },
                    Input::Outcome { at, outcome } => SwitchInput::Outcome { at, outcome },
                    Input::Tick { at } | Input::Sample { at, .. } => SwitchInput::Tick { at },
                };
                machine.step(input)
            }
        }
    }
}

/// Every guard of the loaded configuration.
pub(super) struct Guarding {
    tx: GuardTx,
    /// Counts loads: the epoch sampling tasks started now stamp.
    epoch: u64,
    pub(super) watched: Vec<Watched>,
    /// Held unit -> the guards holding it.
    holders: BTreeMap<UnitName, BTreeSet<GuardKey>>,
}

/// What the supervising task must do after a guard message.
#[derive(Debug, Default)]
pub(super) struct Follow {
    /// Units no longer held: try their deferred starts again.
    pub(super) released: Vec<UnitName>,
    /// Units an action restarts.
    pub(super) restart: Vec<UnitName>,
    /// Lines for the log.
    pub(super) events: Vec<GuardEvent>,
}

/// One guard event, for the journal, the log and the metrics.
#[derive(Debug, Clone)]
pub(super) struct GuardEvent {
    pub(super) unit: UnitName,
    pub(super) from: State,
    pub(super) to: State,
    pub(super) reason: Reason,
    pub(super) cause: Option<String>,
    pub(super) facts: GuardEventFacts,
    /// A warning (failed, timed out, unknown), not news.
    pub(super) warn: bool,
    /// The run of an action it reports, for the metrics.
    pub(super) run: Option<ActionRun>,
}

impl Guarding {
    pub(super) fn new(tx: GuardTx) -> Self {
        Self {
            tx,
            epoch: 0,
            watched: Vec::new(),
            holders: BTreeMap::new(),
        }
    }

    /// The held units, each with the guards holding it (`unit/guard`), for the shell.
    pub(super) fn held(&self) -> HashMap<UnitName, String> {
        self.holders
            .iter()
            .map(|(u, by)| {
                let by: Vec<String> = by.iter().map(|(u, g)| format!("{u}/{g}")).collect();
                (u.clone(), by.join(", "))
            })
            .collect()
    }

    /// Takes the guards of a (re)loaded configuration: those unchanged keep their machine
    /// and their sampling task, the others start at ok with a new one.
    pub(super) fn load(&mut self, units: &[Unit]) {
        self.epoch += 1;
        let mut old: HashMap<GuardKey, Watched> =
            self.watched.drain(..).map(|w| (w.key(), w)).collect();
        for u in units {
            for g in &u.guards.guards {
                let key = (u.name.clone(), g.name.clone());
                let mut w = match old.remove(&key) {
                    Some(w) if w.guard() == Some(g) => w,
                    other => {
                        if let Some(mut w) = other {
                            cancel_all(&mut w);
                        }
                        Watched::new(
                            &u.name,
                            What::Guard {
                                guard: g.clone(),
                                machine: GuardMachine::new(g.clone()),
                            },
                        )
                    }
                };
                match Sampler::bind(g) {
                    Ok(_) if w.sampler.is_some() => {}
                    Ok(sampler) => {
                        let token = CancellationToken::new();
                        tokio::spawn(sample_loop(
                            key,
                            sampler,
                            g.every,
                            self.tx.clone(),
                            self.epoch,
                            token.clone(),
                        ));
                        w.sampler = Some((self.epoch, token));
                    }
                    Err(e) => tracing::warn!(
                        reason = %Reason::GuardUnknown,
                        "{}: guard {} cannot sample: {e}",
                        u.name,
                        g.name
                    ),
                }
                self.watched.push(w);
            }
            for sw in &u.guards.switches {
                let key = (u.name.clone(), sw.name.clone());
                let w = match old.remove(&key) {
                    Some(w) if matches!(&w.what, What::Switch { switch, .. } if switch == sw) => w,
                    other => {
                        if let Some(mut w) = other {
                            cancel_all(&mut w);
                        }
                        Watched::new(
                            &u.name,
                            What::Switch {
                                switch: sw.clone(),
                                machine: SwitchMachine::new(sw.clone()),
                            },
                        )
                    }
                };
                self.watched.push(w);
            }
        }
        for (_, mut w) in old {
            cancel_all(&mut w);
        }
        // Holds as the kept guards have them.
        self.holders.clear();
        for w in &self.watched {
            if w.holding {
                for h in w.hold() {
                    self.holders.entry(h.clone()).or_default().insert(w.key());
                }
            }
        }
    }

    fn find(&self, key: &GuardKey) -> Option<usize> {
        self.watched
            .iter()
            .position(|w| w.unit == key.0 && *w.name() == key.1)
    }

    /// The index of `unit`'s guard `name`.
    pub(super) fn index(&self, unit: &str, name: &str) -> Option<usize> {
        self.watched
            .iter()
            .position(|w| w.unit.as_str() == unit && w.name().as_str() == name)
    }

    /// A message from a guard task of `epoch`.
    pub(super) fn message(&mut self, epoch: u64, msg: GuardMsg) -> (Option<usize>, Follow) {
        match msg {
            GuardMsg::Sampled { key, at, taken } => {
                let Some(i) = self.find(&key) else {
                    return (None, Follow::default());
                };
                // A sampler the guard's reload replaced.
                if self.watched[i].sampler.as_ref().map(|(e, _)| *e) != Some(epoch) {
                    return (None, Follow::default());
                }
                let w = &mut self.watched[i];
                w.samples += 1;
                w.last_sample = Some(at);
                let Some(guard) = w.guard() else {
                    return (None, Follow::default());
                };
                if taken.discarded {
                    tracing::debug!(
                        "{}: guard {}: the server was busy; the sample is discarded (idle-only)",
                        w.unit,
                        guard.name
                    );
                    return (Some(i), Follow::default());
                }
                let reading = match &taken.sample {
                    Sample::Known(q) => Reading::from_sampled(&guard.trip, *q),
                    Sample::Unknown { reason } => Reading::Unknown(reason.clone()),
                };
                (Some(i), self.step(i, Input::Sample { at, reading }, None))
            }
            GuardMsg::Outcome { key, at, outcome } => {
                let Some(i) = self.find(&key) else {
                    return (None, Follow::default());
                };
                // What the commands printed, for the event: only of the current action (the
                // machine ignores a superseded one's report).
                let current = self.watched[i].action().map(|a| a.id);
                let output = match &outcome {
                    Outcome::Ran { id, detail, .. } if current == Some(*id) => Some(detail.clone()),
                    _ => None,
                };
                // Confirmed: its time box's timer has nothing left to say.
                if let Outcome::Verified { id } = &outcome
                    && let Some(t) = self.watched[i].actions.remove(&id.seq)
                {
                    t.cancel();
                }
                (
                    Some(i),
                    self.step(i, Input::Outcome { at, outcome }, output),
                )
            }
        }
    }

    /// A trip or clear by hand.
    pub(super) fn force(&mut self, i: usize, to: Forced) -> Follow {
        self.step(
            i,
            Input::Force {
                at: Instant::now(),
                to,
            },
            None,
        )
    }

    /// Feeds guard (or switch) `i` one input and carries out what it says; then the
    /// switches over a guard whose tripped-ness may have changed see their members.
    fn step(&mut self, i: usize, input: Input, output: Option<String>) -> Follow {
        let at = match &input {
            Input::Sample { at, .. }
            | Input::Force { at, .. }
            | Input::Outcome { at, .. }
            | Input::Tick { at } => *at,
        };
        let step = self.watched[i].step(input);
        let mut follow = Follow::default();
        let moved = !step.transitions.is_empty();
        self.apply(i, step, output, &mut follow);
        if moved && self.watched[i].guard().is_some() {
            let (unit, name) = self.watched[i].key();
            for j in 0..self.watched.len() {
                let members = match &self.watched[j].what {
                    What::Switch { switch, .. }
                        if self.watched[j].unit == unit && switch.guards.contains(&name) =>
                    {
                        switch.guards.clone()
                    }
                    _ => continue,
                };
                let tripped = members
                    .iter()
                    .map(|m| {
                        self.find(&(unit.clone(), m.clone()))
                            .is_some_and(|k| self.watched[k].is_tripped())
                    })
                    .collect();
                let What::Switch { machine, .. } = &mut self.watched[j].what else {
                    continue;
                };
                let step = machine.step(SwitchInput::Members { at, tripped });
                self.apply(j, step, None, &mut follow);
            }
        }
        follow
    }

    fn apply(&mut self, i: usize, step: Step, output: Option<String>, follow: &mut Follow) {
        self.record(i, &step, output, follow);
        for e in step.effects {
            self.effect(i, e, follow);
        }
    }

    fn record(&mut self, i: usize, step: &Step, output: Option<String>, follow: &mut Follow) {
        let now = Instant::now();
        let w = &mut self.watched[i];
        let state = w.state();
        for t in &step.transitions {
            w.last_transition = Some((t.clone(), t.at));
            let mut facts = base_facts(w, "transition");
            let mut cause = None;
            match &t.basis {
                Basis::Sample(m) => {
                    facts.value = Some(m.value);
                    facts.threshold = Some(m.threshold.to_string());
                    facts.window = Some(m.window.to_string());
                    facts.held_samples = Some(m.held_samples);
                    facts.held_ms = Some(m.held_for.as_secs_f64() * 1000.0);
                }
                Basis::Forced => facts.forced = true,
                Basis::Unknown(why) => cause = Some(why.clone()),
                Basis::Members { tripped, of } => {
                    cause = Some(format!("{tripped} of {of} guards tripped"));
                }
                Basis::Collecting => {}
            }
            follow.events.push(GuardEvent {
                unit: w.unit.clone(),
                from: t.from,
                to: t.to,
                reason: t.reason,
                cause,
                facts,
                warn: matches!(t.to, State::Tripped | State::Unknown),
                run: None,
            });
        }
        for n in &step.notices {
            let (kind, id, cause) = match n {
                Notice::ActionFailed { id, detail } => {
                    ("action-failed", Some(*id), Some(detail.clone()))
                }
                Notice::ActionTimedOut { id, .. } => ("action-timeout", Some(*id), None),
                Notice::ActionConfirmed { id, late } => (
                    "action-confirmed",
                    Some(*id),
                    late.then(|| "confirmed after its time box".to_owned()),
                ),
                Notice::StillUnknown { cause } => ("still-unknown", None, Some(cause.clone())),
            };
            let mut facts = base_facts(w, kind);
            set_action(&mut facts, id);
            if matches!(kind, "action-failed" | "action-confirmed") {
                facts.output.clone_from(&output);
            }
            let run = id.map(|id| {
                // Confirmed by a run of the commands (no verify), or by verify; a time box
                // that passes while a verify is configured is verify's.
                let has_verify = w.action_of(id.edge).is_some_and(|a| a.verify.is_some());
                let (action, result) = match kind {
                    "action-failed" => (edge_str(id.edge), "failed"),
                    "action-confirmed" if output.is_some() => (edge_str(id.edge), "ok"),
                    "action-confirmed" => ("verify", "ok"),
                    _ if has_verify => ("verify", "timeout"),
                    _ => (edge_str(id.edge), "timeout"),
                };
                ActionRun {
                    action,
                    result,
                    took: w
                        .action()
                        .map_or(Duration::ZERO, |a| now.saturating_duration_since(a.started)),
                }
            });
            // A confirmation carries no reason code of its own: it takes its edge's, as a
            // run's output does below (a confirmed trip is not news of a clear).
            let reason = n.reason().unwrap_or(match id.map(|id| id.edge) {
                Some(Edge::Trip) => Reason::GuardTripped,
                _ => Reason::GuardCleared,
            });
            follow.events.push(GuardEvent {
                unit: w.unit.clone(),
                from: state,
                to: state,
                reason,
                cause,
                facts,
                warn: n.reason().is_some(),
                run,
            });
        }
        // A run that succeeded is news too: what its commands printed.
        if step.notices.is_empty()
            && let Some(out) = output
            && let Some(a) = w.action()
        {
            let mut facts = base_facts(w, "action-ran");
            set_action(&mut facts, Some(a.id));
            facts.output = Some(out);
            let reason = match a.id.edge {
                Edge::Trip => Reason::GuardTripped,
                Edge::Clear => Reason::GuardCleared,
            };
            follow.events.push(GuardEvent {
                unit: w.unit.clone(),
                from: state,
                to: state,
                reason,
                cause: None,
                facts,
                warn: false,
                run: Some(ActionRun {
                    action: edge_str(a.id.edge),
                    result: "ok",
                    took: now.saturating_duration_since(a.started),
                }),
            });
        }
    }

    fn effect(&mut self, i: usize, e: Effect, follow: &mut Follow) {
        let key = self.watched[i].key();
        match e {
            Effect::Hold { units } => {
                self.watched[i].holding = true;
                for u in units {
                    self.holders.entry(u).or_default().insert(key.clone());
                }
            }
            Effect::Unhold { units } => {
                self.watched[i].holding = false;
                for u in units {
                    if let Some(set) = self.holders.get_mut(&u) {
                        set.remove(&key);
                        if set.is_empty() {
                            self.holders.remove(&u);
                            follow.released.push(u);
                        }
                    }
                }
            }
            Effect::Run {
                id,
                commands,
                user,
                deadline,
            } => {
                let token = self.action_token(i, id);
                tokio::spawn(run_commands(
                    key,
                    id,
                    commands,
                    user,
                    deadline,
                    self.tx.clone(),
                    self.epoch,
                    token,
                ));
            }
            Effect::Restart { units, .. } => follow.restart.extend(units),
            Effect::StartVerify {
                id,
                argv,
                contains,
                user,
                deadline,
            } => {
                let token = self.action_token(i, id);
                tokio::spawn(verify(
                    key,
                    id,
                    argv,
                    contains,
                    user,
                    deadline,
                    self.tx.clone(),
                    self.epoch,
                    token,
                ));
            }
            Effect::ArmTimeBox { id, deadline } => {
                let token = self.action_token(i, id);
                let tx = self.tx.clone();
                let epoch = self.epoch;
                tokio::spawn(async move {
                    tokio::select! {
                        () = token.cancelled() => {}
                        () = tokio::time::sleep_until(deadline.into()) => {
                            let _ = tx.send((epoch, GuardMsg::Outcome {
                                key,
                                at: Instant::now(),
                                outcome: Outcome::TimeBoxExpired { id },
                            }));
                        }
                    }
                });
            }
            Effect::Abandon { id } => {
                if let Some(t) = self.watched[i].actions.remove(&id.seq) {
                    t.cancel();
                }
            }
            Effect::Advise { edge, would } => {
                let w = &self.watched[i];
                let mut facts = base_facts(w, "advise");
                facts.edge = Some(edge_str(edge).to_owned());
                facts.advise = true;
                facts.output = Some(describe_effects(&would));
                let state = w.state();
                follow.events.push(GuardEvent {
                    unit: w.unit.clone(),
                    from: state,
                    to: state,
                    reason: match edge {
                        Edge::Trip => Reason::GuardTripped,
                        Edge::Clear => Reason::GuardCleared,
                    },
                    cause: None,
                    facts,
                    warn: false,
                    run: None,
                });
            }
        }
    }

    /// The cancellation of action `id`'s tasks (one token for all of them).
    fn action_token(&mut self, i: usize, id: ActionId) -> CancellationToken {
        self.watched[i].actions.entry(id.seq).or_default().clone()
    }

    /// Every guard's status, for `guards`.
    pub(super) fn status(&self, now: Instant) -> Vec<GuardStatus> {
        self.watched.iter().map(|w| status_of(w, now)).collect()
    }
}

/// A value compared with a guard's threshold, in its signal's base unit for
/// `launchgraph_guard_value`: a percent is a ratio 0 to 1.
fn base_value(g: &Guard, v: f64) -> f64 {
    match g.trip {
        Quantity::Percent(_) => v / 100.0,
        _ => v,
    }
}

/// The metrics' view of the guards of `units`.
pub(super) fn guard_infos(units: &[Unit]) -> Vec<GuardInfo> {
    units
        .iter()
        .flat_map(|u| {
            u.guards
                .guards
                .iter()
                .map(|g| {
                    let mut actions = Vec::new();
                    if g.on_trip.is_some() {
                        actions.push("trip");
                    }
                    if g.on_clear.is_some() {
                        actions.push("clear");
                    }
                    if [&g.on_trip, &g.on_clear]
                        .iter()
                        .any(|a| a.as_ref().is_some_and(|a| a.verify.is_some()))
                    {
                        actions.push("verify");
                    }
                    GuardInfo {
                        unit: u.name.to_string(),
                        guard: g.name.to_string(),
                        signal: g.signal.kind().as_str(),
                        actions,
                    }
                })
                .chain(u.guards.switches.iter().map(|sw| {
                    let mut actions = Vec::new();
                    if sw.on_trip.is_some() {
                        actions.push("trip");
                    }
                    if sw.on_clear.is_some() {
                        actions.push("clear");
                    }
                    if [&sw.on_trip, &sw.on_clear]
                        .iter()
                        .any(|a| a.as_ref().is_some_and(|a| a.verify.is_some()))
                    {
                        actions.push("verify");
                    }
                    GuardInfo {
                        unit: u.name.to_string(),
                        guard: sw.name.to_string(),
                        signal: "switch",
                        actions,
                    }
                }))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn cancel_all(w: &mut Watched) {
    for (_, t) in w.actions.drain() {
        t.cancel();
    }
    if let Some((_, t)) = w.sampler.take() {
        t.cancel();
    }
}

fn edge_str(e: Edge) -> &'static str {
    match e {
        Edge::Trip => "trip",
        Edge::Clear => "clear",
    }
}

fn set_action(facts: &mut GuardEventFacts, id: Option<ActionId>) {
    if let Some(id) = id {
        facts.edge = Some(edge_str(id.edge).to_owned());
        facts.action_seq = Some(id.seq);
    }
}

/// The unit a guard's values are in, as `value_unit` names it: its threshold's, since
/// samples are compared in it ([`Reading::from_sampled`](crate::guard::machine::Reading)). A
/// `memory-pressure` guard's values are percents on Linux (PSI) and levels on macOS.
fn value_unit(g: &Guard) -> &'static str {
    match g.trip {
        Quantity::Latency(_) => "seconds",
        Quantity::Rate(_) => "bytes/s",
        Quantity::Percent(_) => "percent",
        Quantity::Number(_) => "count",
        Quantity::Level(_) => "pressure",
    }
}

fn base_facts(w: &Watched, kind: &str) -> GuardEventFacts {
    GuardEventFacts {
        guard: w.name().to_string(),
        kind: kind.to_owned(),
        value: None,
        value_unit: w.value_unit().map(str::to_owned),
        threshold: None,
        window: None,
        held_samples: None,
        held_ms: None,
        edge: None,
        action_seq: None,
        output: None,
        forced: false,
        advise: w.mode() == Mode::Advise,
    }
}

/// What advice would have done, in words.
fn describe_effects(would: &[Effect]) -> String {
    let mut parts = Vec::new();
    for e in would {
        match e {
            Effect::Hold { units } => parts.push(format!("hold {}", names(units))),
            Effect::Unhold { units } => parts.push(format!("release {}", names(units))),
            Effect::Run { commands, .. } => {
                for c in commands {
                    parts.push(format!("run {}", c.join(" ")));
                }
            }
            Effect::Restart { units, .. } => parts.push(format!("restart {}", names(units))),
            Effect::StartVerify { argv, .. } => parts.push(format!("verify {}", argv.join(" "))),
            Effect::ArmTimeBox { .. } | Effect::Abandon { .. } | Effect::Advise { .. } => {}
        }
    }
    format!("would {}", parts.join("; "))
}

fn names(units: &[UnitName]) -> String {
    units
        .iter()
        .map(UnitName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn status_of(w: &Watched, now: Instant) -> GuardStatus {
    let secs_since = |t: Instant| now.saturating_duration_since(t).as_secs_f64();
    let st = match &w.what {
        What::Guard { guard: g, machine } => {
            let s = machine.status();
            GuardStatus {
                unit: w.unit.to_string(),
                guard: g.name.to_string(),
                signal: g.signal.kind().to_string(),
                mode: String::new(),
                state: s.state.as_str().to_owned(),
                phase: phase_str(s.phase).to_owned(),
                forced: s.forced,
                unknown_cause: s.unknown.as_ref().map(|(c, _)| c.clone()),
                direction: g.direction.as_str().to_owned(),
                trip: g.trip.to_string(),
                clear: g.clear.to_string(),
                trip_window: g.trip_window.to_string(),
                clear_window: g.clear_window.to_string(),
                every_secs: g.every.as_secs_f64(),
                value: s.last_value,
                value_unit: value_unit(g).to_owned(),
                samples: w.samples,
                last_sample_age_secs: w.last_sample.map(secs_since),
                window: s.held.map(|(n, d)| WindowProgress {
                    held_samples: n,
                    held_ms: d.as_secs_f64() * 1000.0,
                }),
                last_transition: None,
                action: None,
                holds: Vec::new(),
                holding: false,
            }
        }
        // A switch has no signal of its own: `trip` says when it trips (`all`, `any` of its
        // guards), `clear` that it clears when none is tripped.
        What::Switch { switch, machine } => GuardStatus {
            unit: w.unit.to_string(),
            guard: switch.name.to_string(),
            signal: "switch".to_owned(),
            mode: String::new(),
            state: machine.state().as_str().to_owned(),
            phase: machine.state().as_str().to_owned(),
            forced: machine.forced(),
            unknown_cause: None,
            direction: String::new(),
            trip: format!(
                "{} of {}",
                match switch.when {
                    When::All => "all",
                    When::Any => "any",
                },
                switch
                    .guards
                    .iter()
                    .map(GuardName::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            clear: "none tripped".to_owned(),
            trip_window: String::new(),
            clear_window: String::new(),
            every_secs: 0.0,
            value: None,
            value_unit: String::new(),
            samples: 0,
            last_sample_age_secs: None,
            window: None,
            last_transition: None,
            action: None,
            holds: Vec::new(),
            holding: false,
        },
    };
    GuardStatus {
        mode: match w.mode() {
            Mode::Act => "act",
            Mode::Advise => "advise",
        }
        .to_owned(),
        last_transition: w
            .last_transition
            .as_ref()
            .map(|(t, at)| GuardTransitionStatus {
                from: t.from.as_str().to_owned(),
                to: t.to.as_str().to_owned(),
                reason: t.reason.code().to_owned(),
                age_secs: secs_since(*at),
            }),
        action: w.action().map(|a| {
            let (progress, reason, detail) = match &a.progress {
                Progress::Running => ("running", None, None),
                Progress::Verifying => ("verifying", None, None),
                Progress::Done => ("done", None, None),
                Progress::Failed(d) => ("failed", Some(Reason::GuardActionFailed), Some(d.clone())),
                Progress::TimedOut => ("timed-out", Some(Reason::GuardActionTimeout), None),
            };
            let deadline_in_secs = if a.deadline >= now {
                a.deadline.duration_since(now).as_secs_f64()
            } else {
                -now.duration_since(a.deadline).as_secs_f64()
            };
            ActionStatusRecord {
                edge: edge_str(a.id.edge).to_owned(),
                seq: a.id.seq,
                progress: progress.to_owned(),
                reason: reason.map(|r| r.code().to_owned()),
                detail,
                started_secs_ago: secs_since(a.started),
                deadline_in_secs,
            }
        }),
        holds: w.hold().iter().map(ToString::to_string).collect(),
        holding: w.holding,
        ..st
    }
}

fn phase_str(p: crate::guard::machine::Phase) -> &'static str {
    use crate::guard::machine::Phase;
    match p {
        Phase::Ok => "ok",
        Phase::Pending => "pending",
        Phase::Tripped => "tripped",
        Phase::Clearing => "clearing",
    }
}

/// Samples one guard every `every` until cancelled. One sample at a time: the next is due
/// `every` after the last one began, or at once if that one took longer.
async fn sample_loop(
    key: GuardKey,
    mut sampler: Sampler,
    every: Duration,
    tx: GuardTx,
    epoch: u64,
    cancel: CancellationToken,
) {
    let mut next = Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(next.into()) => {}
        }
        let began = Instant::now();
        let taken = tokio::select! {
            () = cancel.cancelled() => return,
            t = sampler.sample() => t,
        };
        let msg = GuardMsg::Sampled {
            key: key.clone(),
            at: Instant::now(),
            taken: Box::new(taken),
        };
        if tx.send((epoch, msg)).is_err() {
            return;
        }
        next = crate::clock::later(began, every).max(Instant::now());
    }
}

/// A helper command of an action: as `user`, only `PATH` in its environment, bounded by
/// what is left of the time box.
fn action_command(
    argv: &[String],
    user: Option<&str>,
    deadline: Instant,
) -> Result<CommandParams, String> {
    let mut c = CommandParams::new(argv.iter().cloned());
    c.deadline = deadline.saturating_duration_since(Instant::now());
    c.output_cap = ACTION_OUTPUT_CAP;
    c.cut_long_output = true;
    if let Some(user) = user {
        let root = nix::unistd::geteuid().is_root();
        c.credentials = Some(
            crate::process::user_credentials(user, root)
                .map_err(|e| format!("cannot run as {user}: {e}"))?,
        );
    }
    Ok(c)
}

/// Runs an action's commands in order, stopping at the first that fails; reports
/// [`Outcome::Ran`] with what they printed, or why one failed.
#[allow(clippy::too_many_arguments)]
async fn run_commands(
    key: GuardKey,
    id: ActionId,
    commands: Vec<Vec<String>>,
    user: Option<String>,
    deadline: Instant,
    tx: GuardTx,
    epoch: u64,
    cancel: CancellationToken,
) {
    let work = async {
        let mut printed = Vec::new();
        for argv in &commands {
            let out = match action_command(argv, user.as_deref(), deadline) {
                Ok(c) => c.run().await,
                Err(e) => Err(e),
            };
            match out {
                Ok(out) => {
                    let text = String::from_utf8_lossy(&out).trim().to_owned();
                    if !text.is_empty() {
                        printed.push(text);
                    }
                }
                Err(e) => return (false, e),
            }
        }
        (true, printed.join("\n"))
    };
    let (ok, detail) = tokio::select! {
        () = cancel.cancelled() => return,
        r = work => r,
    };
    let _ = tx.send((
        epoch,
        GuardMsg::Outcome {
            key,
            at: Instant::now(),
            outcome: Outcome::Ran { id, ok, detail },
        },
    ));
}

/// Polls the verify command until it confirms; reports [`Outcome::Verified`].
#[allow(clippy::too_many_arguments)]
async fn verify(
    key: GuardKey,
    id: ActionId,
    argv: Vec<String>,
    contains: Option<String>,
    user: Option<String>,
    deadline: Instant,
    tx: GuardTx,
    epoch: u64,
    cancel: CancellationToken,
) {
    let mut wait = VERIFY_FIRST;
    loop {
        // Each attempt is bounded by the time box, or, once past it, by the late interval.
        let now = Instant::now();
        let bound = if now < deadline {
            deadline
        } else {
            crate::clock::later(now, VERIFY_LATE)
        };
        let attempt = async {
            match action_command(&argv, user.as_deref(), bound) {
                Ok(c) => c.run().await,
                Err(e) => Err(e),
            }
        };
        let out = tokio::select! {
            () = cancel.cancelled() => return,
            out = attempt => out,
        };
        let confirmed = match &out {
            Ok(stdout) => contains
                .as_deref()
                .is_none_or(|c| String::from_utf8_lossy(stdout).contains(c)),
            Err(_) => false,
        };
        if confirmed {
            let _ = tx.send((
                epoch,
                GuardMsg::Outcome {
                    key,
                    at: Instant::now(),
                    outcome: Outcome::Verified { id },
                },
            ));
            return;
        }
        if let Ok(stdout) = &out {
            tracing::debug!(
                "{}: guard {} verify has not confirmed yet: {}",
                key.0,
                key.1,
                quote(stdout)
            );
        }
        let pause = if Instant::now() >= deadline {
            VERIFY_LATE
        } else {
            let p = wait;
            wait = (wait * 2).min(VERIFY_MAX);
            p
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// A guard event's journal entry.
pub(super) fn entry(e: &GuardEvent) -> crate::engine::journal::GuardEntry {
    crate::engine::journal::GuardEntry {
        time: SystemTime::now(),
        seq: 0,
        unit: Arc::from(e.unit.as_str()),
        from: e.from.as_str(),
        to: e.to.as_str(),
        reason: e.reason,
        cause: e.cause.clone(),
        facts: e.facts.clone(),
    }
}

/// Host figures a sample read, for the metrics.
pub(super) fn host_facts(msg: &GuardMsg) -> Option<(&GuardKey, HostFacts)> {
    match msg {
        GuardMsg::Sampled { key, taken, .. } => taken.host.clone().map(|h| (key, h)),
        GuardMsg::Outcome { .. } => None,
    }
}

impl super::Supervisor {
    /// A guard task's message: the guard's step, its events in the journal, the log and the
    /// metrics; the events it gives the core (released units retried, restarts).
    pub(super) fn guard_message(
        &mut self,
        epoch: u64,
        msg: GuardMsg,
    ) -> Vec<crate::engine::core::Event> {
        let host = host_facts(&msg).map(|(_, h)| h);
        let phases = match &msg {
            GuardMsg::Sampled { key, taken, .. } => taken.ttft.map(|p| (key.clone(), p)),
            GuardMsg::Outcome { .. } => None,
        };
        let (i, follow) = self.guards.message(epoch, msg);
        // Only what a current sampler read.
        if i.is_some() {
            if let Some(h) = host {
                self.metrics.on_host(&h);
            }
            if let Some((key, r)) = phases {
                self.metrics.on_ttft(key.0.as_str(), key.1.as_str(), &r);
            }
        }
        self.guard_follow(i, follow)
    }

    /// Carries out what a guard step asks of the supervisor.
    pub(super) fn guard_follow(
        &mut self,
        i: Option<usize>,
        follow: Follow,
    ) -> Vec<crate::engine::core::Event> {
        use crate::engine::core::{Command, Event};
        for e in &follow.events {
            let line = self.events.push_guard(entry(e));
            if e.warn {
                tracing::warn!(reason = %e.reason, "{line}");
            } else {
                tracing::info!(reason = %e.reason, "{line}");
            }
            if e.facts.kind == "transition" && e.to == State::Tripped && e.from != State::Tripped {
                self.metrics.on_guard_trip(e.unit.as_str(), &e.facts.guard);
            }
            if let Some(run) = e.run {
                self.metrics
                    .on_guard_action(e.unit.as_str(), &e.facts.guard, run);
            }
        }
        if let Some(i) = i {
            let w = &self.guards.watched[i];
            let value = match &w.what {
                What::Guard { guard, machine } => {
                    machine.status().last_value.map(|v| base_value(guard, v))
                }
                What::Switch { .. } => None,
            };
            self.metrics
                .set_guard(w.unit.as_str(), w.name().as_str(), w.state(), value);
            // The switches its guard may have moved.
            for w in &self.guards.watched {
                if let What::Switch { machine, .. } = &w.what {
                    self.metrics.set_guard(
                        w.unit.as_str(),
                        w.name().as_str(),
                        machine.state(),
                        None,
                    );
                }
            }
        }
        self.shell.held = self.guards.held();
        let mut out = Vec::new();
        for u in follow.released {
            if let Some(id) = self.compiled.index_of(&u) {
                out.push(Event::Retry { unit: id });
            }
        }
        for u in follow.restart {
            match self.compiled.index_of(&u) {
                Some(id) if self.run_by(u.as_str()).is_none() => {
                    tracing::info!("{u}: restarted by a guard action");
                    out.push(Event::Command(Command::Restart(id)));
                }
                _ => tracing::warn!(
                    "{u}: a guard action cannot restart it: not a unit launchgraph runs"
                ),
            }
        }
        out
    }
}
