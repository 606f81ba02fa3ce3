//! The decision core, driven by events alone: no processes, no sleeps, time passed in by hand.
//! Every transition any test provokes is checked against the table of legal transitions.

use std::time::{Duration, Instant};

use std::collections::BTreeSet;

use launchgraph::engine::core::{
    Command, Core, Effect, Event, ExitInfo, LEGAL_TRANSITIONS, ProbeKind, RunPid, State, StateName,
    Timer, UnitPolicy, WatchedTask, backoff_delay, is_legal,
};
use launchgraph::reason::Reason;
use launchgraph::unit::{RestartPolicy, RestartSpec};

use StateName::*;

fn zero_backoff() -> RestartSpec {
    RestartSpec {
        initial: Duration::ZERO,
        jitter: 0.0,
        ..RestartSpec::default()
    }
}

fn policy(
    requires: &[usize],
    n: usize,
    ready: bool,
    alive: bool,
    restart: RestartSpec,
) -> UnitPolicy {
    let _ = n;
    UnitPolicy {
        requires: requires.to_vec(),
        dependents: Vec::new(),
        has_ready_probe: ready,
        has_alive_probe: alive,
        start_timeout: ready.then_some(Duration::from_secs(10)),
        alive_failures: 3,
        restart,
        external: false,
    }
}

struct Sim {
    core: Core,
    t0: Instant,
    now: Instant,
    log: Vec<Effect>,
}

impl Sim {
    /// Units with `requires` edges; dependents are derived.
    fn new(mut units: Vec<UnitPolicy>) -> Self {
        let n = units.len();
        for i in 0..n {
            for r in units[i].requires.clone() {
                units[r].dependents.push(i);
            }
        }
        let t0 = Instant::now();
        Sim {
            core: Core::from_policies(units, t0, 7),
            t0,
            now: t0,
            log: Vec::new(),
        }
    }

    fn check(&mut self, fx: Vec<Effect>) -> Vec<Effect> {
        for e in &fx {
            if let Effect::Transition(t) = e {
                assert!(
                    is_legal(t.from, t.to),
                    "illegal transition {:?} -> {:?} ({}) for unit {}",
                    t.from,
                    t.to,
                    t.reason,
                    t.unit
                );
            }
        }
        self.log.extend(fx.iter().cloned());
        fx
    }

    fn start_all(&mut self) -> Vec<Effect> {
        let fx = self.core.start_all(self.now);
        self.check(fx)
    }

    fn ev(&mut self, e: Event) -> Vec<Effect> {
        let fx = self.core.handle(e, self.now);
        self.check(fx)
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn generation(&self, u: usize) -> u64 {
        self.core.slot(u).generation
    }

    fn spawned(&mut self, u: usize) -> Vec<Effect> {
        let generation = self.generation(u);
        self.ev(Event::Spawned {
            unit: u,
            generation,
            pid: Some(1000 + u as u32),
        })
    }

    fn ready(&mut self, u: usize) -> Vec<Effect> {
        let generation = self.generation(u);
        self.ev(Event::ProbeReported {
            unit: u,
            generation,
            kind: ProbeKind::Ready,
            ok: true,
            latency: Duration::from_millis(1),
            detail: "ok".into(),
        })
    }

    fn alive(&mut self, u: usize, ok: bool) -> Vec<Effect> {
        let generation = self.generation(u);
        self.ev(Event::ProbeReported {
            unit: u,
            generation,
            kind: ProbeKind::Alive,
            ok,
            latency: Duration::from_millis(1),
            detail: if ok { "ok" } else { "connection refused" }.into(),
        })
    }

    fn exited(&mut self, u: usize, exit: ExitInfo) -> Vec<Effect> {
        let generation = self.generation(u);
        self.ev(Event::Exited {
            unit: u,
            generation,
            exit,
            killed_after_timeout: false,
        })
    }

    /// Spawns and readies every unit the effects ask for, in the order asked, until quiet.
    fn settle(&mut self, mut fx: Vec<Effect>) {
        while let Some(u) = fx.iter().find_map(|e| match e {
            Effect::Spawn { unit, .. } => Some(*unit),
            _ => None,
        }) {
            let mut next = self.spawned(u);
            next.extend(self.ready(u));
            fx = next;
        }
    }

    fn state(&self, u: usize) -> StateName {
        self.core.slot(u).state.name()
    }
}

fn spawns(fx: &[Effect]) -> Vec<usize> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Spawn { unit, .. } => Some(*unit),
            _ => None,
        })
        .collect()
}

fn stops(fx: &[Effect]) -> Vec<usize> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Stop { unit, .. } => Some(*unit),
            _ => None,
        })
        .collect()
}

fn transitions(fx: &[Effect]) -> Vec<(usize, StateName, Reason)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Transition(t) => Some((t.unit, t.to, t.reason)),
            _ => None,
        })
        .collect()
}

const CODE1: ExitInfo = ExitInfo {
    code: Some(1),
    signal: None,
};
const CODE0: ExitInfo = ExitInfo {
    code: Some(0),
    signal: None,
};
const KILL9: ExitInfo = ExitInfo {
    code: None,
    signal: Some(9),
};

/// model <- gateway <- dashboard
fn chain() -> Sim {
    Sim::new(vec![
        policy(&[], 3, true, true, zero_backoff()),
        policy(&[0], 3, true, true, zero_backoff()),
        policy(&[1], 3, true, false, zero_backoff()),
    ])
}

#[test]
fn a_dependent_starts_only_after_its_requirement_is_ready() {
    let mut s = chain();
    let fx = s.start_all();
    assert_eq!(spawns(&fx), vec![0]);
    assert_eq!(s.state(1), Waiting);
    assert_eq!(
        s.core.slot(1).state,
        launchgraph::engine::core::State::Waiting {
            reason: Reason::WaitingForDependency,
            on: Some(0)
        }
    );

    let fx = s.spawned(0);
    assert!(spawns(&fx).is_empty(), "started is not ready");
    assert!(fx.contains(&Effect::StartProbe {
        unit: 0,
        generation: 1,
        kind: ProbeKind::Ready,
        pid: RunPid::Known(1000),
    }));
    assert_eq!(s.state(0), Started);

    let fx = s.ready(0);
    assert_eq!(spawns(&fx), vec![1]);
    assert!(fx.contains(&Effect::StartProbe {
        unit: 0,
        generation: 1,
        kind: ProbeKind::Alive,
        pid: RunPid::Known(1000),
    }));
    s.spawned(1);
    let fx = s.ready(1);
    assert_eq!(spawns(&fx), vec![2]);
}

#[test]
fn a_unit_without_a_ready_probe_is_ready_when_started() {
    let mut s = Sim::new(vec![
        policy(&[], 2, false, false, zero_backoff()),
        policy(&[0], 2, false, false, zero_backoff()),
    ]);
    s.start_all();
    let fx = s.spawned(0);
    assert_eq!(s.state(0), Ready);
    assert_eq!(spawns(&fx), vec![1]);
}

