//! Table tests of the guard state machine on synthetic series: no clock, no processes.

use super::*;
use crate::unit::guard::{Direction, Signal};

/// The series' time zero; every input is at a fixed offset from it.
fn t0() -> Instant {
    // The one clock read of these tests: a base the offsets are added to.
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn at(secs: u64) -> Instant {
    t0() + Duration::from_secs(secs)
}

fn unit(s: &str) -> UnitName {
    UnitName::parse(s).unwrap()
}

fn action(cmd: &str, verify: bool, within: u64) -> Action {
    Action {
        run: vec![vec![cmd.to_string()]],
        user: None,
        restart: Vec::new(),
        verify: verify.then(|| vec!["/bin/verify".to_string()]),
        verify_contains: None,
        complete_within: Duration::from_secs(within),
    }
}

/// A guard on a plain number, tripping above `trip` after `window`, clearing at or below
/// `clear` (the trip threshold when `None`) after the same window.
fn guard(trip: f64, clear: Option<f64>, window: Window) -> Guard {
    Guard {
        name: GuardName::parse("g").unwrap(),
        signal: Signal::Exec {
            command: vec!["/bin/depth".into()],
        },
        every: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
        direction: Direction::Above,
        trip: Quantity::Number(trip),
        clear: Quantity::Number(clear.unwrap_or(trip)),
        clear_is_default: clear.is_none(),
        trip_window: window,
        clear_window: window,
        stat: None,
        mode: Mode::Act,
        hold: Vec::new(),
        on_trip: None,
        on_clear: None,
    }
}

fn sample(m: &mut GuardMachine, secs: u64, v: f64) -> Step {
    m.step(Input::Sample {
        at: at(secs),
        reading: Reading::Value(v),
    })
}

fn unknown(m: &mut GuardMachine, secs: u64) -> Step {
    m.step(Input::Sample {
        at: at(secs),
        reading: Reading::Unknown("the model is not loaded".into()),
    })
}

/// Feeds `(seconds, value or unknown)` and returns every transition as (seconds, from, to).
fn run(m: &mut GuardMachine, series: &[(u64, Option<f64>)]) -> Vec<(u64, State, State)> {
    let mut out = Vec::new();
    for &(secs, v) in series {
        let step = match v {
            Some(v) => sample(m, secs, v),
            None => unknown(m, secs),
        };
        for t in step.transitions {
            out.push((t.at.duration_since(t0()).as_secs(), t.from, t.to));
        }
    }
    out
}

/// Every `every` seconds from `start`, one value each.
fn every(start: u64, step: u64, values: &[Option<f64>]) -> Vec<(u64, Option<f64>)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (start + step * i as u64, *v))
        .collect()
}

use State::{Clearing, Ok as OK, Pending, Tripped, Unknown};

#[test]
fn consecutive_samples_trip_and_clear_through_pending_and_clearing() {
    let mut m = GuardMachine::new(guard(3.0, None, Window::Samples(3)));
    let series = every(
        0,
        10,
        &[
            Some(1.0),
            Some(5.0),
            Some(5.0),
            Some(5.0),
            Some(5.0),
            Some(2.0),
            Some(2.0),
            Some(2.0),
        ],
    );
    assert_eq!(
        run(&mut m, &series),
        [
            (10, OK, Pending),
            (30, Pending, Tripped),
            (50, Tripped, Clearing),
            (70, Clearing, OK),
        ]
    );
}

