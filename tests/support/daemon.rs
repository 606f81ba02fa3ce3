//! `launchgraph up` under test ([`Daemon`]): its own units, state directory and control socket,
//! extra arguments and variables of the test's choosing; stopped, with everything it started,
//! when dropped.
//!
//! What the daemon did is read over its socket, as a user reads it: a thread runs
//! `events --follow --json` from the start and hands each [`EventRecord`] to the test, which
//! waits on them ([`Daemon::wait_for`]) or on `status --json` ([`Daemon::wait_state`]). The
//! log (stderr) is kept for failure messages and for the few facts only the log carries
//! ([`Daemon::wait_log`]).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use launchgraph::control::protocol::{EventRecord, TransitionFacts, UnitStatus};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::control::{self, Out};
use super::{DEADLINE, group_gone};

/// One transition, as `events --json` reports it.
#[derive(Debug, Clone)]
pub struct Transition {
    /// Its position among the daemon's transitions: a mark to wait from ([`Daemon::mark`]).
    pub index: usize,
    pub seq: u64,
    /// RFC 3339, UTC, to the microsecond.
    pub time: String,
    pub unit: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub on: Option<String>,
    /// The typed facts (pid, exit, delay, ...), as the protocol carries them.
    pub facts: TransitionFacts,
    /// The transition as one line, for failure messages.
    pub line: String,
}

impl Transition {
    fn new(index: usize, e: EventRecord) -> Self {
        let line = launchgraph::control::render::event_line(&e);
        Self {
            index,
            seq: e.seq,
            time: e.time,
            unit: e.unit,
            from: e.from,
            to: e.to,
            reason: e.reason,
            on: e.on,
            facts: e.facts,
            line,
        }
    }

    /// When it happened, in nanoseconds since the Unix epoch.
    pub fn ns(&self) -> u128 {
        humantime::parse_rfc3339(&self.time)
            .unwrap_or_else(|e| panic!("{:?} has no RFC 3339 time: {e}", self.line))
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_nanos()
    }

    /// `unit` entered state `to`.
    pub fn is(&self, unit: &str, to: &str) -> bool {
        self.unit == unit && self.to == to
    }

    /// `unit` went from `from` to `to`.
    pub fn moved(&self, unit: &str, from: &str, to: &str) -> bool {
        self.unit == unit && self.from == from && self.to == to
    }

    /// The pid of the run it is about.
    #[track_caller]
    pub fn pid(&self) -> i32 {
        let pid = self
            .facts
            .pid
            .unwrap_or_else(|| panic!("no pid in {:?}", self.line));
        i32::try_from(pid).expect("a pid")
    }

    /// The signal that ended the run, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.facts.exit.and_then(|e| e.signal)
    }
}

/// `launchgraph up` running as a child of the test.
///
/// Dropping it (also while a failed test unwinds) sends SIGTERM, waits for the exit (SIGKILL
/// past the deadline), then SIGKILLs whatever is left in the process groups of the units it
/// started, unless it was [crashed](Daemon::crash).
pub struct Daemon {
    pid: Pid,
    socket: PathBuf,
    lines_rx: Receiver<String>,
    /// The log read so far; behind a cell so that showing it reads what has arrived.
    lines: RefCell<Vec<String>>,
    log_eof: bool,
    events_rx: Receiver<EventRecord>,
    events: Vec<Transition>,
    events_eof: bool,
    status_rx: Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    exited: Arc<AtomicBool>,
    /// Set by [`Daemon::crash`]: its units are left running, for the next daemon to find.
    orphaned: bool,
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
    /// Its state directory and socket are next to `units`, unless the test chose a socket
    /// (`LAUNCHGRAPH_SOCKET` or `--socket`).
    pub fn start_with(units: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        Self::spawn(units, env, args, None, &[], None)
    }

    /// Starts it from the working directory `cwd`, with extra arguments to `up`: a relative
    /// `--state-dir` among them is relative to `cwd`.
    pub fn start_from(cwd: &Path, units: &Path, args: &[&str]) -> Self {
        Self::spawn(units, &[], args, None, &[], Some(cwd))
    }