#[test]
fn a_crash_stops_dependents_in_order_then_restarts_everything_in_order() {
    let mut s = chain();
    let fx = s.start_all();
    s.settle(fx);
    assert_eq!([s.state(0), s.state(1), s.state(2)], [Ready, Ready, Ready]);

    // The requirement crashes: the deepest dependent stops first; nothing restarts yet.
    let fx = s.exited(0, KILL9);
    assert_eq!(stops(&fx), vec![2]);
    assert!(spawns(&fx).is_empty());
    assert_eq!(s.state(0), Backoff);
    assert!(transitions(&fx).contains(&(0, Backoff, Reason::KilledBySignal)));
    assert!(transitions(&fx).contains(&(2, Stopping, Reason::DependencyRestarting)));

    let fx = s.exited(2, CODE0);
    assert_eq!(stops(&fx), vec![1], "then the next dependent");
    assert!(
        spawns(&fx).is_empty(),
        "the requirement waits until its dependents are down"
    );

    let fx = s.exited(1, CODE0);
    assert_eq!(spawns(&fx), vec![0], "only now the requirement restarts");
    assert_eq!(s.state(1), Waiting);
    assert_eq!(s.state(2), Waiting);

    s.spawned(0);
    let fx = s.ready(0);
    assert_eq!(spawns(&fx), vec![1]);
    s.spawned(1);
    let fx = s.ready(1);
    assert_eq!(spawns(&fx), vec![2]);
    s.spawned(2);
    s.ready(2);
    assert_eq!(s.core.slot(0).restarts, 1);
    assert_eq!(s.core.slot(1).restarts, 1);
    assert_eq!(s.core.slot(0).generation, 2);
}

#[test]
fn stale_events_from_an_older_run_are_ignored() {
    let mut s = chain();
    let fx = s.start_all();
    s.settle(fx);
    s.exited(2, CODE1); // dashboard restarts with zero backoff
    assert_eq!(s.generation(2), 2);
    let fx = s.ev(Event::Exited {
        unit: 2,
        generation: 1,
        exit: CODE1,
        killed_after_timeout: false,
    });
    assert!(fx.is_empty(), "{fx:?}");
    let fx = s.ev(Event::ProbeReported {
        unit: 2,
        generation: 1,
        kind: ProbeKind::Ready,
        ok: true,
        latency: Duration::ZERO,
        detail: String::new(),
    });
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(s.state(2), Starting);
}

#[test]
fn backoff_grows_caps_and_resets_after_a_stable_run() {
    let spec = RestartSpec {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        factor: 2.0,
        jitter: 0.0,
        reset_after: Duration::from_secs(60),
        start_limit_count: 100,
        ..RestartSpec::default()
    };
    let mut s = Sim::new(vec![policy(&[], 1, false, false, spec.clone())]);
    s.start_all();
    let mut delays = Vec::new();
    for _ in 0..6 {
        s.spawned(0);
        s.advance(Duration::from_millis(10));
        let fx = s.exited(0, CODE1);
        let at = fx.iter().find_map(|e| match e {
            Effect::SetTimer {
                timer: Timer::BackoffOver,
                at,
                ..
            } => Some(*at),
            _ => None,
        });
        let at = at.expect("a backoff timer");
        delays.push(at - s.now);
        s.now = at;
        let fx = s.ev(Event::TimerFired {
            unit: 0,
            generation: s.generation(0),
            timer: Timer::BackoffOver,
        });
        assert_eq!(spawns(&fx), vec![0]);
    }
    let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);

    // A run longer than reset-after starts the backoff over.
    s.spawned(0);
    s.advance(Duration::from_secs(61));
    let fx = s.exited(0, CODE1);
    assert!(transitions(&fx).iter().any(|t| t.1 == Backoff));
    assert_eq!(s.core.slot(0).failures, 1);
}

#[test]
fn backoff_jitter_stays_within_its_band_and_the_cap() {
    let spec = RestartSpec {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(4),
        factor: 2.0,
        jitter: 0.5,
        ..RestartSpec::default()
    };
    assert_eq!(backoff_delay(&spec, 1, 0.0), Duration::from_millis(500));
    assert_eq!(backoff_delay(&spec, 1, 0.5), Duration::from_secs(1));
    assert_eq!(
        backoff_delay(&spec, 3, 0.99),
        Duration::from_secs(4),
        "never above max"
    );
    assert_eq!(backoff_delay(&spec, 1000, 0.5), Duration::from_secs(4));
}

#[test]
fn the_start_limit_ends_in_failed_and_dependents_wait_naming_it() {
    let spec = RestartSpec {
        start_limit_count: 3,
        start_limit_period: Duration::from_secs(60),
        ..zero_backoff()
    };
    let mut s = Sim::new(vec![
        policy(&[], 2, false, false, spec),
        policy(&[0], 2, false, false, zero_backoff()),
    ]);
    let fx = s.start_all();
    s.settle(fx);
    for _ in 0..3 {
        let fx = s.exited(0, CODE1);
        assert_eq!(stops(&fx), vec![1], "the dependent stops first");
        let fx = s.exited(1, CODE0);
        assert_eq!(spawns(&fx), vec![0], "then the requirement restarts");
        s.settle(fx);
    }
    let fx = s.exited(0, CODE1);
    assert_eq!(stops(&fx), vec![1]);
    let fx = s.exited(1, CODE0);
    assert_eq!(s.state(0), Failed);
    assert!(
        transitions(&fx).contains(&(0, Failed, Reason::StartLimitReached)),
        "{fx:?}"
    );
    assert_eq!(
        s.core.slot(1).state,
        launchgraph::engine::core::State::Waiting {
            reason: Reason::DependencyFailed,
            on: Some(0)
        }
    );
    // An admin's start clears it.
    let fx = s.ev(Event::Command(Command::Start(0)));
    assert_eq!(spawns(&fx), vec![0]);
}

#[test]
fn a_no_restart_exit_code_fails_at_once() {
    let spec = RestartSpec {
        no_restart_exit_codes: vec![78],
        ..zero_backoff()
    };
    let mut s = Sim::new(vec![policy(&[], 1, false, false, spec)]);
    s.start_all();
    s.spawned(0);
    let fx = s.exited(
        0,
        ExitInfo {
            code: Some(78),
            signal: None,
        },
    );
    assert!(spawns(&fx).is_empty());
    assert!(transitions(&fx).contains(&(0, Failed, Reason::NoRestartExitCode)));
}

#[test]
fn restart_policies() {
    for (policy_kind, exit, expect, reason) in [
        (
            RestartPolicy::OnFailure,
            CODE0,
            Stopped,
            Reason::ExitedCleanly,
        ),
        (RestartPolicy::OnFailure, CODE1, Starting, Reason::Exited),
        (
            RestartPolicy::OnFailure,
            KILL9,
            Starting,
            Reason::KilledBySignal,
        ),
        (
            RestartPolicy::Always,
            CODE0,
            Starting,
            Reason::ExitedCleanly,
        ),
        (RestartPolicy::Never, CODE1, Failed, Reason::Exited),
        (RestartPolicy::Never, CODE0, Stopped, Reason::ExitedCleanly),
    ] {
        let spec = RestartSpec {
            policy: policy_kind,
            ..zero_backoff()
        };
        let mut s = Sim::new(vec![policy(&[], 1, false, false, spec)]);
        s.start_all();
        s.spawned(0);
        let fx = s.exited(0, exit);
        assert_eq!(s.state(0), expect, "{policy_kind:?} {exit:?}");
        assert!(
            transitions(&fx).iter().any(|t| t.2 == reason),
            "{policy_kind:?} {exit:?}: {fx:?}"
        );
    }
}

