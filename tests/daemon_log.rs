//! `launchgraph up --log-file PATH` follows its log across newsyslog's rotation: after the file
//! is renamed (and a fresh one created in its place, or not), the daemon's next lines go to
//! the file at PATH, none to the renamed one. The real binary, a real rename, no signal.

mod support;

use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use support::{Daemon, UnitDir, array, wait_until};

/// What the daemon logs on SIGHUP: a line on demand.
const RELOAD: &str = "re-reading the units directory";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Makes the daemon log one line (SIGHUP re-reads the units, and says so) and waits for it in
/// `path`.
fn log_a_line_into(daemon: &Daemon, path: &Path, before: usize) {
    kill(Pid::from_raw(daemon.pid()), Signal::SIGHUP).unwrap();
    wait_until(&format!("a line in {}", path.display()), || {
        read(path).matches(RELOAD).count() > before
    });
}

#[test]
fn after_a_rotation_the_daemons_lines_go_to_the_new_file() {
    let d = UnitDir::new();
    d.unit(
        "idle",
        &format!("[exec]\ncommand = {}\n", array(&["/bin/sleep", "1000"])),
    );
    let log = d.path("log/launchgraph.log");
    std::fs::create_dir(d.path("log")).unwrap();
    let daemon = Daemon::start_with(&d.units(), &[], &["--log-file", log.to_str().unwrap()]);
    daemon.wait_serving();
    wait_until("the daemon's first lines in its log file", || {
        read(&log).contains("control socket ready")
    });
    log_a_line_into(&daemon, &log, 0);

    // As newsyslog rotates: rename, then create the new file (its owner and mode).
    let first = d.path("log/launchgraph.log.0");
    std::fs::rename(&log, &first).unwrap();
    std::fs::File::create(&log).unwrap();
    log_a_line_into(&daemon, &log, 0);
    assert_eq!(read(&first).matches(RELOAD).count(), 1, "{}", read(&first));
    assert_eq!(read(&log).matches(RELOAD).count(), 1, "{}", read(&log));

    // Renamed with nothing in its place: the daemon creates it.
    let second = d.path("log/launchgraph.log.1");
    std::fs::rename(&log, &second).unwrap();
    log_a_line_into(&daemon, &log, 0);
    assert_eq!(
        read(&second).matches(RELOAD).count(),
        1,
        "{}",
        read(&second)
    );
    assert_eq!(read(&log).matches(RELOAD).count(), 1, "{}", read(&log));
    assert_eq!(read(&first).matches(RELOAD).count(), 1, "untouched since");

    // Its stop is logged in the current file too.
    drop(daemon);
    assert!(read(&log).contains("shutdown requested"), "{}", read(&log));
    assert!(!read(&second).contains("shutdown requested"));
}

#[test]
fn a_log_file_that_cannot_be_opened_is_refused_at_start() {
    let d = UnitDir::new();
    let out = std::process::Command::new(support::control::BIN)
        .args(["up", "--units"])
        .arg(d.units())
        .arg("--state-dir")
        .arg(d.path("state"))
        .arg("--socket")
        .arg(d.path("ctl.sock"))
        .arg("--log-file")
        .arg(d.path("no/such/dir/launchgraph.log"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open the log file"), "{stderr}");
    assert!(!d.path("ctl.sock").exists(), "it never started");
}
