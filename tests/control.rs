//! The `launchgraph` CLI against a running daemon, end to end: the real `launchgraph up`
//! supervising real processes in a tempdir, and each verb run as a separate process of the
//! real binary over the control socket.
//!
//! Covered: `status` (the table and `--json`, one unit, an unknown one; states, pids, exits,
//! restarts, backoff, probes, reasons, preflight findings; no escape codes unless on a
//! terminal without `NO_COLOR`), `start`/`stop`/`restart` in dependency order, `events`
//! (human and JSON lines, `--follow`, the bound of the ring), `metrics` (over the socket and
//! `--metrics-listen`), `reload` and SIGHUP (added, removed, changed, comment-only and invalid
//! edits, `--dry-run`; unchanged units are not touched), every verb without a daemon, a reader
//! who may not act, a second daemon on the same socket, a daemon restarted under running units,
//! and a daemon started on an invalid units directory.
//!
//! Every wait is on what the daemon reports over its socket (a transition from `events`, a
//! unit's `status`) or on a line of the CLI's output, with a generous deadline; the daemon's
//! log is read only for what it alone says. Nothing asserts speed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use launchgraph::control::protocol::ExitRecord;
use launchgraph::control::render::transition_line;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use prometheus_parse::{Scrape, Value};

use support::control::{
    BIN, Follower, Table, cli, cli_command, events_json, on_tty, parse_status, pids,
    processes_running, status_json, unit, wait_status,
};
use support::{Daemon, Transition, UnitDir, array, free_port, process_gone, q, wait_until};

/// An `exec` unit that runs until it is stopped.
const SLEEP: &str = "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n";

/// Quick restarts without jitter, so tests spend little time in backoff.
const FAST_RESTART: &str = "[restart]\ninitial = \"10ms\"\nmax = \"50ms\"\njitter = 0\n";

/// A readiness probe that passes at once, so that the unit has a last probe to show.
const READY_PROBE: &str = "[ready]\nexec = [\"/bin/true\"]\ninterval = \"50ms\"\n";

fn requires(names: &[&str]) -> String {
    format!("requires = {}\n", array(names))
}

/// The daemon's control socket for a test: in a directory the daemon creates, since the
/// tempdir itself is world-writable, which the daemon rightly refuses for its socket.
fn socket_of(d: &UnitDir) -> PathBuf {
    d.path("run/ctl.sock")
}

/// `launchgraph up` on `d`'s units, listening on `socket`, once its socket is ready.
fn start_daemon(d: &UnitDir, socket: &Path) -> Daemon {
    start_daemon_with(d, socket, &[])
}

fn start_daemon_with(d: &UnitDir, socket: &Path, env: &[(&str, &str)]) -> Daemon {
    let mut vars = vec![("LAUNCHGRAPH_SOCKET", socket.to_str().unwrap())];
    vars.extend_from_slice(env);
    let daemon = Daemon::start_with_env(&d.units(), &vars);
    daemon.wait_serving();
    daemon
}

/// Waits, from log line `from` on, until each of `units` is ready; returns those transitions.
fn wait_ready(daemon: &mut Daemon, from: usize, units: &[&str]) -> BTreeMap<String, Transition> {
    units
        .iter()
        .map(|u| {
            let t = daemon.wait_for(from, &format!("{u} ready"), |t| t.is(u, "ready"));
            (u.to_string(), t)
        })
        .collect()
}

/// Asserts that `earlier` was logged before `later`.
#[track_caller]
fn assert_before(daemon: &Daemon, earlier: &Transition, later: &Transition) {
    assert!(
        earlier.index < later.index,
        "expected `{}` before `{}`; the log:\n{}",
        earlier.line,
        later.line,
        daemon.log()
    );
}

/// The transitions of `units` logged at line `from` or later.
fn transitions_of(daemon: &mut Daemon, from: usize, units: &[&str]) -> Vec<String> {
    daemon
        .transitions()
        .into_iter()
        .filter(|t| t.index >= from && units.contains(&t.unit.as_str()))
        .map(|t| t.line)
        .collect()
}

fn write_script(path: &Path, body: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill the unit's process");
}

// ---------------------------------------------------------------------------------------
// status

