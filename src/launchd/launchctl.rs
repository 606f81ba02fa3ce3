//! [`Launchctl`]: running `launchctl` subcommands and mapping their exit statuses.
//!
//! Each call is one short-lived child, run as a `crate::process::BoundedCommand`: a minimal
//! environment, no stdin, capped output, and a deadline after which its whole process group
//! is killed. Exit statuses carry the meaning (launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h,
//! §2.5 rule 1); stdout is parsed by `print` where there is something to parse. Deciding what
//! to do about a failure (retry, wait, give up) is the caller's business: errors only say what
//! happened, with the argv, the exit code and stderr.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::print::{ServiceInfo, parse_print, parse_print_disabled};
use crate::process::{BoundedCommand, BoundedError, Capture};

/// The PATH launchd gives its jobs (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html); launchctl needs nothing else.
const MINIMAL_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";

/// Test plumbing: variables with this prefix are passed through to launchctl, because that is
/// how the test double's client finds its daemon (`LAUNCHCTL_DOUBLE_STATE`). The real
/// launchctl reads none of them.
const DOUBLE_ENV_PREFIX: &str = "LAUNCHCTL_DOUBLE_";

/// How long stdout and stderr may stay open once the process is gone or killed: only a
/// stray descendant could hold them, and it is not worth waiting for.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The most of launchctl's stdout that is read: `print` of one service is a few KiB, and
/// `print-disabled` of a domain one line per label.
const MAX_STDOUT: usize = 16 * 1024 * 1024;

/// The most of launchctl's stderr that is kept: its messages are one or two lines.
const MAX_STDERR: usize = 64 * 1024;

// Exit codes with a meaning of their own (launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h; names from ProcursusTeam/launchctl `xpc_private.h`).
const ESRCH: i32 = 3;
const EIO: i32 = 5;
const EINPROGRESS: i32 = 36;
const EALREADY: i32 = 37;
const ENODOMAIN: i32 = 112;
const ENOSERVICE: i32 = 113;
const EDISABLED: i32 = 119;
const ENOTSUP_DOMAIN: i32 = 125;

/// The `launchctl` program and how long one call may take.
#[derive(Debug, Clone)]
pub struct Launchctl {
    path: PathBuf,
    timeout: Duration,
}

impl Default for Launchctl {
    fn default() -> Self {
        Self::new("/bin/launchctl")
    }
}

/// What one call wrote and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The result of `print <service-target>`, by exit status (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrintOutcome {
    /// Exit 0: loaded in that domain (running or not). Boxed: it is far larger than the
    /// other variants.
    Loaded(Box<ServiceInfo>),
    /// Exit 113: the domain exists, the service is not loaded in it.
    NotLoaded,
    /// Exit 112 or 125: the domain does not exist, e.g. `gui/<uid>` with nobody logged in
    /// at the GUI (launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html; chilcote/outset#108).
    NoDomain { code: i32, stderr: String },
}

/// Why a call failed.
#[derive(Debug)]
pub enum Failure {
    /// It ran and exited with a status this call does not accept.
    Exited,
    /// It did not finish within the timeout and was killed.
    TimedOut(Duration),
    /// It was ended by a signal it was not sent by us.
    Signalled(i32),
    /// It could not be started or waited for.
    Io(io::Error),
    /// It printed more than this many bytes, more than any answer launchgraph parses.
    OutputTooLarge(usize),
}

/// A launchctl call that failed. Names the argv, the exit code and stderr.
#[derive(Debug, thiserror::Error)]
pub struct LaunchctlError {
    /// The whole command line, the program first.
    pub argv: Vec<String>,
    /// The exit code; `None` when it timed out, was signalled or could not run.
    pub code: Option<i32>,
    /// Trimmed.
    pub stderr: String,
    pub failure: Failure,
}