#[test]
fn a_start_timeout_stops_the_unit_and_counts_as_a_failure() {
    let mut s = chain();
    s.start_all();
    let fx = s.spawned(0);
    let at = fx.iter().find_map(|e| match e {
        Effect::SetTimer {
            timer: Timer::StartTimeout,
            at,
            ..
        } => Some(*at),
        _ => None,
    });
    assert_eq!(at, Some(s.t0 + Duration::from_secs(10)));
    s.now = at.unwrap();
    s.ev(Event::ProbeReported {
        unit: 0,
        generation: 1,
        kind: ProbeKind::Ready,
        ok: false,
        latency: Duration::from_millis(1),
        detail: "connect 127.0.0.1:9: connection refused".into(),
    });
    let fx = s.ev(Event::TimerFired {
        unit: 0,
        generation: 1,
        timer: Timer::StartTimeout,
    });
    assert_eq!(stops(&fx), vec![0]);
    assert!(transitions(&fx).contains(&(0, Stopping, Reason::ReadyTimeout)));
    let stopping = fx.iter().find_map(|e| match e {
        Effect::Transition(t) if t.reason == Reason::ReadyTimeout => Some(t),
        _ => None,
    });
    assert_eq!(
        stopping.and_then(|t| t.cause.as_deref()),
        Some("connect 127.0.0.1:9: connection refused"),
        "the last failed readiness attempt is the cause of the stop"
    );
    let fx = s.exited(
        0,
        ExitInfo {
            code: None,
            signal: Some(15),
        },
    );
    assert!(
        transitions(&fx).contains(&(0, Backoff, Reason::ReadyTimeout)),
        "{fx:?}"
    );
    assert_eq!(spawns(&fx), vec![0], "zero backoff: straight back");
}

fn cancels_start_timeout(fx: &[Effect], unit: usize, generation: u64) -> bool {
    fx.contains(&Effect::CancelTimer {
        unit,
        generation,
        timer: Timer::StartTimeout,
    })
}

#[test]
fn a_settled_start_cancels_its_timeout_and_a_relaunch_that_keeps_the_deadline_does_not() {
    let mut s = chain();
    s.start_all();
    let fx = s.spawned(0);
    assert!(!cancels_start_timeout(&fx, 0, 1), "{fx:?}");
    let fx = s.ready(0);
    assert!(
        cancels_start_timeout(&fx, 0, 1),
        "ready settles the start: {fx:?}"
    );

    // An exit before readiness settles it too; the next run's start has a timer of its own.
    s.spawned(1);
    let fx = s.exited(1, CODE1);
    assert!(cancels_start_timeout(&fx, 1, 1), "{fx:?}");

    // A launchd relaunch of a job never ready keeps its start's deadline, and its timer.
    let mut s = Sim::new(vec![policy(&[], 1, true, false, zero_backoff())]);
    s.start_all();
    s.spawned(0);
    let generation = s.generation(0);
    let fx = s.ev(Event::Relaunching {
        unit: 0,
        generation,
        exit: KILL9,
    });
    assert!(transitions(&fx).contains(&(0, Started, Reason::RelaunchedByLaunchd)));
    assert!(!cancels_start_timeout(&fx, 0, generation), "{fx:?}");
    let fx = s.ready(0);
    assert!(cancels_start_timeout(&fx, 0, generation), "{fx:?}");
}

#[test]
fn liveness_failures_cycle_the_unit_after_its_dependents() {
    let mut s = chain();
    let fx = s.start_all();
    s.settle(fx);
    s.alive(0, false);
    s.alive(0, true); // a success resets the count
    s.alive(0, false);
    let fx = s.alive(0, false);
    assert!(
        stops(&fx).is_empty(),
        "two in a row is below the threshold of 3"
    );
    let fx = s.alive(0, false);
    assert_eq!(stops(&fx), vec![2], "dependents first");
    let fx = s.exited(2, CODE0);
    assert_eq!(stops(&fx), vec![1]);
    let fx = s.exited(1, CODE0);
    assert_eq!(stops(&fx), vec![0]);
    assert!(transitions(&fx).contains(&(0, Stopping, Reason::LivenessFailed)));
    let fx = s.exited(
        0,
        ExitInfo {
            code: None,
            signal: Some(15),
        },
    );
    assert!(transitions(&fx).contains(&(0, Backoff, Reason::LivenessFailed)));
    assert_eq!(spawns(&fx), vec![0]);
}

#[test]
fn shutdown_stops_in_reverse_order_then_exits() {
    let mut s = chain();
    let fx = s.start_all();
    s.settle(fx);
    let fx = s.ev(Event::Command(Command::Shutdown));
    assert_eq!(stops(&fx), vec![2]);
    assert!(!fx.contains(&Effect::Exit));
    let fx = s.exited(2, CODE0);
    assert_eq!(stops(&fx), vec![1]);
    let fx = s.exited(1, CODE0);
    assert_eq!(stops(&fx), vec![0]);
    let fx = s.exited(0, CODE0);
    assert!(fx.contains(&Effect::Exit));
    assert!(transitions(&fx).contains(&(0, Stopped, Reason::Shutdown)));
    // Nothing restarts after shutdown, whatever comes in.
    let fx = s.ev(Event::Command(Command::Start(0)));
    assert!(spawns(&fx).is_empty());
}

#[test]
fn shutdown_while_waiting_and_in_backoff() {
    let mut s = Sim::new(vec![
        policy(
            &[],
            2,
            true,
            false,
            RestartSpec {
                initial: Duration::from_secs(5),
                jitter: 0.0,
                ..RestartSpec::default()
            },
        ),
        policy(&[0], 2, true, false, zero_backoff()),
    ]);
    s.start_all();
    s.spawned(0);
    s.exited(0, CODE1); // unit 0 in backoff, unit 1 waiting
    let fx = s.ev(Event::Command(Command::Shutdown));
    assert!(fx.contains(&Effect::Exit), "{fx:?}");
    assert_eq!(s.state(0), Stopped);
    assert_eq!(s.state(1), Stopped);
}

#[test]
fn admin_restart_cycles_dependents_in_order_without_backoff() {
    let mut s = chain();
    let fx = s.start_all();
    s.settle(fx);
    let fx = s.ev(Event::Command(Command::Restart(1)));
    assert_eq!(stops(&fx), vec![2]);
    let fx = s.exited(2, CODE0);
    assert_eq!(stops(&fx), vec![1]);
    assert!(transitions(&fx).contains(&(1, Stopping, Reason::RestartRequested)));
    let fx = s.exited(1, CODE0);
    assert_eq!(spawns(&fx), vec![1]);
    assert_eq!(s.state(0), Ready, "the requirement is not touched");
    s.spawned(1);
    let fx = s.ready(1);
    assert_eq!(spawns(&fx), vec![2]);
}

