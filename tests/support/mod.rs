//! Helpers for the end-to-end tests of `launchgraph up`: a daemon under test whose stderr is
//! read line by line, the transitions parsed from its log, unit directories in a tempdir, a
//! small python program the units run (servers that record when they were exec'd and when they
//! started listening), free loopback ports, and process-group checks.
//!
//! Waiting is done on events: a line of the daemon's log, the daemon's exit. Only where no
//! event exists (a process group being gone) is `/proc` polled, with a short interval and a
//! generous deadline.
#![allow(dead_code)] // Each test crate uses a different part of it.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Far beyond anything these processes need, so a slow shared machine never fails a test.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The program the units run (`python3 serve.py NAME EVENTS MODE ARGS...`). The first thing it
/// does is take the time; it appends `NAME WHAT NANOSECONDS` lines (CLOCK_REALTIME) to EVENTS:
/// `exec` at once, `listen` just before `listen()` is called, and what each mode adds.
///
/// Modes:
/// - `tcp PORT DELAY [CLOSE_FILE]`: sleeps DELAY seconds, then listens on 127.0.0.1:PORT and
///   accepts connections. When CLOSE_FILE appears it removes it, closes the listening socket
///   (`closed`) and keeps running without listening.
/// - `http PORT MARKER`: answers GET requests: the first three with 503 (the body contains
///   MARKER), the next three with 200 and a body without MARKER, then 200 with MARKER. Each
///   answer is recorded (`answer-503`, `answer-200-without-marker`, `answer-ready`) with the
///   time taken before it is sent.
/// - `file-gate READY_FILE MISSES`: once EVENTS holds MISSES `NAME probe-miss` lines (written
///   by the unit's readiness probe), records `ready-file` and then creates READY_FILE.
const SERVE_PY: &str = r#"import time
T0 = time.time_ns()
import os, socket, sys

name, events, mode = sys.argv[1], sys.argv[2], sys.argv[3]
args = sys.argv[4:]


def record(what, t=None):
    t = time.time_ns() if t is None else t
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name} {what} {t}\n".encode())
    finally:
        os.close(fd)


def count(what):
    try:
        with open(events) as f:
            return sum(1 for line in f if line.split()[:2] == [name, what])
    except FileNotFoundError:
        return 0


