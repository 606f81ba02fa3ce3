//! The validated unit model: what one unit file means once it has been read and checked.
//!
//! This module owns the types every later stage works with (`Unit`, `UnitName`, `Runner`,
//! `Probe`, `RestartSpec`, ...) and their documented defaults. It does not read files: that is
//! [`load`], which turns TOML into these types or into a list of diagnostics. Everything here is
//! already valid: a `Unit` never holds a relative program path, an unknown signal or a
//! zero-length probe interval.

pub mod guard;
pub(crate) mod load;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// A unit's name: its file stem, `[a-z0-9][a-z0-9._-]*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct UnitName(String);

impl UnitName {
    /// Checks the name grammar; the error says what is allowed.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut chars = s.chars();
        match chars.next() {
            None => return Err("a unit name cannot be empty".into()),
            Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => {}
            Some(c) => {
                return Err(format!("a unit name must start with a-z or 0-9, not {c:?}"));
            }
        }
        if let Some(c) = chars.find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        }) {
            return Err(format!(
                "a unit name may only contain a-z, 0-9, '.', '_' and '-', not {c:?}"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A launchd job label, e.g. `homebrew.mxcl.ollama`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Label(pub String);

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One validated unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    pub name: UnitName,
    /// The file it was read from.
    pub file: PathBuf,
    pub description: Option<String>,
    /// Hard requirements: start after they are ready, stop before they stop, restart after
    /// they restart.
    pub requires: Vec<UnitName>,
    pub runner: Runner,
    /// `None`: the unit is ready as soon as it has started.
    pub ready: Option<ReadySpec>,
    /// `None`: only the process's exit (or launchd's report of it) says it died.
    pub alive: Option<AliveSpec>,
    pub restart: RestartSpec,
    pub preflight: PreflightSpec,
    /// `[[guard]]` and `[[switch]]` tables: watched signals and what they do.
    pub guards: guard::Guards,
}

/// How a unit runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Runner {
    Launchd(LaunchdSpec),
    Exec(ExecSpec),
    External(ExternalSpec),
}

impl Runner {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Runner::Launchd(_) => "launchd",
            Runner::Exec(_) => "exec",
            Runner::External(_) => "external",
        }
    }

    /// Whether launchgraph only watches the unit and never starts, stops or restarts what
    /// it names.
    pub fn is_external(&self) -> bool {
        matches!(self, Runner::External(_))
    }
}

/// An existing launchd job, driven through `launchctl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaunchdSpec {
    pub label: Label,
    pub plist: PathBuf,
    pub domain: Domain,
}

/// A launchd domain target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub enum Domain {
    System,
    Gui(u32),
    /// `gui/<uid>` of whoever is at the console, resolved when the unit starts.
    GuiConsole,
    User(u32),
}

impl Domain {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let expected = "expected \"system\", \"gui/<uid>\", \"gui/console\" or \"user/<uid>\"";
        if s == "system" {
            return Ok(Domain::System);
        }
        if s == "gui/console" {
            return Ok(Domain::GuiConsole);
        }
        let (kind, uid) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a launchd domain; {expected}"))?;
        let uid: u32 = uid
            .parse()
            .map_err(|_| format!("{s:?}: {uid:?} is not a numeric uid; {expected}"))?;
        match kind {
            "gui" => Ok(Domain::Gui(uid)),
            "user" => Ok(Domain::User(uid)),
            _ => Err(format!("{s:?} is not a launchd domain; {expected}")),
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::System => f.write_str("system"),
            Domain::Gui(uid) => write!(f, "gui/{uid}"),
            Domain::GuiConsole => f.write_str("gui/console"),
            Domain::User(uid) => write!(f, "user/{uid}"),
        }
    }
}

impl From<Domain> for String {
    fn from(d: Domain) -> String {
        d.to_string()
    }
}

/// A service launchgraph observes but does not run (Ollama.app, a job another tool owns): its
/// probes say when it is ready and alive, and its dependents are gated and cycled on them,
/// but nothing is ever started, signalled or restarted. A unit of this kind always has both
/// probes: when its file declares only `[alive]`, that probe is its readiness probe too, and
/// when it declares only `[ready]`, that probe watches it once ready too (it has no exit to
/// see).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExternalSpec {
    /// Who runs it, for people: shown in `status`. Default [`ExternalSpec::DEFAULT_RUN_BY`].
    pub run_by: String,
}

impl ExternalSpec {
    pub const DEFAULT_RUN_BY: &'static str = "outside launchgraph";
}

/// A process launchgraph spawns itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecSpec {
    /// argv; `command[0]` is an absolute path.
    pub command: Vec<String>,
    /// Exactly the environment the process gets, besides `PATH` (see [`CANONICAL_PATH`]) when
    /// the unit does not set it.
    pub env: BTreeMap<String, String>,
    /// Default `/`.
    pub working_directory: PathBuf,
    pub user: Option<String>,
    pub group: Option<String>,
    /// Default `SIGTERM`.
    pub stop_signal: Signal,
    /// Default 10 s; then SIGKILL to the process group.
    #[serde(with = "duration_ms")]
    pub stop_timeout: Duration,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    /// Rotate a log file once it exceeds this many bytes. Default 10 MiB.
    pub log_max_bytes: u64,
    /// How many rotated files to keep (`.1` … `.N`). Default 3.
    pub log_keep: u32,
}

