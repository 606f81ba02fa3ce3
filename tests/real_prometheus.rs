//! A real Prometheus server scrapes `launchgraph up --metrics-listen` on loopback, with the
//! shipped rules (`packaging/prometheus/launchgraph.rules.yml`) loaded, and a guard trip is
//! read back through Prometheus's own HTTP API: the series as Prometheus stored them
//! (`/api/v1/query`) and the `LaunchgraphGuardTripped` alert (`/api/v1/alerts`), pending and
//! then firing once its `for: 1m` has passed.
//!
//! `scripts/e2e-real-stack.sh` installs Prometheus (scripts/install-prometheus.sh, Debian's
//! `prometheus` package) and runs this test, passing the server's path in
//! `LAUNCHGRAPH_E2E_PROMETHEUS`. The server runs on a free loopback port with its own data
//! directory and a 1 s scrape and evaluation interval; it is killed when the test ends, however
//! it ends. API: <https://prometheus.io/docs/prometheus/latest/querying/api/>.
//!
//! Every wait polls what Prometheus or the daemon reports, under a generous deadline.

mod support;

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use support::{Daemon, UnitDir, free_port};

/// How long to wait for anything Prometheus should show; its scrape and evaluation run every
/// second, and the alert's `for` is one minute.
const WAIT: Duration = Duration::from_secs(240);

/// The shipped rules, loaded as they are.
const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/prometheus/launchgraph.rules.yml"
);

/// The Prometheus server of the test; on drop (also while a failed test unwinds) it is killed
/// and reaped, and its log printed when the test failed. Its data directory goes with the
/// test's tempdir.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    /// Starts `bin` scraping `target` under job `launchgraph` every second, with the shipped
    /// rules evaluated every second; its config, data and log are under `dir`.
    fn start(bin: &Path, dir: &Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        // scrape_timeout may not exceed scrape_interval; the default (10 s) would.
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {RULES}\n\
                 scrape_configs:\n  - job_name: launchgraph\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let data = dir.join("data");
        let log = dir.join("prometheus.log");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Prometheus { child, addr, log }
    }

    /// Fails the test with Prometheus's log if it has exited.
    fn check_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "prometheus exited ({status}):\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    /// `GET path` answered 200, as JSON; `None` when it did not answer (yet).
    fn get(&mut self, path: &str) -> Option<Value> {
        self.check_running();
        let a = support::http_get(self.addr, path, Duration::from_secs(5))?;
        if a.code != 200 {
            return None;
        }
        serde_json::from_str(&a.body).ok()
    }

    /// The samples of the instant query `promql` (`data.result`), empty when none.
    fn query(&mut self, promql: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let Some(v) = self.get(&path) else {
            return Vec::new();
        };
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `done` holds, polling every 200 ms under [`WAIT`].
    fn wait<T>(&mut self, what: &str, mut done: impl FnMut(&mut Self) -> Option<T>) -> T {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(t) = done(self) {
                return t;
            }
            assert!(
                Instant::now() < until,
                "timed out after {WAIT:?} waiting until {what}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- prometheus log ---\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Percent-encodes a query parameter (RFC 3986 unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            write!(out, "%{b:02X}").unwrap();
        }
    }
    out
}

/// The value of an instant-vector sample (`"value": [time, "1"]`).
fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {sample}"))
}

/// The `LaunchgraphGuardTripped` alert of guard watch/level, from `/api/v1/alerts`.
fn trip_alert(p: &mut Prometheus) -> Option<Value> {
    let v = p.get("/api/v1/alerts")?;
    v["data"]["alerts"].as_array()?.iter().find_map(|a| {
        let l = &a["labels"];
        (l["alertname"] == "LaunchgraphGuardTripped"
            && l["unit"] == "watch"
            && l["guard"] == "level")
            .then(|| a.clone())
    })
}

/// Writes `level` whole, then renames it into place: a sample never reads half a number.
fn set_level(d: &UnitDir, level: u32) {
    let tmp = d.path("level.tmp");
    fs::write(&tmp, format!("{level}\n")).unwrap();
    fs::rename(&tmp, d.path("level")).unwrap();
}