#[test]
fn a_lapse_inside_a_window_starts_it_again() {
    type Case = (&'static str, Vec<Option<f64>>, Vec<(u64, State, State)>);
    let cases: &[Case] = &[
        (
            "one low sample before the third high one",
            vec![Some(5.0), Some(5.0), Some(1.0), Some(5.0), Some(5.0)],
            vec![(0, OK, Pending), (20, Pending, OK), (30, OK, Pending)],
        ),
        (
            "the value at the threshold is not above it",
            vec![Some(3.0), Some(3.0), Some(3.0)],
            vec![],
        ),
        (
            "three after the lapse",
            vec![Some(5.0), Some(1.0), Some(5.0), Some(5.0), Some(5.0)],
            vec![
                (0, OK, Pending),
                (10, Pending, OK),
                (20, OK, Pending),
                (40, Pending, Tripped),
            ],
        ),
    ];
    for (name, values, want) in cases {
        let mut m = GuardMachine::new(guard(3.0, None, Window::Samples(3)));
        assert_eq!(&run(&mut m, &every(0, 10, values)), want, "{name}");
    }
}

/// A series hovering around the threshold: with the clear threshold equal to the trip one
/// (the default) and one-sample windows, every crossing is an edge; with a band, the guard
/// trips once and stays tripped until the value really falls.
#[test]
fn hysteresis_prevents_flapping() {
    let hovering: Vec<Option<f64>> = (0..20)
        .map(|i| Some(if i % 2 == 0 { 2.6 } else { 2.4 }))
        .chain([Some(1.0)])
        .collect();
    let series = every(0, 10, &hovering);
    let edges = |m: &mut GuardMachine| {
        let mut trips = 0;
        let mut clears = 0;
        for &(secs, v) in &series {
            let before = m.phase();
            sample(m, secs, v.unwrap());
            match (before.is_tripped(), m.phase().is_tripped()) {
                (false, true) => trips += 1,
                (true, false) => clears += 1,
                _ => {}
            }
        }
        (trips, clears)
    };
    let mut flappy = GuardMachine::new(guard(2.5, None, Window::Samples(1)));
    assert_eq!(edges(&mut flappy), (10, 10));
    let mut banded = GuardMachine::new(guard(2.5, Some(1.5), Window::Samples(1)));
    assert_eq!(edges(&mut banded), (1, 1));
}

#[test]
fn a_duration_window_trips_when_the_condition_has_held_that_long() {
    let mut m = GuardMachine::new(guard(3.0, None, Window::Lasting(Duration::from_secs(60))));
    let series = every(0, 10, &[Some(5.0); 8]);
    // First high sample at 0 (pending); held 60 s at the sample taken at 60.
    assert_eq!(
        run(&mut m, &series),
        [(0, OK, Pending), (60, Pending, Tripped)]
    );
}

#[test]
fn unknown_neither_advances_nor_resets_a_sample_window() {
    let mut m = GuardMachine::new(guard(3.0, None, Window::Samples(3)));
    let series = every(0, 10, &[Some(5.0), Some(5.0), None, None, Some(5.0)]);
    let got = run(&mut m, &series[..4]);
    assert_eq!(got, [(0, OK, Pending), (20, Pending, Unknown)]);
    let s = m.status();
    assert_eq!((s.state, s.phase), (Unknown, Phase::Pending));
    assert_eq!(
        s.unknown
            .as_ref()
            .map(|(why, since)| (why.as_str(), *since)),
        Some(("the model is not loaded", at(20)))
    );
    // The third real sample completes the window: the gap did not reset it.
    assert_eq!(run(&mut m, &series[4..]), [(40, Unknown, Tripped)]);
    assert_eq!(m.status().unknown, None);
}

/// A sample after a gap that leaves the phase as it was says the signal is known again; it
/// never claims a trip or a clear, so an operator does not read one into a daemon's start.
#[test]
fn a_gap_that_changes_nothing_ends_as_known_not_as_a_clear_or_a_trip() {
    let reasons = |steps: Vec<Step>| -> Vec<(State, State, Reason)> {
        steps
            .into_iter()
            .flat_map(|s| s.transitions)
            .map(|t| (t.from, t.to, t.reason))
            .collect()
    };
    // First sample of a guard that starts unknown, then a gap while ok.
    let mut m = GuardMachine::new(guard(3.0, None, Window::Samples(2)));
    let got = reasons(vec![
        unknown(&mut m, 0),
        sample(&mut m, 10, 1.0),
        unknown(&mut m, 20),
        sample(&mut m, 30, 1.0),
    ]);
    assert_eq!(
        got,
        [
            (OK, Unknown, Reason::GuardUnknown),
            (Unknown, OK, Reason::GuardKnown),
            (OK, Unknown, Reason::GuardUnknown),
            (Unknown, OK, Reason::GuardKnown),
        ]
    );
    // A gap while tripped, then a sample still above: known again, nothing run again.
    let mut m = GuardMachine::new(guard(3.0, Some(1.0), Window::Samples(1)));
    let tripped = sample(&mut m, 0, 5.0);
    assert_eq!(tripped.transitions[0].reason, Reason::GuardTripped);
    let got = (unknown(&mut m, 10), sample(&mut m, 20, 5.0));
    assert_eq!(
        got.1
            .transitions
            .iter()
            .map(|t| (t.from, t.to, t.reason))
            .collect::<Vec<_>>(),
        [(Unknown, Tripped, Reason::GuardKnown)]
    );
    // A gap that ends in a real clear says so.
    let cleared = sample(&mut m, 30, 0.5);
    assert_eq!(
        cleared
            .transitions
            .iter()
            .map(|t| (t.from, t.to, t.reason))
            .collect::<Vec<_>>(),
        [(Tripped, OK, Reason::GuardCleared)]
    );
}

#[test]
fn time_without_samples_does_not_count_toward_a_duration_window() {
    let mut m = GuardMachine::new(guard(3.0, None, Window::Lasting(Duration::from_secs(60))));
    // Held 0..20 (20 s), unknown from 30 to 80, then high again from 90: the window
    // continues from 20 s held, so it completes 40 s of real holding later, at 130.
    let mut series = every(0, 10, &[Some(5.0), Some(5.0), Some(5.0)]);
    series.extend(every(30, 10, &[None; 6]));
    series.extend(every(90, 10, &[Some(5.0); 6]));
    let got = run(&mut m, &series);
    assert_eq!(
        got,
        [
            (0, OK, Pending),
            (30, Pending, Unknown),
            (90, Unknown, Pending),
            (130, Pending, Tripped)
        ]
    );
}

#[test]
fn a_statistic_over_a_sliding_window_is_compared_instead_of_each_sample() {
    let mut g = guard(2.5, Some(1.5), Window::Samples(1));
    g.stat = Some(StatWindow {
        stat: Stat::P50,
        window: Duration::from_secs(60),
    });
    let mut m = GuardMachine::new(g);
    // The first window fills: nothing is compared before 60 s, even a high sample.
    let got = run(
        &mut m,
        &every(
            0,
            10,
            &[
                Some(9.0),
                Some(1.0),
                Some(1.0),
                Some(1.0),
                Some(1.0),
                Some(1.0),
            ],
        ),
    );
    assert_eq!(got, []);
    // Single spikes do not move the median of six samples.
    let got = run(
        &mut m,
        &every(60, 10, &[Some(9.0), Some(1.0), Some(9.0), Some(1.0)]),
    );
    assert_eq!(got, []);
    // A sustained rise does: at 100 the window (40, 100] holds 1, 9, 1, 9, 1, 3 (median 2);
    // at 110, (50, 110] holds 9, 1, 9, 1, 3, 3 (median 3).
    assert!(sample(&mut m, 100, 3.0).transitions.is_empty());
    let step = sample(&mut m, 110, 3.0);
    let t = &step.transitions[0];
    assert_eq!((t.from, t.to), (OK, Tripped));
    let Basis::Sample(meas) = &t.basis else {
        panic!("{t:?}")
    };
    assert_eq!(meas.value, 3.0);
    assert_eq!(meas.sample, 3.0);
    assert_eq!(meas.statistic.map(|s| s.stat), Some(Stat::P50));
    assert_eq!(meas.threshold, Quantity::Number(2.5));
}

#[test]
fn statistics() {
    let cases: &[(Stat, &[f64], f64)] = &[
        (Stat::P50, &[3.0, 1.0, 2.0], 2.0),
        (Stat::P50, &[4.0, 1.0, 3.0, 2.0], 2.5),
        (
            Stat::P90,
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0],
            10.0,
        ),
        (Stat::P90, &[0.0, 10.0], 9.0),
        (Stat::Max, &[1.0, 7.0, 3.0], 7.0),
        (Stat::Mean, &[1.0, 2.0, 6.0], 3.0),
        (Stat::P50, &[5.0], 5.0),
    ];
    for (stat, values, want) in cases {
        assert!(
            (statistic(*stat, values) - want).abs() < 1e-9,
            "{stat:?} {values:?}"
        );
    }
}