/// One daemon with a unit in each interesting condition, read through `status` and
/// `status --json`.
#[test]
fn status_shows_each_units_state_pid_exit_backoff_probe_reason_and_findings() {
    let d = UnitDir::new();
    let socket = socket_of(&d);
    let vanishing = d.path("bin/vanishing");
    write_script(&vanishing, "#!/bin/sh\nexec /bin/sleep 1000\n");
    d.unit("a", &format!("{SLEEP}{READY_PROBE}"));
    d.unit(
        "b",
        &format!(
            "{}{SLEEP}[restart]\ninitial = \"60s\"\nmax = \"60s\"\njitter = 0\n",
            requires(&["a"])
        ),
    );
    d.unit("r", &format!("{SLEEP}{FAST_RESTART}"));
    d.unit(
        "broken",
        "[exec]\ncommand = [\"/bin/sh\", \"-c\", \"exit 3\"]\n[restart]\nno-restart-exit-codes = [3]\n",
    );
    d.unit("w", &format!("{}{SLEEP}", requires(&["broken"])));
    d.unit(
        "vanish",
        &format!("[exec]\ncommand = [{}]\n", q(vanishing.to_str().unwrap())),
    );
    let mut daemon = start_daemon(&d, &socket);
    let ready = wait_ready(&mut daemon, 0, &["a", "b", "r", "vanish"]);
    daemon.wait_for(0, "broken failed", |t| t.is("broken", "failed"));
    daemon.wait_for(0, "w waiting on a failed requirement", |t| {
        t.is("w", "waiting") && t.reason == "DEPENDENCY_FAILED"
    });

    // b is killed and waits out a long backoff; r is killed and comes straight back.
    let mark = daemon.mark();
    sigkill(ready["b"].pid() as u32);
    sigkill(ready["r"].pid() as u32);
    daemon.wait_for(mark, "b in backoff", |t| {
        t.is("b", "backoff") && t.reason == "KILLED_BY_SIGNAL"
    });
    let r_again = daemon.wait_for(mark, "r ready again", |t| t.is("r", "ready"));
    // vanish's program disappears from disk while it runs.
    fs::remove_file(&vanishing).unwrap();
    wait_status(&socket, "vanish's files changed", |units| {
        !unit(units, "vanish").preflight.is_empty()
    });

    // --json: the protocol's fields, with the daemon's real figures.
    let out = cli(&socket, &["status", "--json"]);
    let text = out.ok();
    let raw: serde_json::Value = serde_json::from_str(text).unwrap();
    let fields: BTreeSet<&str> = raw["units"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "name",
        "kind",
        "run_by",
        "state",
        "since_secs",
        "reason",
        "detail",
        "last_transition",
        "waiting_on",
        "pid",
        "generation",
        "last_exit",
        "restarts",
        "backoff_remaining_secs",
        "last_probe",
        "preflight",
    ]
    .into();
    assert_eq!(fields, expected, "{text}");
    let units = parse_status(text);
    let names: BTreeSet<&str> = units.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(
        names,
        ["a", "b", "broken", "r", "vanish", "w"].into(),
        "{text}"
    );
    for u in &units {
        assert_eq!(u.kind, "exec", "{u:?}");
        assert!(u.since_secs >= 0.0, "{u:?}");
    }

    let a = unit(&units, "a");
    assert_eq!((a.state.as_str(), a.reason.as_str()), ("ready", "READY"));
    assert_eq!(a.pid, Some(ready["a"].pid() as u32));
    assert_eq!(
        support::control::cmdline(a.pid.unwrap() as i32).unwrap(),
        ["/bin/sleep", "1000"],
        "the pid is the unit's real process"
    );
    let probe = a.last_probe.as_ref().expect("a's readiness probe ran");
    assert_eq!(probe.kind, "ready");
    assert!(probe.ok);
    assert!(probe.latency_ms > 0.0, "{probe:?}");
    assert!(a.preflight.is_empty(), "{a:?}");
    assert_eq!((a.restarts, a.last_exit.as_deref()), (0, None));

    let b = unit(&units, "b");
    assert_eq!(
        (b.state.as_str(), b.reason.as_str()),
        ("backoff", "KILLED_BY_SIGNAL")
    );
    assert_eq!(b.pid, None);
    assert_eq!(b.last_exit.as_deref(), Some("signal=9 (SIGKILL)"));
    let left = b.backoff_remaining_secs.expect("b's backoff remaining");
    assert!(left > 0.0 && left <= 60.0, "{b:?}");

    let r = unit(&units, "r");
    assert_eq!(r.state, "ready");
    assert_eq!(r.pid, Some(r_again.pid() as u32));
    assert_ne!(r.pid, Some(ready["r"].pid() as u32));
    assert_eq!(r.restarts, 1, "{r:?}");
    assert_eq!(r.last_exit.as_deref(), Some("signal=9 (SIGKILL)"));
    assert!(r.generation >= 2, "{r:?}");

    let broken = unit(&units, "broken");
    assert_eq!(
        (broken.state.as_str(), broken.reason.as_str()),
        ("failed", "NO_RESTART_EXIT_CODE")
    );
    assert_eq!(broken.last_exit.as_deref(), Some("exit=3"));
    let last = broken
        .last_transition
        .as_ref()
        .expect("broken's last transition");
    assert_eq!(
        last.exit,
        Some(ExitRecord {
            code: Some(3),
            signal: None
        }),
        "{broken:?}"
    );

    let w = unit(&units, "w");
    assert_eq!(
        (w.state.as_str(), w.reason.as_str(), w.waiting_on.as_deref()),
        ("waiting", "DEPENDENCY_FAILED", Some("broken"))
    );

    let vanish = unit(&units, "vanish");
    assert_eq!(vanish.state, "ready", "still running: {vanish:?}");
    let finding = vanish
        .preflight
        .iter()
        .find(|f| f.code == "COMMAND_PATH_MISSING")
        .unwrap_or_else(|| panic!("no COMMAND_PATH_MISSING: {vanish:?}"));
    assert_eq!(finding.severity, "error");
    for u in ["a", "b", "broken", "r", "w"] {
        assert!(
            unit(&units, u).preflight.is_empty(),
            "{:?}",
            unit(&units, u)
        );
    }

    // The table: the documented columns, a row per unit with the same figures, and notes
    // for what is not simply ready.
    let out = cli(&socket, &["status"]);
    let text = out.ok().to_owned();
    assert!(
        !text.contains('\x1b'),
        "no escape codes with NO_COLOR:\n{text}"
    );
    let table = Table::parse(&text);
    assert_eq!(table.headers, Table::COLUMNS);
    let rows: BTreeSet<&str> = table.rows.iter().map(|r| r["UNIT"].as_str()).collect();
    assert_eq!(rows, names, "{text}");
    let cell = |u: &str, c: &str| table.row(u)[c].clone();
    for (u, state, reason) in [
        ("a", "ready", "READY"),
        ("b", "backoff", "KILLED_BY_SIGNAL"),
        ("r", "ready", "READY"),
        ("broken", "failed", "NO_RESTART_EXIT_CODE"),
        ("w", "waiting", "DEPENDENCY_FAILED"),
        ("vanish", "ready", "READY"),
    ] {
        assert_eq!(
            (cell(u, "STATE"), cell(u, "REASON")),
            (state.into(), reason.into()),
            "{text}"
        );
    }
    assert_eq!(cell("a", "PID"), a.pid.unwrap().to_string());
    assert_eq!(cell("r", "PID"), r.pid.unwrap().to_string());
    assert_eq!(cell("b", "PID"), "-");
    assert_eq!(cell("b", "LAST EXIT"), "signal=9 (SIGKILL)");
    assert_eq!(cell("broken", "LAST EXIT"), "exit=3");
    assert_eq!(cell("r", "RESTARTS"), "1");
    assert_eq!(cell("a", "RESTARTS"), "0");
    let backoff = cell("b", "BACKOFF");
    let secs: f64 = backoff
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("BACKOFF {backoff:?}"));
    assert!(secs > 0.0 && secs <= 60.0, "{text}");
    assert_eq!(cell("a", "BACKOFF"), "-");
    let a_probe = cell("a", "PROBE");
    assert!(
        a_probe.starts_with("ready ok ") && a_probe.ends_with("ms"),
        "{text}"
    );
    assert_eq!(cell("b", "PROBE"), "-");

    assert!(table.notes_of("a").is_empty(), "{text}");
    let broken_notes = table.notes_of("broken");
    assert!(
        broken_notes.iter().any(|l| l.contains("exit=3")),
        "the failure's detail: {text}"
    );
    assert!(
        table
            .notes_of("b")
            .iter()
            .any(|l| l.contains("signal=9 (SIGKILL)")),
        "{text}"
    );
    assert!(
        table
            .notes_of("w")
            .contains(&"waiting on broken (DEPENDENCY_FAILED)".to_owned()),
        "{text}"
    );
    assert!(
        table
            .notes_of("vanish")
            .iter()
            .any(|l| l.starts_with("preflight error COMMAND_PATH_MISSING:")),
        "{text}"
    );

    // No escape codes on a pipe either, even without NO_COLOR; on a terminal there are,
    // unless NO_COLOR is set.
    let mut piped = cli_command(&socket, &["status"]);
    piped.env_remove("NO_COLOR");
    let out = support::control::run(piped);
    assert!(!out.ok().contains('\x1b'), "{}", out.stdout);
    let mut tty = cli_command(&socket, &["status"]);
    tty.env_remove("NO_COLOR");
    let (code, shown) = on_tty(tty);
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("\x1b[32m"),
        "ready in green on a terminal: {shown:?}"
    );
    let (code, shown) = on_tty(cli_command(&socket, &["status"]));
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("READY"), "{shown:?}");
    assert!(!shown.contains('\x1b'), "NO_COLOR on a terminal: {shown:?}");

    // One unit, and one that does not exist.
    let out = cli(&socket, &["status", "broken"]);
    let table = Table::parse(out.ok());
    assert_eq!(table.rows.len(), 1, "{}", out.stdout);
    assert_eq!(table.rows[0]["STATE"], "failed");
    let one = parse_status(cli(&socket, &["status", "a", "--json"]).ok());
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].pid, a.pid);
    for args in [&["status", "nope"][..], &["status", "nope", "--json"]] {
        let out = cli(&socket, args);
        out.expect(64);
        assert!(out.stdout.is_empty(), "{out:?}");
        assert_eq!(
            out.stderr.trim_end(),
            "launchgraph: no unit named \"nope\"",
            "{out:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// start, stop, restart

/// a <- b <- c (c requires b, b requires a), and d on its own.
fn chain(d: &UnitDir) {
    d.unit("a", &format!("{SLEEP}{READY_PROBE}"));
    d.unit("b", &format!("{}{SLEEP}{READY_PROBE}", requires(&["a"])));
    d.unit("c", &format!("{}{SLEEP}{READY_PROBE}", requires(&["b"])));
    d.unit("d", SLEEP);
}

#[test]
fn start_stop_and_restart_follow_the_dependency_order() {
    let d = UnitDir::new();
    let socket = socket_of(&d);
    chain(&d);
    let mut daemon = start_daemon(&d, &socket);
    let first = wait_ready(&mut daemon, 0, &["a", "b", "c", "d"]);
    let pids0 = pids(&socket);

    // stop b: c goes first, then b; a and d are not touched.
    let mark = daemon.mark();
    let out = cli(&socket, &["stop", "b"]);
    assert_eq!(out.ok(), "stopping b\n");
    let c_stopped = daemon.wait_for(mark, "c stopped", |t| t.is("c", "stopped"));
    let b_stopping = daemon.wait_for(mark, "b stopping", |t| t.is("b", "stopping"));
    let b_stopped = daemon.wait_for(mark, "b stopped", |t| t.is("b", "stopped"));
    assert_eq!(b_stopping.reason, "STOP_REQUESTED");
    assert_before(&daemon, &c_stopped, &b_stopping);
    assert!(process_gone(first["b"].pid()) && process_gone(first["c"].pid()));
    let units = status_json(&socket);
    for (u, state) in [
        ("a", "ready"),
        ("b", "stopped"),
        ("c", "stopped"),
        ("d", "ready"),
    ] {
        assert_eq!(unit(&units, u).state, state, "{units:#?}");
    }
    assert_eq!(unit(&units, "a").pid, pids0["a"]);
    assert_eq!(unit(&units, "d").pid, pids0["d"]);
    assert_eq!(unit(&units, "b").reason, "STOP_REQUESTED");

    // start c: b comes up first, then c.
    let mark = b_stopped.index + 1;
    let out = cli(&socket, &["start", "c"]);
    assert_eq!(out.ok(), "starting c\n");
    let b_ready = daemon.wait_for(mark, "b ready", |t| t.is("b", "ready"));
    let c_starting = daemon.wait_for(mark, "c starting", |t| t.is("c", "starting"));
    let c_ready = daemon.wait_for(mark, "c ready", |t| t.is("c", "ready"));
    assert_before(&daemon, &b_ready, &c_starting);
    let units = status_json(&socket);
    assert_eq!(unit(&units, "c").pid, Some(c_ready.pid() as u32));
    assert_eq!(unit(&units, "a").pid, pids0["a"]);

    // restart a: c and b stop (dependents first), a cycles, then b and c come back in order.
    let mark = daemon.mark();
    let out = cli(&socket, &["restart", "a"]);
    assert_eq!(out.ok(), "restarting a\n");
    let step = |daemon: &mut Daemon, u: &str, to: &str| {
        daemon.wait_for(mark, &format!("{u} {to}"), |t| t.is(u, to))
    };
    // A dependent that goes down for its requirement's sake waits for it (stopping ->
    // waiting); it is down once it leaves `stopping`.
    let down = |daemon: &mut Daemon, u: &str| {
        daemon.wait_for(mark, &format!("{u} down"), |t| {
            t.unit == u && t.from == "stopping"
        })
    };
    let c_stopped = down(&mut daemon, "c");
    let b_stopping = step(&mut daemon, "b", "stopping");
    let b_stopped = down(&mut daemon, "b");
    let a_stopping = step(&mut daemon, "a", "stopping");
    let a_ready = step(&mut daemon, "a", "ready");
    let b_starting = step(&mut daemon, "b", "starting");
    let b_ready = step(&mut daemon, "b", "ready");
    let c_starting = step(&mut daemon, "c", "starting");
    let c_ready = step(&mut daemon, "c", "ready");
    assert_eq!(a_stopping.reason, "RESTART_REQUESTED");
    assert_eq!(b_stopping.reason, "DEPENDENCY_RESTARTING");
    for (earlier, later) in [
        (&c_stopped, &b_stopping),
        (&b_stopped, &a_stopping),
        (&a_ready, &b_starting),
        (&b_ready, &c_starting),
    ] {
        assert_before(&daemon, earlier, later);
    }
    let units = status_json(&socket);
    for (u, t) in [("a", &a_ready), ("b", &b_ready), ("c", &c_ready)] {
        assert_eq!(unit(&units, u).pid, Some(t.pid() as u32), "{u}");
        assert_ne!(unit(&units, u).pid, pids0[u], "{u} has a new process");
    }
    assert_eq!(unit(&units, "d").pid, pids0["d"], "d is not touched");
    assert!(transitions_of(&mut daemon, mark, &["d"]).is_empty());

    for verb in ["start", "stop", "restart"] {
        let out = cli(&socket, &[verb, "nope"]);
        out.expect(64);
        assert_eq!(
            out.stderr.trim_end(),
            "launchgraph: no unit named \"nope\"",
            "{out:?}"
        );
    }
    assert_eq!(pids(&socket)["d"], pids0["d"]);
}

// ---------------------------------------------------------------------------------------
// events

#[test]
fn events_replay_the_transitions_and_follow_live_ones() {
    let d = UnitDir::new();
    let socket = socket_of(&d);
    chain(&d);
    let mut daemon = start_daemon(&d, &socket);
    wait_ready(&mut daemon, 0, &["a", "b", "c", "d"]);

    // --json: one record per logged transition, in order, with consecutive seq.
    let ring = events_json(&socket);
    let logged = daemon.transitions();
    assert_eq!(ring.len(), logged.len(), "{ring:#?}\n{}", daemon.log());
    for (i, (e, t)) in ring.iter().zip(&logged).enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "{e:?}");
        assert_eq!(
            (&e.unit, &e.from, &e.to, &e.reason, &e.on, &e.facts),
            (&t.unit, &t.from, &t.to, &t.reason, &t.on, &t.facts),
            "{e:?} is not {:?}",
            t.line
        );
        if e.to == "started" || e.to == "ready" {
            assert!(e.facts.pid.is_some(), "{e:?}");
        }
        if e.to == "ready" {
            assert!(e.facts.time_to_ready_ms.is_some(), "{e:?}");
        }
        humantime::parse_rfc3339(&e.time).unwrap_or_else(|err| panic!("{e:?}: {err}"));
    }
    assert!(ring.windows(2).all(|w| w[0].time <= w[1].time), "{ring:#?}");
    let fields: BTreeSet<String> = serde_json::from_str::<serde_json::Value>(
        cli(&socket, &["events", "--json"])
            .ok()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap()
    .as_object()
    .unwrap()
    .keys()
    .cloned()
    .collect();
    let expected: BTreeSet<String> = [
        "time",
        "seq",
        "unit",
        "from",
        "to",
        "reason",
        "on",
        "generation",
        "pid",
        "exit",
        "ran_ms",
        "failures",
        "delay_ms",
        "latency_ms",
        "time_to_ready_ms",
        "note",
        "cause",
    ]
    .map(String::from)
    .into();
    assert_eq!(fields, expected);

    // The human lines say the same.
    let out = cli(&socket, &["events"]);
    let human: Vec<&str> = out.ok().lines().collect();
    assert_eq!(human.len(), ring.len(), "{}", out.stdout);
    for (line, e) in human.iter().zip(&ring) {
        assert_eq!(*line, format!("{} {}", e.time, transition_line(e)));
    }
    assert!(
        human
            .iter()
            .any(|l| l.contains("b: inactive -> waiting WAITING_FOR_DEPENDENCY on=a")),
        "{}",
        out.stdout
    );

    // --follow: the ring first, then live transitions as they happen, until killed.
    let last = ring.last().unwrap().seq;
    let mut follower = Follower::start(&socket);
    follower.wait("the end of the replay", |e| e.seq == last);
    let out = cli(&socket, &["restart", "a"]);
    out.ok();
    let a_stopping = follower.wait("a stopping", |e| {
        e.seq > last && e.unit == "a" && e.to == "stopping"
    });
    assert_eq!(a_stopping.reason, "RESTART_REQUESTED");
    let c_ready = follower.wait("c ready again", |e| {
        e.seq > last && e.unit == "c" && e.to == "ready"
    });
    assert!(follower.exited().is_none(), "--follow keeps following");
    let seqs: Vec<u64> = follower.seen.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=c_ready.seq).collect::<Vec<_>>());
    follower.kill();

    // The daemon is unharmed by the follower going away, and its ring has the live events.
    let ring = events_json(&socket);
    assert_eq!(ring.last().unwrap().seq, c_ready.seq);
    assert_eq!(ring.last().unwrap(), &c_ready);
    assert_eq!(unit(&status_json(&socket), "c").state, "ready");

    // A follower still there when the daemon shuts down ends, successfully, with it.
    let mut follower = Follower::start(&socket);
    follower.wait("the end of the replay", |e| e.seq == c_ready.seq);
    assert_eq!(daemon.terminate().code(), Some(0), "{}", daemon.log());
    assert_eq!(follower.wait_exit(), Some(0), "{:#?}", follower.seen);
    let seqs: Vec<u64> = follower.seen.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

