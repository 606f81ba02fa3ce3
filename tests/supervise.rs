//! `launchgraph up` end to end: the real binary supervising real processes on real loopback
//! ports, with real signals.
//!
//! Covered: start order gated on each probe kind (tcp, http status and body, exec), start
//! timeouts, ordered restarts after a crash and after a liveness failure, backoff growth, cap
//! and reset, the start limit, no-restart exit codes, graceful shutdown in reverse order
//! (including a unit that ignores SIGTERM), grandchildren, privilege drop, the exact
//! environment of a unit, and an invalid units directory.
//!
//! Every test waits for what the daemon reports over its socket (its transitions, from
//! `events`) or for files its units write, with generous deadlines; none asserts speed. Order
//! is proven twice where it matters: by the order of the daemon's transitions, and by the
//! CLOCK_REALTIME times the processes record themselves (when each was exec'd, when each
//! started listening or answering).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::TcpStream;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use launchgraph::control::protocol::NoteRecord;

use support::{
    Daemon, Transition, UnitDir, array, free_port, group_gone, pgid_of, process_gone, q, wait_until,
};

/// Quick restarts without jitter, so tests spend little time in backoff.
const FAST_RESTART: &str = r#"
[restart]
initial = "50ms"
max = "200ms"
jitter = 0
"#;

/// A `[ready]` exec probe that passes once `file` exists.
fn ready_when_exists(file: &str) -> String {
    format!(
        "[ready]\nexec = {}\ninterval = \"50ms\"\n",
        array(&["/bin/sh", "-c", "test -e \"$1\"", "sh", file])
    )
}

/// Asserts that the log indices are strictly increasing, naming the first pair that is not.
fn assert_in_order(daemon: &Daemon, steps: &[(&str, &Transition)]) {
    for pair in steps.windows(2) {
        let ((a, ta), (b, tb)) = (pair[0], pair[1]);
        assert!(
            ta.index < tb.index,
            "expected `{a}` (line {}) before `{b}` (line {}); the log:\n{}",
            ta.index,
            tb.index,
            daemon.log()
        );
    }
}

fn assert_exit_ok(daemon: &mut Daemon) {
    let status = daemon.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM exits 0; the log:\n{}",
        daemon.log()
    );
}

/// A chain gated by each probe kind: a (tcp) <- b (http status and body) and status (http
/// status only) <- c (exec) <- d. Each dependent was exec'd after the moment its requirement's
/// probe could first pass, by the processes' own clocks, and the probes saw the failures.
#[test]
fn dependents_start_only_once_their_requirements_probe_can_pass() {
    let d = UnitDir::new();
    let (pa, pb, ps, pd) = (free_port(), free_port(), free_port(), free_port());
    let marker = "all-systems-go";
    let c_ready = d.path("c.ready");
    let c_ready = c_ready.to_str().unwrap();
    let events = d.path("events");
    let events = events.to_str().unwrap();
    // a: tcp gate; it only listens 300 ms after its exec.
    d.unit(
        "a",
        &format!(
            "[exec]\ncommand = {}\n[ready]\ntcp = \"127.0.0.1:{pa}\"\ninterval = \"50ms\"\n",
            d.serve("a", "tcp", &[&pa.to_string(), "0.3"])
        ),
    );
    // b: http gate on status and body; it answers 503, then 200 without the marker, then 200
    // with it.
    d.unit(
        "b",
        &format!(
            "requires = [\"a\"]\n[exec]\ncommand = {}\n[ready]\n\
             http = \"http://127.0.0.1:{pb}/startupz\"\nstatus = 200\n\
             body-contains = {}\ninterval = \"50ms\"\n",
            d.serve("b", "http", &[&pb.to_string(), marker]),
            q(marker)
        ),
    );
    // status: the same server behind a gate on the status alone, which the first 200 passes.
    d.unit(
        "status",
        &format!(
            "requires = [\"a\"]\n[exec]\ncommand = {}\n[ready]\n\
             http = \"http://127.0.0.1:{ps}/\"\nstatus = 200\ninterval = \"50ms\"\n",
            d.serve("status", "http", &[&ps.to_string(), marker]),
        ),
    );
    // c: exec gate; the probe passes once c.ready exists, which c creates only after two
    // probe misses.
    d.unit(
        "c",
        &format!(
            "requires = [\"b\", \"status\"]\n[exec]\ncommand = {}\n[ready]\nexec = {}\ninterval = \"50ms\"\n",
            d.serve("c", "file-gate", &[c_ready, "2"]),
            array(&[
                "/bin/sh",
                "-c",
                "test -e \"$1\" || { echo \"c probe-miss $(date +%s%N)\" >> \"$2\"; exit 1; }",
                "sh",
                c_ready,
                events,
            ])
        ),
    );
    d.unit(
        "d",
        &format!(
            "requires = [\"c\"]\n[exec]\ncommand = {}\n[ready]\ntcp = \"127.0.0.1:{pd}\"\n\
             interval = \"50ms\"\n",
            d.serve("d", "tcp", &[&pd.to_string(), "0"])
        ),
    );

    let mut daemon = Daemon::start(&d.units());
    daemon.wait_for(0, "d ready", |t| t.is("d", "ready"));
    let ev = d.events();
    for unit in ["a", "b", "status", "c", "d"] {
        assert_eq!(
            ev.times(unit, "exec").len(),
            1,
            "{unit} exec'd once: {ev:#?}"
        );
    }

    // tcp: b was exec'd after a started listening.
    assert!(
        ev.first("b", "exec") > ev.first("a", "listen"),
        "b exec'd before a listened: {ev:#?}"
    );

    // http: the probe saw 503 and 200 without the marker, and c was exec'd only after b first
    // answered 200 with the marker.
    let b_ready = ev.first("b", "answer-ready");
    let rejected_503 = ev.times("b", "answer-503");
    let rejected_body = ev.times("b", "answer-200-without-marker");
    assert_eq!(rejected_503.len(), 3, "{ev:#?}");
    assert_eq!(rejected_body.len(), 3, "{ev:#?}");
    assert!(
        ev.first("c", "exec") > b_ready,
        "c exec'd before b answered 200 with the marker: {ev:#?}"
    );

    // http, status only: three 503s were refused, the first 200 was enough, and c was exec'd
    // after it.
    assert_eq!(ev.times("status", "answer-503").len(), 3, "{ev:#?}");
    assert_eq!(
        ev.times("status", "answer-200-without-marker").len(),
        1,
        "{ev:#?}"
    );
    assert!(
        ev.first("c", "exec") > ev.first("status", "answer-200-without-marker"),
        "c exec'd before status answered 200: {ev:#?}"
    );

    // exec: the probe failed at least twice, and d was exec'd after c.ready was created.
    assert!(ev.times("c", "probe-miss").len() >= 2, "{ev:#?}");
    assert!(
        ev.first("d", "exec") > ev.first("c", "ready-file"),
        "d exec'd before c's probe could pass: {ev:#?}"
    );

    // The log agrees: each dependent starts after its requirement is ready.
    for (req, dep) in [
        ("a", "b"),
        ("a", "status"),
        ("b", "c"),
        ("status", "c"),
        ("c", "d"),
    ] {
        let ready = daemon.find(0, "ready", |t| t.is(req, "ready"));
        let starting = daemon.find(0, "starting", |t| t.is(dep, "starting"));
        let waited = daemon.find(0, "waiting", |t| t.is(dep, "waiting"));
        assert_eq!(waited.reason, "WAITING_FOR_DEPENDENCY", "{}", waited.line);
        assert_in_order(
            &daemon,
            &[
                (&format!("{req} ready"), &ready),
                (&format!("{dep} starting"), &starting),
            ],
        );
    }
    assert_exit_ok(&mut daemon);
}