def listener(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    t = time.time_ns()
    s.listen(64)
    record("listen", t)
    return s


def forever():
    while True:
        time.sleep(3600)


record("exec", T0)

if mode == "tcp":
    port, delay = int(args[0]), float(args[1])
    close_file = args[2] if len(args) > 2 else None
    time.sleep(delay)
    s = listener(port)
    s.settimeout(0.05)
    while True:
        if close_file and os.path.exists(close_file):
            os.remove(close_file)
            s.close()
            record("closed")
            forever()
        try:
            conn, _ = s.accept()
            conn.close()
        except socket.timeout:
            pass
elif mode == "http":
    port, marker = int(args[0]), args[1]
    s = listener(port)
    n = 0
    while True:
        conn, _ = s.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                continue
            if not data.startswith(b"GET "):
                continue
            n += 1
            if n <= 3:
                status, body, what = 503, f"starting {marker}", "answer-503"
            elif n <= 6:
                status, body, what = 200, "warming up", "answer-200-without-marker"
            else:
                status, body, what = 200, f"ok {marker}", "answer-ready"
            record(what)
            text = "OK" if status == 200 else "Service Unavailable"
            head = f"HTTP/1.1 {status} {text}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            try:
                conn.sendall((head + body).encode())
            except OSError:
                pass
elif mode == "file-gate":
    ready_file, misses = args[0], int(args[1])
    while count("probe-miss") < misses:
        time.sleep(0.01)
    record("ready-file")
    open(ready_file, "w").close()
    forever()
else:
    sys.exit(f"serve.py: unknown mode {mode}")
"#;

/// A tempdir holding `units/` (the units directory), `events` (what the processes record)
/// and `serve.py`. World-writable, so that units running as another user can write in it.
pub struct UnitDir {
    tmp: tempfile::TempDir,
}

impl UnitDir {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("create a tempdir");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
        fs::create_dir(tmp.path().join("units")).unwrap();
        fs::write(tmp.path().join("serve.py"), SERVE_PY).unwrap();
        Self { tmp }
    }

    /// A path in the tempdir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn units(&self) -> PathBuf {
        self.path("units")
    }

    /// Writes `units/NAME.toml`.
    pub fn unit(&self, name: &str, toml: &str) {
        fs::write(self.units().join(format!("{name}.toml")), toml).unwrap();
    }

    /// The TOML argv that runs `serve.py` as unit `name` in `mode`.
    pub fn serve(&self, name: &str, mode: &str, args: &[&str]) -> String {
        let script = self.path("serve.py");
        let events = self.path("events");
        let mut argv = vec![
            "/usr/bin/env",
            "python3",
            "-u",
            script.to_str().unwrap(),
            name,
            events.to_str().unwrap(),
            mode,
        ];
        argv.extend_from_slice(args);
        array(&argv)
    }

    /// Everything the processes recorded so far, in the order written.
    pub fn events(&self) -> Events {
        let text = fs::read_to_string(self.path("events")).unwrap_or_default();
        Events(
            text.lines()
                .map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    assert_eq!(f.len(), 3, "malformed event line {l:?}");
                    Event {
                        name: f[0].to_owned(),
                        what: f[1].to_owned(),
                        ns: f[2].parse().expect("nanoseconds"),
                    }
                })
                .collect(),
        )
    }

    /// The lines of a file in the tempdir, none when it does not exist.
    pub fn lines(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.path(name))
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// A TOML basic string.
pub fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of strings.
pub fn array(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", items.join(", "))
}

/// One line a unit's process recorded.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub what: String,
    pub ns: u128,
}

#[derive(Debug)]
pub struct Events(pub Vec<Event>);

impl Events {
    /// The times of `name`'s `what` events, in the order recorded.
    pub fn times(&self, name: &str, what: &str) -> Vec<u128> {
        self.0
            .iter()
            .filter(|e| e.name == name && e.what == what)
            .map(|e| e.ns)
            .collect()
    }

    pub fn first(&self, name: &str, what: &str) -> u128 {
        *self
            .times(name, what)
            .first()
            .unwrap_or_else(|| panic!("no `{name} {what}` event in {self:#?}"))
    }

    pub fn last(&self, name: &str, what: &str) -> u128 {
        *self
            .times(name, what)
            .last()
            .unwrap_or_else(|| panic!("no `{name} {what}` event in {self:#?}"))
    }
}

/// A loopback port nobody listens on now, and that no other test of this binary was given.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a loopback port")
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// One `<unit>: <from> -> <to> <REASON> [on=<unit>] ...` line of the daemon's log. The facts
/// after those words are text for people and are not read here: a test reads them typed, from
/// the event the line was rendered from (`support_control::event_of`).
#[derive(Debug, Clone)]
pub struct Transition {
    /// The line's index in the log.
    pub index: usize,
    pub unit: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub on: Option<String>,
    pub line: String,
}

impl Transition {
    /// Parses `<timestamp> <LEVEL> <message>`; `None` for lines that are not transitions.
    pub fn parse(index: usize, line: &str) -> Option<Self> {
        let (_timestamp, rest) = line.split_once(' ')?;
        let (_level, message) = rest.trim_start().split_once(' ')?;
        let (unit, rest) = message.split_once(": ")?;
        if unit.is_empty()
            || !unit
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        {
            return None;
        }
        let mut words = rest.splitn(5, ' ');
        let from = words.next()?;
        if words.next()? != "->" {
            return None;
        }
        let to = words.next()?;
        let reason = words.next()?;
        let on = words
            .next()
            .and_then(|rest| rest.strip_prefix("on="))
            .map(|r| r.split_once(' ').map_or(r, |(name, _)| name).to_owned());
        Some(Self {
            index,
            unit: unit.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            reason: reason.to_owned(),
            on,
            line: line.to_owned(),
        })
    }

