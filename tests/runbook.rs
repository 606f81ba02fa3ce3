//! The runbook of a units directory's guards and switches: the exact text `launchgraph guards`
//! prints for a small set of units, its JSON shape (docs/runbook-schema.md), and the seam for
//! live state; and the shipped guards against the rails and the alerting rules.

use launchgraph::compile::compile_dir;
use launchgraph::guard::runbook::{GuardLive, Runbook};
use serde_json::json;

const MODEL: &str = r#"[exec]
command = ["/bin/sleep", "1000"]

[[guard]]
name = "slow"
signal = "ttft"
url = "http://127.0.0.1:18434"
model = "tiny:1b"
stat = "p90"
window = "2m"
above = "800ms"
clear-below = "500ms"
clear-samples = 4

[[guard]]
name = "deep"
signal = "queue-depth"
prometheus = "http://127.0.0.1:18080/metrics"
metric = "llamacpp:requests_deferred"
above = 2

[[switch]]
name = "fallback"
guards = ["slow", "deep"]
when = "any"
mode = "advise"

[switch.on-trip]
run = [["/usr/local/bin/route", "set", "cloud model"], ["/bin/echo", "it's done"]]
user = "gw"
restart = ["gateway"]
verify = ["/usr/local/bin/route", "get"]
verify-contains = "cloud model"
complete-within = "90s"

[[guard]]
name = "disk"
signal = "disk-free"
path = "/var/models"
every = "2m"
below = "10%"
samples = 2
hold = ["pull"]

[guard.on-clear]
run = ["/bin/true"]
"#;

const EXPECTED: &str = r#"Runbook of u: 1 unit with guards (3 guards and 1 switch)

model: guard slow (ttft)
  watches   time to first token of model tiny:1b at http://127.0.0.1:18434 (Ollama API), only samples taken while the server was otherwise idle; never loads a model (not loaded: unknown)
  sampled   every 30s, each within 30s
  trips     when the p90 of the samples of the last 2m is above 800ms (at any sample, once a whole window has been sampled)
  clears    when the p90 of the samples of the last 2m is at or below 500ms for 4 samples in a row (about 2m at every 30s)
  acts      through switch fallback (its mode, holds and actions)

model: guard deep (queue-depth)
  watches   queue depth: the sum of llamacpp:requests_deferred at http://127.0.0.1:18080/metrics
  sampled   every 15s, each within 10s
  trips     when a sample is above 2 for 3 samples in a row (about 45s at every 15s)
  clears    when a sample is at or below 2 for 3 samples in a row (about 45s at every 15s)
  acts      through switch fallback (its mode, holds and actions)

model: guard disk (disk-free)
  watches   free space an unprivileged writer can use (f_bavail / f_blocks) on the volume holding /var/models
  sampled   every 2m, each within 5s
  trips     when a sample is below 10% for 2 samples in a row (about 4m at every 2m)
  clears    when a sample is at or above 10% for 2 samples in a row (about 4m at every 2m)
  mode      act: runs its actions and holds its units
  holds     pull (not started while tripped; running ones are not stopped)
  on trip: nothing runs
  on clear (the way back), complete within 2m, as launchgraph's own user (root for the LaunchDaemon):
    1. /bin/true
    verify: none (done when the commands succeed)

model: switch fallback
  guards    slow, deep
  trips     when any of slow, deep is tripped
  clears    when none of slow, deep is tripped
  mode      advise: logs and exports what it would do; runs nothing and holds nothing
  on trip, advised only (not run), complete within 1m 30s, as user gw:
    1. sudo -u gw -H -- /usr/local/bin/route set 'cloud model'
    2. sudo -u gw -H -- /bin/echo 'it'\''s done'
    then restart, in dependency order: gateway
    verify: sudo -u gw -H -- /usr/local/bin/route get
      must exit 0 and print "cloud model" (polled until it does, within the time box)
  on clear (the way back): nothing runs
"#;

/// `model` (with the guards above), `gateway` and `pull`, both requiring it.
fn units() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("model.toml", MODEL);
    write(
        "gateway.toml",
        "requires = [\"model\"]\n[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n",
    );
    write(
        "pull.toml",
        "requires = [\"model\"]\n[exec]\ncommand = [\"/bin/true\"]\n[restart]\npolicy = \"never\"\n",
    );
    dir
}

fn runbook_of(dir: &std::path::Path) -> Runbook {
    let c = compile_dir(dir).unwrap_or_else(|d| panic!("{d:#?}"));
    Runbook::new(&c, "u")
}

#[test]
fn the_runbook_says_what_each_guard_watches_when_it_trips_and_clears_and_what_runs() {
    let dir = units();
    let text = runbook_of(dir.path()).render();
    assert_eq!(text, EXPECTED, "got:\n{text}");
}

#[test]
fn a_directory_without_guards_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "[exec]\ncommand = [\"/bin/true\"]\n",
    )
    .unwrap();
    let book = runbook_of(dir.path());
    assert_eq!(book.render(), "No guards or switches in u.\n");
    assert_eq!(
        serde_json::to_value(&book).unwrap(),
        json!({"schema": "launchgraph.runbook/1", "units_dir": "u", "units": []})
    );
}