impl fmt::Display for LaunchctlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let argv = self.argv.join(" ");
        match &self.failure {
            Failure::Exited => write!(f, "`{argv}` exited with {}", self.code.unwrap_or(-1))?,
            Failure::TimedOut(d) => write!(
                f,
                "`{argv}` did not finish within {} and was killed",
                humantime::format_duration(*d)
            )?,
            Failure::Signalled(s) => write!(f, "`{argv}` was ended by signal {s}")?,
            Failure::Io(e) => write!(f, "cannot run `{argv}`: {e}")?,
            Failure::OutputTooLarge(n) => write!(f, "`{argv}` printed more than {n} bytes")?,
        }
        match self.stderr.is_empty() {
            true => Ok(()),
            false => write!(f, ": {}", self.stderr.replace('\n', " / ")),
        }
    }
}

impl LaunchctlError {
    fn code_is(&self, codes: &[i32]) -> bool {
        self.code.is_some_and(|c| codes.contains(&c))
    }

    /// Worth retrying shortly: 5 (bootstrap while the label is still loaded or draining after
    /// a bootout) and 37 (already in progress); a retry seconds later succeeds
    /// (Homebrew/brew Library/Homebrew/services/cli.rb; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html, openclaw#136453, openclaw#41952). Note that a non-root bootstrap of a
    /// disabled service also fails with 5 (launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h): enable before bootstrap.
    pub fn is_transient(&self) -> bool {
        self.code_is(&[EIO, EALREADY])
    }

    /// The domain does not exist: 112 or 125 (launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html; chilcote/outset#108). For `gui/<uid>` this
    /// means nobody is logged in at the GUI; do not retry hot.
    pub fn is_no_domain(&self) -> bool {
        self.code_is(&[ENODOMAIN, ENOTSUP_DOMAIN])
    }

    /// 113: the service is not loaded in the domain (print, kickstart, kill).
    pub fn is_not_loaded(&self) -> bool {
        self.code_is(&[ENOSERVICE])
    }

    /// 119: bootstrap of a disabled service, as root (launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h, nix-installer#530).
    pub fn is_disabled(&self) -> bool {
        self.code_is(&[EDISABLED])
    }

    /// The call did not finish in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.failure, Failure::TimedOut(_))
    }
}