#[test]
fn admin_stop_takes_dependents_down_first_and_start_brings_requirements_up() {
    let mut s = chain();
    let fx = s.start_all();
    s.settle(fx);
    let fx = s.ev(Event::Command(Command::Stop(1)));
    assert_eq!(stops(&fx), vec![2]);
    let fx = s.exited(2, CODE0);
    assert_eq!(stops(&fx), vec![1]);
    s.exited(1, CODE0);
    assert_eq!(
        [s.state(0), s.state(1), s.state(2)],
        [Ready, Stopped, Stopped]
    );
    assert!(transitions(&s.log).contains(&(1, Stopped, Reason::StopRequested)));

    // `start dashboard` brings gateway up first.
    let fx = s.ev(Event::Command(Command::Start(2)));
    assert_eq!(spawns(&fx), vec![1]);
    assert_eq!(s.state(2), Waiting);
}

/// A run whose watching task died is a failure of the run, restarted with backoff whatever the
/// policy; its dependents cycle as after any exit.
#[test]
fn a_dead_run_task_is_a_failure_and_the_unit_restarts() {
    let mut s = chain();
    let fx = s.start_all();
    s.settle(fx);
    let fx = s.ev(Event::TaskFailed {
        unit: 2,
        generation: s.generation(2),
        task: WatchedTask::Run,
    });
    let t = transitions(&fx);
    assert!(t.contains(&(2, Backoff, Reason::TaskFailed)), "{t:?}");
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::StopProbes { unit: 2 })),
        "its probes stop: {fx:?}"
    );
    // An older run's task is moot.
    let fx = s.ev(Event::TaskFailed {
        unit: 1,
        generation: s.generation(1) - 1,
        task: WatchedTask::Run,
    });
    assert!(transitions(&fx).is_empty(), "{fx:?}");
}

/// A probe whose task died cycles the unit as a failed liveness probe does: dependents first,
/// then the unit, restarted so that its probes run again.
#[test]
fn a_dead_probe_task_cycles_the_unit() {
    let mut s = chain();
    let fx = s.start_all();
    s.settle(fx);
    let fx = s.ev(Event::TaskFailed {
        unit: 0,
        generation: s.generation(0),
        task: WatchedTask::Probe(ProbeKind::Alive),
    });
    assert_eq!(stops(&fx), vec![2], "dependents first");
    let fx = s.exited(2, CODE0);
    let fx2 = s.exited(1, CODE0);
    assert_eq!(stops(&fx), vec![1]);
    assert_eq!(stops(&fx2), vec![0]);
    let stopping = s.core.slot(0).last_transition.clone().unwrap();
    assert_eq!(stopping.reason, Reason::TaskFailed);
    assert!(
        stopping
            .cause
            .as_deref()
            .unwrap_or("")
            .contains("liveness probe"),
        "{stopping:?}"
    );
    let fx = s.exited(0, KILL9);
    assert!(transitions(&fx).contains(&(0, Backoff, Reason::TaskFailed)));
}

#[test]
fn a_spawn_failure_backs_off_and_retries() {
    let mut s = Sim::new(vec![policy(
        &[],
        1,
        false,
        false,
        RestartSpec {
            initial: Duration::from_secs(1),
            jitter: 0.0,
            ..RestartSpec::default()
        },
    )]);
    s.start_all();
    let fx = s.ev(Event::SpawnFailed {
        unit: 0,
        generation: 1,
        reason: Reason::SpawnFailed,
        error: "no such file".into(),
    });
    assert!(transitions(&fx).contains(&(0, Backoff, Reason::SpawnFailed)));
    s.advance(Duration::from_secs(1));
    let fx = s.ev(Event::TimerFired {
        unit: 0,
        generation: 1,
        timer: Timer::BackoffOver,
    });
    assert_eq!(spawns(&fx), vec![0]);
}

#[test]
fn a_diamond_starts_both_branches_in_parallel_and_the_join_after_both() {
    // 0 <- 1, 0 <- 2, {1,2} <- 3
    let mut s = Sim::new(vec![
        policy(&[], 4, true, false, zero_backoff()),
        policy(&[0], 4, true, false, zero_backoff()),
        policy(&[0], 4, true, false, zero_backoff()),
        policy(&[1, 2], 4, true, false, zero_backoff()),
    ]);
    s.start_all();
    s.spawned(0);
    let fx = s.ready(0);
    assert_eq!(spawns(&fx), vec![1, 2]);
    s.spawned(1);
    s.spawned(2);
    let fx = s.ready(1);
    assert!(spawns(&fx).is_empty());
    let fx = s.ready(2);
    assert_eq!(spawns(&fx), vec![3]);
}

#[test]
fn a_relaunch_by_launchd_is_observed_and_dependents_cycle_in_order() {
    let mut s = chain();
    let fx = s.start_all();
    s.settle(fx);
    let generation = s.generation(0);
    let fx = s.ev(Event::Relaunching {
        unit: 0,
        generation,
        exit: KILL9,
    });
    assert!(
        spawns(&fx).is_empty(),
        "launchd relaunches it; launchgraph does not kickstart"
    );
    assert!(transitions(&fx).contains(&(0, Started, Reason::RelaunchedByLaunchd)));
    assert!(fx.contains(&Effect::StartProbe {
        unit: 0,
        generation,
        kind: ProbeKind::Ready,
        pid: RunPid::Relaunching,
    }));
    assert_eq!(stops(&fx), vec![2], "dependents cycle, deepest first");
    s.exited(2, CODE0);
    let fx = s.exited(1, CODE0);
    assert!(
        spawns(&fx).is_empty(),
        "nothing starts before the relaunched job is ready"
    );
    assert_eq!(s.generation(0), generation, "the same run goes on");
    let fx = s.ev(Event::Spawned {
        unit: 0,
        generation,
        pid: Some(4242),
    });
    // The readiness probe started while the job had no process; it starts again with the
    // relaunched one, so the listener it reaches is checked against it.
    assert_eq!(
        fx,
        vec![
            Effect::StopProbes { unit: 0 },
            Effect::StartProbe {
                unit: 0,
                generation,
                kind: ProbeKind::Ready,
                pid: RunPid::Known(4242),
            }
        ]
    );
    let fx = s.ready(0);
    assert_eq!(spawns(&fx), vec![1]);
    assert_eq!(s.core.slot(0).state.pid(), Some(4242));
    assert_eq!(s.core.slot(0).restarts, 1);
}

