//! The guard and host series of [`Metrics`](super::Metrics): the families, and the rules that
//! turn a guard's state, value, events and samples into samples. Names, labels and values are
//! those of the table in `src/metrics.rs` (the contract docs/alerts.md wrote them against).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::guard::bind::HostFacts;
use crate::guard::machine::State;
use crate::guard::signal::ttft::TtftReading;

type FloatGauge = Gauge<f64, AtomicU64>;
type SecondsCounter = Counter<f64, AtomicU64>;

/// The five states a guard shows, each with a series.
const GUARD_STATES: [State; 5] = [
    State::Ok,
    State::Pending,
    State::Tripped,
    State::Clearing,
    State::Unknown,
];

/// Action run time: 0.1 s to 5 min (the contract's buckets).
const ACTION_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// TTFT phases: 5 ms to 30 s; 2.5 s must stay a bound (LaunchgraphTtftHigh compares the
/// median with it).
pub(crate) const TTFT_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 10.0, 30.0,
];

const RESULTS: [&str; 3] = ["ok", "failed", "timeout"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    unit: String,
    guard: String,
    signal: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ValueLabels {
    unit: String,
    guard: String,
    signal: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuardLabels {
    unit: String,
    guard: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    unit: String,
    guard: String,
    action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    unit: String,
    guard: String,
    action: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    unit: String,
    guard: String,
    phase: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LineLabels {
    line: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: String,
}

/// One guard as the metrics know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardInfo {
    pub unit: String,
    pub guard: String,
    pub signal: &'static str,
    /// The actions it has: `trip`, `clear`, `verify`.
    pub actions: Vec<&'static str>,
}

/// One run of an action, for the counters and the histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActionRun {
    /// `trip`, `clear` or `verify`.
    pub action: &'static str,
    /// `ok`, `failed` or `timeout`.
    pub result: &'static str,
    pub took: Duration,
}

#[derive(Debug)]
pub(super) struct GuardFamilies {
    state: Family<StateLabels, Gauge>,
    value: Family<ValueLabels, FloatGauge>,
    trips: Family<GuardLabels, Counter>,
    runs: Family<ResultLabels, Counter>,
    last: Family<ResultLabels, Gauge>,
    seconds: Family<ActionLabels, Histogram>,
    ttft: Family<PhaseLabels, Histogram>,
    /// Host series without labels, registered at the first sample a guard takes of them.
    swap_out: Option<Counter>,
    swap_seen: Option<u64>,
    pressure: Option<Gauge>,
    stall: Family<LineLabels, SecondsCounter>,
    /// The kernel's last total of each line, in microseconds.
    stall_seen: BTreeMap<&'static str, u64>,
    disk_ratio: Family<PathLabels, FloatGauge>,
    disk_bytes: Family<PathLabels, Gauge>,
    guards: BTreeMap<(String, String), GuardInfo>,
}

impl GuardFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let f = Self {
            state: Family::default(),
            value: Family::default(),
            trips: Family::default(),
            runs: Family::default(),
            last: Family::default(),
            seconds: Family::new_with_constructor(|| Histogram::new(ACTION_BUCKETS)),
            ttft: Family::new_with_constructor(|| Histogram::new(TTFT_BUCKETS)),
            swap_out: None,
            swap_seen: None,
            pressure: None,
            stall: Family::default(),
            stall_seen: BTreeMap::new(),
            disk_ratio: Family::default(),
            disk_bytes: Family::default(),
            guards: BTreeMap::new(),
        };
        registry.register(
            "guard_state",
            "1 for the guard's current state, 0 for the four others",
            f.state.clone(),
        );
        registry.register(
            "guard_value",
            "The guard's latest sample in its signal's base unit; absent while unknown",
            f.value.clone(),
        );
        registry.register(
            "guard_trips",
            "Transitions of the guard into tripped",
            f.trips.clone(),
        );
        registry.register(
            "guard_action_runs",
            "Runs of the guard's actions, by action and outcome",
            f.runs.clone(),
        );
        registry.register(
            "guard_action_last_result",
            "1 for the outcome of the action's latest run, 0 for the two others",
            f.last.clone(),
        );
        registry.register_with_unit(
            "guard_action",
            "How long each run of a guard's action took",
            Unit::Seconds,
            f.seconds.clone(),
        );
        registry.register_with_unit(
            "ttft_phase",
            "Each phase of every known ttft sample",
            Unit::Seconds,
            f.ttft.clone(),
        );
        registry.register_with_unit(
            "host_memory_stall",
            "Linux: time with tasks stalled on memory, from PSI (while a guard samples it)",
            Unit::Seconds,
            f.stall.clone(),
        );
        registry.register(
            "host_disk_free_ratio",
            "Share of the volume holding path an unprivileged writer may use, 0 to 1",
            f.disk_ratio.clone(),
        );
        registry.register(
            "host_disk_free_bytes",
            "Bytes of the volume holding path an unprivileged writer may use",
            f.disk_bytes.clone(),
        );
        f
    }

    /// The guards of a (re)loaded configuration: new ones start `ok` with their action
    /// counters at 0; the series of guards no longer there are removed.
    pub(super) fn set_guards(&mut self, guards: Vec<GuardInfo>) {
        let wanted: BTreeMap<(String, String), GuardInfo> = guards
            .into_iter()
            .map(|g| ((g.unit.clone(), g.guard.clone()), g))
            .collect();
        let gone: Vec<GuardInfo> = self
            .guards
            .iter()
            .filter(|(k, g)| wanted.get(*k) != Some(*g))
            .map(|(_, g)| g.clone())
            .collect();
        for g in gone {
            self.remove(&g);
        }
        for (k, g) in wanted {
            if self.guards.contains_key(&k) {
                continue;
            }
            for s in GUARD_STATES {
                self.state
                    .get_or_create(&state_labels(&g, s))
                    .set(i64::from(s == State::Ok));
            }
            let _ = self.trips.get_or_create(&guard_labels(&g));
            for &action in &g.actions {
                for result in RESULTS {
                    let _ = self.runs.get_or_create(&ResultLabels {
                        unit: g.unit.clone(),
                        guard: g.guard.clone(),
                        action,
                        result,
                    });
                }
            }
            self.guards.insert(k, g);
        }
    }

    fn remove(&mut self, g: &GuardInfo) {
        for s in GUARD_STATES {
            self.state.remove(&state_labels(g, s));
        }
        self.value.remove(&value_labels(g));
        self.trips.remove(&guard_labels(g));
        for action in ["trip", "clear", "verify"] {
            for result in RESULTS {
                let l = ResultLabels {
                    unit: g.unit.clone(),
                    guard: g.guard.clone(),
                    action,
                    result,
                };
                self.runs.remove(&l);
                self.last.remove(&l);
            }
            self.seconds.remove(&ActionLabels {
                unit: g.unit.clone(),
                guard: g.guard.clone(),
                action,
            });
        }
        for phase in PHASES {
            self.ttft.remove(&PhaseLabels {
                unit: g.unit.clone(),
                guard: g.guard.clone(),
                phase,
            });
        }
        self.guards.remove(&(g.unit.clone(), g.guard.clone()));
    }

    /// The guard's state and latest value (in its signal's base unit; `None` while unknown).
    pub(super) fn set_guard(&mut self, unit: &str, guard: &str, state: State, value: Option<f64>) {
        let Some(g) = self.guards.get(&(unit.to_owned(), guard.to_owned())) else {
            return;
        };
        for s in GUARD_STATES {
            self.state
                .get_or_create(&state_labels(g, s))
                .set(i64::from(s == state));
        }
        match value.filter(|_| state != State::Unknown) {
            Some(v) => {
                self.value.get_or_create(&value_labels(g)).set(v);
            }
            None => {
                self.value.remove(&value_labels(g));
            }
        }
    }

    /// A transition into tripped.
    pub(super) fn on_trip(&mut self, unit: &str, guard: &str) {
        if let Some(g) = self.guards.get(&(unit.to_owned(), guard.to_owned())) {
            self.trips.get_or_create(&guard_labels(g)).inc();
        }
    }

    /// One run of an action.
    pub(super) fn on_action(&mut self, unit: &str, guard: &str, run: ActionRun) {
        if !self
            .guards
            .contains_key(&(unit.to_owned(), guard.to_owned()))
        {
            return;
        }
        let labels = |result| ResultLabels {
            unit: unit.to_owned(),
            guard: guard.to_owned(),
            action: run.action,
            result,
        };
        self.runs.get_or_create(&labels(run.result)).inc();
        for result in RESULTS {
            self.last
                .get_or_create(&labels(result))
                .set(i64::from(result == run.result));
        }
        self.seconds
            .get_or_create(&ActionLabels {
                unit: unit.to_owned(),
                guard: guard.to_owned(),
                action: run.action,
            })
            .observe(run.took.as_secs_f64());
    }

    /// The phases of one known ttft sample.
    pub(super) fn on_ttft(&mut self, unit: &str, guard: &str, r: &TtftReading) {
        let p = &r.phases;
        if !self
            .guards
            .contains_key(&(unit.to_owned(), guard.to_owned()))
        {
            return;
        }
        let observe = |phase, d: Duration| {
            self.ttft
                .get_or_create(&PhaseLabels {
                    unit: unit.to_owned(),
                    guard: guard.to_owned(),
                    phase,
                })
                .observe(d.as_secs_f64());
        };
        observe("connect", p.connect);
        observe("request", p.request);
        if let Some(d) = p.headers {
            observe("headers", d);
        }
        // A sample past its deadline observes the deadline as its first token.
        observe("first_token", p.first_token.unwrap_or(r.deadline));
        if let Some(d) = p.total {
            observe("total", d);
        }
        if let Some(s) = &r.server {
            observe("load", s.load);
            observe("prompt_eval", s.prompt_eval);
            observe("eval", s.eval);
            observe("queue_wait", s.queue_wait);
        }
    }

    /// Host figures a guard's sample read.
    pub(super) fn on_host(&mut self, registry: &mut Registry, h: &HostFacts) {
        match h {
            HostFacts::SwapOut { total_bytes } => {
                // The counter follows the kernel's: its first value is the kernel's count
                // since boot; a count that went back (a reboot cannot happen under a running
                // daemon, but a wrapped counter can) leaves it where it is.
                let seen = self.swap_seen.unwrap_or(0);
                let c = self.swap_out.get_or_insert_with(|| {
                    let c = Counter::default();
                    registry.register(
                        "host_swap_out_bytes",
                        "Bytes written to swap since boot, as the kernel counts them",
                        c.clone(),
                    );
                    c
                });
                if *total_bytes > seen {
                    c.inc_by(total_bytes - seen);
                }
                self.swap_seen = Some(seen.max(*total_bytes));
            }
            HostFacts::DiskFree {
                path,
                ratio,
                available_bytes,
            } => {
                let labels = PathLabels {
                    path: path.display().to_string(),
                };
                self.disk_ratio.get_or_create(&labels).set(*ratio);
                self.disk_bytes
                    .get_or_create(&labels)
                    .set(i64::try_from(*available_bytes).unwrap_or(i64::MAX));
            }
            HostFacts::DiskFreeUnknown { path } => {
                let labels = PathLabels {
                    path: path.display().to_string(),
                };
                self.disk_ratio.remove(&labels);
                self.disk_bytes.remove(&labels);
            }
            HostFacts::MemoryStall { line, total_us } => {
                // As for swap: the first value is the kernel's since boot.
                let seen = self.stall_seen.get(line).copied().unwrap_or(0);
                let c = self.stall.get_or_create(&LineLabels { line });
                if *total_us > seen {
                    c.inc_by((total_us - seen) as f64 / 1e6);
                }
                self.stall_seen.insert(line, seen.max(*total_us));
            }
            HostFacts::PressureLevel(l) => {
                self.pressure
                    .get_or_insert_with(|| {
                        let g = Gauge::default();
                        registry.register(
                            "host_memory_pressure_level",
                            "macOS memory pressure: 1 normal, 2 warning, 4 critical",
                            g.clone(),
                        );
                        g
                    })
                    .set(i64::from(*l));
            }
        }
    }
}

