//! `[[guard]]` and `[[switch]]` in unit files: valid ones become typed guards with their
//! documented defaults; every mistake is reported at its file, line and column, naming the
//! key (and the guard), with what was expected.

use std::path::Path;
use std::time::Duration;

use launchgraph::compile::compile_dir;
use launchgraph::diag::Diagnostic;
use launchgraph::unit::UnitName;
use launchgraph::unit::guard::{
    Direction, Guard, JsonSelect, KeepAlive, LlmApi, Mode, PressureLevel, Quantity, QueueSource,
    Signal, Stat, When, Window,
};

const OK_EXEC: &str = "[exec]\ncommand = [\"/bin/sleep\", \"100\"]\n";

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// The guards of unit `a`, whose text is `OK_EXEC` followed by `guards`; `b` exists too.
fn guards_of(guards: &str) -> launchgraph::unit::guard::Guards {
    let dir = dir_with(&[
        ("a.toml", &format!("{OK_EXEC}{guards}")),
        ("b.toml", OK_EXEC),
    ]);
    let c = compile_dir(dir.path()).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let i = c.index_of(&UnitName::parse("a").unwrap()).unwrap();
    c.units[i].guards.clone()
}

fn one_guard(text: &str) -> Guard {
    let g = guards_of(text);
    assert_eq!(g.guards.len(), 1);
    g.guards[0].clone()
}

/// The diagnostics of unit `a` = `OK_EXEC` + `guards`.
fn errors(guards: &str) -> (tempfile::TempDir, Vec<Diagnostic>) {
    let dir = dir_with(&[
        ("a.toml", &format!("{OK_EXEC}{guards}")),
        ("b.toml", OK_EXEC),
    ]);
    let d = match compile_dir(dir.path()) {
        Ok(_) => panic!("expected errors for {guards}"),
        Err(d) => d,
    };
    (dir, d)
}

/// Exactly one diagnostic contains `needle`; it is at `line` (of the guard text, counted
/// after the two lines of `OK_EXEC`) and names `key`.
fn find<'d>(
    d: &'d [Diagnostic],
    dir: &Path,
    line: usize,
    key: &str,
    needle: &str,
) -> &'d Diagnostic {
    let hits: Vec<_> = d.iter().filter(|x| x.message.contains(needle)).collect();
    assert_eq!(
        hits.len(),
        1,
        "one diagnostic with {needle:?} expected: {d:#?}"
    );
    let x = hits[0];
    assert_eq!(x.file, dir.join("a.toml"), "{x}");
    assert_eq!(x.line, line + 2, "{x}");
    assert_eq!(x.key.as_deref(), Some(key), "{x}");
    x
}

#[test]
fn a_ttft_guard_gets_typed_thresholds_and_documented_defaults() {
    let g = one_guard(
        "[[guard]]\nname = \"ttft\"\nsignal = \"ttft\"\nabove = \"2.5s\"\nstat = \"median\"\nwindow = \"5m\"\n",
    );
    assert_eq!(g.name.as_str(), "ttft");
    let Signal::Ttft {
        url,
        addr,
        model,
        api,
        keep_alive,
        idle_only,
    } = &g.signal
    else {
        panic!("{:?}", g.signal)
    };
    assert_eq!(url, "http://127.0.0.1:11434");
    assert_eq!(addr.to_string(), "127.0.0.1:11434");
    assert_eq!(*model, None, "whatever model is loaded");
    assert_eq!(*api, LlmApi::Ollama);
    assert_eq!(*keep_alive, None);
    assert!(idle_only);
    assert_eq!(g.every, Duration::from_secs(30));
    assert_eq!(g.timeout, Duration::from_secs(30));
    assert_eq!(g.direction, Direction::Above);
    assert_eq!(g.trip, Quantity::Latency(Duration::from_millis(2500)));
    assert_eq!(g.clear, g.trip);
    assert!(g.clear_is_default);
    // With a statistic, the window smooths: one sample of it is enough by default.
    assert_eq!(g.trip_window, Window::Samples(1));
    assert_eq!(g.clear_window, Window::Samples(1));
    let stat = g.stat.unwrap();
    assert_eq!(
        (stat.stat, stat.window),
        (Stat::P50, Duration::from_secs(300))
    );
    assert_eq!(g.mode, Mode::Act);
    assert!(g.hold.is_empty() && g.on_trip.is_none() && g.on_clear.is_none());
}