fn acting(g: &mut Guard) {
    g.hold = vec![unit("pull")];
    g.on_trip = Some(action("/bin/fallback", true, 120));
    g.on_clear = Some(action("/bin/restore", true, 120));
}

fn trip_id() -> ActionId {
    ActionId {
        edge: Edge::Trip,
        seq: 1,
    }
}

#[test]
fn a_trip_holds_runs_then_verifies_within_its_time_box() {
    let mut g = guard(3.0, None, Window::Samples(1));
    acting(&mut g);
    let mut m = GuardMachine::new(g);
    let step = sample(&mut m, 0, 5.0);
    let deadline = at(120);
    assert_eq!(
        step.effects,
        [
            Effect::Hold {
                units: vec![unit("pull")]
            },
            Effect::ArmTimeBox {
                id: trip_id(),
                deadline
            },
            Effect::Run {
                id: trip_id(),
                commands: vec![vec!["/bin/fallback".into()]],
                user: None,
                deadline
            },
        ]
    );
    let step = m.step(Input::Outcome {
        at: at(11),
        outcome: Outcome::Ran {
            id: trip_id(),
            ok: true,
            detail: String::new(),
        },
    });
    assert!(
        matches!(step.effects.as_slice(), [Effect::StartVerify { deadline: d, .. }] if *d == deadline)
    );
    assert_eq!(m.status().action.unwrap().progress, Progress::Verifying);
    let step = m.step(Input::Outcome {
        at: at(40),
        outcome: Outcome::Verified { id: trip_id() },
    });
    assert_eq!(
        step.notices,
        [Notice::ActionConfirmed {
            id: trip_id(),
            late: false
        }]
    );
    assert_eq!(m.status().action.unwrap().progress, Progress::Done);
    // The timer firing after a confirmation changes nothing.
    let step = m.step(Input::Outcome {
        at: at(120),
        outcome: Outcome::TimeBoxExpired { id: trip_id() },
    });
    assert_eq!(step, Step::default());
}

