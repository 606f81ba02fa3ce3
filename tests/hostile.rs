//! What a hostile or unlucky environment does to the daemon, and what it must survive:
//!
//! - run records (`<state-dir>/runs/UNIT.json`) that are wrong, forged or stale: the daemon
//!   never signals anything a record names unless the record is valid and its process is
//!   still the one recorded; a bad record is set aside (`UNIT.json.bad`), with a log line;
//! - a second daemon on the same state directory: it refuses to start, and the first one's
//!   units are untouched;
//! - control clients that hold connections (followers, silent clients): whoever may act still
//!   gets through.

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{DEADLINE, Daemon, UnitDir, process_gone};

/// The one unit these tests run: a process that stays up, ready once started.
fn leaf(d: &UnitDir) {
    d.unit("leaf", "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n");
}

fn runs(d: &UnitDir) -> PathBuf {
    d.path("state").join("runs")
}

/// Writes `runs/leaf.json` with `content`, as a previous daemon (or anyone) might have left it.
fn record(d: &UnitDir, content: &str) -> PathBuf {
    fs::create_dir_all(runs(d)).unwrap();
    let path = runs(d).join("leaf.json");
    fs::write(&path, content).unwrap();
    path
}

/// A process launchgraph did not start, leading its own process group; killed when dropped.
struct Bystander(Child);