#[test]
fn the_json_follows_the_schema() {
    let dir = units();
    let v = serde_json::to_value(runbook_of(dir.path())).unwrap();
    assert_eq!(v["schema"], "launchgraph.runbook/1");
    assert_eq!(v["units_dir"], "u");
    let units = v["units"].as_array().unwrap();
    assert_eq!(units.len(), 1, "only units with guards: {v:#}");
    let model = &units[0];
    assert_eq!(model["unit"], "model");
    let names: Vec<&str> = model["guards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["slow", "deep", "disk"]);

    let slow = &model["guards"][0];
    assert_eq!(slow["signal"], "ttft");
    assert_eq!(
        slow["params"],
        json!({"url": "http://127.0.0.1:18434", "model": "tiny:1b", "api": "ollama", "idle_only": true})
    );
    assert_eq!(slow["every_ms"], 30_000);
    assert_eq!(slow["timeout_ms"], 30_000);
    assert_eq!(
        slow["trip"],
        json!({
            "op": "above",
            "threshold": "800ms",
            "value": 0.8,
            "default": false,
            "window": {"kind": "samples", "samples": 1},
            "words": "the p90 of the samples of the last 2m is above 800ms (at any sample, once a whole window has been sampled)"
        })
    );
    assert_eq!(slow["clear"]["op"], "at-or-below");
    assert_eq!(
        slow["clear"]["window"],
        json!({"kind": "samples", "samples": 4})
    );
    assert_eq!(slow["switch"], "fallback");
    assert_eq!(slow["mode"], serde_json::Value::Null);
    assert_eq!(slow["on_trip"], serde_json::Value::Null);
    assert!(slow.get("live").is_none(), "no live state without a daemon");

    let deep = &model["guards"][1];
    assert_eq!(
        deep["params"],
        json!({"url": "http://127.0.0.1:18080/metrics", "metric": "llamacpp:requests_deferred", "labels": {}})
    );
    assert_eq!(deep["clear"]["default"], true);

    let disk = &model["guards"][2];
    assert_eq!(disk["params"], json!({"path": "/var/models"}));
    assert_eq!(disk["mode"], "act");
    assert_eq!(disk["switch"], serde_json::Value::Null);
    assert_eq!(disk["hold"], json!(["pull"]));
    assert_eq!(disk["trip"]["op"], "below");
    assert_eq!(disk["trip"]["value"], 10.0);
    assert_eq!(disk["clear"]["op"], "at-or-above");
    assert_eq!(
        disk["on_clear"],
        json!({
            "run": [{"argv": ["/bin/true"], "shell": "/bin/true", "paste": "/bin/true"}],
            "user": null,
            "restart": [],
            "verify": null,
            "verify_contains": null,
            "complete_within_ms": 120_000
        })
    );

    let sw = &model["switches"][0];
    assert_eq!(sw["name"], "fallback");
    assert_eq!(sw["guards"], json!(["slow", "deep"]));
    assert_eq!(sw["when"], "any");
    assert_eq!(sw["mode"], "advise");
    assert_eq!(sw["trips"], "when any of slow, deep is tripped");
    assert_eq!(sw["clears"], "when none of slow, deep is tripped");
    let on_trip = &sw["on_trip"];
    assert_eq!(on_trip["user"], "gw");
    assert_eq!(on_trip["restart"], json!(["gateway"]));
    assert_eq!(
        on_trip["run"][0],
        json!({
            "argv": ["/usr/local/bin/route", "set", "cloud model"],
            "shell": "/usr/local/bin/route set 'cloud model'",
            "paste": "sudo -u gw -H -- /usr/local/bin/route set 'cloud model'"
        })
    );
    assert_eq!(on_trip["run"][1]["shell"], r"/bin/echo 'it'\''s done'");
    assert_eq!(
        on_trip["verify"]["argv"],
        json!(["/usr/local/bin/route", "get"])
    );
    assert_eq!(on_trip["verify_contains"], "cloud model");
    assert_eq!(on_trip["complete_within_ms"], 90_000);
    assert_eq!(sw["on_clear"], serde_json::Value::Null);
}

/// Live state is a column a caller adds from the daemon's answer: the text gains a `now`
/// line, the JSON a `live` object; the configuration rows are unchanged.
#[test]
fn live_state_is_an_optional_column_of_each_row() {
    let dir = units();
    let mut book = runbook_of(dir.path());
    let mut asked = Vec::new();
    book.attach_live(|unit, name| {
        asked.push(format!("{unit}/{name}"));
        (name == "disk").then(|| GuardLive {
            state: "pending".into(),
            last_value: Some("9.5%".into()),
            window: Some("1 of 2 samples".into()),
        })
    });
    assert_eq!(
        asked,
        ["model/slow", "model/deep", "model/disk", "model/fallback"]
    );
    let text = book.render();
    let with_live = EXPECTED.replace(
        "at every 2m)\n  mode",
        "at every 2m)\n  now       pending, last 9.5%, window 1 of 2 samples\n  mode",
    );
    assert_ne!(with_live, EXPECTED);
    assert_eq!(text, with_live);
    let v = serde_json::to_value(&book).unwrap();
    assert!(v["units"][0]["guards"][0].get("live").is_none());
    assert!(v["units"][0]["switches"][0].get("live").is_none());
    assert_eq!(
        v["units"][0]["guards"][2]["live"],
        json!({"state": "pending", "last_value": "9.5%", "window": "1 of 2 samples"})
    );
}

/// A command line with a newline stays one line, in `$'…'` quoting.
#[test]
fn commands_with_control_characters_stay_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "[exec]\ncommand = [\"/bin/true\"]\n[[guard]]\nname = \"g\"\nsignal = \"swap-out-rate\"\nabove = \"1MiB/s\"\non-trip = { run = [\"/bin/echo\", \"a\\nb\"] }\n",
    )
    .unwrap();
    let text = runbook_of(dir.path()).render();
    assert!(text.contains("    1. /bin/echo $'a\\nb'\n"), "{text}");
}