const PHASES: [&str; 9] = [
    "connect",
    "request",
    "headers",
    "first_token",
    "total",
    "load",
    "prompt_eval",
    "eval",
    "queue_wait",
];

fn state_labels(g: &GuardInfo, s: State) -> StateLabels {
    StateLabels {
        unit: g.unit.clone(),
        guard: g.guard.clone(),
        signal: g.signal.to_owned(),
        state: s.as_str(),
    }
}

fn value_labels(g: &GuardInfo) -> ValueLabels {
    ValueLabels {
        unit: g.unit.clone(),
        guard: g.guard.clone(),
        signal: g.signal.to_owned(),
    }
}

fn guard_labels(g: &GuardInfo) -> GuardLabels {
    GuardLabels {
        unit: g.unit.clone(),
        guard: g.guard.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::guard::signal::ttft::{Idleness, Phases, ServerSplit};
    use crate::metrics::Metrics;

    fn info() -> GuardInfo {
        GuardInfo {
            unit: "ollama".into(),
            guard: "ttft".into(),
            signal: "ttft",
            actions: vec!["trip"],
        }
    }

    #[test]
    fn a_guard_has_every_state_and_its_action_counters_from_its_load() {
        let mut m = Metrics::new(["ollama"]);
        m.set_guards(vec![info()]);
        let text = m.render();
        for line in [
            r#"launchgraph_guard_state{unit="ollama",guard="ttft",signal="ttft",state="ok"} 1"#,
            r#"launchgraph_guard_state{unit="ollama",guard="ttft",signal="ttft",state="unknown"} 0"#,
            r#"launchgraph_guard_action_runs_total{unit="ollama",guard="ttft",action="trip",result="failed"} 0"#,
            r#"launchgraph_guard_trips_total{unit="ollama",guard="ttft"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        assert!(!text.contains("launchgraph_guard_value{"), "{text}");
        assert!(
            !text.contains("launchgraph_host_"),
            "no host series before a sample: {text}"
        );
        // Removed with its guard.
        m.set_guards(Vec::new());
        assert!(!m.render().contains("guard=\"ttft\""));
    }

    #[test]
    fn ttft_phases_have_2_5_seconds_as_a_bound_and_the_server_split() {
        let mut m = Metrics::new(["ollama"]);
        m.set_guards(vec![info()]);
        let ms = Duration::from_millis;
        m.on_ttft(
            "ollama",
            "ttft",
            &TtftReading {
                phases: Phases {
                    connect: ms(1),
                    request: ms(1),
                    headers: Some(ms(20)),
                    first_token: Some(ms(2400)),
                    total: Some(ms(2500)),
                },
                server: Some(ServerSplit {
                    total: ms(2450),
                    load: ms(0),
                    prompt_eval: ms(100),
                    eval: ms(50),
                    queue_wait: ms(2300),
                }),
                idle: Idleness::Busy,
                timed_out: false,
                deadline: Duration::from_secs(30),
            },
        );
        let text = m.render();
        let line = r#"launchgraph_ttft_phase_seconds_bucket{le="2.5",unit="ollama",guard="ttft",phase="first_token"} 1"#;
        assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        let line = r#"launchgraph_ttft_phase_seconds_bucket{le="2.0",unit="ollama",guard="ttft",phase="first_token"} 0"#;
        assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        assert!(text.contains(r#"phase="queue_wait""#), "{text}");
    }

    #[test]
    fn host_series_follow_the_kernel_and_the_path() {
        let mut m = Metrics::new(["ollama"]);
        m.on_host(&HostFacts::SwapOut { total_bytes: 4096 });
        m.on_host(&HostFacts::SwapOut { total_bytes: 12288 });
        m.on_host(&HostFacts::MemoryStall {
            line: "some",
            total_us: 2_500_000,
        });
        m.on_host(&HostFacts::DiskFree {
            path: PathBuf::from("/models"),
            ratio: 0.25,
            available_bytes: 1000,
        });
        let text = m.render();
        m.on_host(&HostFacts::DiskFreeUnknown {
            path: PathBuf::from("/models"),
        });
        assert!(
            !m.render().contains("disk_free_ratio{"),
            "removed while unknown"
        );
        for line in [
            "launchgraph_host_swap_out_bytes_total 12288",
            r#"launchgraph_host_memory_stall_seconds_total{line="some"} 2.5"#,
            r#"launchgraph_host_disk_free_ratio{path="/models"} 0.25"#,
            r#"launchgraph_host_disk_free_bytes{path="/models"} 1000"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
    }
}