    /// Starts it with `signals` ignored, as `nohup` (SIGHUP) or a shell's background (SIGINT,
    /// SIGQUIT) would start it.
    pub fn start_ignoring(units: &Path, signals: &[Signal]) -> Self {
        Self::spawn(units, &[], &[], None, signals, None)
    }

    /// Starts it in process group `pgid` (one the test made, so that a daemon that signals its
    /// own group hits what the test watches, never the test itself).
    pub fn start_in_group(units: &Path, pgid: i32) -> Self {
        Self::spawn(units, &[], &[], Some(pgid), &[], None)
    }

    fn spawn(
        units: &Path,
        env: &[(&str, &str)],
        args: &[&str],
        group: Option<i32>,
        ignored: &[Signal],
        cwd: Option<&Path>,
    ) -> Self {
        let base = units.parent().unwrap_or(units);
        let mut cmd = Command::new(control::BIN);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        if let Some(pgid) = group {
            std::os::unix::process::CommandExt::process_group(&mut cmd, pgid);
        }
        if !ignored.is_empty() {
            let ignored = ignored.to_vec();
            // SAFETY: only sigaction, async-signal-safe, in the forked child.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, sigaction};
                    let ignore =
                        SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
                    for &signal in &ignored {
                        sigaction(signal, &ignore)?;
                    }
                    Ok(())
                });
            }
        }
        // Fingerprints go next to the units, never into the host's state directory, unless
        // the test chose a state directory.
        cmd.arg("up").arg("--units").arg(units);
        if !args.contains(&"--state-dir") {
            cmd.arg("--state-dir").arg(base.join("state"));
        }
        cmd.env_remove("LAUNCHGRAPH_UNITS")
            .env_remove("LAUNCHGRAPH_SOCKET")
            .env("NO_COLOR", "1")
            .env("LAUNCHGRAPH_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.args(args);
        let chosen = args
            .iter()
            .position(|a| *a == "--socket")
            .and_then(|i| args.get(i + 1))
            .or_else(|| {
                env.iter()
                    .find(|(k, _)| *k == "LAUNCHGRAPH_SOCKET")
                    .map(|(_, v)| v)
            });
        let socket = match chosen {
            Some(s) => PathBuf::from(s),
            None => {
                let s = base.join("control/ctl.sock");
                cmd.arg("--socket").arg(&s);
                s
            }
        };
        // A socket that answers already is another daemon's: this one will refuse to take it
        // over, and its events are not this one's.
        let taken = UnixStream::connect(&socket).is_ok();

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
        let exited = Arc::new(AtomicBool::new(false));
        let (status_tx, status_rx) = mpsc::channel();
        let flag = exited.clone();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                flag.store(true, Ordering::SeqCst);
                let _ = status_tx.send(status);
            }
        });
        let (events_tx, events_rx) = mpsc::channel();
        if !taken {
            let socket = socket.clone();
            let exited = exited.clone();
            std::thread::spawn(move || follow(&socket, &exited, &events_tx));
        }
        Self {
            pid,
            socket,
            lines_rx,
            lines: RefCell::new(Vec::new()),
            log_eof: false,
            events_rx,
            events: Vec::new(),
            events_eof: taken,
            status_rx,
            status: None,
            exited,
            orphaned: false,
        }
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Its control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Waits until its control socket accepts connections (nothing announces that, so it is
    /// polled), or fails the test if the daemon exits first.
    pub fn wait_serving(&self) {
        let until = Instant::now() + DEADLINE;
        while UnixStream::connect(&self.socket).is_err() {
            assert!(
                !self.exited.load(Ordering::SeqCst),
                "the daemon exited before serving on {}",
                self.socket.display()
            );
            assert!(
                Instant::now() < until,
                "the daemon does not serve on {} within {DEADLINE:?}",
                self.socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the CLI against it: `launchgraph ARGS --socket SOCKET`.
    pub fn cli(&self, args: &[&str]) -> Out {
        control::cli(&self.socket, args)
    }

    /// `status --json`.
    pub fn status(&self) -> Vec<UnitStatus> {
        control::status_json(&self.socket)
    }

    /// Polls `status --json` until `unit` is in `state` (within [`DEADLINE`]); returns it.
    pub fn wait_state(&self, unit: &str, state: &str) -> UnitStatus {
        control::wait_state(&self.socket, unit, state)
    }

    /// The log so far, for failure messages.
    pub fn log(&self) -> String {
        self.lines().join("\n")
    }

    /// The log lines written so far (as far as they have reached the test).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = self.lines.borrow_mut();
        while let Ok(line) = self.lines_rx.try_recv() {
            lines.push(line);
        }
        lines.clone()
    }

    /// How many transitions have been received so far: a position to wait from.
    pub fn mark(&mut self) -> usize {
        while let Ok(e) = self.events_rx.try_recv() {
            self.push(e);
        }
        self.events.len()
    }

    /// How many log lines have been read so far: a position for [`Daemon::wait_log`].
    pub fn log_mark(&mut self) -> usize {
        self.lines().len()
    }

    fn push(&mut self, e: EventRecord) {
        let t = Transition::new(self.events.len(), e);
        self.events.push(t);
    }

    /// Receives one more transition, waiting until `until`; false at the deadline or once the
    /// stream has ended.
    fn next_event(&mut self, until: Instant) -> bool {
        if self.events_eof {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        match self.events_rx.recv_timeout(left) {
            Ok(e) => {
                self.push(e);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                self.events_eof = true;
                false
            }
        }
    }

    /// Waits for the first transition at position `from` or later that satisfies `pred`.
    pub fn wait_for(
        &mut self,
        from: usize,
        what: &str,
        pred: impl Fn(&Transition) -> bool,
    ) -> Transition {
        self.wait_for_within(DEADLINE, from, what, pred)
    }

    /// [`Daemon::wait_for`] with a deadline of the test's choosing (a real program's start).
    pub fn wait_for_within(
        &mut self,
        within: Duration,
        from: usize,
        what: &str,
        pred: impl Fn(&Transition) -> bool,
    ) -> Transition {
        let until = Instant::now() + within;
        let mut next = from;
        loop {
            while next < self.events.len() {
                if pred(&self.events[next]) {
                    return self.events[next].clone();
                }
                next += 1;
            }
            if !self.next_event(until) {
                let why = if self.events_eof {
                    "the daemon's events ended"
                } else {
                    "deadline passed"
                };
                panic!(
                    "{why} while waiting for {what}; the events:\n{}\nthe log:\n{}",
                    self.events_text(),
                    self.log()
                );
            }
        }
    }

    /// Every transition received so far.
    pub fn transitions(&mut self) -> Vec<Transition> {
        self.mark();
        self.events.clone()
    }

    /// The first transition at or after `from` satisfying `pred`, among those received so far.
    pub fn find(
        &mut self,
        from: usize,
        what: &str,
        pred: impl Fn(&Transition) -> bool,
    ) -> Transition {
        self.mark();
        self.events
            .iter()
            .skip(from)
            .find(|t| pred(t))
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "no transition {what} among:\n{}\nthe log:\n{}",
                    self.events_text(),
                    self.log()
                )
            })
    }

    fn events_text(&self) -> String {
        let lines: Vec<&str> = self.events.iter().map(|t| t.line.as_str()).collect();
        lines.join("\n")
    }

    /// Reads one more log line, waiting until `until`; false at the deadline or the log's end.
    fn read_line(&mut self, until: Instant) -> bool {
        if self.log_eof {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        match self.lines_rx.recv_timeout(left) {
            Ok(line) => {
                self.lines.get_mut().push(line);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                self.log_eof = true;
                false
            }
        }
    }

    /// Waits for the first log line at index `from` or later that satisfies `pred`; returns
    /// its index. Only for what the log alone says (a refusal before the socket exists, a
    /// reload's summary, a drift warning): transitions are awaited with [`Daemon::wait_for`].
    pub fn wait_log(&mut self, from: usize, what: &str, pred: impl Fn(&str) -> bool) -> usize {
        let until = Instant::now() + DEADLINE;
        let mut next = from;
        loop {
            let lines = self.lines.get_mut();
            while next < lines.len() {
                if pred(&lines[next]) {
                    return next;
                }
                next += 1;
            }
            if !self.read_line(until) {
                let why = if self.log_eof {
                    "the daemon's log ended"
                } else {
                    "deadline passed"
                };
                panic!("{why} while waiting for {what}; the log:\n{}", self.log());
            }
        }
    }

    /// Its exit status, if it has exited; does not wait.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.status_rx.try_recv().ok();
        }
        self.status
    }

    /// Waits for it to exit by itself (within [`DEADLINE`]), then for the end of its log.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let Some(status) = self.wait_status(DEADLINE) else {
            panic!(
                "the daemon did not exit within {DEADLINE:?}; the log:\n{}",
                self.log()
            );
        };
        self.read_to_end(DEADLINE);
        status
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

    /// SIGTERM, then waits for the exit and the end of its log and events.
    pub fn terminate(&mut self) -> ExitStatus {
        self.stop_with(Signal::SIGTERM)
    }

    /// Sends `signal`, then waits for the exit and the end of its log and events.
    pub fn stop_with(&mut self, signal: Signal) -> ExitStatus {
        self.stop_within(signal, DEADLINE)
    }

    /// [`Daemon::stop_with`], waiting up to `within` for the exit.
    pub fn stop_within(&mut self, signal: Signal, within: Duration) -> ExitStatus {
        self.signal(signal);
        let Some(status) = self.wait_status(within) else {
            panic!(
                "the daemon did not exit within {within:?} of {signal}; the log:\n{}",
                self.log()
            );
        };
        self.read_to_end(DEADLINE);
        status
    }

    /// SIGKILL, as a crash would: waits for the exit and the end of its log and events. Its
    /// units run on, orphaned, as they would after a real crash, for the next daemon on the
    /// same state directory to deal with: dropping it then leaves them alone.
    pub fn crash(&mut self) -> ExitStatus {
        let status = self.stop_with(Signal::SIGKILL);
        self.orphaned = true;
        status
    }

    /// Reads the log and the events to their ends (both end with the daemon).
    fn read_to_end(&mut self, within: Duration) {
        let until = Instant::now() + within;
        while self.read_line(until) {}
        while self.next_event(until) {}
    }

    /// The pid of every process the daemon started for a unit (each leads its own process
    /// group), from the transitions received so far.
    pub fn unit_pids(&mut self) -> Vec<i32> {
        let pids: BTreeSet<i32> = self
            .transitions()
            .iter()
            .filter_map(|t| i32::try_from(t.facts.pid?).ok())
            .collect();
        pids.into_iter().collect()
    }
}

