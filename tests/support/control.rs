//! The CLI against a running daemon: each verb run as a separate process with a deadline
//! ([`cli`]), `status --json` and `events --json` read back as the protocol's types, waits
//! that poll them ([`wait_state`], [`wait_event`]), a live `events --follow` read line by line
//! ([`Follower`]), the `status` table, and the processes running a given command line, found
//! in `/proc`.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Instant;

use launchgraph::control::protocol::{EventRecord, GuardStatus, Request, Response, UnitStatus};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::DEADLINE;

/// The launchgraph binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_launchgraph");

/// What one run of the CLI printed, and how it exited.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Asserts the exit code, showing everything printed when it differs.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code: {self:#?}");
        self
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        self.expect(0);
        &self.stdout
    }
}

/// The CLI with `args`, then `--socket SOCKET`, with `NO_COLOR=1` and none of launchgraph's
/// variables from the test's environment.
pub fn cli_command(socket: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--socket")
        .arg(socket)
        .env_remove("LAUNCHGRAPH_SOCKET")
        .env_remove("LAUNCHGRAPH_UNITS")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs the CLI (see [`cli_command`]) to its end.
pub fn cli(socket: &Path, args: &[&str]) -> Out {
    run(cli_command(socket, args))
}

/// Runs `cmd` to its end with stdout and stderr captured; killed, and the test failed, if it
/// has not exited within [`DEADLINE`].
pub fn run(mut cmd: Command) -> Out {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run the CLI");
    let pid = Pid::from_raw(child.id() as i32);
    let read = |r: Option<Box<dyn Read + Send>>| {
        let mut r = r.expect("piped");
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = read(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = read(child.stderr.take().map(|s| Box::new(s) as _));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(DEADLINE) {
        Ok(status) => status.expect("wait for the CLI"),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("{cmd:?} did not exit within {DEADLINE:?}");
        }
    };
    Out {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs `cmd` with its stdout on a new pseudo-terminal (stderr discarded); returns the exit
/// code and what it wrote to the terminal.
pub fn on_tty(mut cmd: Command) -> (Option<i32>, String) {
    let pty = nix::pty::openpty(None, None).expect("open a pseudo-terminal");
    cmd.stdout(Stdio::from(pty.slave)).stderr(Stdio::null());
    let mut child = cmd.spawn().expect("run the CLI");
    // The child holds the terminal now; ours must close for reads to end when it exits.
    drop(cmd);
    let pid = Pid::from_raw(child.id() as i32);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // Ends with EIO once the child's end is closed.
        let _ = master.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(DEADLINE) {
        Ok(status) => status.expect("wait for the CLI"),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("the CLI on a terminal did not exit within {DEADLINE:?}");
        }
    };
    (status.code(), reader.join().unwrap())
}

/// Runs `cmd` as `uid`/`gid` with no supplementary groups.
pub fn as_user(mut cmd: Command, uid: u32, gid: u32) -> Out {
    cmd.uid(uid).gid(gid);
    run(cmd)
}

/// `status --json`, parsed as the protocol's `UnitStatus` list.
pub fn status_json(socket: &Path) -> Vec<UnitStatus> {
    let out = cli(socket, &["status", "--json"]);
    parse_status(out.ok())
}

/// The `{"units": [...]}` object of `status --json`.
pub fn parse_status(text: &str) -> Vec<UnitStatus> {
    #[derive(serde::Deserialize)]
    struct Status {
        units: Vec<UnitStatus>,
    }
    serde_json::from_str::<Status>(text)
        .unwrap_or_else(|e| panic!("status --json is not a status ({e}):\n{text}"))
        .units
}

/// One unit's status from a list.
#[track_caller]
pub fn unit<'a>(units: &'a [UnitStatus], name: &str) -> &'a UnitStatus {
    units
        .iter()
        .find(|u| u.name == name)
        .unwrap_or_else(|| panic!("no unit {name} in {units:#?}"))
}

/// Each unit's pid, from `status --json`.
pub fn pids(socket: &Path) -> BTreeMap<String, Option<u32>> {
    status_json(socket)
        .into_iter()
        .map(|u| (u.name, u.pid))
        .collect()
}

/// Every guard's status, asked over the control protocol (the `guards` request, which
/// `launchgraph guards` shows beside the runbook).
pub fn guards(socket: &Path) -> Vec<GuardStatus> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(launchgraph::control::client::request(
        socket,
        Request::Guards,
    )) {
        Ok(Response::Guards { guards }) => guards,
        other => panic!("the guards request: {other:?}"),
    }
}

/// The guard events of `events --json`.
pub fn guard_events(socket: &Path) -> Vec<EventRecord> {
    events_json(socket)
        .into_iter()
        .filter(|e| e.guard.is_some())
        .collect()
}

/// `events --json`, parsed.
pub fn events_json(socket: &Path) -> Vec<EventRecord> {
    cli(socket, &["events", "--json"])
        .ok()
        .lines()
        .map(parse_event)
        .collect()
}

#[track_caller]
pub fn parse_event(line: &str) -> EventRecord {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not an event ({e}): {line:?}"))
}

/// Polls `status --json` until `unit` is in `state`, within [`DEADLINE`]; returns its status.
/// Like pueue's `wait_for_task_condition` (Nukesor/pueue:pueue/tests/helper/wait.rs).
#[track_caller]
pub fn wait_state(socket: &Path, unit_name: &str, state: &str) -> UnitStatus {
    let mut last = Vec::new();
    poll(&format!("{unit_name} {state}"), || {
        last = status_json(socket);
        let u = last.iter().find(|u| u.name == unit_name)?;
        (u.state == state).then(|| u.clone())
    })
    .unwrap_or_else(|| panic!("{unit_name} is not {state} within {DEADLINE:?}: {last:#?}"))
}