#[test]
#[ignore = "needs a Prometheus server: run scripts/e2e-real-stack.sh"]
fn prometheus_scrapes_a_guard_trip_and_the_shipped_rule_fires_on_it() {
    let bin = PathBuf::from(
        std::env::var_os("LAUNCHGRAPH_E2E_PROMETHEUS")
            .expect("LAUNCHGRAPH_E2E_PROMETHEUS is unset: run scripts/e2e-real-stack.sh"),
    );
    assert!(bin.exists(), "{} does not exist", bin.display());

    // A sleeper with one exec-signal guard on a number in a file: above 5 for two samples
    // trips it (docs/units.md, "Guards and switches").
    let d = UnitDir::new();
    set_level(&d, 1);
    d.unit("watch", &support::watch_unit(&d.path("level"), ""));
    let mut daemon = Daemon::start_with(&d.units(), &[], &["--metrics-listen", "127.0.0.1:0"]);
    let line = daemon.wait_log(0, "the metrics address", |l| {
        l.contains("metrics on http://")
    });
    let target = daemon.lines()[line]
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no address in {:?}", daemon.lines()[line]))
        .to_owned();

    let prom_dir = tempfile::tempdir().unwrap();
    let mut p = Prometheus::start(&bin, prom_dir.path(), &target);
    p.wait("prometheus is ready", |p| {
        support::http_get(p.addr, "/-/ready", Duration::from_secs(5))
            .filter(|a| a.code == 200)
            .map(|_| ())
    });

    // Before the trip: the target is up, and Prometheus holds the guard as ok, not tripped.
    let ok = r#"launchgraph_guard_state{job="launchgraph",unit="watch",guard="level",state="ok"}"#;
    p.wait("Prometheus has scraped the guard as ok", |p| {
        p.query(ok).first().filter(|s| value(s) == 1.0).map(|_| ())
    });
    let up = p.query(r#"up{job="launchgraph"}"#);
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(value(&up[0]), 1.0, "{up:?}");
    let tripped =
        r#"launchgraph_guard_state{job="launchgraph",unit="watch",guard="level",state="tripped"}"#;
    let before = p.query(tripped);
    assert_eq!(
        before.len(),
        1,
        "the tripped series is exported as 0: {before:?}"
    );
    assert_eq!(value(&before[0]), 0.0, "{before:?}");
    assert!(trip_alert(&mut p).is_none(), "an alert before any trip");

    // The trip, as the daemon reports it.
    let mark = daemon.mark();
    set_level(&d, 9);
    daemon.wait_for(mark, "guard tripped", |t| {
        t.unit == "watch" && t.to == "tripped" && t.reason == "GUARD_TRIPPED"
    });

    // The same trip, as Prometheus stored it.
    p.wait("Prometheus sees the guard tripped", |p| {
        p.query(&format!("{tripped} == 1")).first().cloned()
    });
    let trips = p.wait("Prometheus counts the trip", |p| {
        p.query(
            r#"launchgraph_guard_trips_total{job="launchgraph",unit="watch",guard="level"} >= 1"#,
        )
        .first()
        .map(value)
    });
    assert!(trips >= 1.0, "{trips}");

    // The shipped rule matches the series: pending at once, firing after its `for`.
    let pending = p.wait("LaunchgraphGuardTripped is pending or firing", trip_alert);
    assert!(
        pending["state"] == "pending" || pending["state"] == "firing",
        "{pending}"
    );
    assert_eq!(pending["labels"]["severity"], "warning", "{pending}");
    assert_eq!(pending["labels"]["instance"], target.as_str(), "{pending}");
    let firing = p.wait("LaunchgraphGuardTripped is firing", |p| {
        trip_alert(p).filter(|a| a["state"] == "firing")
    });
    assert!(
        firing["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("watch/level")),
        "{firing}"
    );

    // Every shipped rule evaluates without error against real series.
    let rules = p
        .get("/api/v1/rules")
        .expect("the rules from /api/v1/rules");
    let mut seen = 0;
    for group in rules["data"]["groups"].as_array().expect("rule groups") {
        for rule in group["rules"].as_array().expect("rules") {
            seen += 1;
            assert_eq!(rule["health"], "ok", "{rule}");
        }
    }
    assert!(seen > 0, "no rules loaded: {rules}");
}