/// A follower of a daemon that shuts down should see every transition of the shutdown, up to
/// the last unit's `stopped`, before its stream ends. Tried a few times, as what goes wrong is
/// a race.
#[test]
fn a_follower_sees_every_transition_of_a_shutdown() {
    for _ in 0..10 {
        let d = UnitDir::new();
        let socket = socket_of(&d);
        chain(&d);
        let mut daemon = start_daemon(&d, &socket);
        let ready = wait_ready(&mut daemon, 0, &["a", "b", "c", "d"]);
        let last = ready.values().map(|t| t.index).max().unwrap();
        let mut follower = Follower::start(&socket);
        let replayed = daemon.transitions().len() as u64;
        follower.wait("the end of the replay", |e| e.seq == replayed);
        assert_eq!(daemon.terminate().code(), Some(0), "{}", daemon.log());
        assert_eq!(follower.wait_exit(), Some(0));
        let logged: Vec<(String, String)> = daemon
            .transitions()
            .into_iter()
            .filter(|t| t.index > last)
            .map(|t| (t.unit, t.to))
            .collect();
        let followed: Vec<(String, String)> = follower
            .seen
            .iter()
            .filter(|e| e.seq > replayed)
            .map(|e| (e.unit.clone(), e.to.clone()))
            .collect();
        assert_eq!(followed, logged, "every transition of the shutdown");
    }
}

