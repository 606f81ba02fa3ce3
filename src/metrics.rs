//! Metrics: what the supervisor exposes for Prometheus, and the text it is scraped as.
//!
//! This module owns [`Metrics`]: the metric families, the per-unit series in them, the rules
//! that turn the core's transitions, probe reports and preflight findings into samples, and the
//! text exposition ([`Metrics::render`]). It decides nothing and reads no clock: the supervisor,
//! the one task that owns a `Metrics`, calls it with facts it already has, and serves the text.
//! It does not serve HTTP.
//!
//! # Series
//!
//! | name | type | labels | value |
//! |---|---|---|---|
//! | `launchgraph_unit_state` | gauge | `unit`, `state` | 1 for the unit's state, 0 for the eight others |
//! | `launchgraph_unit_restarts_total` | counter | `unit`, `reason` | restarts, by why (below) |
//! | `launchgraph_unit_transitions_total` | counter | `unit`, `to`, `reason` | transitions, by new state and reason code |
//! | `launchgraph_unit_time_to_ready_seconds` | gauge | `unit` | spawn (or launchd's relaunch) to ready, last run |
//! | `launchgraph_time_to_ready_seconds` | histogram | | the same, every run of every unit |
//! | `launchgraph_probe_latency_seconds` | histogram | `unit`, `kind` | latency of passing probes |
//! | `launchgraph_probe_failures_total` | counter | `unit`, `kind` | failed probe attempts |
//! | `launchgraph_preflight_findings` | gauge | `unit`, `code`, `severity` | findings of the unit's latest preflight |
//! | `launchgraph_backoff_seconds` | gauge | `unit` | the current restart delay; 0 when not in backoff |
//! | `launchgraph_units` | gauge | | units supervised |
//! | `launchgraph_up` | gauge | | 1 while the supervisor runs |
//! | `launchgraph_build_info` | gauge | `version` | 1 |
//! | `launchgraph_guard_state` | gauge | `unit`, `guard`, `signal`, `state` | 1 for the guard's current state, 0 for the four others |
//! | `launchgraph_guard_value` | gauge | `unit`, `guard`, `signal` | the guard's latest sample, in its signal's base unit; absent while that sample is unknown |
//! | `launchgraph_guard_trips_total` | counter | `unit`, `guard` | transitions into `tripped` |
//! | `launchgraph_guard_action_runs_total` | counter | `unit`, `guard`, `action`, `result` | runs of the guard's actions, by outcome |
//! | `launchgraph_guard_action_last_result` | gauge | `unit`, `guard`, `action`, `result` | 1 for the outcome of the action's latest run, 0 for the two others; absent before its first run |
//! | `launchgraph_guard_action_seconds` | histogram | `unit`, `guard`, `action` | how long each run took |
//! | `launchgraph_ttft_phase_seconds` | histogram | `unit`, `guard`, `phase` | each phase of every known `ttft` sample |
//! | `launchgraph_host_swap_out_bytes_total` | counter | | bytes written to swap since boot, as the kernel counts them |
//! | `launchgraph_host_memory_pressure_level` | gauge | | macOS: 1 normal, 2 warning, 4 critical |
//! | `launchgraph_host_memory_stall_seconds_total` | counter | `line` | Linux: time with tasks stalled on memory, from PSI |
//! | `launchgraph_host_disk_free_ratio` | gauge | `path` | share of the volume holding `path` an unprivileged writer may use, 0 to 1 |
//! | `launchgraph_host_disk_free_bytes` | gauge | `path` | the same, in bytes |
//!
//! The guard and host series (`launchgraph_guard_*`, `launchgraph_ttft_phase_seconds`,
//! `launchgraph_host_*`) are docs/alerts.md's contract, which says their labels and units;
//! they live in `guards`. A guard's series exist from its load, every state and action
//! counter at 0; the host series from the first sample a guard takes of them.
//!
//! `state` is one of the nine [`StateName`]s, `reason` a code of docs/reason-codes.md, `kind`
//! `ready` or `alive`, `code` and `severity` those of docs/preflight.md. Every state of a unit
//! is listed, so that `sum by (state)` counts units per state and an alert on
//! `launchgraph_unit_state{state="failed"} == 1` has a series to watch before anything fails.
//!
//! # What counts as a restart
//!
//! A restart is a new run of a unit that replaces a run the supervisor did not mean to end for
//! good. It is counted once, when the new run begins, labelled with why the old one ended:
//!
//! | transition | `reason` label |
//! |---|---|
//! | into `starting`, the unit having been in `backoff` since its last run (possibly waiting for a requirement after it) | the failure that caused the backoff: `EXITED`, `KILLED_BY_SIGNAL`, `SPAWN_FAILED`, `READY_TIMEOUT`, `LIVENESS_FAILED` |
//! | into `starting` with `DEPENDENCY_RESTARTING` | `DEPENDENCY_RESTARTING` |
//! | into `starting` with `RESTART_REQUESTED` | `RESTART_REQUESTED` |
//! | into `started` with `RELAUNCHED_BY_LAUNCHD` (launchd starts the new run itself: there is no `starting`) | `RELAUNCHED_BY_LAUNCHD` |
//!
//! Counting when the new run begins, not when the old one fails, means the counter says how
//! often a unit really came back: a failure that ends in `failed` (the start limit) or whose
//! backoff an admin ends (`stopped`, then a fresh `START_REQUESTED` start) is no restart. The
//! first start of a unit is none either. The core's own count ([`Slot::restarts`](crate::engine::core::Slot::restarts), shown in
//! status) is kept by its own rules and may differ from this counter.
//!
//! # Probes
//!
//! A readiness probe is polled until it passes, and every attempt is reported, so
//! `launchgraph_probe_failures_total{kind="ready"}` counts the attempts made while a unit was
//! still coming up; alert on `kind="alive"`. Only passing probes are observed by the latency
//! histogram: the attempts before a service listens are refused in microseconds and would hide
//! the latency of the service itself. A unit's failure counters appear, at 0, with its first
//! probe report, so that the first failure is an increase a `rate()` can see.
//!
//! # Preflight findings
//!
//! [`Metrics::set_preflight`] replaces a unit's findings: a `(code, severity)` that the latest
//! preflight no longer reports is removed, not set to 0. A series that stops being exposed is
//! marked stale by Prometheus at the next scrape, so alerts on it resolve, and the exposition
//! does not keep a zero for every code a unit ever had. The value is the number of findings
//! with that code and severity (two missing paths are two `PLIST_PATH_MISSING`).
//!
//! # Units added and removed
//!
//! [`Metrics::set_units`] takes the units of a (re)loaded configuration: a new unit starts
//! `inactive`, as it does in the core; a unit no longer there has every one of its series
//! removed. Reports about a unit that is not in the current set are ignored, so that a late
//! report about a removed unit cannot bring its series back.
//!
//! # Text format
//!
//! The encoder writes OpenMetrics: counter families are named without `_total` in their
//! `# HELP` and `# TYPE` lines, metrics with a unit have a `# UNIT` line, and the text ends
//! with `# EOF`. [`Metrics::render`] turns that into the Prometheus text format 0.0.4
//! ([`CONTENT_TYPE`]), which every scraper reads: the same samples, with counters'
//! `# HELP` and `# TYPE` lines naming the `_total` series (a 0.0.4 parser looks a sample's type
//! up by the sample's name, and would take counters for untyped) and without the `# UNIT` and
//! `# EOF` lines, which 0.0.4 does not have. A family with no series yet (no restart so
//! far, no preflight finding) is left out altogether, `# HELP` and `# TYPE` included.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