/// A KeepAlive job that crash-loops before it is ever ready: launchd relaunches it again and
/// again, and each relaunch is observed, but the start timeout still counts from its start,
/// so it is stopped once the timeout passes instead of being waited on forever.
#[test]
fn relaunches_before_readiness_keep_the_start_timeout_of_the_start() {
    let mut s = chain();
    s.start_all();
    let fx = s.spawned(0);
    let deadline = fx.iter().find_map(|e| match e {
        Effect::SetTimer {
            timer: Timer::StartTimeout,
            at,
            ..
        } => Some(*at),
        _ => None,
    });
    assert_eq!(deadline, Some(s.t0 + Duration::from_secs(10)));
    let generation = s.generation(0);
    for _ in 0..12 {
        s.advance(Duration::from_secs(1));
        let fx = s.ev(Event::Relaunching {
            unit: 0,
            generation,
            exit: CODE1,
        });
        assert!(transitions(&fx).contains(&(0, Started, Reason::RelaunchedByLaunchd)));
        s.ev(Event::Spawned {
            unit: 0,
            generation,
            pid: Some(4242),
        });
    }
    let fx = s.ev(Event::TimerFired {
        unit: 0,
        generation,
        timer: Timer::StartTimeout,
    });
    assert!(
        transitions(&fx).contains(&(0, Stopping, Reason::ReadyTimeout)),
        "12 s after its start, relaunched every second, it is stopped: {fx:?}"
    );
}

#[test]
fn a_relaunch_launchd_missed_says_so_and_an_owner_s_disable_ends_the_wait_without_a_failure() {
    let mut s = Sim::new(vec![policy(&[], 1, true, false, zero_backoff())]);
    let fx = s.start_all();
    s.settle(fx);
    let generation = s.generation(0);
    s.ev(Event::Relaunching {
        unit: 0,
        generation,
        exit: KILL9,
    });
    // launchd did not relaunch it; the backend kickstarted it: same state, its own reason.
    let fx = s.ev(Event::RelaunchMissed {
        unit: 0,
        generation,
        detail: "launchd did not relaunch system/x".into(),
    });
    assert_eq!(
        transitions(&fx),
        vec![(0, Started, Reason::LaunchdNotRelaunched)]
    );
    assert!(spawns(&fx).is_empty() && stops(&fx).is_empty());
    let fx = s.ev(Event::Spawned {
        unit: 0,
        generation,
        pid: Some(4243),
    });
    assert!(fx.contains(&Effect::StartProbe {
        unit: 0,
        generation,
        kind: ProbeKind::Ready,
        pid: RunPid::Known(4243),
    }));
    s.ready(0);

    // Next, the owner parks it: disabled, then exited; launchd does not relaunch it.
    s.ev(Event::Relaunching {
        unit: 0,
        generation,
        exit: CODE0,
    });
    let fx = s.ev(Event::StartDeferred {
        unit: 0,
        generation,
        reason: Reason::DisabledByOwner,
        detail: "system/x is disabled".into(),
        retry_after: Some(Duration::from_secs(5)),
    });
    assert!(fx.contains(&Effect::StopProbes { unit: 0 }));
    assert_eq!(
        transitions(&fx),
        vec![(0, Waiting, Reason::DisabledByOwner)]
    );
    assert_eq!(s.core.slot(0).failures, 0, "not a failure");
    // An admin's start looks again at once, without waiting for the retry timer.
    let fx = s.ev(Event::Command(Command::Start(0)));
    assert_eq!(spawns(&fx), vec![0]);
}

#[test]
fn a_relaunch_with_a_no_restart_exit_code_takes_the_job_down_and_fails_it() {
    let spec = RestartSpec {
        no_restart_exit_codes: vec![78],
        ..zero_backoff()
    };
    let mut s = Sim::new(vec![policy(&[], 1, true, false, spec)]);
    let fx = s.start_all();
    s.settle(fx);
    let generation = s.generation(0);
    let fx = s.ev(Event::Relaunching {
        unit: 0,
        generation,
        exit: ExitInfo {
            code: Some(78),
            signal: None,
        },
    });
    assert_eq!(
        stops(&fx),
        vec![0],
        "launchd would relaunch it forever: stop it"
    );
    let fx = s.exited(
        0,
        ExitInfo {
            code: Some(78),
            signal: None,
        },
    );
    assert!(transitions(&fx).contains(&(0, Failed, Reason::NoRestartExitCode)));
    assert!(spawns(&fx).is_empty());
}

#[test]
fn a_deferred_start_waits_without_counting_as_a_failure_and_retries() {
    let mut s = Sim::new(vec![policy(
        &[],
        1,
        false,
        false,
        RestartSpec {
            start_limit_count: 1,
            ..zero_backoff()
        },
    )]);
    s.start_all();
    for _ in 0..3 {
        let generation = s.generation(0);
        let fx = s.ev(Event::StartDeferred {
            unit: 0,
            generation,
            reason: Reason::NoGuiSession,
            detail: "gui/501 does not exist".into(),
            retry_after: Some(Duration::from_secs(30)),
        });
        assert!(transitions(&fx).contains(&(0, Waiting, Reason::NoGuiSession)));
        assert!(spawns(&fx).is_empty());
        s.advance(Duration::from_secs(30));
        let fx = s.ev(Event::TimerFired {
            unit: 0,
            generation,
            timer: Timer::RetryStart,
        });
        assert_eq!(
            spawns(&fx),
            vec![0],
            "retried, never failed by the start limit"
        );
    }
    // A retry event (files changed) does not wait for the timer.
    let generation = s.generation(0);
    s.ev(Event::StartDeferred {
        unit: 0,
        generation,
        reason: Reason::PreflightFailed,
        detail: "PLIST_PATH_MISSING".into(),
        retry_after: None,
    });
    let fx = s.ev(Event::Retry { unit: 0 });
    assert_eq!(spawns(&fx), vec![0]);
    assert_eq!(s.core.slot(0).failures, 0);
}

/// A unit a tripped guard holds waits with HELD_BY_GUARD, as a failed preflight makes it wait:
/// no backoff, nothing counted, no timer; released, it starts, however often it was held.
#[test]
fn a_held_start_waits_without_a_timer_or_a_failure_and_starts_once_released() {
    let mut s = Sim::new(vec![policy(
        &[],
        1,
        false,
        false,
        RestartSpec {
            start_limit_count: 1,
            ..zero_backoff()
        },
    )]);
    s.start_all();
    for _ in 0..3 {
        let generation = s.generation(0);
        let fx = s.ev(Event::StartDeferred {
            unit: 0,
            generation,
            reason: Reason::HeldByGuard,
            detail: "held by guard ollama/disk".into(),
            retry_after: None,
        });
        assert!(transitions(&fx).contains(&(0, Waiting, Reason::HeldByGuard)));
        assert!(spawns(&fx).is_empty());
        assert!(
            !fx.iter().any(|e| matches!(e, Effect::SetTimer { .. })),
            "a hold is not retried by a timer: {fx:?}"
        );
        let fx = s.ev(Event::Retry { unit: 0 });
        assert_eq!(spawns(&fx), vec![0], "released, it starts");
    }
    assert_eq!(s.core.slot(0).failures, 0);
    assert_ne!(s.state(0), Failed, "never failed by the start limit");
}

