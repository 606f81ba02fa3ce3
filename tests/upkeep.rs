//! The daemon's upkeep around starts: a unit whose program is missing waits with
//! `PREFLIGHT_FAILED` instead of crash-looping, and starts as soon as the file appears (the
//! file watcher, not a timer); a unit's fingerprint is stored when it becomes ready, and what
//! changed since is logged at the next good run.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use support::{Daemon, UnitDir, q, wait_until};

fn write_script(path: &std::path::Path, body: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_missing_program_waits_without_failing_and_starts_when_it_appears() {
    let d = UnitDir::new();
    let program = d.path("app/bin/server");
    d.unit(
        "app",
        &format!(
            "[exec]\ncommand = [{}]\n[restart]\ninitial = \"10ms\"\nstart-limit-count = 1\n",
            q(program.to_str().unwrap())
        ),
    );
    fs::create_dir_all(program.parent().unwrap()).unwrap();
    let mut daemon = Daemon::start(&d.units());
    let waiting = daemon.wait_for(0, "app waiting on preflight", |t| {
        t.is("app", "waiting") && t.reason == "PREFLIGHT_FAILED"
    });
    assert!(
        waiting
            .facts
            .cause
            .as_deref()
            .is_some_and(|c| c.contains("COMMAND_PATH_MISSING")),
        "the reason names the finding: {}",
        waiting.line
    );

    // The program appears (an install finishing): the watcher lets it start at once, long
    // before the periodic retry.
    let mark = daemon.mark();
    write_script(&program, "#!/bin/sh\nexec sleep 1000\n");
    daemon.wait_for(mark, "app ready", |t| t.is("app", "ready"));
    let log = daemon.log();
    let transitions = daemon.transitions();
    assert!(
        transitions.iter().all(|t| t.to != "backoff"),
        "a missing file is not a failure:\n{log}"
    );
    assert!(
        transitions.iter().all(|t| t.to != "failed"),
        "nor does it use up the start limit:\n{log}"
    );
    assert!(daemon.terminate().success());
}

#[test]
fn a_fingerprint_is_stored_when_ready_and_drift_is_logged_at_the_next_run() {
    let d = UnitDir::new();
    let program = d.path("app/bin/tool");
    write_script(&program, "#!/bin/sh\n# version 1\nexec sleep 1000\n");
    d.unit(
        "app",
        &format!("[exec]\ncommand = [{}]\n", q(program.to_str().unwrap())),
    );
    let stored = d.path("state/fingerprints/app.json");

    let mut daemon = Daemon::start(&d.units());
    daemon.wait_for(0, "app ready", |t| t.is("app", "ready"));
    wait_until(&format!("a fingerprint at {}", stored.display()), || {
        stored.exists()
    });
    let fp: serde_json::Value = serde_json::from_slice(&fs::read(&stored).unwrap()).unwrap();
    assert_eq!(fp["unit"], "app");
    assert!(daemon.terminate().success());

    // An upgrade rewrites the program.
    write_script(
        &program,
        "#!/bin/sh\n# version 2, a little longer\nexec sleep 1000\n",
    );
    let mut daemon = Daemon::start(&d.units());
    daemon.wait_for(0, "app ready", |t| t.is("app", "ready"));
    // Drift is a warning in the log, not a transition.
    let line = daemon.wait_log(0, "a drift line", |l| {
        l.contains("app: changed since the last good run:")
    });
    assert!(
        daemon.lines()[line].contains(program.to_str().unwrap()),
        "the drift names the file: {}",
        daemon.lines()[line]
    );
    assert!(daemon.terminate().success());
}