/// A unit that exits at once with no backoff makes transitions quickly; once more than the
/// ring holds were made, `events` gives the last 1000, with consecutive seq.
#[test]
fn events_returns_at_most_the_last_1000() {
    let d = UnitDir::new();
    let socket = socket_of(&d);
    d.unit(
        "flap",
        "[exec]\ncommand = [\"/bin/false\"]\n[restart]\ninitial = \"0s\"\nmax = \"0s\"\n\
         jitter = 0\nstart-limit-count = 1000000\n",
    );
    d.unit("steady", SLEEP);
    let mut daemon = start_daemon(&d, &socket);
    wait_ready(&mut daemon, 0, &["steady"]);
    let mut follower = Follower::start(&socket);
    follower.wait("seq past 1100", |e| e.seq > 1100);
    cli(&socket, &["stop", "flap"]).ok();
    let stopped = follower.wait("flap stopped", |e| e.unit == "flap" && e.to == "stopped");
    follower.kill();
    let units = status_json(&socket);
    assert_eq!(unit(&units, "flap").state, "stopped");
    // steady's last transition left the ring long ago; status still says why it is ready.
    let steady = unit(&units, "steady");
    assert_eq!(
        (steady.state.as_str(), steady.reason.as_str()),
        ("ready", "READY")
    );
    let last = steady
        .last_transition
        .as_ref()
        .expect("steady's last transition");
    assert_eq!(last.pid, steady.pid, "{steady:?}");

    let ring = events_json(&socket);
    assert_eq!(ring.len(), 1000);
    assert!(
        ring.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "consecutive seq"
    );
    assert_eq!(ring.last().unwrap(), &stopped, "ends at the latest");
    assert_eq!(ring[0].seq, stopped.seq - 999);
    let out = cli(&socket, &["events"]);
    assert_eq!(out.ok().lines().count(), 1000);
}