/// Polls `status --json` until `pred` holds of it, within [`DEADLINE`]; returns it.
#[track_caller]
pub fn wait_status(
    socket: &Path,
    what: &str,
    pred: impl Fn(&[UnitStatus]) -> bool,
) -> Vec<UnitStatus> {
    let mut last = Vec::new();
    poll(what, || {
        last = status_json(socket);
        pred(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("not {what} within {DEADLINE:?}: {last:#?}"))
}

/// Polls `events --json` until an event satisfies `pred`, within [`DEADLINE`]; returns it.
#[track_caller]
pub fn wait_event(socket: &Path, what: &str, pred: impl Fn(&EventRecord) -> bool) -> EventRecord {
    let mut last = Vec::new();
    poll(what, || {
        last = events_json(socket);
        last.iter().find(|e| pred(e)).cloned()
    })
    .unwrap_or_else(|| panic!("no event {what} within {DEADLINE:?}: {last:#?}"))
}

/// Calls `f` every 50 ms until it gives a value or [`DEADLINE`] passes: state fetched over
/// the protocol has no event of its own to wait on.
fn poll<T>(_what: &str, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The `status` table: its rows (column header -> cell) and the notes under it.
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<BTreeMap<String, String>>,
    pub notes: String,
}

impl Table {
    pub const COLUMNS: [&str; 9] = [
        "UNIT",
        "STATE",
        "FOR",
        "PID",
        "LAST EXIT",
        "RESTARTS",
        "BACKOFF",
        "PROBE",
        "REASON",
    ];

    /// Reads the table: each cell runs from its header's first column to the next header's.
    pub fn parse(text: &str) -> Table {
        let (table, notes) = text.split_once("\n\n").unwrap_or((text, ""));
        let mut lines = table.lines();
        let header = lines.next().expect("a header line");
        let mut starts = Vec::new();
        let mut headers = Vec::new();
        let mut at = 0;
        for name in Self::COLUMNS {
            let i = header[at..]
                .find(name)
                .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
                + at;
            starts.push(i);
            headers.push(name.to_owned());
            at = i + name.len();
        }
        assert_eq!(
            header.split("  ").filter(|h| !h.trim().is_empty()).count(),
            Self::COLUMNS.len(),
            "exactly the documented columns: {header:?}"
        );
        let rows = lines
            .map(|line| {
                headers
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let end = starts.get(i + 1).copied().unwrap_or(line.len());
                        let cell = line.get(starts[i]..end.min(line.len())).unwrap_or("");
                        (h.clone(), cell.trim().to_owned())
                    })
                    .collect()
            })
            .collect();
        Table {
            headers,
            rows,
            notes: notes.to_owned(),
        }
    }

    #[track_caller]
    pub fn row(&self, unit: &str) -> &BTreeMap<String, String> {
        self.rows
            .iter()
            .find(|r| r["UNIT"] == unit)
            .unwrap_or_else(|| panic!("no row for {unit} in {:#?}", self.rows))
    }

    /// The indented note lines under `unit:`.
    pub fn notes_of(&self, unit: &str) -> Vec<String> {
        let head = format!("{unit}:");
        self.notes
            .lines()
            .skip_while(|l| *l != head)
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .map(|l| l.trim().to_owned())
            .collect()
    }
}

/// `events --follow --json` running, its lines read by a thread; killed on drop.
pub struct Follower {
    child: Child,
    lines: Receiver<String>,
    pub seen: Vec<EventRecord>,
}

impl Follower {
    pub fn start(socket: &Path) -> Follower {
        let mut cmd = cli_command(socket, &["events", "--follow", "--json"]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().expect("run events --follow");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follower {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads until an event satisfies `pred` (within [`DEADLINE`]); returns it.
    pub fn wait(&mut self, what: &str, pred: impl Fn(&EventRecord) -> bool) -> EventRecord {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let e = parse_event(&line);
                    self.seen.push(e.clone());
                    if pred(&e) {
                        return e;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no event {what} within {DEADLINE:?}; seen: {:#?}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "events --follow ended before {what}; seen: {:#?}",
                        self.seen
                    )
                }
            }
        }
    }

    /// Reads to the end of its output (within [`DEADLINE`]), then returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(parse_event(&line)),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("events --follow did not end within {DEADLINE:?}")
                }
            }
        }
        // Its output has ended: it exits now, if it has not already.
        let status = self.child.wait().expect("wait for events --follow");
        status.code()
    }

    /// Kills the CLI and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it has exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The live (not zombie) processes whose command line satisfies `pred`.
pub fn processes_running(pred: impl Fn(&[String]) -> bool) -> Vec<i32> {
    super::pids()
        .into_iter()
        .filter(|&pid| cmdline(pid).is_some_and(|c| pred(&c)) && !super::process_gone(pid))
        .collect()
}

/// A process's argv, from `/proc` (empty for a zombie).
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// A group from the group database that is not root's and that `nobody` is not in.
pub fn group_nobody_is_not_in() -> Option<(String, u32)> {
    let nobody_gid = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .map(|u| u.gid.as_raw());
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let (name, gid, members) = (fields.first()?, fields.get(2)?, fields.get(3)?);
        let gid: u32 = gid.parse().ok()?;
        let eligible = gid != 0
            && Some(gid) != nobody_gid
            && !members.split(',').any(|m| m == "nobody")
            && nix::unistd::Group::from_name(name).ok().flatten().is_some();
        eligible.then(|| (name.to_string(), gid))
    })
}
