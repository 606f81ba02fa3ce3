//! Metrics, fed by the real decision core as the supervisor feeds them, and read back the way a
//! scraper reads them: the rendered text is parsed with `prometheus-parse`, and the samples are
//! checked exactly.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use launchgraph::engine::core::{
    Core, Effect, Event, ExitInfo, ProbeKind, StateName, Timer, Transition, UnitId, UnitPolicy,
};
use launchgraph::metrics::{Metrics, STATES};
use launchgraph::preflight::{Finding, FindingCode};
use launchgraph::reason::Reason;
use launchgraph::unit::RestartSpec;
use prometheus_parse::{HistogramCount, Sample, Scrape, Value};

const DB: UnitId = 0;
const API: UnitId = 1;
const WORKER: UnitId = 2;
const NAMES: [&str; 3] = ["db", "api", "worker"];

/// A core and the metrics it feeds, with time moved by hand.
struct Supervisor {
    core: Core,
    metrics: Metrics,
    t0: Instant,
    now: Instant,
}

impl Supervisor {
    /// db; api requires db and has a liveness probe; worker has no probes. No jitter, so the
    /// first backoff is exactly 500 ms.
    fn new() -> Self {
        let restart = RestartSpec {
            initial: Duration::from_millis(500),
            jitter: 0.0,
            ..RestartSpec::default()
        };
        let policy = |requires: Vec<UnitId>, dependents, ready, alive| UnitPolicy {
            requires,
            dependents,
            has_ready_probe: ready,
            has_alive_probe: alive,
            start_timeout: ready.then_some(Duration::from_secs(30)),
            alive_failures: 3,
            restart: restart.clone(),
            external: false,
        };
        let t0 = Instant::now();
        let core = Core::from_policies(
            vec![
                policy(vec![], vec![API], true, false),
                policy(vec![DB], vec![], true, true),
                policy(vec![], vec![], false, false),
            ],
            t0,
            1,
        );
        Self {
            core,
            metrics: Metrics::new(NAMES),
            t0,
            now: t0,
        }
    }

    fn at(&mut self, ms: u64) -> &mut Self {
        self.now = self.t0 + Duration::from_millis(ms);
        self
    }

    /// What the supervisor does with the core's effects: every transition goes to the metrics,
    /// with its figures read from the core.
    fn record(&mut self, effects: Vec<Effect>) {
        for e in effects {
            if let Effect::Transition(t) = e {
                self.metrics.on_transition(NAMES[t.unit], &t);
            }
        }
    }

    fn start_all(&mut self) {
        let fx = self.core.start_all(self.now);
        self.record(fx);
    }

    fn event(&mut self, event: Event) {
        if let Event::ProbeReported {
            unit,
            kind,
            ok,
            latency,
            ..
        } = &event
        {
            self.metrics.on_probe(NAMES[*unit], *kind, *ok, *latency);
        }
        let fx = self.core.handle(event, self.now);
        self.record(fx);
    }

    fn generation(&self, unit: UnitId) -> u64 {
        self.core.slot(unit).generation
    }

    fn spawned(&mut self, unit: UnitId) {
        let generation = self.generation(unit);
        self.event(Event::Spawned {
            unit,
            generation,
            pid: Some(1000 + unit as u32),
        });
    }

    fn probe(&mut self, unit: UnitId, kind: ProbeKind, ok: bool, latency_us: u64) {
        let generation = self.generation(unit);
        self.event(Event::ProbeReported {
            unit,
            generation,
            kind,
            ok,
            latency: Duration::from_micros(latency_us),
            detail: String::new(),
        });
    }

    fn exited(&mut self, unit: UnitId, code: i32) {
        let generation = self.generation(unit);
        self.event(Event::Exited {
            unit,
            generation,
            exit: ExitInfo {
                code: Some(code),
                signal: None,
            },
            killed_after_timeout: false,
        });
    }

    fn state(&self, unit: UnitId) -> StateName {
        self.core.slot(unit).state.name()
    }

    fn scrape(&self) -> Vec<Sample> {
        let text = self.metrics.render();
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("the text parses")
            .samples
    }
}

/// Every sample named `name`, by its labels other than `unit`, for one unit.
fn series(samples: &[Sample], name: &str, unit: &str) -> BTreeMap<String, Value> {
    samples
        .iter()
        .filter(|s| s.metric == name && s.labels.get("unit") == Some(unit))
        .map(|s| {
            let mut labels: Vec<String> = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "unit")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            labels.sort();
            (labels.join(","), s.value.clone())
        })
        .collect()
}

fn counters(pairs: &[(&str, f64)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::Counter(*v)))
        .collect()
}