impl Bystander {
    fn start() -> Self {
        let child = Command::new("/bin/sleep")
            .arg("1000")
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("start sleep");
        Self(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// It still runs (it is our child: a zombie would mean it was killed).
    fn alive(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The start time of `pid` in clock ticks since boot: field 22 of /proc/PID/stat
/// (https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html).
fn start_ticks(pid: i32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// Waits until the daemon has started `leaf` (so it is past its leftovers), and returns the
/// log line about the record (`code` and the record's path in it).
fn started_after_record(daemon: &mut Daemon, code: &str, path: &std::path::Path) -> String {
    daemon.wait_serving();
    daemon.wait_state("leaf", "ready");
    let path = path.to_str().unwrap().to_owned();
    let at = daemon.wait_log(0, code, |l| l.contains(code) && l.contains(&path));
    daemon.lines()[at].clone()
}

fn assert_set_aside(path: &std::path::Path) {
    let bad = PathBuf::from(format!("{}.bad", path.display()));
    assert!(
        fs::symlink_metadata(&bad).is_ok(),
        "{} is kept for a look",
        bad.display()
    );
}

// ---------------------------------------------------------------------------------------
// run records

/// pid 0 means "my own process group" to kill(2): the daemon must never signal it.
#[test]
fn a_record_with_pid_0_is_set_aside_and_the_daemons_own_group_survives() {
    let d = UnitDir::new();
    leaf(&d);
    let path = record(&d, r#"{"unit":"leaf","pid":0,"start_ticks":null}"#);
    // The daemon runs in the sentinel's process group, as it would in a shell's.
    let mut sentinel = Bystander::start();
    let mut daemon = Daemon::start_in_group(&d.units(), sentinel.pid());
    let line = started_after_record(&mut daemon, "RUN_RECORD_INVALID", &path);
    assert!(line.contains("pid 0"), "{line}");
    assert!(sentinel.alive(), "the daemon's process group was signalled");
    assert!(daemon.try_status().is_none(), "the daemon runs on");
    assert_set_aside(&path);
}

/// pid 1 (init, or whatever leads process group 1) is never a unit.
#[test]
fn a_record_with_pid_1_is_set_aside() {
    let d = UnitDir::new();
    leaf(&d);
    let path = record(
        &d,
        &format!(
            r#"{{"unit":"leaf","pid":1,"start_ticks":{}}}"#,
            start_ticks(1)
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    let line = started_after_record(&mut daemon, "RUN_RECORD_INVALID", &path);
    assert!(line.contains("pid 1"), "{line}");
    assert_set_aside(&path);
}

/// A record naming the leader of the daemon's own process group, with its true start time: a
/// forged record, since a unit always leads a group of its own.
#[test]
fn a_record_naming_the_daemons_own_group_is_never_acted_on() {
    let d = UnitDir::new();
    leaf(&d);
    let mut sentinel = Bystander::start();
    let path = record(
        &d,
        &format!(
            r#"{{"unit":"leaf","pid":{},"start_ticks":{}}}"#,
            sentinel.pid(),
            start_ticks(sentinel.pid())
        ),
    );
    let mut daemon = Daemon::start_in_group(&d.units(), sentinel.pid());
    let line = started_after_record(&mut daemon, "RUN_RECORD_INVALID", &path);
    assert!(line.contains("process group"), "{line}");
    assert!(sentinel.alive(), "the daemon's process group was signalled");
    assert!(daemon.try_status().is_none(), "the daemon runs on");
    assert_set_aside(&path);
}

/// Without a start time nothing tells the recorded process from one that got its pid since.
#[test]
fn a_record_without_a_start_time_is_never_acted_on() {
    let d = UnitDir::new();
    leaf(&d);
    let mut bystander = Bystander::start();
    let path = record(
        &d,
        &format!(
            r#"{{"unit":"leaf","pid":{},"start_ticks":null}}"#,
            bystander.pid()
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    let line = started_after_record(&mut daemon, "RUN_RECORD_INVALID", &path);
    assert!(line.contains("start time"), "{line}");
    assert!(
        bystander.alive(),
        "a process launchgraph did not start was signalled"
    );
    assert_set_aside(&path);
}

/// The recorded pid now belongs to another process (its start time differs): the record is
/// stale, so it is removed, with a log line, and the process is left alone.
#[test]
fn a_record_whose_pid_was_reused_is_removed_and_the_process_left_alone() {
    let d = UnitDir::new();
    leaf(&d);
    let mut bystander = Bystander::start();
    let path = record(
        &d,
        &format!(
            r#"{{"unit":"leaf","pid":{},"start_ticks":{}}}"#,
            bystander.pid(),
            start_ticks(bystander.pid()) + 1
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    let line = started_after_record(&mut daemon, "RUN_RECORD_STALE", &path);
    assert!(line.contains(&format!("pid {}", bystander.pid())), "{line}");
    assert!(
        bystander.alive(),
        "a process launchgraph did not start was signalled"
    );
    assert!(
        fs::symlink_metadata(format!("{}.bad", path.display())).is_err(),
        "a stale record is removed, not kept"
    );
}

#[test]
fn a_record_that_is_not_json_is_set_aside() {
    let d = UnitDir::new();
    leaf(&d);
    let path = record(&d, "{\"unit\":\"leaf\",\"pid\":");
    let mut daemon = Daemon::start(&d.units());
    started_after_record(&mut daemon, "RUN_RECORD_INVALID", &path);
    assert_set_aside(&path);
}

/// A FIFO where a record was expected: reading it would wait for a writer forever.
#[test]
fn a_fifo_as_a_record_does_not_stall_the_daemon() {
    let d = UnitDir::new();
    leaf(&d);
    fs::create_dir_all(runs(&d)).unwrap();
    let path = runs(&d).join("leaf.json");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut daemon = Daemon::start(&d.units());
    let line = started_after_record(&mut daemon, "RUN_RECORD_INVALID", &path);
    assert!(line.contains("not a regular file"), "{line}");
    assert_set_aside(&path);
}

/// A record far larger than any the daemon writes is not read whole.
#[test]
fn an_oversized_record_is_set_aside() {
    let d = UnitDir::new();
    leaf(&d);
    let path = record(&d, &" ".repeat(1 << 20));
    let mut daemon = Daemon::start(&d.units());
    started_after_record(&mut daemon, "RUN_RECORD_INVALID", &path);
    assert_set_aside(&path);
}

// ---------------------------------------------------------------------------------------
// one state directory, one daemon

/// A second daemon with another socket but the same state directory would take the first
/// one's live units for leftovers of a previous daemon, and stop them.
#[test]
fn a_second_daemon_on_the_same_state_directory_refuses_to_start() {
    let d = UnitDir::new();
    leaf(&d);
    let mut first = Daemon::start(&d.units());
    first.wait_serving();
    let ready = first.wait_state("leaf", "ready");
    let pid = ready.pid.expect("leaf runs");

    let other = d.path("other").join("ctl.sock");
    let mut second = Daemon::start_with(&d.units(), &[], &["--socket", other.to_str().unwrap()]);
    let status = second.wait_exit();
    assert_eq!(status.code(), Some(75), "{}", second.log());
    let state = d.path("state");
    let log = second.log();
    assert!(
        log.contains(state.to_str().unwrap()) && log.contains(&format!("pid {}", first.pid())),
        "the refusal names the directory and the daemon holding it: {log}"
    );
    assert!(!log.contains(" -> "), "it changed no unit's state: {log}");

    // The first runs on, its unit untouched.
    assert!(!process_gone(pid as i32), "leaf's process runs on");
    let now = first.wait_state("leaf", "ready");
    assert_eq!(now.pid, Some(pid), "the same process: {}", first.log());
    assert!(first.try_status().is_none(), "the first daemon runs");
}

// ---------------------------------------------------------------------------------------
// clients that hold connections

/// The connection budget of each kind of peer (docs/control.md).
const MAX_CONNECTIONS: usize = 64;

/// A raw connection that sent `events --follow` and is kept open.
fn follow_raw(socket: &std::path::Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"{\"version\":2,\"request\":\"events\",\"follow\":true}\n")
        .unwrap();
    s
}

/// The first line the daemon wrote on a connection.
fn first_line(s: &UnixStream) -> String {
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("a line");
    line
}

/// Followers hold their connection as long as they like: with more of them than the daemon
/// serves, whoever may act still gets `status` and `stop` through.
#[test]
fn followers_beyond_their_bound_are_refused_and_never_lock_out_an_acting_peer() {
    let d = UnitDir::new();
    leaf(&d);
    let daemon = Daemon::start(&d.units());
    daemon.wait_serving();
    daemon.wait_state("leaf", "ready");

    let followers: Vec<UnixStream> = (0..MAX_CONNECTIONS + 16)
        .map(|_| follow_raw(daemon.socket()))
        .collect();
    // Each gets the ring's first transition, or a refusal.
    let (mut streaming, mut busy) = (0, 0);
    for f in &followers {
        let line = first_line(f);
        if line.contains("\"response\":\"event\"") {
            streaming += 1;
        } else {
            assert!(line.contains("\"code\":\"busy\""), "{line}");
            busy += 1;
        }
    }
    assert!(busy > 0, "the followers have a bound ({streaming} stream)");

    // Every stream still open, whoever may act gets through.
    daemon.cli(&["status"]).ok();
    daemon.cli(&["stop", "leaf"]).ok();
    daemon.wait_state("leaf", "stopped");
    drop(followers);
}

/// What holds `N` connections to `SOCKET` open without a word, says `connected`, then waits
/// for the daemon to close each one and says `closed`.
const SILENT_CLIENT: &str = r#"import socket, sys
path, n = sys.argv[1], int(sys.argv[2])
held = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    held.append(s)
print("connected", flush=True)
for s in held:
    s.settimeout(60)
    assert s.recv(64) == b"", "closed without an answer"
print("closed", flush=True)
"#;

/// A reader that may not act fills its budget with connections that send nothing: root still
/// gets `status` and `stop` through, and the silent connections are dropped after the request
/// timeout.
#[test]
#[ignore = "needs root"]
fn root_silent_readers_are_dropped_and_never_lock_out_an_acting_peer() {
    support::needs_root("connecting as the user nobody");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("this test connects as the user nobody, which this host lacks");
    let d = UnitDir::new();
    leaf(&d);
    let daemon = Daemon::start(&d.units());
    daemon.wait_serving();
    daemon.wait_state("leaf", "ready");
    // Reachable by anyone, as an admin could make it: nobody may read, not act.
    fs::set_permissions(daemon.socket(), fs::Permissions::from_mode(0o666)).unwrap();

    let mut silent = Command::new("python3")
        .arg("-c")
        .arg(SILENT_CLIENT)
        .arg(daemon.socket())
        .arg(MAX_CONNECTIONS.to_string())
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3 as nobody");
    let mut said = BufReader::new(silent.stdout.take().unwrap()).lines();
    assert_eq!(
        said.next().and_then(Result::ok).as_deref(),
        Some("connected")
    );
    let started = Instant::now();

    daemon.cli(&["status"]).ok();
    daemon.cli(&["stop", "leaf"]).ok();
    daemon.wait_state("leaf", "stopped");

    assert_eq!(said.next().and_then(Result::ok).as_deref(), Some("closed"));
    assert!(silent.wait().unwrap().success());
    // The request timeout is 5 s; the bound is generous for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