mod guards;

pub use guards::{ActionRun, GuardInfo};

use crate::engine::core::{ProbeKind, StateName, Transition};
use crate::preflight::Finding;
use crate::reason::Reason;

/// The content type of [`Metrics::render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every state, in the order of a unit's life.
pub const STATES: [StateName; 9] = [
    StateName::Inactive,
    StateName::Waiting,
    StateName::Starting,
    StateName::Started,
    StateName::Ready,
    StateName::Stopping,
    StateName::Backoff,
    StateName::Failed,
    StateName::Stopped,
];

/// Where `state` is in [`STATES`]. The match is exhaustive, so a state added to the core fails
/// to compile here until it is listed.
fn state_index(state: StateName) -> usize {
    match state {
        StateName::Inactive => 0,
        StateName::Waiting => 1,
        StateName::Starting => 2,
        StateName::Started => 3,
        StateName::Ready => 4,
        StateName::Stopping => 5,
        StateName::Backoff => 6,
        StateName::Failed => 7,
        StateName::Stopped => 8,
    }
}

/// Time to ready: 1 ms (a unit without a readiness probe, or a fast one) to 120 s (a slow
/// start-timeout).
const TIME_TO_READY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Probe latency: 0.5 ms (a loopback connect) to 10 s (a slow HTTP handler or command).
const PROBE_LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn time_to_ready_histogram() -> Histogram {
    Histogram::new(TIME_TO_READY_BUCKETS)
}