/// A unit whose readiness probe never passes is stopped at its start-timeout (READY_TIMEOUT,
/// its whole group gone), backs off, and after its one allowed restart ends failed
/// (START_LIMIT_REACHED).
/// A relative `--state-dir` names a place under the daemon's working directory, for the
/// daemon and for each unit's process, which writes its run record there after changing to
/// the unit's working directory.
#[test]
fn a_relative_state_directory_is_the_same_for_the_daemon_and_its_units() {
    let d = UnitDir::new();
    d.unit("leaf", "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n");
    let cwd = d.path("");
    let mut daemon = Daemon::start_from(&cwd, &d.units(), &["--state-dir", "relative-state"]);
    daemon.wait_serving();
    let leaf = daemon.wait_state("leaf", "ready");
    let record = cwd.join("relative-state/runs/leaf.json");
    let json: serde_json::Value = serde_json::from_slice(
        &fs::read(&record)
            .unwrap_or_else(|e| panic!("{}: {e}; {}", record.display(), daemon.log())),
    )
    .unwrap();
    assert_eq!(json["pid"].as_u64(), leaf.pid.map(u64::from));
    assert_exit_ok(&mut daemon);
}

#[test]
fn a_unit_never_ready_is_stopped_at_its_start_timeout_then_fails_at_the_start_limit() {
    let d = UnitDir::new();
    d.unit(
        "slow",
        r#"
[exec]
command = ["/bin/sleep", "1000"]

[ready]
exec = ["/bin/false"]
interval = "50ms"
start-timeout = "300ms"

[restart]
initial = "50ms"
jitter = 0
start-limit-count = 1
"#,
    );
    let mut daemon = Daemon::start(&d.units());
    let mut from = 0;
    for run in 1..=2 {
        let spawned = daemon.wait_for(from, "slow spawned", |t| {
            t.moved("slow", "starting", "started")
        });
        let stopping =
            daemon.wait_for(spawned.index, "slow stopping", |t| t.is("slow", "stopping"));
        assert_eq!(stopping.reason, "READY_TIMEOUT", "{}", stopping.line);
        let backoff = daemon.wait_for(stopping.index, "slow in backoff", |t| {
            t.moved("slow", "stopping", "backoff")
        });
        assert_eq!(backoff.reason, "READY_TIMEOUT", "{}", backoff.line);
        assert_eq!(
            backoff.signal(),
            Some(15),
            "run {run} was stopped with SIGTERM: {}",
            backoff.line
        );
        assert!(
            backoff.facts.ran_ms.is_some_and(|ms| ms >= 300.0),
            "run {run} was stopped before its start timeout: {}",
            backoff.line
        );
        let pid = spawned.pid();
        wait_until(&format!("run {run}'s process group is gone"), || {
            group_gone(pid)
        });
        from = backoff.index + 1;
    }
    let failed = daemon.wait_for(from, "slow failed", |t| t.is("slow", "failed"));
    assert_eq!(failed.reason, "START_LIMIT_REACHED", "{}", failed.line);
    assert_exit_ok(&mut daemon);
    let spawns = daemon
        .transitions()
        .into_iter()
        .filter(|t| t.moved("slow", "starting", "started"))
        .count();
    assert_eq!(
        spawns,
        2,
        "the first start and one restart; the log:\n{}",
        daemon.log()
    );
}