#[test]
fn every_signal_and_unit_of_threshold_is_read() {
    let g = one_guard(
        "[[guard]]\nname = \"q\"\nsignal = \"queue-depth\"\nprometheus = \"http://127.0.0.1:8080/metrics\"\nmetric = \"llamacpp:requests_deferred\"\nlabels = { slot = \"0\" }\nabove = 3\nfor = \"2m\"\nclear-below = 1.5\nclear-samples = 4\n",
    );
    let Signal::QueueDepth(QueueSource::Prometheus { metric, labels, .. }) = &g.signal else {
        panic!("{:?}", g.signal)
    };
    assert_eq!(metric, "llamacpp:requests_deferred");
    assert_eq!(labels.get("slot").map(String::as_str), Some("0"));
    assert_eq!(g.trip, Quantity::Number(3.0));
    assert_eq!(g.clear, Quantity::Number(1.5));
    assert!(!g.clear_is_default);
    assert_eq!(g.trip_window, Window::Lasting(Duration::from_secs(120)));
    assert_eq!(g.clear_window, Window::Samples(4));
    assert_eq!(g.every, Duration::from_secs(15));

    let g = one_guard(
        "[[guard]]\nname = \"s\"\nsignal = \"swap-out-rate\"\nabove = \"20MiB/s\"\nfor = \"5m\"\n",
    );
    assert_eq!(g.signal, Signal::SwapOutRate);
    assert_eq!(g.trip, Quantity::Rate(20.0 * 1024.0 * 1024.0));
    assert_eq!(g.trip_window, Window::Lasting(Duration::from_secs(300)));
    assert_eq!(
        g.clear_window, g.trip_window,
        "the clear window defaults to the trip window"
    );
    assert_eq!(g.every, Duration::from_secs(10));

    for (written, want) in [
        ("\"15m\"", KeepAlive::For(Duration::from_secs(900))),
        ("\"forever\"", KeepAlive::Forever),
        ("-1", KeepAlive::Forever),
    ] {
        let g = one_guard(&format!(
            "[[guard]]\nname = \"t\"\nsignal = \"ttft\"\nmodel = \"m\"\napi = \"openai\"\nkeep-alive = {written}\nabove = \"1s\"\n"
        ));
        let Signal::Ttft {
            keep_alive, api, ..
        } = g.signal
        else {
            panic!()
        };
        assert_eq!((keep_alive, api), (Some(want), LlmApi::Openai));
    }
    assert_eq!(KeepAlive::For(Duration::from_secs(900)).to_ollama(), "900s");
    assert_eq!(KeepAlive::Forever.to_ollama(), "-1");

    let g = one_guard("[[guard]]\nname = \"p\"\nsignal = \"memory-pressure\"\nabove = \"warn\"\n");
    assert_eq!(g.trip, Quantity::Level(PressureLevel::Warn));
    assert_eq!(g.trip_window, Window::Samples(3));
    let g = one_guard("[[guard]]\nname = \"p\"\nsignal = \"memory-pressure\"\nabove = \"10%\"\n");
    assert_eq!(g.trip, Quantity::Percent(10.0));

    let g = one_guard(
        "[[guard]]\nname = \"d\"\nsignal = \"disk-free\"\npath = \"/var\"\nbelow = \"12%\"\nclear-above = \"15%\"\nhold = [\"b\"]\non-trip = { run = [[\"/bin/cleanup\"], [\"/bin/report\", \"x\"]], restart = [\"b\"], verify = [\"/bin/check\"], verify-contains = \"ok\", user = \"admin\", complete-within = \"30m\" }\n",
    );
    assert_eq!(g.direction, Direction::Below);
    assert_eq!(g.clear, Quantity::Percent(15.0));
    assert_eq!(g.hold, [UnitName::parse("b").unwrap()]);
    let a = g.on_trip.unwrap();
    assert_eq!(a.run, [vec!["/bin/cleanup"], vec!["/bin/report", "x"]]);
    assert_eq!(a.restart, [UnitName::parse("b").unwrap()]);
    assert_eq!(a.verify.as_deref(), Some(&["/bin/check".to_string()][..]));
    assert_eq!(a.verify_contains.as_deref(), Some("ok"));
    assert_eq!(a.user.as_deref(), Some("admin"));
    assert_eq!(a.complete_within, Duration::from_secs(1800));

    let g = one_guard(
        "[[guard]]\nname = \"e\"\nsignal = \"exec\"\ncommand = [\"/bin/n\"]\nabove = 7\nmode = \"advise\"\n[guard.on-clear]\nrun = [\"/bin/back\"]\n",
    );
    assert_eq!(g.mode, Mode::Advise);
    let a = g.on_clear.unwrap();
    assert_eq!(a.run, [vec!["/bin/back"]]);
    assert_eq!(a.complete_within, Duration::from_secs(120));
}