#[test]
fn a_dependency_restart_after_an_own_failure_is_not_counted_as_a_failure_restart() {
    let spec = RestartSpec {
        start_limit_count: 1,
        ..zero_backoff()
    };
    let mut s = Sim::new(vec![
        policy(&[], 2, false, false, zero_backoff()),
        policy(&[0], 2, false, false, spec),
    ]);
    let fx = s.start_all();
    s.settle(fx);
    // The dependent fails once and comes back (its one allowed restart).
    let fx = s.exited(1, CODE1);
    s.settle(fx);
    assert_eq!(s.core.slot(1).restarts, 1);
    // Then its requirement crashes: the dependent cycles, which is not its own failure.
    let fx = s.exited(0, CODE1);
    assert_eq!(stops(&fx), vec![1]);
    let fx = s.exited(1, CODE0);
    s.settle(fx);
    assert_eq!(s.state(1), Ready, "not failed by the start limit");
    assert_eq!(
        s.core.slot(1).restarts,
        2,
        "one failure restart plus one dependency cycle"
    );
}

// ---------------------------------------------------------------------------------------
// External units: watched, never run

/// ext (external, ready and alive probes) <- gateway <- dashboard.
fn external_chain() -> Sim {
    let mut ext = policy(&[], 3, true, true, RestartSpec::default());
    ext.external = true;
    ext.start_timeout = None;
    Sim::new(vec![
        ext,
        policy(&[0], 3, true, true, zero_backoff()),
        policy(&[1], 3, true, false, zero_backoff()),
    ])
}

/// [`external_chain`], everything ready.
fn external_chain_ready() -> Sim {
    let mut s = external_chain();
    s.start_all();
    watched(&mut s, 0);
    let fx = s.ready(0);
    s.settle(fx);
    assert_eq!([s.state(0), s.state(1), s.state(2)], [Ready, Ready, Ready]);
    s
}

/// The watch of an external unit reports no pid (nothing was spawned).
fn watched(s: &mut Sim, u: usize) -> Vec<Effect> {
    let generation = s.generation(u);
    s.ev(Event::Spawned {
        unit: u,
        generation,
        pid: None,
    })
}

fn is_stop_of(e: &Effect, unit: usize) -> bool {
    matches!(e, Effect::Stop { unit: u, .. } if *u == unit)
}

#[test]
fn an_external_unit_is_watched_without_a_deadline_and_gates_its_dependents() {
    let mut s = external_chain();
    let fx = s.start_all();
    assert_eq!(spawns(&fx), vec![0], "the watch begins; the others wait");
    assert_eq!(s.state(1), Waiting);
    let fx = watched(&mut s, 0);
    assert!(
        transitions(&fx).contains(&(0, Started, Reason::Watching)),
        "{fx:?}"
    );
    assert!(fx.contains(&Effect::StartProbe {
        unit: 0,
        generation: 1,
        kind: ProbeKind::Ready,
        pid: RunPid::Unknown,
    }));
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::SetTimer { .. })),
        "no start timeout: {fx:?}"
    );
    // An hour of failed readiness probes: still watched, nothing stopped, nothing started.
    for _ in 0..60 {
        s.advance(Duration::from_secs(60));
        let generation = s.generation(0);
        let fx = s.ev(Event::ProbeReported {
            unit: 0,
            generation,
            kind: ProbeKind::Ready,
            ok: false,
            latency: Duration::from_millis(1),
            detail: "connection refused".into(),
        });
        assert!(fx.is_empty(), "{fx:?}");
    }
    assert_eq!([s.state(0), s.state(1)], [Started, Waiting]);
    let fx = s.ready(0);
    assert_eq!(
        spawns(&fx),
        vec![1],
        "its dependent starts once it is ready"
    );
    s.spawned(1);
    let fx = s.ready(1);
    assert_eq!(spawns(&fx), vec![2]);
}

#[test]
fn an_external_units_liveness_failure_stops_its_dependents_not_it_then_awaits_it() {
    let mut s = external_chain_ready();

    s.alive(0, false);
    s.alive(0, false);
    let fx = s.alive(0, false);
    assert!(
        transitions(&fx).contains(&(0, Started, Reason::LivenessFailed)),
        "out of ready, back to watched: {fx:?}"
    );
    assert!(
        !fx.iter().any(|e| is_stop_of(e, 0)),
        "never stopped: {fx:?}"
    );
    assert!(fx.contains(&Effect::StartProbe {
        unit: 0,
        generation: 1,
        kind: ProbeKind::Ready,
        pid: RunPid::Unknown,
    }));
    let stop_probes = fx
        .iter()
        .position(|e| *e == Effect::StopProbes { unit: 0 })
        .expect("its liveness probe stops");
    let start_probe = fx
        .iter()
        .position(|e| matches!(e, Effect::StartProbe { unit: 0, .. }))
        .unwrap();
    assert!(stop_probes < start_probe, "{fx:?}");
    assert_eq!(stops(&fx), vec![2], "dependents first");
    let fx = s.exited(2, CODE0);
    assert_eq!(stops(&fx), vec![1]);
    let fx = s.exited(1, CODE0);
    assert!(stops(&fx).is_empty() && spawns(&fx).is_empty(), "{fx:?}");
    assert_eq!(
        [s.state(0), s.state(1), s.state(2)],
        [Started, Waiting, Waiting]
    );
    let slot = s.core.slot(0);
    assert_eq!(
        (slot.generation, slot.restarts, slot.failures),
        (1, 0, 0),
        "the same watch; no restart, no failure counted"
    );

    // It answers again: its dependents start again, in order.
    let fx = s.ready(0);
    assert_eq!(spawns(&fx), vec![1]);
    s.spawned(1);
    let fx = s.ready(1);
    assert_eq!(spawns(&fx), vec![2]);
    assert!(!s.log.iter().any(|e| is_stop_of(e, 0)));
}

#[test]
fn a_dead_probe_task_of_an_external_unit_restarts_its_probes_without_a_stop() {
    let mut s = external_chain_ready();
    let fx = s.ev(Event::TaskFailed {
        unit: 0,
        generation: 1,
        task: WatchedTask::Probe(ProbeKind::Alive),
    });
    assert!(
        transitions(&fx).contains(&(0, Started, Reason::TaskFailed)),
        "{fx:?}"
    );
    assert!(!fx.iter().any(|e| is_stop_of(e, 0)));
    assert_eq!(stops(&fx), vec![2]);
    // While it is awaited, its readiness probe's task dies too: started again, still watched.
    let fx = s.ev(Event::TaskFailed {
        unit: 0,
        generation: 1,
        task: WatchedTask::Probe(ProbeKind::Ready),
    });
    assert!(
        transitions(&fx).contains(&(0, Started, Reason::TaskFailed)),
        "{fx:?}"
    );
    assert!(fx.contains(&Effect::StartProbe {
        unit: 0,
        generation: 1,
        kind: ProbeKind::Ready,
        pid: RunPid::Unknown,
    }));
    assert_eq!(s.state(0), Started);
}

