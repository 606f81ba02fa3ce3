//! PORT_HELD_BY_OTHER end to end: a real stranger process holds a loopback port, and the
//! real daemon (and `check`) must say who, instead of taking the stranger's answer for the
//! unit's readiness.
//!
//! Covered: a unit whose readiness probe is answered by a stranger is never marked ready, and
//! its READY_TIMEOUT stop, the log (once per run) and the warning before its start name the
//! stranger's pid and command; a unit that listens itself becomes ready as before; `check`
//! names the holder of a port, also when it listens on the other address family only.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use support::{Daemon, Stranger, UnitDir, array, free_port};

/// A unit that never listens, probing `addr`; its next start is far away, so one run is
/// looked at alone.
fn never_listens(addr: &str, probe: &str) -> String {
    format!(
        "[exec]\ncommand = {}\n\n[ready]\n{probe} = \"{addr}\"\ninterval = \"50ms\"\n\
         start-timeout = \"1500ms\"\n\n[restart]\ninitial = \"30s\"\njitter = 0\n",
        array(&["/bin/sleep", "1000"])
    )
}

#[test]
fn a_unit_whose_port_a_stranger_answers_is_never_ready_and_the_stranger_is_named() {
    let d = UnitDir::new();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let stranger = Stranger::listen(addr);
    let (pid, command) = (stranger.pid(), stranger.command());
    let named = |text: &str| text.contains(&format!("pid {pid} ({command})"));

    d.unit("tcpsvc", &never_listens(&addr.to_string(), "tcp"));
    d.unit(
        "httpsvc",
        &never_listens(&format!("http://{addr}/health"), "http")
            .replace("interval", "status = 200\ninterval"),
    );
    let mut daemon = Daemon::start(&d.units());
    for unit in ["tcpsvc", "httpsvc"] {
        let spawned = daemon.wait_for(0, &format!("{unit} started"), |t| {
            t.moved(unit, "starting", "started")
        });
        let stopping = daemon.wait_for(spawned.index, &format!("{unit} stopping"), |t| {
            t.is(unit, "stopping")
        });
        assert_eq!(stopping.reason, "READY_TIMEOUT", "{}", stopping.line);
        let cause = stopping.facts.cause.clone().unwrap_or_default();
        assert!(
            cause.contains("PORT_HELD_BY_OTHER") && named(&cause),
            "the stop names the stranger: {}",
            stopping.line
        );
        assert!(
            cause.contains(&format!("pid {}", spawned.pid())),
            "and the unit's own pid: {}",
            stopping.line
        );
        assert!(
            !daemon.transitions().iter().any(|t| t.is(unit, "ready")),
            "{unit} was never ready; the log:\n{}",
            daemon.log()
        );
        // Warned before the start, and once (not per poll) when the probe passed.
        daemon.wait_log(0, &format!("{unit}'s warning before its start"), |l| {
            l.contains(&format!("{unit}: before its start"))
                && l.contains("PORT_HELD_BY_OTHER")
                && named(l)
        });
        daemon.wait_log(0, &format!("{unit}'s readiness warning"), |l| {
            l.contains(&format!("{unit}: readiness probe of {addr} answered by"))
                && l.contains("PORT_HELD_BY_OTHER")
                && named(l)
        });
    }
    // Both runs are over (stopped at their start timeout, their next start 30 s away): the
    // readiness warning was logged once per run, though the probe passed every 50 ms or less.
    for unit in ["tcpsvc", "httpsvc"] {
        daemon.wait_for(0, &format!("{unit} in backoff"), |t| t.is(unit, "backoff"));
        let warnings = daemon
            .lines()
            .iter()
            .filter(|l| l.contains(&format!("{unit}: readiness probe of")))
            .count();
        assert_eq!(
            warnings,
            1,
            "one warning per run; the log:\n{}",
            daemon.log()
        );
    }
    daemon.terminate();
}