fn gauges(pairs: &[(&str, f64)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::Gauge(*v)))
        .collect()
}

/// The one sample named `name` with no labels, or with only `unit`.
fn single(samples: &[Sample], name: &str, unit: Option<&str>) -> Value {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.metric == name && s.labels.get("unit") == unit)
        .collect();
    assert_eq!(found.len(), 1, "{name} {unit:?}: {found:?}");
    found[0].value.clone()
}

fn one_hot(state: StateName) -> BTreeMap<String, Value> {
    STATES
        .iter()
        .map(|s| {
            (
                format!("state={s}"),
                Value::Gauge(f64::from(u8::from(*s == state))),
            )
        })
        .collect()
}

/// Cumulative bucket counts of a histogram, by upper bound.
fn buckets(value: &Value) -> Vec<(f64, f64)> {
    let Value::Histogram(counts) = value else {
        panic!("not a histogram: {value:?}");
    };
    let mut counts: Vec<(f64, f64)> = counts
        .iter()
        .map(|HistogramCount { less_than, count }| (*less_than, *count))
        .collect();
    counts.sort_by(|a, b| a.0.total_cmp(&b.0));
    counts
}

fn untyped(value: &Value) -> f64 {
    match value {
        Value::Untyped(v) => *v,
        other => panic!("not untyped: {other:?}"),
    }
}

fn assert_near(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() < 1e-9, "{what}: {got} != {want}");
}