#[test]
fn a_missed_time_box_stays_visible_until_a_late_confirmation_and_sampling_goes_on() {
    let mut g = guard(3.0, None, Window::Samples(1));
    acting(&mut g);
    let mut m = GuardMachine::new(g);
    sample(&mut m, 0, 5.0);
    m.step(Input::Outcome {
        at: at(11),
        outcome: Outcome::Ran {
            id: trip_id(),
            ok: true,
            detail: String::new(),
        },
    });
    // No timer needed: a sample past the deadline times it out too.
    let step = sample(&mut m, 130, 5.0);
    assert_eq!(
        step.notices,
        [Notice::ActionTimedOut {
            id: trip_id(),
            deadline: at(120)
        }]
    );
    assert_eq!(step.notices[0].reason(), Some(Reason::GuardActionTimeout));
    for secs in [140, 150, 160] {
        let step = sample(&mut m, secs, 5.0);
        assert!(step.notices.is_empty() && step.effects.is_empty());
        assert_eq!(m.status().action.unwrap().progress, Progress::TimedOut);
        assert_eq!(m.state(), Tripped);
    }
    // An outcome of another action (a stale id) is ignored.
    let stale = ActionId {
        edge: Edge::Clear,
        seq: 7,
    };
    let step = m.step(Input::Outcome {
        at: at(165),
        outcome: Outcome::Verified { id: stale },
    });
    assert_eq!(step, Step::default());
    let step = m.step(Input::Outcome {
        at: at(170),
        outcome: Outcome::Verified { id: trip_id() },
    });
    assert_eq!(
        step.notices,
        [Notice::ActionConfirmed {
            id: trip_id(),
            late: true
        }]
    );
    assert_eq!(m.status().action.unwrap().progress, Progress::Done);
}