fn probe_latency_histogram() -> Histogram {
    Histogram::new(PROBE_LATENCY_BUCKETS)
}

fn probe_kind(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Ready => "ready",
        ProbeKind::Alive => "alive",
    }
}

/// Seconds, as a float gauge holds them.
type SecondsGauge = Gauge<f64, AtomicU64>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnitLabels {
    unit: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    unit: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestartLabels {
    unit: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    unit: String,
    to: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    unit: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    unit: String,
    code: &'static str,
    severity: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// One unit's series, held as handles: a metric handle shares its value with the series in
/// its family, so a transition or a probe report sets values without building labels or
/// looking the family up. The open-ended ones (restart reasons, transitions, probes) are
/// created at their first use, as `get_or_create` would; all are known here, so that they
/// can be removed with the unit. Also the restart a failure left pending.
#[derive(Debug)]
struct UnitSeries {
    /// Set on entering `backoff`, to the failure's reason: the next start is a restart for
    /// that reason, even when the unit waited for a requirement in between.
    pending_restart: Option<Reason>,
    /// `launchgraph_unit_state`, one per state of [`STATES`].
    states: [Gauge; StateName::COUNT],
    /// Where in [`STATES`] the unit is: the one gauge at 1.
    state: usize,
    backoff: SecondsGauge,
    time_to_ready: Option<SecondsGauge>,
    restarts: BTreeMap<&'static str, Counter>,
    transitions: BTreeMap<(&'static str, &'static str), Counter>,
    /// Per probe kind (ready, alive): the failure counter, and the latency histogram once a
    /// probe passed.
    probes: [Option<(Counter, Option<Histogram>)>; 2],
    findings: BTreeSet<(&'static str, &'static str)>,
}

/// The supervisor's metrics. One task owns it; [`Metrics::render`] gives the text to serve.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    units: BTreeMap<String, UnitSeries>,
    unit_state: Family<StateLabels, Gauge>,
    restarts: Family<RestartLabels, Counter>,
    transitions: Family<TransitionLabels, Counter>,
    unit_time_to_ready: Family<UnitLabels, SecondsGauge>,
    time_to_ready: Histogram,
    probe_latency: Family<ProbeLabels, Histogram>,
    probe_failures: Family<ProbeLabels, Counter>,
    findings: Family<FindingLabels, Gauge>,
    backoff: Family<UnitLabels, SecondsGauge>,
    unit_count: Gauge,
    guards: guards::GuardFamilies,
}

impl Metrics {
    /// Metrics for these units, each `inactive`; the supervisor is up.
    pub fn new<I>(unit_names: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut registry = Registry::with_prefix("launchgraph");
        let unit_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "unit_state",
            "1 for the unit's current state, 0 for every other state",
            unit_state.clone(),
        );
        let restarts = Family::<RestartLabels, Counter>::default();
        registry.register(
            "unit_restarts",
            "Restarts of the unit, by why its previous run ended (a reason code)",
            restarts.clone(),
        );
        let transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "unit_transitions",
            "State transitions of the unit, by new state and reason code",
            transitions.clone(),
        );
        let unit_time_to_ready = Family::<UnitLabels, SecondsGauge>::default();
        registry.register_with_unit(
            "unit_time_to_ready",
            "From spawn (or launchd's relaunch) to ready, in the unit's last run that got ready",
            Unit::Seconds,
            unit_time_to_ready.clone(),
        );
        let time_to_ready = time_to_ready_histogram();
        registry.register_with_unit(
            "time_to_ready",
            "From spawn (or launchd's relaunch) to ready, every run of every unit",
            Unit::Seconds,
            time_to_ready.clone(),
        );
        let probe_latency = Family::<ProbeLabels, Histogram>::new_with_constructor(
            probe_latency_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "probe_latency",
            "Latency of the unit's passing probes",
            Unit::Seconds,
            probe_latency.clone(),
        );
        let probe_failures = Family::<ProbeLabels, Counter>::default();
        registry.register(
            "probe_failures",
            "Failed probe attempts of the unit (readiness polls before it is up included)",
            probe_failures.clone(),
        );
        let findings = Family::<FindingLabels, Gauge>::default();
        registry.register(
            "preflight_findings",
            "Findings of the unit's latest preflight, by code and severity",
            findings.clone(),
        );
        let backoff = Family::<UnitLabels, SecondsGauge>::default();
        registry.register_with_unit(
            "backoff",
            "The unit's current restart delay; 0 when it is not in backoff",
            Unit::Seconds,
            backoff.clone(),
        );
        let unit_count = Gauge::default();
        registry.register("units", "Units supervised", unit_count.clone());
        let up = Gauge::<i64>::default();
        up.set(1);
        registry.register("up", "1 while the supervisor runs", up);
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "The version of launchgraph that runs, as a label; the value is 1",
            build_info,
        );
        let guards = guards::GuardFamilies::register(&mut registry);
        let mut metrics = Self {
            guards,
            registry,
            units: BTreeMap::new(),
            unit_state,
            restarts,
            transitions,
            unit_time_to_ready,
            time_to_ready,
            probe_latency,
            probe_failures,
            findings,
            backoff,
            unit_count,
        };
        metrics.set_units(unit_names);
        metrics
    }

    /// The units of a (re)loaded configuration: new ones start `inactive`; the series of units
    /// no longer there are removed; the others keep theirs.
    pub fn set_units<I>(&mut self, unit_names: I)
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let wanted: BTreeSet<String> = unit_names
            .into_iter()
            .map(|n| n.as_ref().to_owned())
            .collect();
        let gone: Vec<String> = self
            .units
            .keys()
            .filter(|n| !wanted.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.remove_unit(&name);
        }
        for name in wanted {
            if !self.units.contains_key(&name) {
                let states = STATES.map(|s| {
                    self.unit_state
                        .get_or_create(&StateLabels {
                            unit: name.clone(),
                            state: s.as_str(),
                        })
                        .clone()
                });
                let state = state_index(StateName::Inactive);
                states[state].set(1);
                let backoff = self
                    .backoff
                    .get_or_create(&UnitLabels { unit: name.clone() })
                    .clone();
                backoff.set(0.0);
                let series = UnitSeries {
                    pending_restart: None,
                    states,
                    state,
                    backoff,
                    time_to_ready: None,
                    restarts: BTreeMap::new(),
                    transitions: BTreeMap::new(),
                    probes: [None, None],
                    findings: BTreeSet::new(),
                };
                self.units.insert(name, series);
            }
        }
        self.unit_count
            .set(i64::try_from(self.units.len()).unwrap_or(i64::MAX));
    }

    /// Records one state change of `unit`: its state, the transition and restart counters,
    /// the backoff delay and, into `ready`, the time to ready, all read from the typed
    /// transition.
    pub fn on_transition(&mut self, unit: &str, t: &Transition) {
        let (to, reason) = (t.to, t.reason);
        let Some(series) = self.units.get_mut(unit) else {
            return;
        };
        let restart = match to {
            StateName::Backoff => {
                series.pending_restart = Some(reason);
                None
            }
            StateName::Starting => series.pending_restart.take().or(matches!(
                reason,
                Reason::DependencyRestarting | Reason::RestartRequested
            )
            .then_some(reason)),
            StateName::Started if reason == Reason::RelaunchedByLaunchd => Some(reason),
            // Given up on, or taken down: whatever start comes next is a fresh one.
            StateName::Failed | StateName::Stopped | StateName::Inactive => {
                series.pending_restart = None;
                None
            }
            _ => None,
        };
        if let Some(why) = restart {
            let restarts = &self.restarts;
            series
                .restarts
                .entry(why.code())
                .or_insert_with(|| {
                    restarts
                        .get_or_create(&RestartLabels {
                            unit: unit.to_owned(),
                            reason: why.code(),
                        })
                        .clone()
                })
                .inc();
        }
        let transitions = &self.transitions;
        series
            .transitions
            .entry((to.as_str(), reason.code()))
            .or_insert_with(|| {
                transitions
                    .get_or_create(&TransitionLabels {
                        unit: unit.to_owned(),
                        to: to.as_str(),
                        reason: reason.code(),
                    })
                    .clone()
            })
            .inc();
        let state = state_index(to);
        if state != series.state {
            series.states[series.state].set(0);
            series.states[state].set(1);
            series.state = state;
        }
        let delay = match to {
            StateName::Backoff => t.delay.unwrap_or_default(),
            _ => Duration::ZERO,
        };
        series.backoff.set(delay.as_secs_f64());
        if to == StateName::Ready
            && let Some(d) = t.time_to_ready
        {
            let unit_time_to_ready = &self.unit_time_to_ready;
            series
                .time_to_ready
                .get_or_insert_with(|| {
                    unit_time_to_ready
                        .get_or_create(&UnitLabels {
                            unit: unit.to_owned(),
                        })
                        .clone()
                })
                .set(d.as_secs_f64());
            self.time_to_ready.observe(d.as_secs_f64());
        }
    }

    /// Records one probe attempt of `unit`.
    pub fn on_probe(&mut self, unit: &str, kind: ProbeKind, ok: bool, latency: Duration) {
        let Some(series) = self.units.get_mut(unit) else {
            return;
        };
        let labels = || ProbeLabels {
            unit: unit.to_owned(),
            kind: probe_kind(kind),
        };
        let probe_failures = &self.probe_failures;
        let slot = match kind {
            ProbeKind::Ready => 0,
            ProbeKind::Alive => 1,
        };
        let (failures, histogram) = series.probes[slot]
            .get_or_insert_with(|| (probe_failures.get_or_create(&labels()).clone(), None));
        if ok {
            let probe_latency = &self.probe_latency;
            histogram
                .get_or_insert_with(|| probe_latency.get_or_create(&labels()).clone())
                .observe(latency.as_secs_f64());
        } else {
            failures.inc();
        }
    }

    /// Replaces `unit`'s findings with those of its latest preflight.
    pub fn set_preflight(&mut self, unit: &str, findings: &[Finding]) {
        let Some(series) = self.units.get_mut(unit) else {
            return;
        };
        let mut counts: BTreeMap<(&'static str, &'static str), i64> = BTreeMap::new();
        for f in findings {
            *counts
                .entry((f.code.code(), f.severity.as_str()))
                .or_default() += 1;
        }
        let labels = |(code, severity): (&'static str, &'static str)| FindingLabels {
            unit: unit.to_owned(),
            code,
            severity,
        };
        for &key in series.findings.iter().filter(|k| !counts.contains_key(*k)) {
            self.findings.remove(&labels(key));
        }
        for (&key, &n) in &counts {
            self.findings.get_or_create(&labels(key)).set(n);
        }
        series.findings = counts.into_keys().collect();
    }

    /// The guards of a (re)loaded configuration ([`GuardInfo`]).
    pub fn set_guards(&mut self, guards: Vec<GuardInfo>) {
        self.guards.set_guards(guards);
    }

    /// A guard's state and latest value, in its signal's base unit (`None` while unknown).
    pub fn set_guard(
        &mut self,
        unit: &str,
        guard: &str,
        state: crate::guard::machine::State,
        value: Option<f64>,
    ) {
        self.guards.set_guard(unit, guard, state, value);
    }

    /// A guard's transition into tripped.
    pub fn on_guard_trip(&mut self, unit: &str, guard: &str) {
        self.guards.on_trip(unit, guard);
    }

    /// One run of a guard's action.
    pub fn on_guard_action(&mut self, unit: &str, guard: &str, run: ActionRun) {
        self.guards.on_action(unit, guard, run);
    }

    /// The phases of a known ttft sample.
    pub fn on_ttft(
        &mut self,
        unit: &str,
        guard: &str,
        r: &crate::guard::signal::ttft::TtftReading,
    ) {
        self.guards.on_ttft(unit, guard, r);
    }

    /// Host figures a guard's sample read.
    pub fn on_host(&mut self, h: &crate::guard::bind::HostFacts) {
        self.guards.on_host(&mut self.registry, h);
    }

    /// The Prometheus text format 0.0.4, served as [`CONTENT_TYPE`].
    pub fn render(&self) -> String {
        openmetrics_to_prometheus(&self.render_openmetrics())
    }

    /// The OpenMetrics text, as the encoder writes it.
    fn render_openmetrics(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; an error would come from a metric the encoder
        // refuses (a native-only histogram), which this module does not create.
        encode(&mut text, &self.registry).expect("every metric here encodes as text");
        text
    }

    fn remove_unit(&mut self, unit: &str) {
        let Some(series) = self.units.remove(unit) else {
            return;
        };
        let unit = unit.to_owned();
        for s in STATES {
            self.unit_state.remove(&StateLabels {
                unit: unit.clone(),
                state: s.as_str(),
            });
        }
        for reason in series.restarts.into_keys() {
            self.restarts.remove(&RestartLabels {
                unit: unit.clone(),
                reason,
            });
        }
        for (to, reason) in series.transitions.into_keys() {
            self.transitions.remove(&TransitionLabels {
                unit: unit.clone(),
                to,
                reason,
            });
        }
        for kind in [ProbeKind::Ready, ProbeKind::Alive] {
            let labels = ProbeLabels {
                unit: unit.clone(),
                kind: probe_kind(kind),
            };
            self.probe_latency.remove(&labels);
            self.probe_failures.remove(&labels);
        }
        for (code, severity) in series.findings {
            self.findings.remove(&FindingLabels {
                unit: unit.clone(),
                code,
                severity,
            });
        }
        let labels = UnitLabels { unit };
        self.unit_time_to_ready.remove(&labels);
        self.backoff.remove(&labels);
    }
}

