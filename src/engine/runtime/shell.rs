//! The imperative side of the supervising task: carries out the decision core's effects for
//! the current configuration (spawns through the backends, stops, probes, timers) and
//! collects the transitions for the journal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{DelayQueue, delay_queue};

use super::{SupervisorConfig, TimerEntry};
use crate::engine::backend::{Backend, BackendConfig, Run};
use crate::engine::core::{Effect, Event, Generation, StateName, Timer, Transition};
use crate::engine::events::{Epoch, EventTx, TaskWatch, UnitId, WatchedTask};
use crate::engine::gate::{PREFLIGHT_RETRY, gate, record_fingerprint, warn_if_port_held};
use crate::engine::grid_clock::GridClock;
use crate::probe::Prober;

/// The furthest a timer is set: a year, well inside what the timer wheel takes.
const MAX_TIMER: Duration = Duration::from_secs(365 * 86_400);
use crate::reason::Reason;
use crate::unit::{Runner, Unit};

/// A unit's current run: how to ask it to stop.
pub(super) struct RunHandle {
    pub(super) generation: Generation,
    pub(super) stop: Option<oneshot::Sender<Reason>>,
}

/// The imperative side: carries out the core's effects for the current configuration.
pub(super) struct Shell {
    pub(super) units: Arc<Vec<Unit>>,
    pub(super) config: SupervisorConfig,
    pub(super) tx: EventTx,
    pub(super) prober: Arc<Prober>,
    /// The one timer of every liveness loop.
    pub(super) grid_clock: GridClock,
    pub(super) runs: Vec<Option<RunHandle>>,
    pub(super) probes: Vec<Option<CancellationToken>>,
    /// Every unit's timers, in one queue.
    pub(super) timers: DelayQueue<TimerEntry>,
    /// The keys of each unit's pending timers, to cancel them when its generation moves on.
    pub(super) timer_keys: Vec<Vec<(Generation, Timer, delay_queue::Key)>>,
    /// Transitions applied since the supervisor last collected them.
    pub(super) events: Vec<Transition>,
    /// Units a tripped guard holds: their starts are deferred (`HELD_BY_GUARD`).
    /// Each with the guards holding it, for the cause.
    pub(super) held: std::collections::HashMap<crate::unit::UnitName, String>,
}

impl Shell {
    pub(super) fn tx_epoch(&self) -> Epoch {
        self.tx.epoch()
    }

    /// Carries out effects in order; true once the core says everything is down.
    pub(super) fn apply(&mut self, fx: Vec<Effect>) -> bool {
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
                    pid,
                } => {
                    let token = self.probes[unit]
                        .get_or_insert_with(CancellationToken::new)
                        .clone();
                    crate::engine::probing::start(
                        self.prober.clone(),
                        self.grid_clock.clone(),
                        Arc::new(self.units[unit].clone()),
                        unit,
                        generation,
                        kind,
                        pid,
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
                    // The timer wheel panics on a deadline more than about two years away
                    // (tokio-rs/tokio:tokio-util/src/time/delay_queue.rs); durations are bounded
                    // at load, so this only guards a saturated deadline.
                    let latest = crate::clock::later(Instant::now(), MAX_TIMER);
                    let key = self.timers.insert_at(entry, at.min(latest).into());
                    self.timer_keys[unit].push((generation, timer, key));
                }
                Effect::CancelTimer {
                    unit,
                    generation,
                    timer,
                } => {
                    let timers = &mut self.timers;
                    self.timer_keys[unit].retain(|(g, t, key)| {
                        let settled = *g == generation && *t == timer;
                        if settled {
                            timers.try_remove(key);
                        }
                        !settled
                    });
                }
                Effect::Transition(t) => {
                    // Nothing of an external unit's ran here: it has no fingerprint.
                    if t.to == StateName::Ready && !self.units[t.unit].runner.is_external() {
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
        self.timer_keys[unit].retain(|(g, _, key)| {
            if *g < generation {
                timers.try_remove(key);
                false
            } else {
                true
            }
        });
    }

    fn spawn(&mut self, unit: UnitId, generation: Generation) {
        // A tripped guard holds it: wait, not a failure; tried again once released.
        if let Some(by) = self.held.get(&self.units[unit].name) {
            let _ = self.tx.send(Event::StartDeferred {
                unit,
                generation,
                reason: Reason::HeldByGuard,
                detail: format!("held by guard {by}; it starts once the guard clears"),
                retry_after: None,
            });
            return;
        }
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
            let watch = TaskWatch::new(&tx, unit, u.name.as_str(), generation, WatchedTask::Run);
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
            // Who already holds the port its readiness probe dials: looked up beside the
            // start, never delaying it. launchd jobs are not checked here: their run is
            // launchd's, and what holds the port is checked when the probe passes.
            if let (Runner::Exec(_), Some(addr)) = (
                &u.runner,
                u.ready
                    .as_ref()
                    .and_then(|r| crate::listener::loopback_target(&r.probe)),
            ) {
                tokio::spawn(warn_if_port_held(u.name.to_string(), addr));
            }
            let run = Run {
                unit,
                generation,
                stop: stop_rx,
                tx,
                watch,
            };
            Backend::of(u, &backend).run(run).await;
        });
    }

    /// Takes over `units` (a new configuration, epoch `epoch`): the runs, probes and timers
    /// of carried units move to their new index (`carried[new] = Some(old)`); those of units
    /// not carried are down by now, and their timers are cancelled.
    pub(super) fn swap(&mut self, units: Arc<Vec<Unit>>, carried: &[Option<UnitId>], epoch: Epoch) {
        let n = units.len();
        let mut runs: Vec<Option<RunHandle>> = (0..n).map(|_| None).collect();
        let mut probes: Vec<Option<CancellationToken>> = (0..n).map(|_| None).collect();
        let mut timer_keys: Vec<Vec<(Generation, Timer, delay_queue::Key)>> = vec![Vec::new(); n];
        for (new, old) in carried.iter().enumerate() {
            if let Some(o) = old {
                runs[new] = self.runs[*o].take();
                probes[new] = self.probes[*o].take();
                timer_keys[new] = std::mem::take(&mut self.timer_keys[*o]);
            }
        }
        for keys in &self.timer_keys {
            for (_, _, key) in keys {
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
