//! What a hostile or unlucky environment does to the daemon, and what it must survive:
//!
//! - run records (`<state-dir>/runs/UNIT.json`) that are wrong, forged or stale: the daemon
//!   never signals anything a record names unless the record is valid and its process is
//!   still the one recorded; a bad record is set aside (`UNIT.json.bad`), with a log line;
//! - a daemon killed while it starts a unit: the unit's process writes its own run record
//!   before it execs, so no program ever runs unrecorded, and a unit whose record cannot be
//!   written is not started at all (`RUN_UNRECORDED`);
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

use support::pressure::Tmpfs;
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
// a run is recorded before it runs

/// The record exists, naming the process, at the moment the process executes the unit's
/// program: fanotify holds the exec (`FAN_OPEN_EXEC_PERM`, fanotify(7),
/// https://man7.org/linux/man-pages/man7/fanotify.7.html) while the test reads the record, so
/// no timing decides the outcome. A daemon killed at any point of a start therefore leaves no
/// program running unrecorded.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "needs root"]
fn root_a_run_is_recorded_before_its_program_is_executed() {
    support::needs_root("fanotify");
    let d = UnitDir::new();
    let program = d.path("sleep-recorded");
    fs::copy("/bin/sleep", &program).unwrap();
    let watch = ExecWatch::new(&program);
    d.unit(
        "leaf",
        &format!(
            "[exec]\ncommand = {}\n",
            support::array(&[program.to_str().unwrap(), "1000"])
        ),
    );
    let daemon = Daemon::start(&d.units());
    let (pid, record) = watch.hold_next_exec(|_pid| fs::read(runs(&d).join("leaf.json")).ok());
    let record = record.unwrap_or_else(|| {
        panic!(
            "pid {pid} executed leaf's program with no run record; {}",
            daemon.log()
        )
    });
    let json: serde_json::Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(json["unit"], "leaf");
    assert_eq!(
        json["pid"], pid,
        "the record names the process that executes"
    );
    assert_eq!(json["start_ticks"].as_u64(), Some(start_ticks(pid)));
    daemon.wait_serving();
    assert_eq!(daemon.wait_state("leaf", "ready").pid, Some(pid as u32));
}

/// A fanotify group that holds every exec of one file until the test has looked.
#[cfg(target_os = "linux")]
struct ExecWatch(std::os::fd::OwnedFd);

#[cfg(target_os = "linux")]
impl ExecWatch {
    fn new(file: &std::path::Path) -> Self {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain flags; the returned descriptor is owned below.
        let fd = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC,
                libc::O_RDONLY as libc::c_uint,
            )
        };
        assert!(
            fd >= 0,
            "fanotify_init: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a descriptor fanotify_init just returned.
        let group = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let path = std::ffi::CString::new(file.as_os_str().as_bytes()).unwrap();
        // SAFETY: a live descriptor and a NUL-terminated path.
        let marked = unsafe {
            libc::fanotify_mark(
                fd,
                libc::FAN_MARK_ADD,
                libc::FAN_OPEN_EXEC_PERM,
                libc::AT_FDCWD,
                path.as_ptr(),
            )
        };
        assert_eq!(
            marked,
            0,
            "fanotify_mark: {}",
            std::io::Error::last_os_error()
        );
        Self(group)
    }

    /// Waits for the next exec of the file, runs `look` with the executing pid while the exec
    /// is held, then lets it go on.
    fn hold_next_exec<T>(&self, look: impl FnOnce(i32) -> T) -> (i32, T) {
        use std::os::fd::AsRawFd;
        let fd = self.0.as_raw_fd();
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, alive for the call.
        let ready = unsafe { libc::poll(&mut poll, 1, DEADLINE.as_millis() as libc::c_int) };
        assert_eq!(
            ready, 1,
            "no exec of the watched program within {DEADLINE:?}"
        );
        let mut event = std::mem::MaybeUninit::<libc::fanotify_event_metadata>::zeroed();
        let size = std::mem::size_of::<libc::fanotify_event_metadata>();
        // SAFETY: reads at most `size` bytes into the event buffer.
        let n = unsafe { libc::read(fd, event.as_mut_ptr().cast(), size) };
        assert_eq!(n, size as isize, "fanotify read");
        // SAFETY: read filled the whole structure.
        let event = unsafe { event.assume_init() };
        let seen = look(event.pid);
        let answer = libc::fanotify_response {
            fd: event.fd,
            response: libc::FAN_ALLOW,
        };
        // SAFETY: writes the response structure; closes the event's descriptor once.
        unsafe {
            libc::write(
                fd,
                (&answer as *const libc::fanotify_response).cast(),
                std::mem::size_of::<libc::fanotify_response>(),
            );
            libc::close(event.fd);
        }
        (event.pid, seen)
    }
}