#[test]
fn stopping_an_external_unit_ends_its_watch_after_its_dependents_and_start_watches_again() {
    let mut s = external_chain_ready();
    let fx = s.ev(Event::Command(Command::Stop(0)));
    assert_eq!(stops(&fx), vec![2]);
    let fx = s.exited(2, CODE0);
    assert_eq!(stops(&fx), vec![1]);
    let fx = s.exited(1, CODE0);
    assert_eq!(stops(&fx), vec![0], "the watch ends last");
    // The backend reports the end of the watch with no exit status: nothing of it exited.
    let generation = s.generation(0);
    let fx = s.ev(Event::Exited {
        unit: 0,
        generation,
        exit: ExitInfo {
            code: None,
            signal: None,
        },
        killed_after_timeout: false,
    });
    let into_stopped = fx
        .iter()
        .find_map(|e| match e {
            Effect::Transition(t) if t.unit == 0 && t.to == Stopped => Some(t.clone()),
            _ => None,
        })
        .expect("stopped");
    assert_eq!(into_stopped.reason, Reason::StopRequested);
    assert_eq!(into_stopped.exit, None, "no exit is claimed");
    assert_eq!(s.core.slot(0).last_exit, None);

    let fx = s.ev(Event::Command(Command::Start(0)));
    assert_eq!(spawns(&fx), vec![0], "watched again");
    assert_eq!(s.generation(0), 2);
}

#[test]
fn shutdown_ends_an_external_units_watch_last() {
    let mut s = external_chain_ready();
    let fx = s.ev(Event::Command(Command::Shutdown));
    assert_eq!(stops(&fx), vec![2]);
    let fx = s.exited(2, CODE0);
    assert_eq!(stops(&fx), vec![1]);
    let fx = s.exited(1, CODE0);
    assert_eq!(stops(&fx), vec![0]);
    let fx = s.exited(
        0,
        ExitInfo {
            code: None,
            signal: None,
        },
    );
    assert!(fx.contains(&Effect::Exit));
}

// ---------------------------------------------------------------------------------------
// The table of legal transitions