// ---------------------------------------------------------------------------------------
// metrics

fn scrape(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"))
}

/// The value of the sample `metric{labels}`, if there is one.
fn sample(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{metric}: not a single value: {other:?}"),
        })
}

#[track_caller]
fn assert_states(s: &Scrape, expected: &[(&str, &str)]) {
    for (u, state) in expected {
        let mut ones = Vec::new();
        for x in &s.samples {
            if x.metric == "launchgraph_unit_state"
                && x.labels.get("unit") == Some(*u)
                && matches!(x.value, Value::Gauge(v) if v == 1.0)
            {
                ones.push(x.labels.get("state").unwrap().to_owned());
            }
        }
        assert_eq!(ones, [state.to_string()], "{u}: the states at 1");
        assert_eq!(
            sample(
                s,
                "launchgraph_unit_state",
                &[("unit", u), ("state", state)]
            ),
            Some(1.0)
        );
    }
}

/// A plain HTTP/1.1 GET of `http://ADDR/metrics`: the status line, headers and body.
/// GET /metrics from `addr`: the head and the body.
/// A daemon of `units` on `socket` serving metrics on a loopback port of its choosing, and
/// that address (port 0: the address bound is told in the log alone).
fn start_with_metrics(units: &Path, socket: &Path) -> (Daemon, String) {
    let mut daemon = Daemon::start_with(
        units,
        &[],
        &[
            "--socket",
            socket.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let line = daemon.wait_log(0, "the metrics address", |l| {
        l.contains("metrics on http://")
    });
    let addr = daemon.lines()[line]
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no address in {:?}", daemon.lines()[line]))
        .to_owned();
    (daemon, addr)
}

fn http_get(addr: &str) -> (String, String) {
    let addr = addr.parse().expect("a socket address");
    let a = support::http_get(addr, "/metrics", support::DEADLINE)
        .unwrap_or_else(|| panic!("no answer from http://{addr}/metrics"));
    (a.head, a.body)
}

#[test]
fn metrics_over_the_socket_and_http_count_states_and_restarts() {
    let d = UnitDir::new();
    let socket = socket_of(&d);
    d.unit("a", &format!("{SLEEP}{READY_PROBE}{FAST_RESTART}"));
    d.unit("b", &format!("{}{SLEEP}", requires(&["a"])));
    let units = d.units();
    let (mut daemon, addr) = start_with_metrics(&units, &socket);
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let a_ready = daemon.wait_for(0, "a ready", |t| t.is("a", "ready"));
    daemon.wait_for(0, "b ready", |t| t.is("b", "ready"));

    let s = scrape(cli(&socket, &["metrics"]).ok());
    assert_states(&s, &[("a", "ready"), ("b", "ready")]);
    assert_eq!(sample(&s, "launchgraph_units", &[]), Some(2.0));
    assert_eq!(sample(&s, "launchgraph_up", &[]), Some(1.0));
    let restarts = |s: &Scrape, u: &str, reason: &str| {
        sample(
            s,
            "launchgraph_unit_restarts_total",
            &[("unit", u), ("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(restarts(&s, "a", "KILLED_BY_SIGNAL"), 0.0);

    let (head, body) = http_get(&addr);
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    assert_states(&scrape(&body), &[("a", "ready"), ("b", "ready")]);

    // A kill is a restart, of a and (for its requirement's sake) of b.
    let mark = daemon.mark();
    sigkill(a_ready.pid() as u32);
    daemon.wait_for(mark, "a ready again", |t| t.is("a", "ready"));
    daemon.wait_for(mark, "b ready again", |t| t.is("b", "ready"));
    let s = scrape(cli(&socket, &["metrics"]).ok());
    assert_states(&s, &[("a", "ready"), ("b", "ready")]);
    assert_eq!(restarts(&s, "a", "KILLED_BY_SIGNAL"), 1.0, "{s:#?}");
    assert_eq!(restarts(&s, "b", "DEPENDENCY_RESTARTING"), 1.0);
    let (_, body) = http_get(&addr);
    assert_eq!(restarts(&scrape(&body), "a", "KILLED_BY_SIGNAL"), 1.0);

    assert_eq!(daemon.terminate().code(), Some(0), "{}", daemon.log());
}

// ---------------------------------------------------------------------------------------
// reload

/// The rows of a reload report: `added`, `removed`, `changed`, `cycled`, `unchanged`, each
/// with its units.
fn report(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    text.lines()
        .map(|l| {
            let (key, units) = l.split_once(':').unwrap_or_else(|| panic!("{l:?}"));
            let key = key.split(' ').next().unwrap().to_owned();
            let units = match units.trim() {
                "none" => BTreeSet::new(),
                list => list.split(", ").map(String::from).collect(),
            };
            (key, units)
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn reload_applies_only_the_difference_and_never_touches_unchanged_units() {
    let d = UnitDir::new();
    let socket = socket_of(&d);
    d.unit("keep", SLEEP);
    d.unit("note", SLEEP);
    d.unit("db", &format!("{SLEEP}{READY_PROBE}"));
    d.unit("app", &format!("{}{SLEEP}", requires(&["db"])));
    d.unit("old", SLEEP);
    let mut daemon = start_daemon(&d, &socket);
    wait_ready(&mut daemon, 0, &["keep", "note", "db", "app", "old"]);
    let pids0 = pids(&socket);
    let untouched = |pids: &BTreeMap<String, Option<u32>>| {
        for u in ["keep", "note"] {
            assert_eq!(pids[u], pids0[u], "{u} keeps its process");
        }
    };

    // The edits: db's command changes (app requires it), note gains only a comment, old goes,
    // new comes.
    d.unit(
        "db",
        &format!("[exec]\ncommand = [\"/bin/sleep\", \"1001\"]\n{READY_PROBE}"),
    );
    d.unit(
        "note",
        &format!("# the same unit, with a word about it\n{SLEEP}"),
    );
    fs::remove_file(d.units().join("old.toml")).unwrap();
    d.unit("new", SLEEP);

    // --dry-run: the plan, and nothing changes.
    let mark = daemon.mark();
    let out = cli(&socket, &["reload", "--dry-run"]);
    let plan = out.ok();
    assert!(plan.contains("added (would start):"), "{plan}");
    let expected: BTreeMap<String, BTreeSet<String>> = [
        ("added", set(&["new"])),
        ("removed", set(&["old"])),
        ("changed", set(&["db"])),
        ("cycled", set(&["app"])),
        ("unchanged", set(&["keep", "note"])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(report(plan), expected, "{plan}");
    let after_dry_run = pids(&socket);
    assert_eq!(after_dry_run, pids0, "a dry run changes nothing");

    // The reload itself.
    let out = cli(&socket, &["reload"]);
    let done = out.ok();
    assert!(done.contains("added (will start):"), "{done}");
    assert_eq!(report(done), expected, "{done}");
    let old_stopped = daemon.wait_for(mark, "old stopped", |t| t.is("old", "stopped"));
    assert_eq!(old_stopped.reason, "RELOAD");
    let app_stopping = daemon.wait_for(mark, "app stopping", |t| t.is("app", "stopping"));
    let db_stopping = daemon.wait_for(mark, "db stopping", |t| t.is("db", "stopping"));
    let db_ready = daemon.wait_for(mark, "db ready", |t| t.is("db", "ready"));
    let app_starting = daemon.wait_for(mark, "app starting", |t| t.is("app", "starting"));
    let app_ready = daemon.wait_for(mark, "app ready", |t| t.is("app", "ready"));
    let new_ready = daemon.wait_for(mark, "new ready", |t| t.is("new", "ready"));
    assert_eq!(
        (app_stopping.reason.as_str(), db_stopping.reason.as_str()),
        ("RELOAD", "RELOAD")
    );
    assert_before(&daemon, &app_stopping, &db_stopping);
    assert_before(&daemon, &db_ready, &app_starting);

    let pids1 = pids(&socket);
    untouched(&pids1);
    assert!(!pids1.contains_key("old"), "{pids1:?}");
    assert_eq!(pids1["db"], Some(db_ready.pid() as u32));
    assert_eq!(pids1["app"], Some(app_ready.pid() as u32));
    assert_eq!(pids1["new"], Some(new_ready.pid() as u32));
    assert_eq!(
        support::control::cmdline(db_ready.pid()).unwrap(),
        ["/bin/sleep", "1001"],
        "db runs its new command"
    );
    for gone in ["old", "db", "app"] {
        let pid = pids0[gone].unwrap() as i32;
        wait_until(&format!("{gone}'s old process is gone"), || {
            process_gone(pid)
        });
    }
    assert_eq!(
        transitions_of(&mut daemon, mark, &["keep", "note"]),
        Vec::<String>::new(),
        "not touched, not even for a moment"
    );
    let out = cli(&socket, &["status", "old"]);
    out.expect(64);
    let s = scrape(cli(&socket, &["metrics"]).ok());
    assert_states(
        &s,
        &[
            ("keep", "ready"),
            ("db", "ready"),
            ("app", "ready"),
            ("new", "ready"),
        ],
    );
    assert!(
        s.samples
            .iter()
            .all(|x| x.labels.get("unit") != Some("old")),
        "a removed unit has no series left"
    );

    // An invalid edit: every error with its file and line, and nothing changes.
    let keep = fs::read_to_string(d.units().join("keep.toml")).unwrap();
    let new = fs::read_to_string(d.units().join("new.toml")).unwrap();
    d.unit("keep", &format!("{SLEEP}stop-timeout = \"soon\"\n"));
    d.unit("new", &format!("{}{SLEEP}", requires(&["ghost"])));
    let mark = daemon.mark();
    for args in [&["reload"][..], &["reload", "--dry-run"]] {
        let out = cli(&socket, args);
        out.expect(78);
        let keep_toml = format!("{}:3:", d.units().join("keep.toml").display());
        let new_toml = format!("{}:1:", d.units().join("new.toml").display());
        assert!(out.stderr.contains(&keep_toml), "{keep_toml} in {out:#?}");
        assert!(out.stderr.contains(&new_toml), "{new_toml} in {out:#?}");
        assert!(out.stdout.is_empty(), "{out:#?}");
    }
    assert_eq!(pids(&socket), pids1, "an invalid directory changes nothing");
    assert_eq!(
        transitions_of(&mut daemon, mark, &["keep", "note", "db", "app", "new"]),
        Vec::<String>::new()
    );
    fs::write(d.units().join("keep.toml"), keep).unwrap();
    fs::write(d.units().join("new.toml"), new).unwrap();
    let out = cli(&socket, &["reload", "--dry-run"]);
    let nothing = report(out.ok());
    for key in ["added", "removed", "changed", "cycled"] {
        assert!(nothing[key].is_empty(), "{}", out.stdout);
    }

    // SIGHUP does what `reload` does.
    d.unit("extra", &format!("{}{SLEEP}", requires(&["keep"])));
    let mark = daemon.mark();
    let log_mark = daemon.log_mark();
    daemon.signal(Signal::SIGHUP);
    let extra_ready = daemon.wait_for(mark, "extra ready", |t| t.is("extra", "ready"));
    // A reload by SIGHUP answers nobody: its summary is in the log alone.
    daemon.wait_log(log_mark, "the reload's summary", |l| {
        l.contains("reload: added [\"extra\"], removed [], changed [], cycled []")
    });
    let pids2 = pids(&socket);
    untouched(&pids2);
    for u in ["db", "app", "new"] {
        assert_eq!(pids2[u], pids1[u], "{u} keeps its process");
    }
    assert_eq!(pids2["extra"], Some(extra_ready.pid() as u32));
    assert_eq!(
        transitions_of(&mut daemon, mark, &["keep", "note", "db", "app", "new"]),
        Vec::<String>::new()
    );
}

// ---------------------------------------------------------------------------------------
// no daemon

#[test]
fn every_verb_says_in_one_line_that_no_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    // A socket file left by a daemon that is gone: nobody listens on it.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let verbs: [&[&str]; 14] = [
        &["status"],
        &["status", "--json"],
        &["status", "a"],
        &["start", "a"],
        &["stop", "a"],
        &["restart", "a"],
        &["reload"],
        &["reload", "--dry-run"],
        &["events"],
        &["events", "--json"],
        &["events", "--follow"],
        &["events", "--follow", "--json"],
        &["metrics"],
        &["status", "a", "--json"],
    ];
    for socket in [&missing, &stale] {
        for args in verbs {
            let out = cli(socket, args);
            out.expect(69);
            assert!(out.stdout.is_empty(), "{args:?}: {out:#?}");
            let lines: Vec<&str> = out.stderr.lines().collect();
            assert_eq!(
                lines,
                [format!(
                    "launchgraph: launchgraph is not running (no daemon at {})",
                    socket.display()
                )],
                "{args:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// permissions

#[test]
#[ignore = "needs root"]
fn root_a_reader_outside_the_admin_group_may_read_but_not_act() {
    support::needs_root("running the CLI as another user");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("this test runs the CLI as the user nobody, which this host lacks");
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    assert!(
        std::process::Command::new(BIN)
            .arg("--version")
            .uid(uid)
            .gid(gid)
            .output()
            .is_ok_and(|o| o.status.success()),
        "{BIN} cannot be run as nobody: build it where every user may read and run it"
    );
    let (group, group_gid) =
        support::control::group_nobody_is_not_in().expect("a group in /etc/group");
    let d = UnitDir::new();
    let socket = socket_of(&d);
    chain(&d);
    let mut daemon = start_daemon_with(&d, &socket, &[("LAUNCHGRAPH_ADMIN_GROUP", &group)]);
    wait_ready(&mut daemon, 0, &["a", "b", "c", "d"]);
    let pids0 = pids(&socket);
    let meta = fs::symlink_metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    assert_eq!(meta.gid(), group_gid);
    let as_nobody = |args: &[&str]| support::control::as_user(cli_command(&socket, args), uid, gid);

    // The 0660 socket cannot even be opened by nobody.
    let out = as_nobody(&["status"]);
    out.expect(77);
    assert!(out.stderr.contains("permission denied on"), "{out:#?}");

    // Reachable (as the transport tests do it), nobody may read...
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).unwrap();
    let mark = daemon.mark();
    let table = Table::parse(as_nobody(&["status"]).ok());
    assert_eq!(table.rows.len(), 4);
    assert_eq!(table.row("a")["PID"], pids0["a"].unwrap().to_string());
    assert_eq!(parse_status(as_nobody(&["status", "--json"]).ok()).len(), 4);
    assert!(!as_nobody(&["events"]).ok().is_empty());
    assert!(
        as_nobody(&["metrics"])
            .ok()
            .contains("launchgraph_unit_state")
    );
    assert!(as_nobody(&["reload", "--dry-run"]).ok().contains("would"));

    // ... but not act.
    for (args, verb) in [
        (&["restart", "a"][..], "restart"),
        (&["stop", "a"], "stop"),
        (&["start", "a"], "start"),
        (&["reload"], "reload"),
    ] {
        let out = as_nobody(args);
        out.expect(77);
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "launchgraph: uid {uid} may read but not act: {verb} needs root or a member of \
                 the group {group} (gid {group_gid})"
            ),
            "{out:#?}"
        );
    }
    // Root may; once its restart of d is done, nothing else was touched.
    cli(&socket, &["restart", "d"]).ok();
    daemon.wait_for(mark, "d ready again", |t| t.is("d", "ready"));
    let pids1 = pids(&socket);
    for u in ["a", "b", "c"] {
        assert_eq!(pids1[u], pids0[u], "{u} was not restarted");
    }
    assert_ne!(pids1["d"], pids0["d"]);
    assert_eq!(
        transitions_of(&mut daemon, mark, &["a", "b", "c"]),
        Vec::<String>::new()
    );
}

// ---------------------------------------------------------------------------------------
// a second daemon

#[test]
fn a_second_daemon_on_the_same_socket_refuses_to_start() {
    let d = UnitDir::new();
    let socket = socket_of(&d);
    chain(&d);
    let mut first = start_daemon(&d, &socket);
    wait_ready(&mut first, 0, &["a", "b", "c", "d"]);
    let pids0 = pids(&socket);
    let mark = first.mark();

    // The same units, state directory and socket: what an admin starting it twice does.
    let mut second = Daemon::start_with_env(
        &d.units(),
        &[("LAUNCHGRAPH_SOCKET", socket.to_str().unwrap())],
    );
    // It has no socket to answer on: it says so in its log, and exits.
    let refusal = second.wait_log(0, "the refusal", |l| l.contains("already running"));
    let line = second.lines()[refusal].clone();
    assert!(line.contains(socket.to_str().unwrap()), "{line}");
    let status = second.terminate();
    assert_eq!(status.code(), Some(73), "{}", second.log());
    assert!(
        !second.log().contains(" -> "),
        "it changed no unit's state: {}",
        second.log()
    );

    // The first runs on, untouched, and still answers on its socket.
    assert_eq!(pids(&socket), pids0);
    assert!(first.try_status().is_none(), "the first daemon runs");
    let out = cli(&socket, &["restart", "d"]);
    out.ok();
    first.wait_for(mark, "d ready again", |t| t.is("d", "ready"));
    assert_eq!(
        transitions_of(&mut first, mark, &["a", "b", "c"]),
        Vec::<String>::new()
    );
}

// ---------------------------------------------------------------------------------------
// a daemon restarted under its units

/// Whether `argv` is serve.py run as unit `name` from `d`.
fn runs_unit(d: &UnitDir, name: &str, argv: &[String]) -> bool {
    let script = d.path("serve.py");
    let script = script.to_str().unwrap();
    argv.iter()
        .position(|a| a == script)
        .is_some_and(|i| argv.get(i + 1).is_some_and(|n| n == name))
}

#[test]
fn a_new_daemon_stops_what_the_killed_one_left_and_starts_it_again_in_order() {
    let d = UnitDir::new();
    let socket = socket_of(&d);
    let names = ["a", "b", "c"];
    for (i, name) in names.iter().enumerate() {
        let port = free_port();
        let needs = if i == 0 {
            String::new()
        } else {
            requires(&[names[i - 1]])
        };
        d.unit(
            name,
            &format!(
                "{needs}[exec]\ncommand = {}\nstop-timeout = \"1s\"\n\
                 [ready]\ntcp = \"127.0.0.1:{port}\"\ninterval = \"50ms\"\n",
                d.serve(name, "tcp", &[&port.to_string(), "0"])
            ),
        );
    }
    // A short stop-timeout: a leftover the new daemon killed stays a zombie until whoever
    // inherited it reaps it, and the new daemon waits for its process group meanwhile.
    let mut first = start_daemon(&d, &socket);
    let ready = wait_ready(&mut first, 0, &names);
    let old: BTreeMap<&str, i32> = names.iter().map(|n| (*n, ready[*n].pid())).collect();

    // The daemon dies at once; its units run on, orphaned; its socket file stays, unanswered.
    first.stop_with(Signal::SIGKILL);
    for (name, pid) in &old {
        assert!(!process_gone(*pid), "{name} outlives the daemon");
    }
    let out = cli(&socket, &["status"]);
    out.expect(69);

    // A new daemon on the same units and state: the leftovers are stopped, dependents first,
    // then everything starts again in order, each unit exactly once.
    let mut second = start_daemon(&d, &socket);
    let new = wait_ready(&mut second, 0, &names);
    let leftover = |daemon: &mut Daemon, name: &str| {
        // Leftovers are stopped before anything runs, so before any transition: the log alone
        // tells them.
        daemon.wait_log(0, &format!("{name} left over"), |l| {
            l.contains(&format!(
                "{name}: pid {} is left from a previous launchgraph",
                old[name]
            ))
        })
    };
    let (c_left, b_left, a_left) = (
        leftover(&mut second, "c"),
        leftover(&mut second, "b"),
        leftover(&mut second, "a"),
    );
    assert!(c_left < b_left && b_left < a_left, "{}", second.log());
    let first_transition = second
        .lines()
        .iter()
        .position(|l| l.contains(" -> "))
        .unwrap_or(usize::MAX);
    assert!(a_left < first_transition, "{}", second.log());
    let b_starting = second.find(0, "b starting", |t| t.is("b", "starting"));
    let c_starting = second.find(0, "c starting", |t| t.is("c", "starting"));
    assert_before(&second, &new["a"], &b_starting);
    assert_before(&second, &new["b"], &c_starting);
    let units = status_json(&socket);
    for name in names {
        assert!(process_gone(old[name]), "{name}'s old process is gone");
        let running = processes_running(|argv| runs_unit(&d, name, argv));
        assert_eq!(
            running,
            [new[name].pid()],
            "exactly one process runs {name}"
        );
        assert_eq!(unit(&units, name).pid, Some(new[name].pid() as u32));
        assert_eq!(unit(&units, name).state, "ready");
        // Started twice in all, once by each daemon, and it could listen each time.
        assert_eq!(
            d.events().times(name, "listen").len(),
            2,
            "{:?}",
            d.events()
        );
    }
    assert!(
        second.transitions().iter().all(|t| t.to != "backoff"),
        "no start failed (no port was still taken):\n{}",
        second.log()
    );
}

// ---------------------------------------------------------------------------------------
// an invalid units directory

/// Waits until the daemon answers that its units directory is invalid.
fn wait_invalid(socket: &Path) {
    wait_until("the daemon reports the invalid directory", || {
        cli(socket, &["status"]).code == Some(78)
    });
}

const INVALID: &str = "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\nbogus = 1\n";

#[test]
fn an_invalid_directory_is_reported_to_every_verb_until_fixed_and_reloaded() {
    let d = UnitDir::new();
    let socket = socket_of(&d);
    d.unit("a", INVALID);
    d.unit("b", &format!("{}{SLEEP}", requires(&["a"])));
    let mut daemon = start_daemon(&d, &socket);
    wait_invalid(&socket);
    let error = format!(
        "{}:3:1: unknown key `bogus`",
        d.units().join("a.toml").display()
    );
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["status", "a"],
        &["events"],
        &["metrics"],
        &["restart", "a"],
    ] {
        let out = cli(&socket, args);
        out.expect(78);
        assert!(out.stdout.is_empty(), "{args:?}: {out:#?}");
        assert!(
            out.stderr
                .starts_with("launchgraph: nothing is running: the units directory is invalid\n"),
            "{args:?}: {out:#?}"
        );
        assert!(out.stderr.contains(&error), "{args:?}: {out:#?}");
    }
    assert!(daemon.transitions().is_empty(), "{}", daemon.log());

    d.unit("a", SLEEP);
    cli(&socket, &["reload"]);
    let ready = wait_ready(&mut daemon, 0, &["a", "b"]);
    assert_before(&daemon, &ready["a"], &ready["b"]);
    let units = status_json(&socket);
    assert_eq!(unit(&units, "a").pid, Some(ready["a"].pid() as u32));
    assert_eq!(unit(&units, "b").state, "ready");
}

/// After the directory is fixed, `launchgraph reload` should say that it worked.
#[test]
fn reload_after_fixing_an_invalid_directory_succeeds() {
    let d = UnitDir::new();
    let socket = socket_of(&d);
    d.unit("a", INVALID);
    let mut daemon = start_daemon(&d, &socket);
    wait_invalid(&socket);
    d.unit("a", SLEEP);
    let out = cli(&socket, &["reload"]);
    wait_ready(&mut daemon, 0, &["a"]);
    out.expect(0);
    assert!(out.stdout.contains('a'), "{out:#?}");
}

/// After the directory is fixed, `reload --dry-run` should read it again, not repeat the
/// errors of the last read.
#[test]
fn a_dry_run_after_fixing_an_invalid_directory_reads_it_again() {
    let d = UnitDir::new();
    let socket = socket_of(&d);
    d.unit("a", INVALID);
    let _daemon = start_daemon(&d, &socket);
    wait_invalid(&socket);
    d.unit("a", SLEEP);
    let out = cli(&socket, &["reload", "--dry-run"]);
    assert!(!out.stderr.contains("bogus"), "stale errors: {out:#?}");
    out.expect(0);
}

/// While the units directory has never been valid, a scrape says why, with a 503, instead of
/// serving metrics of nothing; once it is fixed and reloaded, the metrics are served.
#[test]
fn metrics_over_http_say_why_while_the_directory_is_invalid() {
    let d = UnitDir::new();
    let socket = socket_of(&d);
    d.unit("a", INVALID);
    let units = d.units();
    let (mut daemon, addr) = start_with_metrics(&units, &socket);
    daemon.wait_log(0, "nothing started", |l| l.contains("nothing started"));
    let (head, body) = http_get(&addr);
    assert!(head.contains(" 503 "), "{head}\n{body}");
    assert!(body.contains("unknown key `bogus`"), "{body}");

    d.unit("a", SLEEP);
    cli(&socket, &["reload"]).expect(0);
    daemon.wait_for(0, "a ready", |t| t.is("a", "ready"));
    let (head, body) = http_get(&addr);
    assert!(head.contains(" 200 "), "{head}\n{body}");
    assert_states(&scrape(&body), &[("a", "ready")]);
}
