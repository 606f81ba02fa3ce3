//! The one harness of the integration tests, after pueue's `tests/helper` (Nukesor/pueue:
//! pueue/tests/helper/{daemon,fixtures,wait,asserts}.rs):
//!
//! - [`daemon`]: `launchgraph up` under test, with its own units, state directory and control
//!   socket; its transitions read from `events --follow --json`, never from its log text.
//! - [`control`]: the CLI verbs run against a daemon, `status --json` and `events --json` read
//!   back, and waits on them (a unit's state, an event).
//! - [`launchd`]: the launchctl test double.
//! - [`host`]: a fake Mac host (Homebrew prefix, node, npm prefix, nvm, OpenClaw, plists).
//! - [`pressure`]: real kernel signals for root tests: tmpfs mounts, a swap file, a
//!   memory-limited cgroup and a process in it that makes the kernel swap and stall.
//! - [`real`]: the real stack's run directory, units, gateway configuration and waits, shared by
//!   the end-to-end tests (real_stack, real_guards).
//! - here: unit directories in a tempdir, a small python program the units run (servers that
//!   record when they were exec'd and when they started listening), free loopback ports,
//!   process-group checks, and [`needs_root`].
//!
//! Waiting is done on what the daemon reports over its socket, or on a process's exit. Only
//! where nothing reports (a process group being gone) is `/proc` polled, with a short interval
//! and a generous deadline.
#![allow(dead_code)] // Each test crate uses a different part of it.

pub mod control;
pub mod daemon;
pub mod host;
pub mod launchd;
pub mod pressure;
pub mod real;

#[allow(unused_imports)] // Not every test crate starts a daemon.
pub use daemon::{Daemon, Transition};

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg};
use nix::unistd::Pid;

/// Far beyond anything these processes need, so a slow shared machine never fails a test.
pub const DEADLINE: Duration = Duration::from_secs(60);

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
/// and `serve.py`. World-writable, so that units running as another user can write in it,
/// and sticky like /tmp, so that others cannot replace what root runs from it (which
/// preflight reports as `WRITABLE_BY_NON_ROOT`).
pub struct UnitDir {
    tmp: tempfile::TempDir,
}

impl UnitDir {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("create a tempdir");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o1777)).unwrap();
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

/// What an HTTP server answered: the status code, the head (status line and headers) and the
/// body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub code: u16,
    pub head: String,
    pub body: String,
}

/// `GET path` from `addr` as HTTP/1.0, so that the body is neither chunked nor kept alive;
/// `None` when nothing answered within `within`.
pub fn http_get(addr: SocketAddr, path: &str, within: Duration) -> Option<HttpAnswer> {
    let mut s = TcpStream::connect_timeout(&addr, within).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.set_write_timeout(Some(within)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(HttpAnswer {
        code,
        head: head.to_owned(),
        body: body.to_owned(),
    })
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

/// Every pid in `/proc`.
pub fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// `(pid, state)` of every process whose process group is `pgid`, from `/proc`.
pub fn group_members(pgid: i32) -> Vec<(i32, char)> {
    pids()
        .into_iter()
        .filter_map(|pid| {
            let st = stat(pid)?;
            (st.pgrp == pgid).then_some((pid, st.state))
        })
        .collect()
}

/// The live processes whose process group or session is one of `leaders`: what a unit left
/// behind, including what moved to a session of its own.
pub fn in_groups_or_sessions(leaders: &[i32]) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|&pid| {
            stat(pid).is_some_and(|st| {
                st.state != 'Z' && (leaders.contains(&st.pgrp) || leaders.contains(&st.session))
            })
        })
        .collect()
}

/// The live processes (other than this one) with `entry` (`NAME=value`) in their environment,
/// which children inherit whatever group or session they move to.
pub fn processes_with_env(entry: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    pids()
        .into_iter()
        .filter(|&pid| {
            pid != me
                && fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == entry.as_bytes()))
                && !process_gone(pid)
        })
        .collect()
}

/// A process's state, process group and session, from `/proc/<pid>/stat`.
struct Stat {
    state: char,
    pgrp: i32,
    session: i32,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp session ...`; comm may hold spaces and parentheses.
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    Some(Stat {
        state,
        pgrp,
        session,
    })
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
        _ => stat(pid).is_none_or(|st| st.state == 'Z'),
    }
}

/// The process group of `pid`, while it lives.
pub fn pgid_of(pid: i32) -> Option<i32> {
    stat(pid).map(|st| st.pgrp)
}

/// Polls `done` every 20 ms until it holds; for conditions no event announces.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the tests run as root (needed to switch users, chown, root-owned plists).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Fails the test unless it runs as root. Tests that call it are `#[ignore = "needs root"]`
/// and named `root_*`; `scripts/test.sh` runs them (`cargo test -- --ignored root_`) when it
/// runs as root, as CI does.
#[track_caller]
pub fn needs_root(what: &str) {
    assert!(
        is_root(),
        "{what} needs root: run `sudo scripts/test.sh`, or `cargo test -- --ignored root_` as root"
    );
}

/// A process that is no unit's, listening on `addr` until dropped; it answers any request
/// with `200 OK`.
pub struct Stranger {
    child: std::process::Child,
}

impl Stranger {
    /// Starts python3 listening on `addr` and waits until it accepts.
    pub fn listen(addr: SocketAddr) -> Self {
        let family = if addr.is_ipv6() {
            "socket.AF_INET6"
        } else {
            "socket.AF_INET"
        };
        let script = format!(
            "import socket, time\n\
             s = socket.socket({family}, socket.SOCK_STREAM)\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(({:?}, {}))\n\
             s.listen(64)\n\
             while True:\n\
             \x20   c, _ = s.accept()\n\
             \x20   c.settimeout(1)\n\
             \x20   try:\n\
             \x20       if c.recv(4096):\n\
             \x20           c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\
             Connection: close\\r\\n\\r\\nok')\n\
             \x20   except OSError:\n\
             \x20       pass\n\
             \x20   c.close()\n",
            addr.ip().to_string(),
            addr.port()
        );
        let child = std::process::Command::new("/usr/bin/env")
            .args(["python3", "-c", &script])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start python3");
        let s = Self { child };
        wait_until(&format!("the stranger listens on {addr}"), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its command name, as the kernel has it (python3 may be a versioned binary).
    pub fn command(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid()))
            .expect("the stranger's comm")
            .trim()
            .to_owned()
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sleeper unit with one exec-signal guard reading the number in `level`, then `extra`
/// (its `on-trip` and such).
pub fn watch_unit(level: &Path, extra: &str) -> String {
    format!(
        r#"[exec]
command = ["/bin/sleep", "1000"]

[[guard]]
name = "level"
signal = "exec"
command = ["/bin/cat", {level}]
every = "1s"
above = 5
samples = 2
clear-below = 2
clear-samples = 1
{extra}
"#,
        level = q(level.to_str().unwrap()),
    )
}
