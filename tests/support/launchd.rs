//! Running the launchctl test double (`tests/doubles/launchctl.rs`) from integration tests:
//! [`DoubleLaunchd`] starts a fake launchd in a fresh state directory and gives a wrapper
//! script usable as "the launchctl path"; [`JobPlist`] writes the plists it loads.
//!
//! The double is spawned through `launchgraph::process::spawn_tracked`, so tests that start
//! the orphan reaper can use it too.
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use launchgraph::launchd::{CallOutput, Launchctl};
use launchgraph::process::{TrackedChild, spawn_tracked};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};

use super::DEADLINE;

/// A running `launchctl-double serve`, stopped (with every job it runs) on drop.
pub struct DoubleLaunchd {
    /// Where the double keeps its socket, `overrides.json`, `calls.log` and its own stderr
    /// (`double.stderr`).
    pub state_dir: PathBuf,
    /// A shell script that runs the double's client against this daemon: pass it as the
    /// launchctl path.
    pub wrapper_path: PathBuf,
    /// The double's binary.
    pub double_path: PathBuf,
    drain_ms: u64,
    /// `None` once stopped.
    serving: Option<Serving>,
    _dir: tempfile::TempDir,
}

/// `target/<profile>/examples/launchctl-double`, next to `target/<profile>/deps/<this test>`;
/// cargo builds examples before it runs integration tests.
pub fn double_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("examples").join("launchctl-double");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --example launchctl-double`",
        path.display()
    );
    path
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A running `serve` process and the pipes tied to it.
struct Serving {
    pid: u32,
    child: TrackedChild,
    /// The double exits when this closes: on [`DoubleLaunchd::stop`], or when the test
    /// process dies, whatever the cause.
    lifeline: Option<ChildStdin>,
    /// Reaches end-of-file when the double exits.
    status: BufReader<ChildStdout>,
}

async fn serve(double_path: &Path, state_dir: &Path, drain_ms: u64) -> Serving {
    let stderr = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("double.stderr"))
        .expect("the double's stderr log");
    let mut cmd = tokio::process::Command::new(double_path);
    cmd.arg("serve")
        .arg("--state")
        .arg(state_dir)
        .arg("--drain-ms")
        .arg(drain_ms.to_string())
        .arg("--exit-on-stdin-eof")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    let mut child = spawn_tracked(&mut cmd).expect("spawn the double");
    let lifeline = child.child.stdin.take();
    let mut status = BufReader::new(child.child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, status.read_line(&mut line))
        .await
        .expect("the double starts in time")
        .expect("read the double's stdout");
    assert_eq!(
        line.trim(),
        "ready",
        "the double did not start: {}",
        fs::read_to_string(state_dir.join("double.stderr")).unwrap_or_default()
    );
    Serving {
        pid: child.pid(),
        child,
        lifeline,
        status,
    }
}

impl DoubleLaunchd {
    /// Starts a double whose bootouts drain for `drain_ms` and waits until it serves.
    pub async fn start(drain_ms: u64) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lcd")
            .tempdir()
            .expect("a state directory");
        let state_dir = dir.path().to_owned();
        let double_path = double_binary();

        let wrapper_path = state_dir.join("launchctl");
        let script = format!(
            "#!/bin/sh\nLAUNCHCTL_DOUBLE_STATE={} exec {} \"$@\"\n",
            shell_quote(&state_dir.to_string_lossy()),
            shell_quote(&double_path.to_string_lossy()),
        );
        fs::write(&wrapper_path, script).expect("write the wrapper");
        fs::set_permissions(&wrapper_path, fs::Permissions::from_mode(0o755))
            .expect("make the wrapper executable");

        let serving = Some(serve(&double_path, &state_dir, drain_ms).await);
        Self {
            state_dir,
            wrapper_path,
            double_path,
            drain_ms,
            serving,
            _dir: dir,
        }
    }

    /// Stops the double (and its jobs) and starts a new one on the same state directory,
    /// like a reboot: loaded jobs and logins are gone, enable/disable overrides remain.
    pub async fn restart(&mut self) {
        self.stop();
        self.serving = Some(serve(&self.double_path, &self.state_dir, self.drain_ms).await);
    }

    /// A client for this double, with the default timeout.
    pub fn launchctl(&self) -> Launchctl {
        Launchctl::new(&self.wrapper_path)
    }

    /// The double's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.serving.as_ref().map(|s| s.pid)
    }

    /// Runs `launchctl-double <args>` (a launchctl call or a test-only `x-` verb).
    pub async fn run(&self, args: &[&str]) -> CallOutput {
        self.launchctl()
            .call(args)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs a test-only verb and insists that it succeeds.
    pub async fn admin(&self, args: &[&str]) -> CallOutput {
        let out = self.run(args).await;
        assert_eq!(out.code, 0, "{args:?} failed: {}", out.stderr);
        out
    }

    /// The `gui/<uid>` domain exists from now on.
    pub async fn login(&self, uid: u32) {
        self.admin(&["x-login", &uid.to_string()]).await;
    }

    /// The `gui/<uid>` domain is gone from now on; its jobs are booted out.
    pub async fn logout(&self, uid: u32) {
        self.admin(&["x-logout", &uid.to_string()]).await;
    }

    /// Sends `signal` to a job's process behind launchd's back, like a crash.
    pub async fn crash(&self, label_or_target: &str, signal: &str) {
        self.admin(&["x-kill", label_or_target, signal]).await;
    }

    /// Every launchctl call the double received so far, in order (test-only verbs excluded).
    pub fn calls(&self) -> Vec<Vec<String>> {
        fs::read_to_string(self.state_dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON argv"))
            .collect()
    }

    /// What the double wrote on stderr (spawn failures and the like).
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.state_dir.join("double.stderr")).unwrap_or_default()
    }

    /// Stops the double and every job it runs, and waits until it has exited.
    pub fn stop(&mut self) {
        let Some(mut serving) = self.serving.take() else {
            return;
        };
        // Closing its stdin asks the double to stop its jobs and exit (`--exit-on-stdin-eof`,
        // which also covers a test process that dies); its stdout reaches end-of-file once it
        // has. Blocking is fine here: it runs at the end of a test, and it is bounded.
        drop(serving.lifeline.take());
        if !wait_for_eof(serving.status.get_ref().as_fd(), DEADLINE) {
            // Not reaped yet (the child is still held), so the pid is still the double's.
            let pid = nix::unistd::Pid::from_raw(serving.pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        // Dropping the child leaves its exit status to tokio.
        drop(serving.child);
    }
}

/// Reads `fd` until end-of-file or the deadline; true at end-of-file.
fn wait_for_eof(fd: std::os::fd::BorrowedFd<'_>, within: Duration) -> bool {
    use nix::errno::Errno;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return false,
        }
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return true,
            Ok(_) | Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

impl Drop for DoubleLaunchd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A launchd plist for a test job: what the double reads (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html).
#[derive(Debug, Clone, Default)]
pub struct JobPlist {
    pub label: String,
    pub program_arguments: Vec<String>,
    pub program: Option<String>,
    pub env: Vec<(String, String)>,
    pub working_directory: Option<PathBuf>,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    pub run_at_load: bool,
    pub keep_alive: bool,
    /// `KeepAlive = { SuccessfulExit = <b> }` instead of the boolean.
    pub keep_alive_successful_exit: Option<bool>,
    pub user_name: Option<String>,
    pub throttle_interval: Option<u64>,
    pub exit_timeout: Option<u64>,
    pub disabled: Option<bool>,
}

impl JobPlist {
    pub fn new(label: &str, program_arguments: &[&str]) -> Self {
        Self {
            label: label.into(),
            program_arguments: program_arguments.iter().map(|s| s.to_string()).collect(),
            ..Self::default()
        }
    }

    /// Writes `<dir>/<label>.plist` (XML) and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        use plist::{Dictionary, Value};
        let mut d = Dictionary::new();
        d.insert("Label".into(), Value::String(self.label.clone()));
        if let Some(p) = &self.program {
            d.insert("Program".into(), Value::String(p.clone()));
        }
        let args = self
            .program_arguments
            .iter()
            .cloned()
            .map(Value::String)
            .collect();
        d.insert("ProgramArguments".into(), Value::Array(args));
        if !self.env.is_empty() {
            let env = self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<Dictionary>();
            d.insert("EnvironmentVariables".into(), Value::Dictionary(env));
        }
        let paths = [
            ("WorkingDirectory", &self.working_directory),
            ("StandardOutPath", &self.stdout),
            ("StandardErrorPath", &self.stderr),
        ];
        for (key, path) in paths {
            if let Some(p) = path {
                d.insert(key.into(), Value::String(p.to_string_lossy().into_owned()));
            }
        }
        d.insert("RunAtLoad".into(), Value::Boolean(self.run_at_load));
        match self.keep_alive_successful_exit {
            Some(b) => d.insert(
                "KeepAlive".into(),
                Value::Dictionary(Dictionary::from_iter([(
                    "SuccessfulExit",
                    Value::Boolean(b),
                )])),
            ),
            None => d.insert("KeepAlive".into(), Value::Boolean(self.keep_alive)),
        };
        if let Some(u) = &self.user_name {
            d.insert("UserName".into(), Value::String(u.clone()));
        }
        if let Some(t) = self.throttle_interval {
            d.insert("ThrottleInterval".into(), Value::Integer(t.into()));
        }
        if let Some(t) = self.exit_timeout {
            d.insert("ExitTimeOut".into(), Value::Integer(t.into()));
        }
        if let Some(b) = self.disabled {
            d.insert("Disabled".into(), Value::Boolean(b));
        }
        let path = dir.join(format!("{}.plist", self.label));
        Value::Dictionary(d)
            .to_file_xml(&path)
            .expect("write the plist");
        path
    }
}