    /// `unit` entered state `to`.
    pub fn is(&self, unit: &str, to: &str) -> bool {
        self.unit == unit && self.to == to
    }

    /// `unit` went from `from` to `to`.
    pub fn moved(&self, unit: &str, from: &str, to: &str) -> bool {
        self.unit == unit && self.from == from && self.to == to
    }
}

/// `launchgraph up` running as a child of the test, its stderr read by a thread of its own.
///
/// Dropping it (also while a failed test unwinds) sends SIGTERM, waits for the exit (SIGKILL
/// past the deadline), then SIGKILLs whatever is left in the process groups of the units it
/// started.
pub struct Daemon {
    pid: Pid,
    state_dir: PathBuf,
    lines_rx: Receiver<String>,
    lines: Vec<String>,
    eof: bool,
    status_rx: Receiver<ExitStatus>,
    status: Option<ExitStatus>,
}

impl Daemon {
    pub fn start(units: &Path) -> Self {
        Self::start_with_env(units, &[])
    }

    /// Starts it with extra variables in its own environment.
    pub fn start_with_env(units: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with(units, env, &[])
    }

    /// Starts it with extra variables and extra arguments to `up` (`--metrics-listen`, ...).
    pub fn start_with(units: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_launchgraph"));
        // Fingerprints go next to the units, never into the host's state directory.
        let state_dir = units.parent().unwrap_or(units).join("state");
        let runs_in = state_dir.clone();
        cmd.arg("up")
            .arg("--units")
            .arg(units)
            .arg("--state-dir")
            .arg(&state_dir)
            .env_remove("LAUNCHGRAPH_UNITS")
            .env("NO_COLOR", "1")
            .env("LAUNCHGRAPH_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.args(args);
        // A socket of its own, unless the test chose one.
        if !env.iter().any(|(k, _)| *k == "LAUNCHGRAPH_SOCKET") && !args.contains(&"--socket") {
            cmd.arg("--socket")
                .arg(units.parent().unwrap_or(units).join("control/ctl.sock"));
        }
        let mut child = cmd.spawn().expect("start launchgraph up");
        let pid = Pid::from_raw(child.id() as i32);
        let stderr = child.stderr.take().unwrap();
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (status_tx, status_rx) = mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = status_tx.send(status);
            }
        });
        Self {
            pid,
            state_dir: runs_in,
            lines_rx,
            lines: Vec::new(),
            eof: false,
            status_rx,
            status: None,
        }
    }

    /// The log so far, for failure messages.
    pub fn log(&self) -> String {
        self.lines.join("\n")
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// How many lines have been read so far: a position to wait from.
    pub fn mark(&self) -> usize {
        self.lines.len()
    }

    /// Reads one more line, waiting until `until`; false at the deadline or the log's end.
    fn read_line(&mut self, until: Instant) -> bool {
        if self.eof {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        match self.lines_rx.recv_timeout(left) {
            Ok(line) => {
                self.lines.push(line);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                false
            }
        }
    }

    /// Waits for the first log line at index `from` or later that satisfies `pred`; returns
    /// its index.
    pub fn wait_line(&mut self, from: usize, what: &str, pred: impl Fn(&str) -> bool) -> usize {
        let until = Instant::now() + DEADLINE;
        let mut next = from;
        loop {
            while next < self.lines.len() {
                if pred(&self.lines[next]) {
                    return next;
                }
                next += 1;
            }
            if !self.read_line(until) {
                let why = if self.eof {
                    "the daemon's log ended"
                } else {
                    "deadline passed"
                };
                panic!("{why} while waiting for {what}; the log:\n{}", self.log());
            }
        }
    }

    /// Waits for the first transition at index `from` or later that satisfies `pred`.
    pub fn wait_for(
        &mut self,
        from: usize,
        what: &str,
        pred: impl Fn(&Transition) -> bool,
    ) -> Transition {
        let i = self.wait_line(from, what, |line| {
            Transition::parse(0, line).is_some_and(|t| pred(&t))
        });
        Transition::parse(i, &self.lines[i]).unwrap()
    }

    /// Every transition logged so far.
    pub fn transitions(&self) -> Vec<Transition> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Transition::parse(i, l))
            .collect()
    }

    /// The first transition at or after `from` satisfying `pred`, among those read so far.
    pub fn find(&self, from: usize, what: &str, pred: impl Fn(&Transition) -> bool) -> Transition {
        self.transitions()
            .into_iter()
            .find(|t| t.index >= from && pred(t))
            .unwrap_or_else(|| panic!("no transition {what} in the log:\n{}", self.log()))
    }

    /// Its exit status, if it has exited; does not wait.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.status_rx.try_recv().ok();
        }
        self.status
    }

    fn wait_status(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.status_rx.recv_timeout(timeout).ok();
        }
        self.status
    }

    /// Sends `signal` to the daemon (not to its units).
    pub fn signal(&mut self, signal: Signal) {
        if self.try_status().is_none() {
            let _ = kill(self.pid, signal);
        }
    }

    /// SIGTERM, then waits for the exit and the end of the log.
    pub fn terminate(&mut self) -> ExitStatus {
        self.stop_with(Signal::SIGTERM)
    }

    /// Sends `signal`, then waits for the exit and the end of the log.
    pub fn stop_with(&mut self, signal: Signal) -> ExitStatus {
        self.signal(signal);
        let Some(status) = self.wait_status(DEADLINE) else {
            panic!(
                "the daemon did not exit after {signal}; the log:\n{}",
                self.log()
            );
        };
        self.read_to_end();
        status
    }

    fn read_to_end(&mut self) {
        let until = Instant::now() + DEADLINE;
        while self.read_line(until) {}
    }

    /// The pid of every `exec` unit the daemon has running (each leads its own process
    /// group), from its run records (`<state>/runs/<unit>.json`, removed when a unit exits):
    /// after the daemon was killed, what it left behind.
    pub fn unit_pids(&self) -> Vec<i32> {
        let Ok(dir) = std::fs::read_dir(self.state_dir.join("runs")) else {
            return Vec::new();
        };
        let pids: BTreeSet<i32> = dir
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .filter_map(|v| i32::try_from(v.get("pid")?.as_u64()?).ok())
            .collect();
        pids.into_iter().collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = kill(self.pid, Signal::SIGTERM);
            if self.wait_status(DEADLINE).is_none() {
                let _ = kill(self.pid, Signal::SIGKILL);
                self.wait_status(DEADLINE);
            }
        }
        // The log ends with the daemon (its units do not inherit its stderr).
        let until = Instant::now() + Duration::from_secs(5);
        while self.read_line(until) {}
        for pgid in self.unit_pids() {
            if !group_gone(pgid) {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
        }
    }
}

/// `(pid, state)` of every process whose process group is `pgid`, from `/proc`.
pub fn group_members(pgid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some((state, group)) = stat(pid)
            && group == pgid
        {
            out.push((pid, state));
        }
    }
    out
}

/// State and process group of `pid`, from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// No live process is left in process group `pgid` (zombies count as gone).
pub fn group_gone(pgid: i32) -> bool {
    match killpg(Pid::from_raw(pgid), None) {
        Err(Errno::ESRCH) => true,
        _ => group_members(pgid).iter().all(|&(_, state)| state == 'Z'),
    }
}

/// Process `pid` is gone or a zombie.
pub fn process_gone(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Err(Errno::ESRCH) => true,
        _ => stat(pid).is_none_or(|(state, _)| state == 'Z'),
    }
}

/// The process group of `pid`, while it lives.
pub fn pgid_of(pid: i32) -> Option<i32> {
    stat(pid).map(|(_, group)| group)
}

/// Polls `done` every 20 ms until it holds; for conditions no event announces.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the tests run as root (needed to switch users).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