/// The shipped Ollama unit carries rails A to C with the article's numbers, and rails B and C
/// with the numbers of the alerting rules (packaging/prometheus), so that a guard and its
/// alert do not disagree.
#[test]
fn the_shipped_guards_keep_the_rails_numbers_and_the_alerts() {
    use launchgraph::unit::UnitName;
    use launchgraph::unit::guard::{Direction, Mode, Quantity, When, Window};
    use std::time::Duration;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let c = compile_dir(&root.join("units")).unwrap_or_else(|d| panic!("{d:#?}"));
    let i = c.index_of(&UnitName::parse("ollama").unwrap()).unwrap();
    let g = &c.units[i].guards;
    let guard = |name: &str| {
        g.guards
            .iter()
            .find(|x| x.name.as_str() == name)
            .unwrap_or_else(|| panic!("no guard {name}"))
    };
    let mins = |m: u64| Window::Lasting(Duration::from_secs(60 * m));

    // A: the median TTFT above 2.5 s while idle, and queue depth above 3, both at once.
    let ttft = guard("ttft");
    assert_eq!(ttft.trip, Quantity::Latency(Duration::from_millis(2500)));
    assert!(ttft.stat.is_some());
    let queue = guard("queue");
    assert_eq!(
        (queue.direction, queue.trip),
        (Direction::Above, Quantity::Number(3.0))
    );
    let sw = &g.switches[0];
    assert_eq!(sw.when, When::All);
    assert_eq!(sw.mode, Mode::Act);
    let names: Vec<&str> = sw.guards.iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["ttft", "queue"]);
    for action in [&sw.on_trip, &sw.on_clear] {
        let a = action.as_ref().expect("both edges act");
        assert_eq!(a.user.as_deref(), Some("openclaw"));
        assert_eq!(a.run[0][1..3], ["models", "set"]);
        assert_eq!(
            a.verify.as_deref().unwrap()[1..],
            ["config", "get", "agents.defaults.model.primary"]
        );
        assert_eq!(a.verify_contains.as_deref(), Some(a.run[0][3].as_str()));
    }

    // B and C, against the alerts.
    let rules =
        std::fs::read_to_string(root.join("packaging/prometheus/launchgraph.rules.yml")).unwrap();
    let alert = |name: &str| {
        let at = rules
            .find(&format!("alert: {name}\n"))
            .unwrap_or_else(|| panic!("no alert {name}"));
        let block = &rules[at..];
        let end = block[1..].find("- alert:").map_or(block.len(), |e| e + 1);
        block[..end].to_owned()
    };
    let swap = guard("swap");
    assert_eq!(swap.trip, Quantity::Rate(8.0 * 1024.0 * 1024.0));
    assert_eq!(swap.trip_window, mins(5));
    assert_eq!(swap.mode, Mode::Advise);
    let a = alert("LaunchgraphSwapOutHigh");
    assert!(
        a.contains("> 8 * 1024 * 1024\n") && a.contains("for: 5m\n"),
        "{a}"
    );

    for (name, pct, window, alert_name, ratio) in [
        ("disk-warn", 35.0, 10, "LaunchgraphDiskFreeLow", "< 0.35\n"),
        (
            "disk-low",
            12.0,
            2,
            "LaunchgraphDiskFreeCritical",
            "< 0.12\n",
        ),
    ] {
        let d = guard(name);
        assert_eq!(
            (d.direction, d.trip),
            (Direction::Below, Quantity::Percent(pct))
        );
        assert_eq!(d.trip_window, mins(window));
        let a = alert(alert_name);
        assert!(
            a.contains(ratio) && a.contains(&format!("for: {window}m\n")),
            "{a}"
        );
    }
    assert_eq!(guard("disk-warn").mode, Mode::Advise);
    let holds: Vec<&str> = guard("disk-low").hold.iter().map(|n| n.as_str()).collect();
    assert_eq!(holds, ["ollama-pull"]);
}