/// SIGKILL of the root of a <- b <- c: c then b are stopped, a respawns only once b is down,
/// then a, b and c come back in order and serve again.
#[test]
fn a_crashed_requirement_restarts_its_dependents_in_order() {
    let d = UnitDir::new();
    let ports = [("a", free_port()), ("b", free_port()), ("c", free_port())];
    for (name, requires, port) in [
        ("a", "", ports[0].1),
        ("b", "a", ports[1].1),
        ("c", "b", ports[2].1),
    ] {
        let requires = if requires.is_empty() {
            String::new()
        } else {
            format!("requires = [{}]\n", q(requires))
        };
        d.unit(
            name,
            &format!(
                "{requires}[exec]\ncommand = {}\n[ready]\ntcp = \"127.0.0.1:{port}\"\n\
                 interval = \"50ms\"\n{FAST_RESTART}",
                d.serve(name, "tcp", &[&port.to_string(), "0"])
            ),
        );
    }
    let mut daemon = Daemon::start(&d.units());
    daemon.wait_for(0, "c ready", |t| t.is("c", "ready"));
    let a_pid = daemon
        .find(0, "a spawned", |t| t.moved("a", "starting", "started"))
        .pid();

    let k = daemon.mark();
    kill(Pid::from_raw(a_pid), Signal::SIGKILL).unwrap();
    let c_back = daemon.wait_for(k, "c ready again", |t| t.is("c", "ready"));

    let a_died = daemon.find(k, "a died", |t| t.is("a", "backoff"));
    assert_eq!(a_died.reason, "KILLED_BY_SIGNAL", "{}", a_died.line);
    assert_eq!(a_died.signal(), Some(9), "{}", a_died.line);
    let c_stop = daemon.find(k, "c stopping", |t| t.is("c", "stopping"));
    let c_down = daemon.find(k, "c stopped", |t| t.unit == "c" && t.from == "stopping");
    let b_stop = daemon.find(k, "b stopping", |t| t.is("b", "stopping"));
    let b_down = daemon.find(k, "b stopped", |t| t.unit == "b" && t.from == "stopping");
    for t in [&c_stop, &b_stop] {
        assert_eq!(t.reason, "DEPENDENCY_RESTARTING", "{}", t.line);
    }
    let a_respawn = daemon.find(k, "a respawned", |t| t.moved("a", "backoff", "starting"));
    let a_ready = daemon.find(k, "a ready", |t| t.is("a", "ready"));
    let b_start = daemon.find(k, "b starting", |t| t.is("b", "starting"));
    let b_ready = daemon.find(k, "b ready", |t| t.is("b", "ready"));
    let c_start = daemon.find(k, "c starting", |t| t.is("c", "starting"));
    assert_in_order(
        &daemon,
        &[
            ("a died", &a_died),
            ("c stopping", &c_stop),
            ("c stopped", &c_down),
            ("b stopping", &b_stop),
            ("b stopped", &b_down),
            ("a respawned", &a_respawn),
            ("a ready", &a_ready),
            ("b starting", &b_start),
            ("b ready", &b_ready),
            ("c starting", &c_start),
            ("c ready", &c_back),
        ],
    );

    // All three serve again.
    for (name, port) in ports {
        TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("{name} on port {port} after the restart: {e}"));
    }
    // And the processes' own clocks agree: the new b and c were exec'd after the new a (b)
    // started listening.
    let ev = d.events();
    for name in ["a", "b", "c"] {
        assert_eq!(ev.times(name, "exec").len(), 2, "{name} ran twice: {ev:#?}");
        assert_eq!(
            ev.times(name, "listen").len(),
            2,
            "{name} listened twice: {ev:#?}"
        );
    }
    assert!(ev.last("b", "exec") > ev.last("a", "listen"), "{ev:#?}");
    assert!(ev.last("c", "exec") > ev.last("b", "listen"), "{ev:#?}");
    assert_exit_ok(&mut daemon);
}