impl Launchctl {
    /// A client for the launchctl at `path`, with a 10 s timeout per call.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            timeout: Duration::from_secs(10),
        }
    }

    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    /// `print <service-target>`.
    pub async fn print(&self, service_target: &str) -> Result<PrintOutcome, LaunchctlError> {
        let args = ["print", service_target];
        let out = self.call(&args).await?;
        match out.code {
            0 => Ok(PrintOutcome::Loaded(Box::new(parse_print(&out.stdout)))),
            ENOSERVICE => Ok(PrintOutcome::NotLoaded),
            ENODOMAIN | ENOTSUP_DOMAIN => Ok(PrintOutcome::NoDomain {
                code: out.code,
                stderr: out.stderr.trim().to_owned(),
            }),
            _ => Err(self.exited(&args, out)),
        }
    }

    /// `print-disabled <domain-target>`: label → `true` when disabled.
    pub async fn print_disabled(
        &self,
        domain: &str,
    ) -> Result<BTreeMap<String, bool>, LaunchctlError> {
        let out = self.expect_success(&["print-disabled", domain]).await?;
        Ok(parse_print_disabled(&out.stdout))
    }

    /// `enable <service-target>`: persistent, and required before `bootstrap` of a service
    /// that was ever disabled (Homebrew/brew Library/Homebrew/services/cli.rb; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html, openclaw#80384).
    pub async fn enable(&self, service_target: &str) -> Result<(), LaunchctlError> {
        self.expect_success(&["enable", service_target])
            .await
            .map(drop)
    }

    /// `disable <service-target>`: persistent; does not stop a running job (Homebrew/brew Library/Homebrew/services/cli.rb; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html).
    pub async fn disable(&self, service_target: &str) -> Result<(), LaunchctlError> {
        self.expect_success(&["disable", service_target])
            .await
            .map(drop)
    }

    /// `bootstrap <domain-target> <plist>`. Fails with 5 or 37 while the label is still loaded
    /// or draining ([`LaunchctlError::is_transient`]), 119 when disabled, 125 when the domain
    /// does not exist.
    pub async fn bootstrap(&self, domain: &str, plist: &Path) -> Result<(), LaunchctlError> {
        let plist = plist.to_string_lossy();
        self.expect_success(&["bootstrap", domain, &plist])
            .await
            .map(drop)
    }

    /// `bootout <service-target>`. Exit 3 (not loaded) counts as success: the goal, "not
    /// loaded", holds (Homebrew/brew Library/Homebrew/services/cli.rb; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html). So does 36
    /// (EINPROGRESS), which a bootout of a job that exits slowly answers although the job then
    /// stops (github.com/osquery/osquery/issues/5698; Homebrew re-runs bootout while it sees
    /// it). The job may still be stopping when this returns: poll [`Launchctl::print`] until
    /// [`PrintOutcome::NotLoaded`] before bootstrapping it again.
    pub async fn bootout(&self, service_target: &str) -> Result<(), LaunchctlError> {
        let args = ["bootout", service_target];
        let out = self.call(&args).await?;
        match out.code {
            0 | ESRCH | EINPROGRESS => Ok(()),
            _ => Err(self.exited(&args, out)),
        }
    }

    /// `kickstart [-k] -p <service-target>`: starts the service now (with `kill_first`, kills
    /// the running instance first). Returns the pid launchctl printed, if any: a bare number
    /// without a TTY, `service spawned with pid: N` with one (launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html).
    pub async fn kickstart(
        &self,
        service_target: &str,
        kill_first: bool,
    ) -> Result<Option<u32>, LaunchctlError> {
        let mut args = vec!["kickstart"];
        if kill_first {
            args.push("-k");
        }
        args.extend(["-p", service_target]);
        let out = self.expect_success(&args).await?;
        Ok(parse_kickstart_pid(&out.stdout))
    }

    /// `kill <signal> <service-target>`, the signal as a name (`SIGTERM`) or a number.
    /// Exit 3 means the service is loaded but not running.
    pub async fn kill(&self, signal: &str, service_target: &str) -> Result<(), LaunchctlError> {
        self.expect_success(&["kill", signal, service_target])
            .await
            .map(drop)
    }

    /// Runs `launchctl <args>` and returns its output whatever the exit code. Errs only when
    /// it could not run, timed out, was ended by a signal, or printed more than launchgraph
    /// reads.
    pub async fn call(&self, args: &[&str]) -> Result<CallOutput, LaunchctlError> {
        let fail = |failure, stderr: &[u8]| LaunchctlError {
            argv: self.argv(args),
            code: None,
            stderr: String::from_utf8_lossy(stderr).trim().to_owned(),
            failure,
        };
        let ran = BoundedCommand::new(&self.path, self.timeout)
            .args(args)
            .env("PATH", MINIMAL_PATH)
            .envs(
                std::env::vars_os()
                    .filter(|(k, _)| k.to_str().is_some_and(|k| k.starts_with(DOUBLE_ENV_PREFIX))),
            )
            .stdout(Capture::Head(MAX_STDOUT))
            .stderr(Capture::Head(MAX_STDERR))
            .output_grace(DRAIN_GRACE)
            .run()
            .await;
        let out = match ran {
            Ok(out) => out,
            Err(BoundedError::Spawn { source, .. } | BoundedError::Wait { source, .. }) => {
                return Err(fail(Failure::Io(source), b""));
            }
            Err(BoundedError::NotReaped { .. }) => {
                return Err(fail(Failure::TimedOut(self.timeout), b""));
            }
        };
        if out.timed_out {
            return Err(fail(Failure::TimedOut(self.timeout), &out.stderr));
        }
        // A cut `print` would parse as a service without the fields it lost.
        if out.stdout_truncated {
            return Err(fail(Failure::OutputTooLarge(MAX_STDOUT), &out.stderr));
        }
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match (out.code(), out.signal()) {
            (Some(code), _) => Ok(CallOutput {
                code,
                stdout: text(&out.stdout),
                stderr: text(&out.stderr),
            }),
            (None, signal) => Err(fail(
                Failure::Signalled(signal.unwrap_or_default()),
                &out.stderr,
            )),
        }
    }

    async fn expect_success(&self, args: &[&str]) -> Result<CallOutput, LaunchctlError> {
        let out = self.call(args).await?;
        match out.code {
            0 => Ok(out),
            _ => Err(self.exited(args, out)),
        }
    }

    fn exited(&self, args: &[&str], out: CallOutput) -> LaunchctlError {
        LaunchctlError {
            argv: self.argv(args),
            code: Some(out.code),
            stderr: out.stderr.trim().to_owned(),
            failure: Failure::Exited,
        }
    }

    fn argv(&self, args: &[&str]) -> Vec<String> {
        std::iter::once(self.path.to_string_lossy().into_owned())
            .chain(args.iter().map(|a| a.to_string()))
            .collect()
    }
}