#[test]
fn a_timer_expiry_times_out_a_running_action() {
    let mut g = guard(3.0, None, Window::Samples(1));
    acting(&mut g);
    let mut m = GuardMachine::new(g);
    sample(&mut m, 0, 5.0);
    let step = m.step(Input::Tick { at: at(119) });
    assert_eq!(step, Step::default());
    let step = m.step(Input::Outcome {
        at: at(120),
        outcome: Outcome::TimeBoxExpired { id: trip_id() },
    });
    assert_eq!(step.notices.len(), 1);
    assert_eq!(m.status().action.unwrap().progress, Progress::TimedOut);
    // The commands finishing late start the verify; still timed out until it confirms.
    let step = m.step(Input::Outcome {
        at: at(125),
        outcome: Outcome::Ran {
            id: trip_id(),
            ok: true,
            detail: String::new(),
        },
    });
    assert!(matches!(
        step.effects.as_slice(),
        [Effect::StartVerify { .. }]
    ));
    assert_eq!(m.status().action.unwrap().progress, Progress::TimedOut);
}

#[test]
fn a_failed_command_is_reported_and_nothing_after_it_runs() {
    let mut g = guard(3.0, None, Window::Samples(1));
    acting(&mut g);
    g.on_trip.as_mut().unwrap().restart = vec![unit("gateway")];
    let mut m = GuardMachine::new(g);
    sample(&mut m, 0, 5.0);
    let step = m.step(Input::Outcome {
        at: at(3),
        outcome: Outcome::Ran {
            id: trip_id(),
            ok: false,
            detail: "exit 1".into(),
        },
    });
    assert!(step.effects.is_empty(), "no restart, no verify: {step:?}");
    assert_eq!(
        step.notices,
        [Notice::ActionFailed {
            id: trip_id(),
            detail: "exit 1".into()
        }]
    );
    assert_eq!(step.notices[0].reason(), Some(Reason::GuardActionFailed));
    assert_eq!(
        m.status().action.unwrap().progress,
        Progress::Failed("exit 1".into())
    );
}

#[test]
fn restarts_follow_successful_commands_and_clearing_unholds_and_supersedes() {
    let mut g = guard(3.0, None, Window::Samples(1));
    acting(&mut g);
    g.on_trip.as_mut().unwrap().restart = vec![unit("gateway")];
    let mut m = GuardMachine::new(g);
    sample(&mut m, 0, 5.0);
    let step = m.step(Input::Outcome {
        at: at(3),
        outcome: Outcome::Ran {
            id: trip_id(),
            ok: true,
            detail: String::new(),
        },
    });
    assert!(matches!(
        step.effects.as_slice(),
        [Effect::Restart { units, .. }, Effect::StartVerify { .. }] if units == &[unit("gateway")]
    ));
    // It clears before the trip's verify confirmed: that verify is abandoned.
    let step = sample(&mut m, 10, 1.0);
    let clear_id = ActionId {
        edge: Edge::Clear,
        seq: 2,
    };
    assert_eq!(step.transitions[0].reason, Reason::GuardCleared);
    assert_eq!(
        step.effects[..2],
        [
            Effect::Abandon { id: trip_id() },
            Effect::Unhold {
                units: vec![unit("pull")]
            },
        ]
    );
    assert!(matches!(step.effects[3], Effect::Run { id, .. } if id == clear_id));
    // The trip's late confirmation no longer counts.
    let step = m.step(Input::Outcome {
        at: at(12),
        outcome: Outcome::Verified { id: trip_id() },
    });
    assert_eq!(step, Step::default());
}

#[test]
fn crossing_back_while_clearing_runs_nothing_again() {
    let mut g = guard(3.0, Some(1.0), Window::Samples(2));
    acting(&mut g);
    let mut m = GuardMachine::new(g);
    sample(&mut m, 0, 5.0);
    assert!(!sample(&mut m, 10, 5.0).effects.is_empty());
    let step = sample(&mut m, 20, 0.5);
    assert_eq!(
        (step.transitions[0].from, step.transitions[0].to),
        (Tripped, Clearing)
    );
    assert!(step.effects.is_empty());
    // In the band: back to tripped, nothing runs again.
    let step = sample(&mut m, 30, 2.0);
    assert_eq!(
        (step.transitions[0].from, step.transitions[0].to),
        (Clearing, Tripped)
    );
    assert_eq!(step.transitions[0].reason, Reason::GuardTripped);
    assert!(step.effects.is_empty());
}