#[test]
fn the_table_and_its_check_agree() {
    for from in ALL_STATES {
        for to in ALL_STATES {
            assert_eq!(
                is_legal(from, to),
                LEGAL_TRANSITIONS.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
    let unique: BTreeSet<_> = LEGAL_TRANSITIONS
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        unique.len(),
        LEGAL_TRANSITIONS.len(),
        "an entry is listed twice"
    );
    // Nothing ever goes back to `inactive`, and nothing leaves `failed` but an admin's start.
    assert!(LEGAL_TRANSITIONS.iter().all(|&(_, to)| to != Inactive));
    assert!(
        LEGAL_TRANSITIONS
            .iter()
            .all(|&(from, to)| from != Failed || to == Stopped)
    );
}

const ALL_STATES: [StateName; 9] = [
    Inactive, Waiting, Starting, Started, Ready, Stopping, Backoff, Failed, Stopped,
];

/// A small random graph (each unit may require earlier ones) with random probes and policies.
fn random_units(rng: &mut fastrand::Rng) -> Vec<UnitPolicy> {
    let n = rng.usize(1..=4);
    (0..n)
        .map(|i| {
            let requires: Vec<usize> = (0..i).filter(|_| rng.u8(..3) == 0).collect();
            let ready = rng.bool();
            let policy = match rng.u8(..4) {
                0 => RestartPolicy::Never,
                1 => RestartPolicy::Always,
                _ => RestartPolicy::OnFailure,
            };
            let restart = RestartSpec {
                policy,
                initial: if rng.bool() {
                    Duration::ZERO
                } else {
                    Duration::from_millis(100)
                },
                jitter: 0.0,
                reset_after: Duration::from_secs(5),
                start_limit_count: rng.u32(1..4),
                start_limit_period: Duration::from_secs(20),
                no_restart_exit_codes: vec![78],
                ..RestartSpec::default()
            };
            // An external unit always has a readiness probe (its file's [ready], or its
            // [alive] used as one) and no start timeout.
            let external = rng.u8(..5) == 0;
            let ready = ready || external;
            UnitPolicy {
                requires,
                dependents: Vec::new(),
                has_ready_probe: ready,
                has_alive_probe: rng.bool(),
                start_timeout: (ready && !external).then_some(Duration::from_secs(1)),
                alive_failures: rng.u32(1..3),
                restart,
                external,
            }
        })
        .collect()
}

fn random_exit(rng: &mut fastrand::Rng) -> ExitInfo {
    match rng.u8(..5) {
        0 => CODE0,
        1 => KILL9,
        2 => ExitInfo {
            code: Some(78),
            signal: None,
        },
        3 => ExitInfo {
            code: None,
            signal: None,
        },
        _ => CODE1,
    }
}

/// An event for unit `u`: most often one that fits its state (a pid while starting, a probe
/// or an exit while running), sometimes anything, sometimes about an older run.
fn random_event(s: &Sim, rng: &mut fastrand::Rng, u: usize) -> Event {
    let generation = match rng.u8(..10) {
        0 => s.generation(u).saturating_sub(1),
        _ => s.generation(u),
    };
    let state = &s.core.slot(u).state;
    let pick = if rng.u8(..10) < 7 {
        match state {
            State::Starting { .. } => [0, 1, 8][rng.usize(..3)],
            State::Started { .. } => [3, 2, 5, 7, 0, 8, 17][rng.usize(..7)],
            State::Ready { .. } => [4, 4, 2, 7][rng.usize(..4)],
            State::Stopping { .. } => 2,
            State::Deferred { .. } => 9,
            _ => rng.u8(10..14),
        }
    } else {
        rng.u8(..18)
    };
    match pick {
        0 => Event::Spawned {
            unit: u,
            generation,
            pid: rng.bool().then(|| rng.u32(2..99999)),
        },
        1 => Event::SpawnFailed {
            unit: u,
            generation,
            reason: Reason::SpawnFailed,
            error: "No such file or directory".into(),
        },
        2 => Event::Exited {
            unit: u,
            generation,
            exit: random_exit(rng),
            killed_after_timeout: rng.u8(..4) == 0,
        },
        3 | 4 => Event::ProbeReported {
            unit: u,
            generation,
            kind: if pick == 3 {
                ProbeKind::Ready
            } else {
                ProbeKind::Alive
            },
            ok: rng.bool(),
            latency: Duration::from_millis(1),
            detail: "connection refused".into(),
        },
        5 => Event::TimerFired {
            unit: u,
            generation,
            timer: Timer::StartTimeout,
        },
        6 => Event::TimerFired {
            unit: u,
            generation,
            timer: Timer::BackoffOver,
        },
        7 => Event::Relaunching {
            unit: u,
            generation,
            exit: random_exit(rng),
        },
        8 => Event::StartDeferred {
            unit: u,
            generation,
            reason: Reason::NoGuiSession,
            detail: "gui/501 does not exist".into(),
            retry_after: rng.bool().then_some(Duration::from_secs(1)),
        },
        9 => Event::Retry { unit: u },
        10 => Event::Command(Command::Start(u)),
        11 => Event::Command(Command::Stop(u)),
        12 => Event::Command(Command::Restart(u)),
        13 => Event::Command(Command::Unload(u)),
        14 => Event::TaskFailed {
            unit: u,
            generation,
            task: WatchedTask::Run,
        },
        15 => Event::TaskFailed {
            unit: u,
            generation,
            task: WatchedTask::Probe(ProbeKind::Ready),
        },
        17 => Event::RelaunchMissed {
            unit: u,
            generation,
            detail: "launchd did not relaunch it".into(),
        },
        _ => Event::TaskFailed {
            unit: u,
            generation,
            task: WatchedTask::Probe(ProbeKind::Alive),
        },
    }
}

/// Table-driven: hundreds of seeded random event sequences over random small graphs. Every
/// transition the core emits is in the table (checked by `Sim::check` and by the core
/// itself), every entry of the table is emitted by some sequence (none is dead), and after
/// every event the rules have been applied to a fixpoint (nothing is left to do).
#[test]
fn random_event_sequences_emit_only_legal_transitions_and_every_legal_one() {
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut note = |fx: &[Effect]| {
        for e in fx {
            if let Effect::Transition(t) = e {
                seen.insert((t.from.as_str(), t.to.as_str()));
            }
        }
    };
    for seed in 0..600u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let units = random_units(&mut rng);
        let external: Vec<bool> = units.iter().map(|p| p.external).collect();
        let mut s = Sim::new(units);
        let n = s.core.slots().len();
        // The timers the core set, delivered when due, as the runtime does.
        let mut timers: Vec<(Instant, Event)> = Vec::new();
        let arm = |fx: &[Effect], timers: &mut Vec<(Instant, Event)>| {
            for e in fx {
                if let Effect::SetTimer {
                    unit,
                    generation,
                    timer,
                    at,
                } = e
                {
                    let fired = Event::TimerFired {
                        unit: *unit,
                        generation: *generation,
                        timer: *timer,
                    };
                    timers.push((*at, fired));
                }
            }
        };
        let fx = s.start_all();
        note(&fx);
        arm(&fx, &mut timers);
        for step in 0..150 {
            s.advance(Duration::from_millis(rng.u64(0..1500)));
            let mut due: Vec<Event> = Vec::new();
            timers.sort_by_key(|(at, _)| *at);
            while timers.first().is_some_and(|(at, _)| *at <= s.now) {
                due.push(timers.remove(0).1);
            }
            let event = if step == 140 && rng.bool() {
                Event::Command(Command::Shutdown)
            } else {
                let u = rng.usize(..n);
                random_event(&s, &mut rng, u)
            };
            for e in due.into_iter().chain([event]) {
                let fx = s.ev(e);
                note(&fx);
                arm(&fx, &mut timers);
                // An external unit is never stopped for its own health: only by an admin, a
                // reload, a shutdown or a requirement going down (or a dead task's cycle).
                for e in &fx {
                    if let Effect::Stop { unit, reason, .. } = e
                        && s.core.slot(*unit).state.name() == Stopping
                        && external[*unit]
                    {
                        assert!(
                            !matches!(
                                reason,
                                Reason::LivenessFailed
                                    | Reason::ReadyTimeout
                                    | Reason::NoRestartExitCode
                            ),
                            "seed {seed} step {step}: external unit {unit} stopped for {reason}"
                        );
                    }
                }
            }
            // With every due timer delivered, the rules have been applied: nothing is left to
            // do, also after events whose pass was skipped.
            let left = s.core.settle(s.now);
            assert!(left.is_empty(), "seed {seed} step {step}: {left:?}");
        }
    }
    let missing: Vec<String> = LEGAL_TRANSITIONS
        .iter()
        .filter(|(f, t)| !seen.contains(&(f.as_str(), t.as_str())))
        .map(|(f, t)| format!("{f} -> {t}"))
        .collect();
    assert!(
        missing.is_empty(),
        "table entries no sequence emitted: {missing:?}"
    );
}

/// The rules look only at the neighbourhood of what changed: on a large graph (2,000 units in
/// chains of 5) a unit's pid, readiness, probe or crash costs a number of looks bounded by its
/// chain, never by the number of units.
#[test]
fn an_event_costs_its_neighbourhood_not_the_number_of_units() {
    const CHAINS: usize = 400;
    const LEN: usize = 5;
    let units: Vec<UnitPolicy> = (0..CHAINS * LEN)
        .map(|u| {
            let requires: &[usize] = if u % LEN == 0 { &[] } else { &[u - 1] };
            policy(requires, 0, true, true, zero_backoff())
        })
        .collect();
    let mut s = Sim::new(units);
    // A crash takes down at most the rest of its chain and brings it back: every unit the
    // rules look at is in the chain or next to it, each a few times at most.
    let bound = 4 * (LEN as u64 + 2);
    let mut worst = 0;
    let mut cost = |s: &mut Sim, e: Event| {
        let before = s.core.visits();
        let fx = s.ev(e);
        let looked = s.core.visits() - before;
        worst = worst.max(looked);
        assert!(looked <= bound, "{looked} looks for one event");
        fx
    };
    let fx = s.start_all();
    assert_eq!(spawns(&fx).len(), CHAINS, "the head of every chain starts");
    // Start-up, one event at a time, as the runtime delivers them.
    let mut pending = spawns(&fx);
    while let Some(u) = pending.pop() {
        let generation = s.generation(u);
        cost(
            &mut s,
            Event::Spawned {
                unit: u,
                generation,
                pid: Some(1000 + u as u32),
            },
        );
        let fx = cost(
            &mut s,
            Event::ProbeReported {
                unit: u,
                generation,
                kind: ProbeKind::Ready,
                ok: true,
                latency: Duration::from_millis(1),
                detail: "ok".into(),
            },
        );
        pending.extend(spawns(&fx));
    }
    assert!((0..CHAINS * LEN).all(|u| s.state(u) == Ready));
    // Idle liveness probes change nothing the rules read: no look at all.
    let before = s.core.visits();
    s.alive(CHAINS * LEN / 2, true);
    assert_eq!(s.core.visits(), before);
    // The head of a chain in the middle crashes: its chain stops in order and comes back.
    let head = (CHAINS / 2) * LEN;
    let generation = s.generation(head);
    let mut fx = cost(
        &mut s,
        Event::Exited {
            unit: head,
            generation,
            exit: KILL9,
            killed_after_timeout: false,
        },
    );
    loop {
        if let Some(u) = stops(&fx).first().copied() {
            let generation = s.generation(u);
            fx = cost(
                &mut s,
                Event::Exited {
                    unit: u,
                    generation,
                    exit: CODE0,
                    killed_after_timeout: false,
                },
            );
        } else if let Some(u) = spawns(&fx).first().copied() {
            let generation = s.generation(u);
            cost(
                &mut s,
                Event::Spawned {
                    unit: u,
                    generation,
                    pid: Some(2000 + u as u32),
                },
            );
            fx = cost(
                &mut s,
                Event::ProbeReported {
                    unit: u,
                    generation,
                    kind: ProbeKind::Ready,
                    ok: true,
                    latency: Duration::from_millis(1),
                    detail: "ok".into(),
                },
            );
        } else {
            break;
        }
    }
    assert!((0..CHAINS * LEN).all(|u| s.state(u) == Ready));
    assert!(
        (head..head + LEN).all(|u| s.core.slot(u).generation == 2),
        "the crashed chain ran again"
    );
    assert!(worst > 0);
    assert!(s.core.settle(s.now).is_empty());
}