/// A state directory where the record cannot go (here `runs` is a file): the program is not
/// run, the start fails with `RUN_UNRECORDED` naming the record, and once the directory is
/// repaired the retry starts it.
#[test]
fn a_run_that_cannot_be_recorded_is_not_started() {
    let d = UnitDir::new();
    let marker = format!("LAUNCHGRAPH_TEST_UNRECORDED={}", d.path("").display());
    let (name, value) = marker.split_once('=').unwrap();
    d.unit(
        "leaf",
        &format!(
            "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\nenv = {{ {name} = {} }}\n\
             [restart]\ninitial = \"200ms\"\nmax = \"200ms\"\n",
            support::q(value)
        ),
    );
    fs::create_dir_all(d.path("state")).unwrap();
    fs::write(runs(&d), b"not a directory").unwrap();
    let mut daemon = Daemon::start(&d.units());
    daemon.wait_serving();
    let failed = daemon.wait_for(0, "leaf's unrecorded start", |t| {
        t.unit == "leaf" && t.reason == "RUN_UNRECORDED"
    });
    let cause = failed.facts.cause.clone().unwrap_or_default();
    assert!(
        cause.contains("run record") && cause.contains(runs(&d).to_str().unwrap()),
        "the cause names the record: {}",
        failed.line
    );
    assert_eq!(failed.to, "backoff", "{}", failed.line);
    assert!(
        support::processes_with_env(&marker).is_empty(),
        "the program ran although it could not be recorded"
    );

    let mark = daemon.mark();
    fs::remove_file(runs(&d)).unwrap();
    let ready = daemon.wait_for(mark, "leaf ready once it can be recorded", |t| {
        t.is("leaf", "ready")
    });
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(runs(&d).join("leaf.json")).unwrap()).unwrap();
    assert_eq!(record["pid"], ready.pid(), "{}", daemon.log());
    assert_eq!(support::processes_with_env(&marker), vec![ready.pid()]);
}

/// The state directory on a full file system (a small tmpfs, filled): no unit runs untracked,
/// not after a start, not after the daemon is killed and started again; once there is room,
/// the unit starts, once.
#[test]
#[ignore = "needs root"]
fn root_a_full_state_directory_starts_nothing_untracked() {
    support::needs_root("mount a tmpfs");
    let d = UnitDir::new();
    let marker = format!("LAUNCHGRAPH_TEST_FULL={}", d.path("").display());
    let (name, value) = marker.split_once('=').unwrap();
    d.unit(
        "leaf",
        &format!(
            "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\nenv = {{ {name} = {} }}\n\
             [restart]\ninitial = \"100ms\"\nmax = \"100ms\"\n",
            support::q(value)
        ),
    );
    let state = d.path("state");
    let _tmpfs = Tmpfs::mount(&state, "256k");
    fs::create_dir_all(state.join("runs")).unwrap();
    fs::write(state.join("lock"), b"").unwrap();
    let filler = state.join("filler");
    let mut file = fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    drop(file);

    let mut daemon = Daemon::start(&d.units());
    daemon.wait_serving();
    daemon.wait_for(0, "leaf's unrecorded start", |t| {
        t.unit == "leaf" && t.reason == "RUN_UNRECORDED"
    });
    assert!(
        support::processes_with_env(&marker).is_empty(),
        "it ran untracked"
    );
    daemon.crash();

    let mut daemon = Daemon::start(&d.units());
    daemon.wait_serving();
    daemon.wait_for(0, "leaf's unrecorded start after the crash", |t| {
        t.unit == "leaf" && t.reason == "RUN_UNRECORDED"
    });
    assert!(
        support::processes_with_env(&marker).is_empty(),
        "it ran untracked"
    );

    let mark = daemon.mark();
    fs::remove_file(&filler).unwrap();
    let ready = daemon.wait_for(mark, "leaf ready once there is room", |t| {
        t.is("leaf", "ready")
    });
    assert_eq!(support::processes_with_env(&marker), vec![ready.pid()]);
    daemon.terminate();
    assert!(support::processes_with_env(&marker).is_empty());
}

// ---------------------------------------------------------------------------------------
// what the daemon inherited

/// The signals a process ignores, from the `SigIgn` mask of /proc/PID/status
/// (proc_pid_status(5)), less 32 and 33: the C library keeps those for itself, and glibc's
/// posix_spawn sets them to ignored in every child (bminor/glibc:sysdeps/unix/sysv/linux/spawni.c).
fn ignored_signals(status: &str) -> u64 {
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .unwrap_or_else(|| panic!("no SigIgn line in {status:?}"));
    u64::from_str_radix(mask.trim(), 16).unwrap() & !(0b11 << 31)
}

/// A daemon started under `nohup` and in a shell's background (SIGHUP, SIGINT and SIGQUIT
/// ignored) passes none of that on: its units and its probe commands ignore no signal (a unit
/// that ignored its stop signal would only stop at SIGKILL), and SIGHUP still reloads it.
#[test]
fn a_daemon_started_ignoring_signals_passes_none_of_them_on() {
    use nix::sys::signal::Signal;
    let d = UnitDir::new();
    let seen = d.path("probe-status");
    d.unit(
        "leaf",
        &format!(
            "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n\
             [ready]\nexec = {}\n",
            support::array(&[
                "/bin/sh",
                "-c",
                "cat /proc/$$/status > \"$1\"",
                "sh",
                seen.to_str().unwrap()
            ])
        ),
    );
    let mut daemon = Daemon::start_ignoring(
        &d.units(),
        &[Signal::SIGHUP, Signal::SIGINT, Signal::SIGQUIT],
    );
    daemon.wait_serving();
    let pid = daemon.wait_state("leaf", "ready").pid.expect("leaf runs");
    let unit = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(ignored_signals(&unit), 0, "the unit ignores signals");
    let probe = fs::read_to_string(&seen).unwrap();
    assert_eq!(
        ignored_signals(&probe),
        0,
        "the probe command ignores signals"
    );

    let mark = daemon.log_mark();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_log(mark, "a reload on SIGHUP", |l| l.contains("reload"));
    assert!(
        daemon.try_status().is_none(),
        "SIGHUP reloads, it does not end the daemon"
    );
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