#[test]
fn a_forced_trip_holds_until_cleared_by_hand_and_sampling_goes_on() {
    let mut g = guard(3.0, None, Window::Samples(1));
    acting(&mut g);
    let mut m = GuardMachine::new(g);
    sample(&mut m, 0, 1.0);
    let step = m.step(Input::Force {
        at: at(5),
        to: Forced::Trip,
    });
    assert_eq!(step.transitions.len(), 1);
    assert_eq!(
        (
            step.transitions[0].from,
            step.transitions[0].to,
            &step.transitions[0].basis
        ),
        (OK, Tripped, &Basis::Forced)
    );
    assert!(matches!(step.effects[0], Effect::Hold { .. }));
    // Low samples are taken and shown, but do not clear a forced trip.
    for secs in [10, 20, 30] {
        let step = sample(&mut m, secs, 0.5);
        assert!(step.transitions.is_empty());
    }
    assert_eq!(m.status().last_value, Some(0.5));
    assert!(m.status().forced);
    let step = m.step(Input::Force {
        at: at(35),
        to: Forced::Clear,
    });
    assert_eq!(
        (step.transitions[0].from, step.transitions[0].to),
        (Tripped, OK)
    );
    assert!(matches!(step.effects[1], Effect::Unhold { .. }));
    // Samples drive it again.
    let step = sample(&mut m, 40, 5.0);
    assert_eq!(
        (step.transitions[0].from, step.transitions[0].to),
        (OK, Tripped)
    );
}

#[test]
fn a_forced_clear_of_an_ok_guard_changes_nothing() {
    let mut m = GuardMachine::new(guard(3.0, None, Window::Samples(1)));
    let step = m.step(Input::Force {
        at: at(1),
        to: Forced::Clear,
    });
    assert_eq!(step, Step::default());
}

#[test]
fn advise_mode_has_the_same_transitions_and_acts_on_nothing() {
    let series = every(
        0,
        10,
        &[
            Some(5.0),
            Some(5.0),
            None,
            Some(1.0),
            Some(1.0),
            Some(5.0),
            Some(5.0),
        ],
    );
    let mut g = guard(3.0, None, Window::Samples(2));
    acting(&mut g);
    let mut act = GuardMachine::new(g.clone());
    g.mode = Mode::Advise;
    let mut advise = GuardMachine::new(g);
    let mut advised = 0;
    for &(secs, v) in &series {
        let input = Input::Sample {
            at: at(secs),
            reading: v.map_or(Reading::Unknown("gone".into()), Reading::Value),
        };
        let a = act.step(input.clone());
        let b = advise.step(input);
        assert_eq!(a.transitions, b.transitions, "at {secs}");
        assert!(b.effects.iter().all(|e| !e.acts()), "{b:?}");
        for e in &b.effects {
            let Effect::Advise { would, .. } = e else {
                unreachable!()
            };
            // What it would do is what the acting guard does, less abandoning an action it
            // never started.
            let acted: Vec<Effect> = a
                .effects
                .iter()
                .filter(|e| !matches!(e, Effect::Abandon { .. }))
                .cloned()
                .collect();
            assert_eq!(would, &acted);
            advised += 1;
        }
    }
    assert_eq!(advised, 3, "two trips and a clear were advised");
    assert_eq!(advise.status().action, None);
}

#[test]
fn a_below_guard_trips_under_its_threshold_and_clears_above_its_band() {
    let mut g = guard(12.0, Some(15.0), Window::Samples(1));
    g.direction = Direction::Below;
    let mut m = GuardMachine::new(g);
    let series = every(
        0,
        10,
        &[Some(20.0), Some(11.0), Some(13.0), Some(14.9), Some(15.0)],
    );
    assert_eq!(run(&mut m, &series), [(10, OK, Tripped), (40, Tripped, OK)]);
}

#[test]
fn a_sample_that_is_not_a_number_is_unknown() {
    let mut m = GuardMachine::new(guard(3.0, None, Window::Samples(1)));
    let step = sample(&mut m, 0, f64::NAN);
    assert_eq!(step.transitions[0].to, Unknown);
    assert_eq!(step.transitions[0].reason, Reason::GuardUnknown);
    assert_eq!(m.phase(), Phase::Ok);
}