/// A unit stopped because its requirement went down names that requirement (`on=`) in its
/// stop lines, as `Transition::related` in src/engine/core.rs promises ("the requirement this
/// is about (waiting on it, or stopped because of it)").
#[test]
fn a_stop_caused_by_a_requirement_names_it() {
    let d = UnitDir::new();
    d.unit(
        "a",
        &format!("[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n{FAST_RESTART}"),
    );
    d.unit(
        "b",
        "requires = [\"a\"]\n[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n",
    );
    let mut daemon = Daemon::start(&d.units());
    daemon.wait_for(0, "b ready", |t| t.is("b", "ready"));
    let a_pid = daemon
        .find(0, "a spawned", |t| t.moved("a", "starting", "started"))
        .pid();
    let k = daemon.mark();
    kill(Pid::from_raw(a_pid), Signal::SIGKILL).unwrap();
    let stopping = daemon.wait_for(k, "b stopping", |t| t.is("b", "stopping"));
    let stopped = daemon.wait_for(k, "b stopped", |t| t.moved("b", "stopping", "waiting"));
    daemon.wait_for(k, "b ready again", |t| t.is("b", "ready"));
    assert_exit_ok(&mut daemon);
    for t in [&stopping, &stopped] {
        assert_eq!(t.reason, "DEPENDENCY_RESTARTING", "{}", t.line);
        assert_eq!(t.on.as_deref(), Some("a"), "{}", t.line);
    }
}