#[test]
fn a_switch_combines_guards_and_owns_the_actions() {
    let g = guards_of(
        "[[guard]]\nname = \"ttft\"\nsignal = \"ttft\"\nabove = \"2.5s\"\n[[guard]]\nname = \"queue\"\nsignal = \"exec\"\ncommand = [\"/bin/q\"]\nabove = 3\n[[switch]]\nname = \"fallback\"\nguards = [\"ttft\", \"queue\"]\nhold = [\"b\"]\n[switch.on-trip]\nrun = [\"/bin/cloud\"]\n",
    );
    assert_eq!(g.guards.len(), 2);
    let s = &g.switches[0];
    assert_eq!(s.name.as_str(), "fallback");
    assert_eq!(
        s.guards.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
        ["ttft", "queue"]
    );
    assert_eq!(s.when, When::All, "the default");
    assert_eq!(s.hold, [UnitName::parse("b").unwrap()]);
    assert!(s.on_trip.is_some() && s.on_clear.is_none());
}

#[test]
fn a_threshold_in_the_wrong_unit_for_its_signal_is_an_error_naming_the_key() {
    let cases = [
        (
            "ttft",
            "above = \"12%\"",
            "\"12%\" is a percent, but a ttft signal is a latency",
        ),
        (
            "ttft",
            "above = 3",
            "3 is a plain number, but a ttft signal is a latency",
        ),
        (
            "swap-out-rate",
            "above = \"2s\"",
            "\"2s\" is a duration, but a swap-out-rate signal is a rate",
        ),
        (
            "exec\"\ncommand = [\"/bin/n\"]\nx = \"",
            "above = \"5MiB/s\"",
            "\"5MiB/s\" is a rate, but a exec signal is a plain number",
        ),
        (
            "memory-pressure",
            "above = \"2s\"",
            "\"2s\" is a duration, but a memory-pressure signal is a pressure",
        ),
    ];
    for (signal, threshold, needle) in cases {
        let text = format!("[[guard]]\nname = \"g\"\nsignal = \"{signal}\"\n{threshold}\n");
        let (dir, d) = errors(&text);
        let line = text.lines().position(|l| l == threshold).unwrap() + 1;
        let e = find(&d, dir.path(), line, "guard.g.above", needle);
        assert!(e.hint.as_deref().unwrap().starts_with("expected "), "{e}");
        assert_eq!(e.column, 9, "{e}");
    }
}