#[test]
fn a_new_cause_of_unknown_is_noticed_once_without_a_transition() {
    let mut m = GuardMachine::new(guard(3.0, None, Window::Samples(1)));
    unknown(&mut m, 0);
    assert_eq!(unknown(&mut m, 10), Step::default());
    let step = m.step(Input::Sample {
        at: at(20),
        reading: Reading::Unknown("connection refused".into()),
    });
    assert!(step.transitions.is_empty());
    assert_eq!(
        step.notices,
        [Notice::StillUnknown {
            cause: "connection refused".into()
        }]
    );
    // Since when it is unknown does not move.
    assert_eq!(m.status().unknown.unwrap().1, at(0));
}

fn switch(when: When) -> SwitchMachine {
    SwitchMachine::new(Switch {
        name: GuardName::parse("fallback").unwrap(),
        guards: vec![
            GuardName::parse("ttft").unwrap(),
            GuardName::parse("queue").unwrap(),
        ],
        when,
        mode: Mode::Act,
        hold: Vec::new(),
        on_trip: Some(action("/bin/fallback", false, 60)),
        on_clear: Some(action("/bin/restore", false, 60)),
    })
}

/// Feeds member states and returns (index, the switch's state after, whether it acted).
fn members(s: &mut SwitchMachine, series: &[[bool; 2]]) -> Vec<(State, bool)> {
    series
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let step = s.step(SwitchInput::Members {
                at: at(i as u64 * 10),
                tripped: m.to_vec(),
            });
            (
                s.state(),
                step.effects.iter().any(|e| matches!(e, Effect::Run { .. })),
            )
        })
        .collect()
}

#[test]
fn a_switch_of_all_trips_when_every_guard_is_tripped_and_clears_when_none_is() {
    let mut s = switch(When::All);
    let got = members(
        &mut s,
        &[
            [true, false],
            [true, true],
            [false, true],
            [true, true],
            [false, false],
            [false, true],
        ],
    );
    assert_eq!(
        got,
        [
            (OK, false),
            (Tripped, true),
            // One guard clear is not enough to clear the switch.
            (Tripped, false),
            (Tripped, false),
            (OK, true),
            (OK, false),
        ]
    );
}

#[test]
fn a_switch_of_any_trips_on_one_guard_and_clears_when_none_is() {
    let mut s = switch(When::Any);
    let got = members(
        &mut s,
        &[[false, false], [false, true], [true, false], [false, false]],
    );
    assert_eq!(
        got,
        [(OK, false), (Tripped, true), (Tripped, false), (OK, true)]
    );
}

#[test]
fn a_switch_follows_its_guards_state_machines() {
    // Rail A: slow first tokens and a deep queue together. The guards' windows do the
    // waiting; the switch only combines.
    let mut ttft = GuardMachine::new(guard(2.5, Some(1.5), Window::Samples(2)));
    let mut queue = GuardMachine::new(guard(3.0, Some(1.0), Window::Samples(2)));
    let mut s = switch(When::All);
    let series = [
        (2.0, 5.0),
        (3.0, 5.0),
        (3.1, 5.0),
        (3.2, 0.5),
        (3.2, 0.5),
        (1.0, 0.5),
        (1.0, 0.5),
    ];
    let mut states = Vec::new();
    for (i, (t, q)) in series.into_iter().enumerate() {
        let when = i as u64 * 10;
        sample(&mut ttft, when, t);
        sample(&mut queue, when, q);
        s.step(SwitchInput::Members {
            at: at(when),
            tripped: vec![ttft.phase().is_tripped(), queue.phase().is_tripped()],
        });
        states.push(s.state());
    }
    assert_eq!(states, [OK, OK, Tripped, Tripped, Tripped, Tripped, OK]);
}