/// Rewrites the encoder's OpenMetrics text as Prometheus text 0.0.4: counters' `# HELP` and
/// `# TYPE` lines name the `_total` series, and the `# UNIT` and `# EOF` lines go. Samples are
/// left as they are: the encoder writes them the same way in both formats.
fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match descriptor.and_then(|(p, rest)| Some((p, rest.split_once(' ')?))) {
            Some((p, (name, tail))) if counters.contains(name) => {
                let _ = writeln!(out, "{p}{name}_total {tail}");
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::{FindingCode, Severity};

    use prometheus_parse::{Sample, Scrape, Value};

    fn scrape(m: &Metrics) -> Vec<Sample> {
        Scrape::parse(m.render().lines().map(|l| Ok(l.to_owned())))
            .expect("the text parses")
            .samples
    }

    /// The value of the one sample named `name` whose labels are exactly `labels`.
    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<Value> {
        let found: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                s.metric == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} appears twice");
        found.first().map(|s| s.value.clone())
    }

    /// A transition of unit 0 into `to` for `reason`, with no facts.
    fn tr(to: StateName, reason: Reason) -> Transition {
        Transition::new(0, StateName::Inactive, to, reason, 1)
    }

    fn restarts(m: &Metrics, unit: &str, reason: Reason) -> Option<Value> {
        value(
            &scrape(m),
            "launchgraph_unit_restarts_total",
            &[("unit", unit), ("reason", reason.code())],
        )
    }

    #[test]
    fn states_are_listed_once_each_in_order() {
        for (i, s) in STATES.iter().enumerate() {
            assert_eq!(state_index(*s), i, "{s}");
        }
    }

    #[test]
    fn openmetrics_becomes_prometheus_text() {
        let open = "# HELP a_seconds A.\n# TYPE a_seconds gauge\n# UNIT a_seconds seconds\n\
                    a_seconds 1.5\n# HELP c C.\n# TYPE c counter\nc_total{x=\"y\"} 3\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus(open),
            "# HELP a_seconds A.\n# TYPE a_seconds gauge\na_seconds 1.5\n\
             # HELP c_total C.\n# TYPE c_total counter\nc_total{x=\"y\"} 3\n"
        );
    }

    /// Table-driven: each sequence of transitions (new state, reason) and the restarts it
    /// counts, by reason.
    #[test]
    fn restart_rules() {
        use Reason as R;
        use StateName as S;
        struct Case {
            name: &'static str,
            steps: &'static [(S, R)],
            restarts: &'static [(R, f64)],
        }
        let cases = [
            Case {
                name: "first start",
                steps: &[
                    (S::Starting, R::StartRequested),
                    (S::Started, R::Spawned),
                    (S::Ready, R::Ready),
                ],
                restarts: &[],
            },
            Case {
                name: "crash, backoff, start",
                steps: &[
                    (S::Backoff, R::Exited),
                    (S::Starting, R::Exited),
                    (S::Started, R::Spawned),
                ],
                restarts: &[(R::Exited, 1.0)],
            },
            Case {
                name: "backoff, then a requirement is down: counted when it starts",
                steps: &[
                    (S::Backoff, R::KilledBySignal),
                    (S::Waiting, R::WaitingForDependency),
                    (S::Starting, R::StartRequested),
                ],
                restarts: &[(R::KilledBySignal, 1.0), (R::StartRequested, 0.0)],
            },
            Case {
                name: "backoff into the start limit: no restart",
                steps: &[
                    (S::Backoff, R::Exited),
                    (S::Failed, R::StartLimitReached),
                    (S::Stopped, R::StartRequested),
                    (S::Starting, R::StartRequested),
                ],
                restarts: &[(R::Exited, 0.0)],
            },
            Case {
                name: "backoff ended by an admin's start: a fresh start",
                steps: &[
                    (S::Backoff, R::SpawnFailed),
                    (S::Stopped, R::StartRequested),
                    (S::Starting, R::StartRequested),
                ],
                restarts: &[(R::SpawnFailed, 0.0)],
            },
            Case {
                name: "timeout: stopping does not count, the start after backoff does",
                steps: &[
                    (S::Stopping, R::ReadyTimeout),
                    (S::Backoff, R::ReadyTimeout),
                    (S::Starting, R::ReadyTimeout),
                ],
                restarts: &[(R::ReadyTimeout, 1.0)],
            },
            Case {
                name: "a requirement restarts",
                steps: &[
                    (S::Stopping, R::DependencyRestarting),
                    (S::Waiting, R::DependencyRestarting),
                    (S::Starting, R::DependencyRestarting),
                ],
                restarts: &[(R::DependencyRestarting, 1.0)],
            },
            Case {
                name: "an admin restarts",
                steps: &[
                    (S::Stopping, R::RestartRequested),
                    (S::Stopped, R::RestartRequested),
                    (S::Starting, R::RestartRequested),
                ],
                restarts: &[(R::RestartRequested, 1.0)],
            },
            Case {
                name: "launchd relaunches, twice",
                steps: &[
                    (S::Started, R::RelaunchedByLaunchd),
                    (S::Ready, R::Ready),
                    (S::Started, R::RelaunchedByLaunchd),
                ],
                restarts: &[(R::RelaunchedByLaunchd, 2.0)],
            },
        ];
        for Case {
            name,
            steps,
            restarts: expected,
        } in cases
        {
            let mut m = Metrics::new(["u"]);
            for &(to, reason) in steps {
                m.on_transition("u", &tr(to, reason));
            }
            for &(reason, n) in expected {
                let got = restarts(&m, "u", reason);
                let want = (n > 0.0).then_some(Value::Counter(n));
                assert_eq!(got, want, "{name}: {reason}");
            }
            let total: f64 = scrape(&m)
                .iter()
                .filter(|s| s.metric == "launchgraph_unit_restarts_total")
                .map(|s| match s.value {
                    Value::Counter(v) => v,
                    _ => panic!("a counter"),
                })
                .sum();
            let want: f64 = expected.iter().map(|(_, n)| n).sum();
            assert_eq!(total, want, "{name}: total");
        }
    }

    #[test]
    fn backoff_gauge_follows_the_state() {
        let mut m = Metrics::new(["u"]);
        let gauge =
            |m: &Metrics| value(&scrape(m), "launchgraph_backoff_seconds", &[("unit", "u")]);
        assert_eq!(gauge(&m), Some(Value::Gauge(0.0)));
        let backoff = Transition {
            delay: Some(Duration::from_millis(1500)),
            ..tr(StateName::Backoff, Reason::Exited)
        };
        m.on_transition("u", &backoff);
        assert_eq!(gauge(&m), Some(Value::Gauge(1.5)));
        m.on_transition("u", &tr(StateName::Starting, Reason::Exited));
        assert_eq!(gauge(&m), Some(Value::Gauge(0.0)));
    }

    #[test]
    fn reports_about_unknown_units_are_ignored() {
        let mut m = Metrics::new(["u"]);
        m.on_transition("x", &tr(StateName::Ready, Reason::Ready));
        m.on_probe("x", ProbeKind::Alive, false, Duration::from_millis(1));
        m.set_preflight(
            "x",
            &[Finding::new(FindingCode::PlistUnreadable, None, "m", "f")],
        );
        assert!(
            scrape(&m)
                .iter()
                .all(|s| s.labels.get("unit").is_none_or(|u| u == "u")),
            "{}",
            m.render()
        );
    }

    #[test]
    fn findings_are_replaced_and_counted() {
        let mut m = Metrics::new(["u"]);
        let missing = Finding::new(FindingCode::PlistPathMissing, None, "m", "f");
        let cellar = Finding::new(FindingCode::CellarVersionedPath, None, "m", "f");
        m.set_preflight("u", &[missing.clone(), missing.clone(), cellar.clone()]);
        let finding = |m: &Metrics, code: FindingCode, severity: Severity| {
            value(
                &scrape(m),
                "launchgraph_preflight_findings",
                &[
                    ("unit", "u"),
                    ("code", code.code()),
                    ("severity", severity.as_str()),
                ],
            )
        };
        assert_eq!(
            finding(&m, FindingCode::PlistPathMissing, Severity::Error),
            Some(Value::Gauge(2.0))
        );
        // The same code at another severity is another series; the old one goes.
        m.set_preflight("u", &[cellar.with_severity(Severity::Error)]);
        assert_eq!(
            finding(&m, FindingCode::PlistPathMissing, Severity::Error),
            None
        );
        assert_eq!(
            finding(&m, FindingCode::CellarVersionedPath, Severity::Warning),
            None
        );
        assert_eq!(
            finding(&m, FindingCode::CellarVersionedPath, Severity::Error),
            Some(Value::Gauge(1.0))
        );
        m.set_preflight("u", &[]);
        assert!(
            scrape(&m)
                .iter()
                .all(|s| s.metric != "launchgraph_preflight_findings")
        );
    }

    #[test]
    fn time_to_ready_is_read_from_the_transition() {
        let mut m = Metrics::new(["u"]);
        let ready = Transition {
            time_to_ready: Some(Duration::from_millis(250)),
            ..tr(StateName::Ready, Reason::Ready)
        };
        m.on_transition("u", &ready);
        assert_eq!(
            value(
                &scrape(&m),
                "launchgraph_unit_time_to_ready_seconds",
                &[("unit", "u")]
            ),
            Some(Value::Gauge(0.25))
        );
    }

    #[test]
    fn metrics_can_move_into_the_supervisor_task() {
        fn send<T: Send + 'static>() {}
        send::<Metrics>();
    }
}