/// A bare `N`, or `service spawned with pid: N` (ProcursusTeam/launchctl `kickstart.c`, launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html).
fn parse_kickstart_pid(stdout: &str) -> Option<u32> {
    stdout.lines().find_map(|line| {
        let line = line.trim();
        let number = line.rsplit(':').next().unwrap_or(line).trim();
        number.parse().ok().filter(|&pid| pid > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kickstart_pid_forms() {
        assert_eq!(parse_kickstart_pid("1234\n"), Some(1234));
        assert_eq!(
            parse_kickstart_pid("service spawned with pid: 77\n"),
            Some(77)
        );
        assert_eq!(parse_kickstart_pid(""), None);
        assert_eq!(parse_kickstart_pid("no pid here\n"), None);
    }

    fn error(code: Option<i32>, failure: Failure) -> LaunchctlError {
        LaunchctlError {
            argv: vec!["/bin/launchctl".into(), "bootstrap".into(), "system".into()],
            code,
            stderr: "Bootstrap failed: 5: Input/output error\nTry again".into(),
            failure,
        }
    }

    #[test]
    fn classification_by_exit_code() {
        let e = error(Some(5), Failure::Exited);
        assert!(e.is_transient() && !e.is_no_domain() && !e.is_not_loaded());
        assert!(error(Some(37), Failure::Exited).is_transient());
        assert!(error(Some(112), Failure::Exited).is_no_domain());
        assert!(error(Some(125), Failure::Exited).is_no_domain());
        assert!(error(Some(113), Failure::Exited).is_not_loaded());
        assert!(error(Some(119), Failure::Exited).is_disabled());
        let t = error(None, Failure::TimedOut(Duration::from_secs(1)));
        assert!(t.is_timeout() && !t.is_transient());
    }

    #[test]
    fn errors_name_argv_code_and_stderr() {
        let e = error(Some(5), Failure::Exited);
        assert_eq!(
            e.to_string(),
            "`/bin/launchctl bootstrap system` exited with 5: \
             Bootstrap failed: 5: Input/output error / Try again"
        );
        let t = error(None, Failure::TimedOut(Duration::from_secs(10)));
        assert!(t.to_string().contains("did not finish within 10s"), "{t}");
        let big = error(None, Failure::OutputTooLarge(MAX_STDOUT));
        assert!(
            big.to_string()
                .starts_with("`/bin/launchctl bootstrap system` printed more than 16777216 bytes"),
            "{big}"
        );
        assert!(!big.is_timeout() && !big.is_transient());
    }
}