/// The PATH an `exec` unit gets when its `env` does not set one. launchd's own default is
/// `/usr/bin:/bin:/usr/sbin:/sbin`; this adds the Homebrew and /usr/local prefixes in the
/// order OpenClaw's LaunchAgents use, so both platforms resolve the same tools.
pub const CANONICAL_PATH: &str = "/opt/homebrew/bin:/opt/homebrew/sbin:/usr/local/bin:/usr/local/sbin:/usr/bin:/bin:/usr/sbin:/sbin";

/// A signal named in a unit (`stop-signal`), kept as its number and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Signal(pub nix::sys::signal::Signal);

impl Signal {
    pub fn parse(s: &str) -> Result<Self, String> {
        use std::str::FromStr;
        let upper = s.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        nix::sys::signal::Signal::from_str(&name)
            .map(Signal)
            .map_err(|_| {
                format!(
                    "{s:?} is not a signal name; expected e.g. \"SIGTERM\", \"SIGINT\", \"SIGQUIT\""
                )
            })
    }
}

impl From<Signal> for String {
    fn from(s: Signal) -> String {
        s.0.as_str().to_owned()
    }
}

/// One probe: how launchgraph asks whether a unit is ready or alive.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Probe {
    /// A TCP connect to this address succeeds.
    Tcp { addr: SocketAddr },
    /// An HTTP GET answers with `status` and, when set, a body containing `body_contains`.
    Http {
        url: String,
        /// The authority, resolved to a socket address: probes never use DNS.
        addr: SocketAddr,
        status: u16,
        body_contains: Option<String>,
    },
    /// The command exits 0. `argv[0]` is absolute.
    Exec { argv: Vec<String> },
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Tcp { addr } => write!(f, "tcp {addr}"),
            Probe::Http {
                url,
                status,
                body_contains,
                ..
            } => {
                write!(f, "http {url} -> {status}")?;
                if let Some(b) = body_contains {
                    write!(f, " containing {b:?}")?;
                }
                Ok(())
            }
            Probe::Exec { argv } => write!(f, "exec {}", argv.join(" ")),
        }
    }
}

/// `[ready]`: what makes a started unit ready.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadySpec {
    pub probe: Probe,
    /// The slowest the probe runs while waiting (it starts within milliseconds and backs off
    /// to this). Default 1 s.
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    /// One attempt's bound. Default 1 s.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Not ready within this after the start: stopped, and counted as a failed start.
    /// Default 60 s. Unused for an `external` unit, which is awaited for as long as it takes
    /// (the longest duration a unit may set is kept here).
    #[serde(with = "duration_ms")]
    pub start_timeout: Duration,
}

/// `[alive]`: what keeps a ready unit counted as healthy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AliveSpec {
    pub probe: Probe,
    /// Default 5 s.
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    /// Default 2 s.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Consecutive failures before the unit is restarted. Default 3.
    pub failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart after a non-zero exit, a signal, a failed liveness probe or a start timeout.
    OnFailure,
    /// Restart after any exit, including exit 0.
    Always,
    /// Never restart; an exit leaves the unit stopped (exit 0) or failed.
    Never,
}

/// `[restart]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestartSpec {
    /// Default `on-failure`.
    pub policy: RestartPolicy,
    /// First delay. Default 500 ms.
    #[serde(with = "duration_ms")]
    pub initial: Duration,
    /// Cap. Default 30 s.
    #[serde(with = "duration_ms")]
    pub max: Duration,
    /// Growth per consecutive failure. Default 2.0.
    pub factor: f64,
    /// Fraction of the delay drawn at random, ± (0.0 to 1.0). Default 0.1.
    pub jitter: f64,
    /// Stable running time that resets the backoff. Default 60 s.
    #[serde(with = "duration_ms")]
    pub reset_after: Duration,
    /// At most this many starts within `start_limit_period`, else *failed*. Default 5.
    pub start_limit_count: u32,
    /// Default 5 min.
    #[serde(with = "duration_ms")]
    pub start_limit_period: Duration,
    /// Exit codes after which the unit is failed at once. Default none.
    pub no_restart_exit_codes: Vec<i32>,
}

impl Default for RestartSpec {
    fn default() -> Self {
        Self {
            policy: RestartPolicy::OnFailure,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.1,
            reset_after: Duration::from_secs(60),
            start_limit_count: 5,
            start_limit_period: Duration::from_secs(300),
            no_restart_exit_codes: Vec::new(),
        }
    }
}

/// `[preflight]`: checks run before every start. The table is reserved; it takes no keys yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PreflightSpec {}

/// Serializes durations as whole milliseconds (`"interval_ms": 1000`), the stable JSON form.
pub(crate) mod duration_ms {
    use serde::Serializer;
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}