/// Start, readiness, a crash of the requirement with its backoff and the ordered restart of
/// its dependent, probe latencies, preflight findings replaced, and a unit removed by reload.
#[test]
fn a_supervised_run_as_a_scraper_sees_it() {
    let mut s = Supervisor::new();
    let fresh = s.scrape();
    assert_eq!(
        series(&fresh, "launchgraph_unit_state", "db"),
        one_hot(StateName::Inactive)
    );
    assert_eq!(single(&fresh, "launchgraph_units", None), Value::Gauge(3.0));
    assert_eq!(single(&fresh, "launchgraph_up", None), Value::Gauge(1.0));
    let info: Vec<&Sample> = fresh
        .iter()
        .filter(|x| x.metric == "launchgraph_build_info")
        .collect();
    assert_eq!(info.len(), 1);
    assert_eq!(
        info[0].labels.get("version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(info[0].value, Value::Gauge(1.0));

    // Up: db and worker start; api waits for db.
    s.at(0).start_all();
    s.spawned(DB);
    s.spawned(WORKER);
    assert_eq!(s.state(WORKER), StateName::Ready);
    s.at(100).probe(DB, ProbeKind::Ready, false, 300);
    s.at(250).probe(DB, ProbeKind::Ready, true, 2_000);
    assert_eq!(s.state(DB), StateName::Ready);
    s.at(300).spawned(API);
    s.at(800).probe(API, ProbeKind::Ready, true, 4_000);
    assert_eq!(s.state(API), StateName::Ready);
    s.at(1_000).probe(API, ProbeKind::Alive, true, 1_500);
    s.at(1_500).probe(API, ProbeKind::Alive, false, 5_000_000);

    // db crashes: it backs off 500 ms; api is stopped first, then both come back in order.
    s.at(2_000).exited(DB, 1);
    assert_eq!(s.state(DB), StateName::Backoff);
    assert_eq!(s.state(API), StateName::Stopping);
    let backing_off = s.scrape();
    assert_eq!(
        series(&backing_off, "launchgraph_unit_state", "db"),
        one_hot(StateName::Backoff)
    );
    assert_eq!(
        single(&backing_off, "launchgraph_backoff_seconds", Some("db")),
        Value::Gauge(0.5)
    );
    assert_eq!(
        series(&backing_off, "launchgraph_unit_restarts_total", "db"),
        counters(&[]),
        "a restart counts when the new run begins"
    );
    s.at(2_010).exited(API, 143);
    assert_eq!(s.state(API), StateName::Waiting);
    let generation = s.generation(DB);
    s.at(2_500).event(Event::TimerFired {
        unit: DB,
        generation,
        timer: Timer::BackoffOver,
    });
    assert_eq!(s.state(DB), StateName::Starting);
    s.spawned(DB);
    s.at(2_625).probe(DB, ProbeKind::Ready, true, 8_000);
    s.at(2_700).spawned(API);
    s.at(2_950).probe(API, ProbeKind::Ready, true, 30_000);
    assert_eq!(s.state(API), StateName::Ready);

    // Preflight: two findings, then one left; the other's series goes.
    let missing = Finding::new(
        FindingCode::PlistPathMissing,
        None,
        "/opt/homebrew/bin/node does not exist",
        "reinstall node",
    );
    let cellar = Finding::new(
        FindingCode::CellarVersionedPath,
        None,
        "/opt/homebrew/Cellar/node/22.1.0/bin/node",
        "use /opt/homebrew/bin/node",
    );
    s.metrics
        .set_preflight("db", &[missing.clone(), missing, cellar.clone()]);
    assert_eq!(
        series(&s.scrape(), "launchgraph_preflight_findings", "db"),
        gauges(&[
            ("code=CELLAR_VERSIONED_PATH,severity=warning", 1.0),
            ("code=PLIST_PATH_MISSING,severity=error", 2.0),
        ])
    );
    s.metrics.set_preflight("db", &[cellar]);

    let samples = s.scrape();
    assert_eq!(
        series(&samples, "launchgraph_preflight_findings", "db"),
        gauges(&[("code=CELLAR_VERSIONED_PATH,severity=warning", 1.0)])
    );
    assert_eq!(
        series(&samples, "launchgraph_unit_state", "db"),
        one_hot(StateName::Ready)
    );
    assert_eq!(
        series(&samples, "launchgraph_unit_state", "api"),
        one_hot(StateName::Ready)
    );
    assert_eq!(
        single(&samples, "launchgraph_backoff_seconds", Some("db")),
        Value::Gauge(0.0)
    );

    assert_eq!(
        series(&samples, "launchgraph_unit_restarts_total", "db"),
        counters(&[("reason=EXITED", 1.0)])
    );
    assert_eq!(
        series(&samples, "launchgraph_unit_restarts_total", "api"),
        counters(&[("reason=DEPENDENCY_RESTARTING", 1.0)])
    );
    assert_eq!(
        series(&samples, "launchgraph_unit_restarts_total", "worker"),
        counters(&[])
    );

    assert_eq!(
        series(&samples, "launchgraph_unit_transitions_total", "db"),
        counters(&[
            ("reason=EXITED,to=backoff", 1.0),
            ("reason=EXITED,to=starting", 1.0),
            ("reason=READY,to=ready", 2.0),
            ("reason=SPAWNED,to=started", 2.0),
            ("reason=START_REQUESTED,to=starting", 1.0),
        ])
    );
    assert_eq!(
        series(&samples, "launchgraph_unit_transitions_total", "api"),
        counters(&[
            ("reason=DEPENDENCY_RESTARTING,to=starting", 1.0),
            ("reason=DEPENDENCY_RESTARTING,to=stopping", 1.0),
            ("reason=DEPENDENCY_RESTARTING,to=waiting", 1.0),
            ("reason=READY,to=ready", 2.0),
            ("reason=SPAWNED,to=started", 2.0),
            ("reason=START_REQUESTED,to=starting", 1.0),
            ("reason=WAITING_FOR_DEPENDENCY,to=waiting", 1.0),
        ])
    );

    // Time to ready: the last run's, per unit; every run's in the histogram.
    assert_eq!(
        single(
            &samples,
            "launchgraph_unit_time_to_ready_seconds",
            Some("db")
        ),
        Value::Gauge(0.125)
    );
    assert_eq!(
        single(
            &samples,
            "launchgraph_unit_time_to_ready_seconds",
            Some("api")
        ),
        Value::Gauge(0.25)
    );
    assert_eq!(
        single(
            &samples,
            "launchgraph_unit_time_to_ready_seconds",
            Some("worker")
        ),
        Value::Gauge(0.0)
    );
    // worker 0, db 0.25, api 0.5, db 0.125, api 0.25.
    let ttr = single(&samples, "launchgraph_time_to_ready_seconds", None);
    let expected: Vec<(f64, f64)> = [
        (0.001, 1.0),
        (0.0025, 1.0),
        (0.005, 1.0),
        (0.01, 1.0),
        (0.025, 1.0),
        (0.05, 1.0),
        (0.1, 1.0),
        (0.25, 4.0),
        (0.5, 5.0),
        (1.0, 5.0),
        (2.5, 5.0),
        (5.0, 5.0),
        (10.0, 5.0),
        (30.0, 5.0),
        (60.0, 5.0),
        (120.0, 5.0),
        (f64::INFINITY, 5.0),
    ]
    .into();
    assert_eq!(buckets(&ttr), expected);
    assert_near(
        untyped(&single(
            &samples,
            "launchgraph_time_to_ready_seconds_sum",
            None,
        )),
        1.125,
        "time to ready sum",
    );
    assert_eq!(
        single(&samples, "launchgraph_time_to_ready_seconds_count", None),
        Value::Untyped(5.0)
    );

    // Probes: failures counted by kind; only passing probes in the latency histogram.
    assert_eq!(
        series(&samples, "launchgraph_probe_failures_total", "db"),
        counters(&[("kind=ready", 1.0)])
    );
    assert_eq!(
        series(&samples, "launchgraph_probe_failures_total", "api"),
        counters(&[("kind=alive", 1.0), ("kind=ready", 0.0)])
    );
    let latency = |unit: &str, kind: &str| -> Vec<&Sample> {
        samples
            .iter()
            .filter(|x| {
                x.metric.starts_with("launchgraph_probe_latency_seconds")
                    && x.labels.get("unit") == Some(unit)
                    && x.labels.get("kind") == Some(kind)
            })
            .collect()
    };
    let db_ready = latency("db", "ready");
    let db_buckets = db_ready
        .iter()
        .find(|x| x.metric == "launchgraph_probe_latency_seconds")
        .map(|x| buckets(&x.value))
        .expect("db's ready latency histogram");
    // 2 ms and 8 ms; the failed 0.3 ms attempt is not observed.
    assert_eq!(
        db_buckets,
        vec![
            (0.0005, 0.0),
            (0.001, 0.0),
            (0.0025, 1.0),
            (0.005, 1.0),
            (0.01, 2.0),
            (0.025, 2.0),
            (0.05, 2.0),
            (0.1, 2.0),
            (0.25, 2.0),
            (0.5, 2.0),
            (1.0, 2.0),
            (2.5, 2.0),
            (5.0, 2.0),
            (10.0, 2.0),
            (f64::INFINITY, 2.0),
        ]
    );
    let field = |samples: &[&Sample], suffix: &str| {
        let name = format!("launchgraph_probe_latency_seconds_{suffix}");
        untyped(
            &samples
                .iter()
                .find(|x| x.metric == name)
                .unwrap_or_else(|| panic!("{name}"))
                .value,
        )
    };
    assert_eq!(field(&db_ready, "count"), 2.0);
    assert_near(field(&db_ready, "sum"), 0.010, "db ready latency sum");
    let api_alive = latency("api", "alive");
    assert_eq!(field(&api_alive, "count"), 1.0);
    assert_near(field(&api_alive, "sum"), 0.0015, "api alive latency sum");
    assert!(
        latency("worker", "ready").is_empty(),
        "worker has no probes"
    );

    // Reload without worker: every one of its series goes; the others keep theirs.
    s.metrics.set_units(["db", "api"]);
    let reloaded = s.scrape();
    let left: Vec<&Sample> = reloaded
        .iter()
        .filter(|x| x.labels.get("unit") == Some("worker"))
        .collect();
    assert!(left.is_empty(), "worker's series remain: {left:?}");
    assert_eq!(
        single(&reloaded, "launchgraph_units", None),
        Value::Gauge(2.0)
    );
    assert_eq!(
        series(&reloaded, "launchgraph_unit_restarts_total", "db"),
        counters(&[("reason=EXITED", 1.0)])
    );
    // A late report about the removed unit brings nothing back.
    s.metrics.on_transition(
        "worker",
        &Transition::new(
            0,
            StateName::Ready,
            StateName::Stopped,
            Reason::StopRequested,
            1,
        ),
    );
    assert!(
        s.scrape()
            .iter()
            .all(|x| x.labels.get("unit") != Some("worker"))
    );

    // A unit added by reload starts inactive.
    s.metrics.set_units(["db", "api", "cache"]);
    let added = s.scrape();
    assert_eq!(
        series(&added, "launchgraph_unit_state", "cache"),
        one_hot(StateName::Inactive)
    );
    assert_eq!(single(&added, "launchgraph_units", None), Value::Gauge(3.0));
}

/// Counters are typed as counters by a parser of the Prometheus text format: their `# TYPE`
/// lines name the `_total` series. The OpenMetrics text keeps its own conventions.
#[test]
fn both_text_formats() {
    let mut m = Metrics::new(["db"]);
    m.on_transition(
        "db",
        &Transition::new(
            0,
            StateName::Inactive,
            StateName::Starting,
            Reason::StartRequested,
            1,
        ),
    );
    let text = m.render();
    assert!(text.contains("# TYPE launchgraph_unit_transitions_total counter\n"));
    assert!(!text.contains("# EOF"));
    assert!(!text.contains("# UNIT"));
    let samples = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap()
        .samples;
    assert_eq!(
        series(&samples, "launchgraph_unit_transitions_total", "db"),
        counters(&[("reason=START_REQUESTED,to=starting", 1.0)])
    );
}