/// A process that stays alive but stops listening fails its `[alive]` probe twice: its
/// dependent is stopped first, the unit is restarted (LIVENESS_FAILED), then the dependent
/// starts again.
#[test]
fn a_failed_liveness_probe_restarts_the_unit_after_stopping_its_dependent() {
    let d = UnitDir::new();
    let (port, user_port) = (free_port(), free_port());
    let close = d.path("close");
    d.unit(
        "live",
        &format!(
            "[exec]\ncommand = {}\n\
             [ready]\ntcp = \"127.0.0.1:{port}\"\ninterval = \"50ms\"\n\
             [alive]\ntcp = \"127.0.0.1:{port}\"\ninterval = \"100ms\"\ntimeout = \"1s\"\nfailures = 2\n\
             {FAST_RESTART}",
            d.serve(
                "live",
                "tcp",
                &[&port.to_string(), "0", close.to_str().unwrap()]
            )
        ),
    );
    d.unit(
        "user",
        &format!(
            "requires = [\"live\"]\n[exec]\ncommand = {}\n[ready]\n\
             tcp = \"127.0.0.1:{user_port}\"\ninterval = \"50ms\"\n",
            d.serve("user", "tcp", &[&user_port.to_string(), "0"])
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    daemon.wait_for(0, "user ready", |t| t.is("user", "ready"));
    let k = daemon.mark();
    // The server closes its listening socket and goes on running.
    fs::write(&close, "").unwrap();
    let user_back = daemon.wait_for(k, "user ready again", |t| t.is("user", "ready"));

    let user_stop = daemon.find(k, "user stopping", |t| t.is("user", "stopping"));
    assert_eq!(
        user_stop.reason, "DEPENDENCY_RESTARTING",
        "{}",
        user_stop.line
    );
    let user_down = daemon.find(k, "user stopped", |t| {
        t.unit == "user" && t.from == "stopping"
    });
    let live_stop = daemon.find(k, "live stopping", |t| t.is("live", "stopping"));
    assert_eq!(live_stop.reason, "LIVENESS_FAILED", "{}", live_stop.line);
    // What the failed probe said is the cause of the stop.
    assert!(
        live_stop
            .facts
            .cause
            .as_deref()
            .is_some_and(|c| !c.is_empty()),
        "{}",
        live_stop.line
    );
    let live_down = daemon.find(k, "live in backoff", |t| {
        t.moved("live", "stopping", "backoff")
    });
    assert_eq!(live_down.reason, "LIVENESS_FAILED", "{}", live_down.line);
    assert_eq!(
        live_down.signal(),
        Some(15),
        "the process was alive until stopped: {}",
        live_down.line
    );
    let live_respawn = daemon.find(k, "live respawned", |t| {
        t.moved("live", "backoff", "starting")
    });
    let live_ready = daemon.find(k, "live ready", |t| t.is("live", "ready"));
    let user_start = daemon.find(k, "user starting", |t| t.is("user", "starting"));
    assert_in_order(
        &daemon,
        &[
            ("user stopping", &user_stop),
            ("user stopped", &user_down),
            ("live stopping", &live_stop),
            ("live in backoff", &live_down),
            ("live respawned", &live_respawn),
            ("live ready", &live_ready),
            ("user starting", &user_start),
            ("user ready", &user_back),
        ],
    );
    // failures = 2 takes two failed probes in a row. Probe failures are not transitions: the
    // log alone tells them.
    let failed = |l: &str| l.contains("live: liveness probe failed");
    let first = daemon.wait_log(0, "a failed liveness probe", failed);
    daemon.wait_log(first + 1, "a second failed liveness probe", failed);

    let ev = d.events();
    assert_eq!(ev.times("live", "closed").len(), 1, "{ev:#?}");
    assert_eq!(ev.times("live", "exec").len(), 2, "{ev:#?}");
    assert_eq!(ev.times("user", "exec").len(), 2, "{ev:#?}");
    assert!(
        ev.last("user", "exec") > ev.last("live", "listen"),
        "{ev:#?}"
    );
    TcpStream::connect(("127.0.0.1", port)).expect("the new run serves");
    assert_exit_ok(&mut daemon);
}

/// Backoff delays read from the log: 100, 200, 400, 400 ms for `initial = 100ms`, `factor =
/// 2`, `max = 400ms`; and back to 100 ms after a run longer than `reset-after`.
#[test]
fn backoff_grows_by_its_factor_stops_at_its_cap_and_resets_after_a_stable_run() {
    let d = UnitDir::new();
    let restart = "[restart]\ninitial = \"100ms\"\nfactor = 2\nmax = \"400ms\"\njitter = 0\n\
                   start-limit-count = 100\n";
    d.unit(
        "crash",
        &format!("[exec]\ncommand = [\"/bin/sh\", \"-c\", \"exit 1\"]\n{restart}"),
    );
    // Its third run lasts 500 ms, longer than reset-after; the others fail at once.
    let runs = d.path("steady.runs");
    fs::write(&runs, "").unwrap();
    d.unit(
        "steady",
        &format!(
            "[exec]\ncommand = {}\n{restart}reset-after = \"300ms\"\n",
            array(&[
                "/bin/sh",
                "-c",
                "n=$(wc -l < \"$1\"); echo run >> \"$1\"; \
                 if [ \"$n\" -eq 2 ]; then sleep 0.5; fi; exit 1",
                "sh",
                runs.to_str().unwrap(),
            ])
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    let backoffs = |daemon: &mut Daemon, unit: &str| -> Vec<Transition> {
        let mut from = 0;
        (0..4)
            .map(|_| {
                let t = daemon.wait_for(from, "a backoff line", |t| t.is(unit, "backoff"));
                from = t.index + 1;
                t
            })
            .collect()
    };
    let crash = backoffs(&mut daemon, "crash");
    let steady = backoffs(&mut daemon, "steady");
    assert_exit_ok(&mut daemon);

    let delays = |ts: &[Transition]| {
        ts.iter()
            .map(|t| t.facts.delay_ms.expect("a delay"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        delays(&crash),
        [100.0, 200.0, 400.0, 400.0],
        "the log:\n{}",
        daemon.log()
    );
    for t in &crash {
        assert_eq!(t.reason, "EXITED", "{}", t.line);
        assert_eq!(t.facts.exit.and_then(|x| x.code), Some(1), "{}", t.line);
    }
    assert_eq!(
        delays(&steady),
        [100.0, 200.0, 100.0, 200.0],
        "the third run outlasted reset-after; the log:\n{}",
        daemon.log()
    );
    assert!(
        steady[2].facts.ran_ms.is_some_and(|ms| ms >= 300.0),
        "{}",
        steady[2].line
    );
    let failures: Vec<_> = steady.iter().map(|t| t.facts.failures).collect();
    assert_eq!(
        failures,
        [Some(1), Some(2), Some(1), Some(2)],
        "the log:\n{}",
        daemon.log()
    );
}

/// `start-limit-count = 2` ends failed (START_LIMIT_REACHED) and its dependent waits on it
/// (DEPENDENCY_FAILED); an exit code listed in `no-restart-exit-codes` fails at once and is
/// never retried.
#[test]
fn the_start_limit_and_no_restart_exit_codes_end_in_failed() {
    let d = UnitDir::new();
    let (f_runs, g_runs, n_runs) = (d.path("f.runs"), d.path("g.runs"), d.path("n.runs"));
    let record_then = |runs: &std::path::Path, then: &str| {
        array(&[
            "/bin/sh",
            "-c",
            &format!("echo run >> \"$1\"; {then}"),
            "sh",
            runs.to_str().unwrap(),
        ])
    };
    d.unit(
        "f",
        &format!(
            "[exec]\ncommand = {}\n[ready]\nexec = [\"/bin/false\"]\ninterval = \"50ms\"\n\
             [restart]\ninitial = \"50ms\"\njitter = 0\nstart-limit-count = 2\n",
            record_then(&f_runs, "exit 1")
        ),
    );
    d.unit(
        "g",
        &format!(
            "requires = [\"f\"]\n[exec]\ncommand = {}\n",
            record_then(&g_runs, "exec /bin/sleep 1000")
        ),
    );
    // Were it restarted, it would be at once: its backoff is zero.
    d.unit(
        "n",
        &format!(
            "[exec]\ncommand = {}\n[restart]\ninitial = \"0s\"\nno-restart-exit-codes = [78]\n",
            record_then(&n_runs, "exit 78")
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    let n_failed = daemon.wait_for(0, "n failed", |t| t.is("n", "failed"));
    assert_eq!(n_failed.reason, "NO_RESTART_EXIT_CODE", "{}", n_failed.line);
    assert_eq!(
        n_failed.facts.exit.and_then(|x| x.code),
        Some(78),
        "{}",
        n_failed.line
    );
    let f_failed = daemon.wait_for(0, "f failed", |t| t.is("f", "failed"));
    assert_eq!(f_failed.reason, "START_LIMIT_REACHED", "{}", f_failed.line);
    let g_waits = daemon.wait_for(0, "g waiting on failed f", |t| {
        t.is("g", "waiting") && t.reason == "DEPENDENCY_FAILED"
    });
    assert_eq!(g_waits.on.as_deref(), Some("f"), "{}", g_waits.line);
    assert_exit_ok(&mut daemon);

    assert_eq!(
        d.lines("f.runs").len(),
        3,
        "the first start and start-limit-count = 2 restarts; the log:\n{}",
        daemon.log()
    );
    assert!(!g_runs.exists(), "g never started");
    assert_eq!(
        d.lines("n.runs").len(),
        1,
        "n ran once; the log:\n{}",
        daemon.log()
    );
    let n_lines: Vec<_> = daemon
        .transitions()
        .into_iter()
        .filter(|t| t.unit == "n")
        .collect();
    assert!(
        n_lines
            .iter()
            .all(|t| t.to != "backoff" && t.from != "failed"),
        "n neither backed off nor left failed: {n_lines:#?}"
    );
}

/// SIGTERM stops dependents before their requirements, kills a unit that ignores SIGTERM
/// after its stop-timeout (STOP_TIMEOUT), exits 0, and leaves no process of any unit behind.
#[test]
fn sigterm_stops_everything_in_reverse_order_kills_the_stubborn_and_exits_0() {
    let d = UnitDir::new();
    let sleep = "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n";
    d.unit("a", sleep);
    d.unit("b", &format!("requires = [\"a\"]\n{sleep}"));
    d.unit("c", &format!("requires = [\"b\"]\n{sleep}"));
    // Ignores SIGTERM (and so does the sleep it becomes); ready once the trap is set.
    let trapped = d.path("stubborn.trapped");
    let trapped = trapped.to_str().unwrap();
    d.unit(
        "stubborn",
        &format!(
            "requires = [\"b\"]\n[exec]\ncommand = {}\nstop-timeout = \"500ms\"\n{}",
            array(&[
                "/bin/sh",
                "-c",
                "trap '' TERM; : > \"$1\"; exec /bin/sleep 1000",
                "sh",
                trapped,
            ]),
            ready_when_exists(trapped)
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    for unit in ["c", "stubborn"] {
        daemon.wait_for(0, "ready", |t| t.is(unit, "ready"));
    }
    let k = daemon.mark();
    assert_exit_ok(&mut daemon);

    let mut stop = |unit: &str| {
        let stopping = daemon.find(k, "stopping", |t| t.is(unit, "stopping"));
        let stopped = daemon.find(k, "stopped", |t| t.moved(unit, "stopping", "stopped"));
        for t in [&stopping, &stopped] {
            assert_eq!(t.reason, "SHUTDOWN", "{}", t.line);
        }
        (stopping, stopped)
    };
    let (c_stop, c_down) = stop("c");
    let (s_stop, s_down) = stop("stubborn");
    let (b_stop, b_down) = stop("b");
    let (a_stop, a_down) = stop("a");
    assert_in_order(
        &daemon,
        &[
            ("c stopping", &c_stop),
            ("c stopped", &c_down),
            ("b stopping", &b_stop),
        ],
    );
    assert_in_order(
        &daemon,
        &[
            ("stubborn stopping", &s_stop),
            ("stubborn stopped", &s_down),
            ("b stopping", &b_stop),
            ("b stopped", &b_down),
            ("a stopping", &a_stop),
            ("a stopped", &a_down),
        ],
    );
    assert_eq!(
        s_down.facts.note,
        Some(NoteRecord::KilledAfterStopTimeout),
        "{}",
        s_down.line
    );
    assert_eq!(s_down.signal(), Some(9), "{}", s_down.line);
    assert_eq!(c_down.signal(), Some(15), "{}", c_down.line);

    let pids = daemon.unit_pids();
    assert_eq!(pids.len(), 4, "one process per unit: {pids:?}");
    for pgid in pids {
        wait_until(&format!("process group {pgid} is gone"), || {
            group_gone(pgid)
        });
    }
}

/// A unit's background grandchildren, one of them ignoring SIGTERM, are gone once the unit
/// is stopped at shutdown (here on SIGINT).
#[test]
fn stopping_a_unit_kills_its_grandchildren_too() {
    let d = UnitDir::new();
    let pids_file = d.path("grandchildren");
    let pids_file = pids_file.to_str().unwrap();
    // One grandchild ignores SIGTERM, so only the kill of the whole group ends it.
    d.unit(
        "parent",
        &format!(
            "[exec]\ncommand = {}\n{}",
            array(&[
                "/bin/sh",
                "-c",
                "(trap '' TERM; exec /bin/sleep 1000) & p1=$!; /bin/sleep 1000 & p2=$!; \
                 echo \"$p1 $p2\" > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; wait",
                "sh",
                pids_file,
            ]),
            ready_when_exists(pids_file)
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    let ready = daemon.wait_for(0, "parent ready", |t| t.is("parent", "ready"));
    let parent = ready.pid();
    let grandchildren: Vec<i32> = fs::read_to_string(pids_file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(grandchildren.len(), 2);
    for &pid in &grandchildren {
        assert_eq!(
            pgid_of(pid),
            Some(parent),
            "grandchild {pid} runs in the unit's group"
        );
    }
    // SIGINT shuts down like SIGTERM.
    let status = daemon.stop_with(Signal::SIGINT);
    assert_eq!(status.code(), Some(0), "the log:\n{}", daemon.log());
    let stopped = daemon.find(0, "parent stopped", |t| {
        t.moved("parent", "stopping", "stopped")
    });
    assert_eq!(stopped.reason, "SHUTDOWN", "{}", stopped.line);
    for pid in grandchildren {
        wait_until(&format!("grandchild {pid} is gone"), || process_gone(pid));
    }
    wait_until("the unit's group is gone", || group_gone(parent));
}

/// `(uid, gid, home)` of `user` in /etc/passwd, and the gids of /etc/group that list it.
fn account(user: &str) -> (u32, u32, String, BTreeSet<u32>) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let entry: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f[0] == user)
        .unwrap_or_else(|| panic!("{user} in /etc/passwd"));
    let (uid, gid) = (entry[2].parse().unwrap(), entry[3].parse().unwrap());
    let mut groups = BTreeSet::from([gid]);
    for line in fs::read_to_string("/etc/group").unwrap().lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() == 4 && f[3].split(',').any(|m| m == user) {
            groups.insert(f[2].parse().unwrap());
        }
    }
    (uid, gid, entry[5].to_owned(), groups)
}

/// `user = "nobody"`: the process runs with nobody's uid, primary gid and groups, as
/// /etc/passwd and /etc/group say. Needs root.
#[test]
#[ignore = "needs root"]
fn root_a_unit_with_a_user_runs_with_that_users_ids() {
    support::needs_root("switching users");
    let d = UnitDir::new();
    let ids = d.path("ids");
    let ids = ids.to_str().unwrap();
    d.unit(
        "dropped",
        &format!(
            "[exec]\ncommand = {}\nuser = \"nobody\"\n{}",
            array(&[
                "/bin/sh",
                "-c",
                "{ id -u; id -g; id -G; } > \"$1.tmp\" && mv \"$1.tmp\" \"$1\" \
                 && exec /bin/sleep 1000",
                "sh",
                ids,
            ]),
            ready_when_exists(ids)
        ),
    );
    d.unit(
        "env",
        "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\nuser = \"nobody\"\n",
    );
    let mut daemon = Daemon::start(&d.units());
    daemon.wait_for(0, "dropped ready", |t| t.is("dropped", "ready"));
    let text = fs::read_to_string(ids).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let (uid, gid, home, groups) = account("nobody");
    assert_eq!(lines[0].parse::<u32>().unwrap(), uid, "{text}");
    assert_eq!(lines[1].parse::<u32>().unwrap(), gid, "{text}");
    let seen: BTreeSet<u32> = lines[2]
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    assert_eq!(seen, groups, "supplementary groups: {text}");

    // HOME, USER and LOGNAME come from the account.
    let pid = daemon
        .wait_for(0, "env spawned", |t| t.moved("env", "starting", "started"))
        .pid();
    let want = BTreeMap::from([
        ("HOME".to_owned(), home),
        ("USER".to_owned(), "nobody".to_owned()),
        ("LOGNAME".to_owned(), "nobody".to_owned()),
        ("PATH".to_owned(), DOCUMENTED_PATH.to_owned()),
    ]);
    assert_eq!(environ(pid), want, "the environment of a unit with a user");
    assert_exit_ok(&mut daemon);
}

/// The `PATH` a unit gets when its `env` sets none, as docs/units.md documents it
/// (`CANONICAL_PATH` in src/unit/mod.rs).
const DOCUMENTED_PATH: &str = "/opt/homebrew/bin:/opt/homebrew/sbin:/usr/local/bin:\
                               /usr/local/sbin:/usr/bin:/bin:/usr/sbin:/sbin";

/// The environment `pid` was exec'd with.
fn environ(pid: i32) -> BTreeMap<String, String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|&b| b == 0)
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let kv = String::from_utf8(kv.to_vec()).unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// A unit's process is exec'd with its declared `env` plus the canonical PATH (or its own
/// PATH), and nothing from the daemon's environment.
#[test]
fn a_unit_sees_exactly_its_declared_environment() {
    assert_eq!(DOCUMENTED_PATH, launchgraph::unit::CANONICAL_PATH);
    let d = UnitDir::new();
    d.unit(
        "plain",
        "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n\
         env = { GREETING = \"hello world\", EMPTY = \"\", PAIR = \"a=b\" }\n",
    );
    d.unit(
        "own-path",
        "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n\
         env = { PATH = \"/usr/bin:/bin\", ONLY = \"1\" }\n",
    );
    let mut daemon = Daemon::start_with_env(
        &d.units(),
        &[("LAUNCHGRAPH_TEST_MARKER", "leaked-from-the-daemon")],
    );
    let expected = [
        (
            "plain",
            BTreeMap::from([
                ("GREETING".to_owned(), "hello world".to_owned()),
                ("EMPTY".to_owned(), String::new()),
                ("PAIR".to_owned(), "a=b".to_owned()),
                ("PATH".to_owned(), DOCUMENTED_PATH.to_owned()),
            ]),
        ),
        (
            "own-path",
            BTreeMap::from([
                ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
                ("ONLY".to_owned(), "1".to_owned()),
            ]),
        ),
    ];
    for (unit, want) in expected {
        // The spawn is reported once the program was exec'd.
        let pid = daemon
            .wait_for(0, "spawned", |t| t.moved(unit, "starting", "started"))
            .pid();
        let env = environ(pid);
        assert!(
            !env.contains_key("LAUNCHGRAPH_TEST_MARKER"),
            "{unit} inherited the daemon's environment: {env:?}"
        );
        assert_eq!(env, want, "{unit}'s whole environment");
    }
    assert_exit_ok(&mut daemon);
}

/// An invalid units directory: the error is logged with file and line, nothing starts, the
/// daemon keeps running (SIGHUP reports again), and SIGTERM exits 78.
#[test]
fn an_invalid_units_directory_starts_nothing_and_sigterm_exits_78() {
    let d = UnitDir::new();
    let ran = d.path("good.ran");
    d.unit(
        "good",
        &format!(
            "[exec]\ncommand = {}\n",
            array(&[
                "/bin/sh",
                "-c",
                "echo run >> \"$1\"; exec /bin/sleep 1000",
                "sh",
                ran.to_str().unwrap(),
            ])
        ),
    );
    d.unit(
        "bad",
        "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\nbogus = 1\n",
    );
    let mut daemon = Daemon::start(&d.units());
    let summary = daemon.wait_log(0, "the error summary", |l| {
        l.contains("ERROR") && l.contains("nothing started")
    });
    let bad = d.units().join("bad.toml");
    let at = format!("{}:3:", bad.display());
    assert!(
        daemon.lines()[..summary]
            .iter()
            .any(|l| l.contains(&at) && l.contains("bogus")),
        "the error names {at}; the log:\n{}",
        daemon.log()
    );
    // Still running: SIGHUP reads the directory again and reports the same error.
    daemon.signal(Signal::SIGHUP);
    daemon.wait_log(summary + 1, "the error summary again", |l| {
        l.contains("ERROR") && l.contains("nothing started")
    });
    let status = daemon.terminate();
    assert_eq!(status.code(), Some(78), "the log:\n{}", daemon.log());
    assert!(
        daemon.transitions().is_empty(),
        "no unit changed state; the log:\n{}",
        daemon.log()
    );
    assert!(!ran.exists(), "the valid unit was not started");
}

/// Liveness probes of units that became ready at different times run together, on one grid
/// per interval: an idle daemon wakes once for all of them. Unit `late` is ready about 1.3 s
/// after `early` (its readiness probe takes that long); each probe records when it ran. On
/// their own clocks, `late`'s probes would come 0.7 s from `early`'s at the nearest (a 2 s
/// interval); on the grid they come together, 2 s apart.
#[test]
fn liveness_probes_of_units_ready_at_different_times_run_together() {
    let d = UnitDir::new();
    let probes = d.path("probes");
    let record = |name: &str| {
        array(&[
            "/bin/sh",
            "-c",
            &format!("echo {name} $(date +%s%N) >> {}", probes.display()),
        ])
    };
    d.unit(
        "early",
        &format!(
            "[exec]\ncommand = {}\n[alive]\nexec = {}\ninterval = \"2s\"\n",
            array(&["/bin/sleep", "1000"]),
            record("early")
        ),
    );
    d.unit(
        "late",
        &format!(
            "[exec]\ncommand = {}\n[ready]\nexec = {}\ntimeout = \"5s\"\n\
             [alive]\nexec = {}\ninterval = \"2s\"\n",
            array(&["/bin/sleep", "1000"]),
            array(&["/bin/sleep", "1.3"]),
            record("late")
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    let early_ready = daemon.wait_for(0, "early ready", |t| t.is("early", "ready"));
    let late_ready = daemon.wait_for(0, "late ready", |t| t.is("late", "ready"));
    let times = |name: &str| -> Vec<i128> {
        d.lines("probes")
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{name} ")))
            .filter_map(|ns| ns.parse().ok())
            .collect()
    };
    wait_until("each unit has run three liveness probes", || {
        times("early").len() >= 3 && times("late").len() >= 3
    });
    let (early, late) = (times("early"), times("late"));
    let ms = |ns: i128| ns as f64 / 1e6;
    // Each probe of `late` ran with one of `early`'s. An exec probe's start varies by a few
    // milliseconds (more on a loaded machine); 350 ms is halfway to the 700 ms apart they
    // would be on their own clocks.
    for t in &late {
        let nearest = early.iter().map(|e| (e - t).abs()).min().unwrap();
        assert!(
            ms(nearest) < 350.0,
            "a liveness probe of `late` ran {:.0} ms from the nearest of `early`'s \
             (early {early:?}, late {late:?}; ready at {} and {})",
            ms(nearest),
            early_ready.line,
            late_ready.line
        );
    }
    // And the grid's period is the interval: no probe skipped, none added.
    for pair in early.windows(2) {
        let gap = ms(pair[1] - pair[0]);
        assert!(
            (1_600.0..2_400.0).contains(&gap),
            "early's liveness probes ran {gap:.0} ms apart, not every 2 s: {early:?}"
        );
    }
}