#[test]
fn mistakes_in_guards_are_each_reported_at_their_place() {
    let text = "\
[[guard]]
name = \"ttft\"
signal = \"ttf\"
above = \"2.5s\"

[[guard]]
name = \"slow\"
signal = \"ttft\"
path = \"/var\"
every = \"2s\"
above = \"3s\"
below = \"1s\"
stat = \"p95\"
window = \"2m\"
for = \"18446744073709551615s\"
hold = [\"bb\", \"zzz-nothing\"]
mode = \"loud\"
frobnicate = 1

[[guard]]
name = \"disk\"
signal = \"disk-free\"
path = \"relative\"
below = \"12%\"
clear-below = \"20%\"
on-trip = { run = [[\"/bin/x\"], [\"rel\"]], restart = [\"c\"], verify-contains = \"x\" }

[[guard]]
name = \"disk\"
signal = \"disk-free\"
path = \"/\"
below = \"12%\"
clear-above = \"10%\"
samples = 0
";
    let (dir, d) = errors(text);
    let p = dir.path();
    let e = find(&d, p, 3, "guard.ttft.signal", "\"ttf\" is not a signal");
    assert_eq!(e.hint.as_deref(), Some("did you mean \"ttft\"?"));
    find(
        &d,
        p,
        9,
        "guard.slow.path",
        "`path` applies only to a disk-free signal; this guard's signal is \"ttft\"",
    );
    let e = find(
        &d,
        p,
        10,
        "guard.slow.every",
        "2s is shorter than the minimum of 10s for a ttft signal",
    );
    assert_eq!(e.hint.as_deref(), Some("write at least \"10s\""));
    find(
        &d,
        p,
        12,
        "guard.slow.below",
        "a guard trips `above` or `below` a threshold, not both",
    );
    let e = find(&d, p, 13, "guard.slow.stat", "\"p95\" is not a statistic");
    assert_eq!(e.hint.as_deref(), Some("did you mean \"p90\"?"));
    find(
        &d,
        p,
        15,
        "guard.slow.for",
        "\"18446744073709551615s\" is longer than the maximum of 7days",
    );
    let e = find(
        &d,
        p,
        16,
        "guard.slow.hold",
        "guard \"slow\" of unit \"a\" holds \"bb\", which is not a unit",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean \"b\"?"));
    assert_eq!(e.column, 9);
    let e = find(
        &d,
        p,
        16,
        "guard.slow.hold",
        "holds \"zzz-nothing\", which is not a unit",
    );
    assert_eq!(e.column, 15);
    find(&d, p, 17, "guard.slow.mode", "\"loud\" is not a mode");
    let e = find(
        &d,
        p,
        18,
        "guard.slow.frobnicate",
        "unknown key `frobnicate` in [[guard]] \"slow\"",
    );
    assert!(
        e.hint
            .as_deref()
            .unwrap()
            .starts_with("expected one of: name, signal")
    );
    find(
        &d,
        p,
        23,
        "guard.disk.path",
        "\"relative\" is not an absolute path",
    );
    find(
        &d,
        p,
        25,
        "guard.disk.clear-below",
        "this guard trips `below` its threshold, so it clears with `clear-above`",
    );
    find(
        &d,
        p,
        26,
        "guard.disk.on-trip.run",
        "the program \"rel\" is not an absolute path",
    );
    find(
        &d,
        p,
        26,
        "guard.disk.on-trip.restart",
        "guard \"disk\" of unit \"a\" on-trip restarts \"c\", which is not a unit",
    );
    find(
        &d,
        p,
        26,
        "guard.disk.on-trip.verify-contains",
        "there is no `verify`",
    );
    find(
        &d,
        p,
        29,
        "guard.disk.name",
        "the name \"disk\" is already used by a guard of this unit",
    );
    find(
        &d,
        p,
        33,
        "guard.disk.clear-above",
        "10% is below the trip threshold 12%: the guard would count as clear while it still trips",
    );
    find(
        &d,
        p,
        34,
        "guard.disk.samples",
        "0 is out of range: expected 1 to 10000",
    );
    assert_eq!(d.len(), 18, "{d:#?}");
}

#[test]
fn missing_pieces_are_named() {
    let (dir, d) = errors("[[guard]]\nsignal = \"swap-out-rate\"\n");
    let p = dir.path();
    find(
        &d,
        p,
        1,
        "guard[0].name",
        "[[guard]] number 1 is missing `name`",
    );
    find(
        &d,
        p,
        1,
        "guard[0].above",
        "[[guard]] number 1 needs a threshold: `above` or `below`",
    );
    let (dir, d) = errors("[[guard]]\nname = \"q\"\nsignal = \"queue-depth\"\nabove = 1\n");
    find(
        &d,
        dir.path(),
        1,
        "guard.q.command",
        "[[guard]] \"q\" has signal \"queue-depth\" and needs `command` or `prometheus`",
    );
    let (dir, d) = errors("[[guard]]\nname = \"d\"\nsignal = \"disk-free\"\nbelow = \"5%\"\n");
    find(
        &d,
        dir.path(),
        1,
        "guard.d.path",
        "[[guard]] \"d\" is missing `path`",
    );
    let (dir, d) =
        errors("[[guard]]\nname = \"t\"\nsignal = \"ttft\"\nabove = \"1s\"\nstat = \"max\"\n");
    find(
        &d,
        dir.path(),
        1,
        "guard.t.window",
        "has `stat` but no `window`",
    );
    let (dir, d) = errors("[guard]\nname = \"t\"\n");
    find(
        &d,
        dir.path(),
        1,
        "guard",
        "`guard`: expected an array of tables: write each one as [[guard]]",
    );
}

#[test]
fn windows_and_timeouts_that_could_never_work_are_refused() {
    let (dir, d) =
        errors("[[guard]]\nname = \"t\"\nsignal = \"ttft\"\ntimeout = \"2s\"\nabove = \"2.5s\"\n");
    let e = find(
        &d,
        dir.path(),
        5,
        "guard.t.above",
        "2.5s is not below the probe's `timeout` (2s)",
    );
    assert!(e.hint.as_deref().unwrap().contains("raise `timeout`"));
    let (dir, d) = errors(
        "[[guard]]\nname = \"t\"\nsignal = \"exec\"\ncommand = [\"/bin/n\"]\nabove = 1\nstat = \"p90\"\nevery = \"1m\"\nwindow = \"30s\"\n",
    );
    find(
        &d,
        dir.path(),
        8,
        "guard.t.window",
        "30s is shorter than `every` (1m): the window would hold one sample",
    );
    let (dir, d) = errors(
        "[[guard]]\nname = \"t\"\nsignal = \"exec\"\ncommand = [\"/bin/n\"]\nabove = 1\nstat = \"p90\"\nevery = \"1s\"\nwindow = \"24h\"\n",
    );
    find(
        &d,
        dir.path(),
        8,
        "guard.t.window",
        "1day at `every` = 1s holds 86400 samples, more than the 10000 a window may hold",
    );
}

#[test]
fn absurd_values_are_errors_not_panics() {
    for (key, value) in [
        ("above", "\"18446744073709551615s\""),
        ("above", "\"99999999999999999999999h\""),
        ("above", "1e300"),
        ("above", "-1"),
        ("above", "nan"),
        ("above", "inf"),
        ("above", "9223372036854775807999"),
        ("every", "\"18446744073709551615s\""),
        ("timeout", "\"99999999999999999999s\""),
        ("clear-for", "\"18446744073709551615s\""),
        ("samples", "9223372036854775807"),
        ("keep-alive", "\"999999999999days\""),
        ("keep-alive", "-2"),
        ("keep-alive", "99999999999999999999"),
    ] {
        let text = format!("[[guard]]\nname = \"t\"\nsignal = \"ttft\"\n{key} = {value}\n");
        let text = if key == "above" {
            text
        } else {
            format!("{text}above = \"1s\"\n")
        };
        let dir = dir_with(&[("a.toml", &format!("{OK_EXEC}{text}"))]);
        let Err(d) = compile_dir(dir.path()) else {
            panic!("{text} loaded")
        };
        assert!(
            d.iter().any(|x| x.line == 6 && x.file.ends_with("a.toml")),
            "{key} = {value}: {d:#?}"
        );
    }
}

#[test]
fn switches_check_their_guards() {
    let text = "\
[[guard]]
name = \"ttft\"
signal = \"ttft\"
above = \"2.5s\"
hold = [\"b\"]
[guard.on-trip]
run = [\"/bin/x\"]

[[guard]]
name = \"queue\"
signal = \"exec\"
command = [\"/bin/q\"]
above = 3

[[switch]]
name = \"queue\"
guards = [\"ttft\", \"qeueu\", \"ttft\"]
when = \"most\"
";
    let (dir, d) = errors(text);
    let p = dir.path();
    let e = find(
        &d,
        p,
        5,
        "guard.ttft.hold",
        "guard \"ttft\" is in switch \"queue\", which owns `hold` for its guards",
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("move `hold` to the [[switch]] named \"queue\"")
    );
    find(
        &d,
        p,
        6,
        "guard.ttft.on-trip",
        "which owns `on-trip` for its guards",
    );
    find(
        &d,
        p,
        16,
        "switch.queue.name",
        "the name \"queue\" is already used by a guard of this unit",
    );
    let e = find(
        &d,
        p,
        17,
        "switch.queue.guards",
        "switch \"queue\" names \"qeueu\", which is not a guard of this unit",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean \"queue\"?"));
    find(&d, p, 17, "switch.queue.guards", "\"ttft\" is listed twice");
    find(
        &d,
        p,
        18,
        "switch.queue.when",
        "\"most\" is not a combination",
    );
    assert_eq!(d.len(), 6, "{d:#?}");
}

/// The example in examples/guards loads, with the rails it documents.
#[test]
fn the_guards_example_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/guards");
    let c = compile_dir(&dir).unwrap_or_else(|d| panic!("{d:#?}"));
    let i = c.index_of(&UnitName::parse("ollama").unwrap()).unwrap();
    let g = &c.units[i].guards;
    let names: Vec<&str> = g.guards.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["ttft", "queue", "swap", "disk-warn", "disk-low"]);
    assert_eq!(g.switches[0].guards.len(), 2);
    assert_eq!(
        g.switches[0].on_trip.as_ref().unwrap().complete_within,
        Duration::from_secs(120)
    );
}

proptest::proptest! {
    /// Text built from the guard grammar's keys and values is read without a panic, and every
    /// error is placed.
    #[test]
    fn guard_shaped_text_is_read_without_panicking(
        lines in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("[[guard]]".to_string()),
                proptest::strategy::Just("[[switch]]".to_string()),
                proptest::strategy::Just("[guard.on-trip]".to_string()),
                proptest::strategy::Just("[switch.on-clear]".to_string()),
                "(name|signal|every|timeout|url|model|api|keep-alive|idle-only|command|lane|field|json-pointer|prometheus|metric|labels|path|above|below|clear-below|clear-above|for|samples|clear-for|clear-samples|stat|window|mode|hold|guards|when|run|user|restart|verify|verify-contains|complete-within) = (\"(ttft|queue-depth|exec|disk-free|swap-out-rate|memory-pressure|p50|max|all|any|act|advise|[0-9]{1,3}(\\.[0-9])?(s|ms|m|%|MiB/s|days)?)\"|[0-9.-]{1,6}|\\[\"/bin/[a-z]{1,4}\"\\]|\\[\"b\"\\]|\\{ run = \\[\"/x\"\\] \\}|true)",
            ],
            0..16,
        )
    ) {
        let dir = dir_with(&[("a.toml", &format!("{OK_EXEC}{}", lines.join("\n"))), ("b.toml", OK_EXEC)]);
        match compile_dir(dir.path()) {
            Ok(c) => assert_eq!(c.units.len(), 2),
            Err(d) => {
                assert!(!d.is_empty());
                for x in &d {
                    assert!(x.file.starts_with(dir.path()), "{x}");
                    assert!(x.line >= 1 && x.column >= 1, "{x}");
                }
            }
        }
    }
}

#[test]
fn a_guard_cannot_hold_or_restart_an_external_unit() {
    let app = "[external]\n[ready]\ntcp = \"127.0.0.1:11434\"\n";
    let text = format!(
        "{OK_EXEC}[[guard]]\nname = \"d\"\nsignal = \"disk-free\"\npath = \"/\"\nbelow = \"5%\"\nhold = [\"app\"]\non-trip = {{ restart = [\"b\", \"app\"] }}\n"
    );
    let dir = dir_with(&[("a.toml", &text), ("app.toml", app), ("b.toml", OK_EXEC)]);
    let Err(d) = compile_dir(dir.path()) else {
        panic!("loaded")
    };
    let e = find(
        &d,
        dir.path(),
        6,
        "guard.d.hold",
        "`guard.d.hold`: guard \"d\" of unit \"a\" holds \"app\", an [external] unit",
    );
    assert!(
        e.hint
            .as_deref()
            .unwrap()
            .contains("hold the units that require it")
    );
    let e = find(
        &d,
        dir.path(),
        7,
        "guard.d.on-trip.restart",
        "on-trip restarts \"app\", an [external] unit",
    );
    assert_eq!(e.column, 29);
    assert_eq!(d.len(), 2, "{d:#?}");
}

#[test]
fn a_queue_depth_command_may_print_json_and_urls_are_loopback_only() {
    let g = one_guard(
        "[[guard]]\nname = \"q\"\nsignal = \"queue-depth\"\ncommand = [\"/bin/lanes\"]\nlane = \"main\"\nabove = 3\n",
    );
    assert_eq!(
        g.signal,
        Signal::QueueDepth(QueueSource::Command {
            command: vec!["/bin/lanes".into()],
            select: Some(JsonSelect::Lane {
                lane: "main".into(),
                field: "queuedCount".into()
            }),
        })
    );
    let g = one_guard(
        "[[guard]]\nname = \"q\"\nsignal = \"queue-depth\"\ncommand = [\"/bin/q\"]\njson-pointer = \"/a/0\"\nabove = 3\n",
    );
    let Signal::QueueDepth(QueueSource::Command { select, .. }) = g.signal else {
        panic!()
    };
    assert_eq!(select, Some(JsonSelect::Pointer("/a/0".into())));

    let (dir, d) = errors(
        "[[guard]]\nname = \"q\"\nsignal = \"queue-depth\"\nprometheus = \"http://10.0.0.5:8080/metrics\"\nmetric = \"x\"\nlane = \"main\"\nabove = 3\n[[guard]]\nname = \"t\"\nsignal = \"ttft\"\nurl = \"http://192.168.1.2:11434\"\nabove = \"1s\"\n[[guard]]\nname = \"p\"\nsignal = \"queue-depth\"\ncommand = [\"/bin/q\"]\nfield = \"x\"\nabove = 3\n",
    );
    let p = dir.path();
    let e = find(
        &d,
        p,
        4,
        "guard.q.prometheus",
        "\"http://10.0.0.5:8080/metrics\": 10.0.0.5 is not a loopback address",
    );
    assert!(e.hint.as_deref().unwrap().contains("127.0.0.1"));
    find(
        &d,
        p,
        6,
        "guard.q.lane",
        "`lane` applies only with `command`",
    );
    find(
        &d,
        p,
        11,
        "guard.t.url",
        "192.168.1.2 is not a loopback address",
    );
    find(
        &d,
        p,
        17,
        "guard.p.field",
        "`field` is the field of a `lane`, and there is no `lane`",
    );
    assert_eq!(d.len(), 4, "{d:#?}");
}