#[test]
fn a_switch_can_be_forced_and_its_actions_are_time_boxed() {
    let mut s = switch(When::All);
    let step = s.step(SwitchInput::Force {
        at: at(0),
        to: Forced::Trip,
    });
    assert_eq!(step.transitions[0].basis, Basis::Forced);
    assert_eq!(s.state(), Tripped);
    // Its guards clearing do not clear a forced switch.
    s.step(SwitchInput::Members {
        at: at(10),
        tripped: vec![false, false],
    });
    assert_eq!(s.state(), Tripped);
    let step = s.step(SwitchInput::Tick { at: at(61) });
    assert!(matches!(
        step.notices.as_slice(),
        [Notice::ActionTimedOut { .. }]
    ));
    let step = s.step(SwitchInput::Force {
        at: at(70),
        to: Forced::Clear,
    });
    assert_eq!(s.state(), OK);
    assert!(
        step.effects
            .iter()
            .any(|e| matches!(e, Effect::Abandon { .. }))
    );
}

#[test]
fn absurd_time_boxes_saturate_instead_of_panicking() {
    let mut g = guard(3.0, None, Window::Lasting(Duration::MAX));
    g.on_trip = Some(action("/bin/x", true, u64::MAX));
    let mut m = GuardMachine::new(g);
    sample(&mut m, 0, 5.0);
    sample(&mut m, 10, 5.0);
    assert_eq!(m.phase(), Phase::Pending);
    m.step(Input::Force {
        at: at(20),
        to: Forced::Trip,
    });
    let deadline = m.status().action.unwrap().deadline;
    assert!(deadline > at(20) + Duration::from_secs(86_400 * 365));
}

#[test]
fn forcing_an_unknown_guard_keeps_it_shown_unknown() {
    let mut m = GuardMachine::new(guard(3.0, None, Window::Samples(1)));
    unknown(&mut m, 0);
    let step = m.step(Input::Force {
        at: at(5),
        to: Forced::Trip,
    });
    let t = &step.transitions[0];
    assert_eq!((t.from, t.to, t.phase), (Unknown, Unknown, Phase::Tripped));
    assert_eq!(t.reason, Reason::GuardTripped);
    let s = m.status();
    assert_eq!(
        (s.state, s.phase, s.forced),
        (Unknown, Phase::Tripped, true)
    );
    // The next real sample shows the forced state again.
    let step = sample(&mut m, 10, 0.0);
    assert_eq!(
        (step.transitions[0].from, step.transitions[0].to),
        (Unknown, Tripped)
    );
    assert_eq!(step.transitions[0].basis, Basis::Forced);
}

#[test]
fn sampled_numbers_are_put_in_the_threshold_unit() {
    use crate::guard::signal::{Quantity as Sampled, Unit as U};
    use crate::unit::guard::PressureLevel;
    let pct = Quantity::Percent(12.0);
    assert_eq!(
        Reading::from_sampled(&pct, Sampled::new(0.1, U::Ratio)),
        Reading::Value(10.0)
    );
    let lat = Quantity::Latency(Duration::from_millis(2500));
    assert_eq!(
        Reading::from_sampled(&lat, Sampled::new(3.2, U::Seconds)),
        Reading::Value(3.2)
    );
    let lvl = Quantity::Level(PressureLevel::Warn);
    assert_eq!(
        Reading::from_sampled(&lvl, Sampled::new(4.0, U::PressureLevel)),
        Reading::Value(4.0)
    );
    // A Linux PSI ratio for a macOS level threshold, and the other way round: unknown.
    let Reading::Unknown(why) = Reading::from_sampled(&lvl, Sampled::new(0.2, U::Ratio)) else {
        panic!()
    };
    assert_eq!(
        why,
        "this host measures the signal in ratio, which cannot be compared with a pressure level, warn"
    );
    assert!(matches!(
        Reading::from_sampled(&pct, Sampled::new(2.0, U::PressureLevel)),
        Reading::Unknown(_)
    ));
    // A disk-free guard trips on the converted value.
    let mut g = guard(12.0, None, Window::Samples(1));
    g.direction = Direction::Below;
    g.trip = pct;
    g.clear = pct;
    let mut m = GuardMachine::new(g);
    let step = m.step(Input::Sample {
        at: at(0),
        reading: Reading::from_sampled(&pct, Sampled::new(0.1, U::Ratio)),
    });
    assert_eq!(step.transitions[0].to, Tripped);
}