#[test]
fn a_unit_that_listens_itself_becomes_ready() {
    let d = UnitDir::new();
    let port = free_port();
    d.unit(
        "web",
        &format!(
            "[exec]\ncommand = {}\n\n[ready]\nhttp = \"http://127.0.0.1:{port}/\"\n\
             interval = \"50ms\"\nstart-timeout = \"20s\"\n",
            array(&[
                "/usr/bin/env",
                "python3",
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
                d.path("units").to_str().unwrap(),
            ])
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    let ready = daemon.wait_for(0, "web ready", |t| t.is("web", "ready"));
    assert_eq!(ready.reason, "READY", "{}", ready.line);
    assert!(
        !daemon.log().contains("PORT_HELD_BY_OTHER"),
        "its own listener is not a stranger's; the log:\n{}",
        daemon.log()
    );
    daemon.terminate();
}

/// `launchgraph check --units DIR --state-dir STATE`: its stdout.
fn check(units: &Path, state: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_launchgraph"))
        .arg("check")
        .arg("--units")
        .arg(units)
        .arg("--state-dir")
        .arg(state)
        .env_remove("LAUNCHGRAPH_UNITS")
        .env_remove("LAUNCHGRAPH_STATE_DIR")
        .output()
        .expect("run launchgraph check");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn check_names_who_holds_a_units_port() {
    let d = UnitDir::new();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let stranger = Stranger::listen(addr);
    d.unit("svc", &never_listens(&addr.to_string(), "tcp"));
    let out = check(&d.units(), &d.path("state"));
    let finding = format!(
        "svc: warning PORT_HELD_BY_OTHER\n  {addr}, which the readiness probe dials, is held by \
         pid {} ({})",
        stranger.pid(),
        stranger.command()
    );
    assert!(out.contains(&finding), "expected {finding:?} in:\n{out}");
}

/// The server listens on ::1 only; the probe dials 127.0.0.1 and is refused. The daemon's
/// probe says the other family accepts, and `check` and the warning before the start name
/// the holder on ::1.
#[test]
fn a_port_held_on_the_other_family_only_is_named_with_its_address() {
    let d = UnitDir::new();
    let port = free_port();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let stranger = Stranger::listen(v6);
    let held = format!(
        "pid {} ({}) on [::1]:{port}",
        stranger.pid(),
        stranger.command()
    );
    d.unit("svc", &never_listens(&format!("127.0.0.1:{port}"), "tcp"));

    let out = check(&d.units(), &d.path("state"));
    assert!(
        out.contains("svc: warning PORT_HELD_BY_OTHER")
            && out.contains(&format!("held on the other address family: {held}")),
        "expected the holder on ::1 in:\n{out}"
    );

    let mut daemon = Daemon::start(&d.units());
    daemon.wait_log(0, "the warning before the start", |l| {
        l.contains("svc: before its start")
            && l.contains("other address family only")
            && l.contains(&held)
    });
    let stopping = daemon.wait_for(0, "svc stopping", |t| t.is("svc", "stopping"));
    let cause = stopping.facts.cause.clone().unwrap_or_default();
    assert!(
        cause.contains(&format!("[::1]:{port} accepts")),
        "the probe's failure says the other family accepts: {}",
        stopping.line
    );
    daemon.terminate();
}

/// The unit runs in a network namespace of its own (`unshare --net`, as a container would):
/// its loopback is not launchgraph's, so the stranger on launchgraph's loopback answers the
/// probe, and the cause says the unit is in another namespace.
#[test]
#[ignore = "needs root"]
fn root_a_unit_in_another_network_namespace_is_named_so() {
    support::needs_root("unshare --net");
    let d = UnitDir::new();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let stranger = Stranger::listen(addr);
    d.unit(
        "boxed",
        &never_listens(&addr.to_string(), "tcp").replace(
            &array(&["/bin/sleep", "1000"]),
            &array(&["/usr/bin/unshare", "--net", "/bin/sleep", "1000"]),
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    let stopping = daemon.wait_for(0, "boxed stopping", |t| t.is("boxed", "stopping"));
    let cause = stopping.facts.cause.clone().unwrap_or_default();
    assert!(
        cause.contains(&format!("pid {} ({})", stranger.pid(), stranger.command()))
            && cause.contains("in another network namespace"),
        "{}",
        stopping.line
    );
    daemon.terminate();
}