/// Runs `events --follow --json` against `socket` and sends each event on, until the daemon
/// has exited. The stream replays the daemon's ring first, so nothing is missed while the
/// socket is being bound; it is reconnected (events already sent passed over by `seq`) while the
/// daemon lives, since a connection refused means the socket is not listening yet.
fn follow(socket: &Path, exited: &AtomicBool, tx: &Sender<EventRecord>) {
    let mut last: Option<u64> = None;
    loop {
        let done = exited.load(Ordering::SeqCst);
        let mut cmd = control::cli_command(socket, &["events", "--follow", "--json"]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let Ok(mut child) = cmd.spawn() else { return };
        let stdout = child.stdout.take().expect("piped stdout");
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(e) = serde_json::from_str::<EventRecord>(&line) else {
                continue;
            };
            if last.is_some_and(|s| e.seq <= s) {
                continue;
            }
            last = Some(e.seq);
            if tx.send(e).is_err() {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
        }
        let _ = child.wait();
        if done {
            return;
        }
        // Not listening yet (or the units directory is invalid, so nothing runs): no event
        // announces a socket being bound, so try again shortly.
        std::thread::sleep(Duration::from_millis(100));
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
        // The log and the events end with the daemon (its units do not inherit its stderr).
        self.read_to_end(Duration::from_secs(5));
        if self.orphaned {
            return;
        }
        for pgid in self.unit_pids() {
            if !group_gone(pgid) {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
        }
    }
}
