//! The control protocol, shared by the daemon and the CLI: what can be asked and answered over
//! the control socket, and the framing.
//!
//! Framing: newline-delimited JSON. A client sends exactly one request line (an [`Envelope`]:
//! the protocol version plus the request), at most [`MAX_REQUEST_BYTES`] long; the daemon
//! answers with one response line, or for `events --follow` with one line per event until the
//! client disconnects. A version the daemon does not speak, a malformed, oversized or truncated
//! request gets an [`Response::Error`] and the connection is closed.

use serde::{Deserialize, Serialize};

pub mod guards;

pub use guards::{GuardEventFacts, GuardStatus};

/// Bumped when a request or response changes meaning; a mismatch is refused with
/// [`ErrorCode::Version`]. Version 2: events carry typed facts instead of a `detail` string,
/// and a unit's status carries its last transition.
pub const PROTOCOL_VERSION: u32 = 2;
/// The longest request line the daemon reads (a request is small; this bounds a hostile one).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// The longest response line the CLI accepts.
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Every unit's status, or one unit's.
    Status { unit: Option<String> },
    /// Bring a unit up, its requirements first.
    Start { unit: String },
    /// Take a unit down, its dependents first.
    Stop { unit: String },
    /// Cycle a unit, and its dependents in order.
    Restart { unit: String },
    /// Re-read the units directory and apply the difference (or only say what it would be).
    Reload { dry_run: bool },
    /// Recent transitions from the ring; with `follow`, then live ones.
    Events { follow: bool },
    /// Prometheus text exposition.
    Metrics,
    /// Every guard's state.
    Guards,
    /// Trip or clear a guard by hand.
    GuardForce {
        unit: String,
        guard: String,
        to: ForceTo,
    },
}

/// Where `guard trip|clear` forces a guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForceTo {
    Trip,
    Clear,
}

impl Request {
    /// Whether the request changes anything (and so needs an admin).
    pub(crate) fn is_acting(&self) -> bool {
        matches!(
            self,
            Request::Start { .. }
                | Request::Stop { .. }
                | Request::Restart { .. }
                | Request::GuardForce { .. }
                | Request::Reload { dry_run: false }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case")]
pub enum Response {
    Status {
        units: Vec<UnitStatus>,
    },
    /// An acting request was accepted; `message` says what will happen.
    Done {
        message: String,
    },
    Reload(ReloadReport),
    /// Boxed: an event is much larger than every other answer.
    Event(Box<EventRecord>),
    Metrics {
        text: String,
    },
    Guards {
        guards: Vec<GuardStatus>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The request line is not a request: bad JSON, unknown request, wrong types.
    Malformed,
    /// Longer than [`MAX_REQUEST_BYTES`].
    TooLarge,
    /// The connection ended before the request line did.
    Truncated,
    /// Another protocol version.
    Version,
    /// The caller may read but not act.
    PermissionDenied,
    /// No unit of that name.
    UnknownUnit,
    /// The unit has no guard (or switch) of that name.
    UnknownGuard,
    /// The units directory is invalid; nothing was changed.
    InvalidConfiguration,
    /// The daemon is shutting down.
    ShuttingDown,
    /// A reload is being applied; try again in a moment.
    Busy,
    /// The request does not apply to this unit: `restart` of an `external` unit, which
    /// launchgraph does not run.
    NotApplicable,
}

/// One unit, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitStatus {
    pub name: String,
    /// `exec`, `launchd` or `external`.
    pub kind: String,
    /// Who runs an `external` unit (its `run-by`); null for the others, which launchgraph
    /// runs itself.
    #[serde(default)]
    pub run_by: Option<String>,
    /// `inactive`, `waiting`, `starting`, `started`, `ready`, `stopping`, `backoff`, `failed`,
    /// `stopped`.
    pub state: String,
    /// Seconds in this state.
    pub since_secs: f64,
    /// The reason code of the last transition (docs/reason-codes.md).
    pub reason: String,
    /// The last transition's facts, as text for people (rendered from `last_transition`).
    pub detail: String,
    /// The last transition's facts, typed.
    pub last_transition: Option<TransitionFacts>,
    /// The requirement it waits on, when waiting.
    pub waiting_on: Option<String>,
    pub pid: Option<u32>,
    pub generation: u64,
    /// `exit=N` or `signal=N (NAME)` of the last exit.
    pub last_exit: Option<String>,
    pub restarts: u32,
    /// Seconds until the next start, in backoff.
    pub backoff_remaining_secs: Option<f64>,
    pub last_probe: Option<ProbeStatus>,
    /// Preflight findings of the unit's files as of now: `CODE` with severity.
    pub preflight: Vec<FindingStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeStatus {
    /// `ready` or `alive`.
    pub kind: String,
    pub ok: bool,
    pub latency_ms: f64,
    pub age_secs: f64,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingStatus {
    pub code: String,
    pub severity: String,
    pub message: String,
}

/// One transition, as `events` shows it (a JSON line each): docs/events-schema.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// RFC 3339, UTC.
    pub time: String,
    /// Increases by one per event: a gap means the ring dropped some.
    pub seq: u64,
    pub unit: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    /// The requirement it waits on, or stopped because of.
    pub on: Option<String>,
    #[serde(flatten)]
    pub facts: TransitionFacts,
    /// For a guard's event: its facts (`from`, `to` are then the guard's states).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardEventFacts>,
}

/// The typed facts of a transition: what `events --json` and `status --json` carry, and what
/// every text about a transition (log line, event line, status note) is rendered from.
/// Durations are milliseconds, as numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TransitionFacts {
    /// The unit's run counter when it happened.
    pub generation: u64,
    /// The process of the run it is about.
    pub pid: Option<u32>,
    /// How the run ended.
    pub exit: Option<ExitRecord>,
    /// How long the run lasted.
    pub ran_ms: Option<f64>,
    /// Consecutive failures so far (into `backoff`).
    pub failures: Option<u32>,
    /// The backoff before the next start (into `backoff`).
    pub delay_ms: Option<f64>,
    /// The latency of the probe that passed (into `ready`).
    pub latency_ms: Option<f64>,
    /// From spawn (or launchd's relaunch) to ready (into `ready`).
    pub time_to_ready_ms: Option<f64>,
    /// A fact the reason code alone does not say.
    pub note: Option<NoteRecord>,
    /// Text from outside the supervisor: what a probe said, a spawn error, a preflight finding.
    pub cause: Option<String>,
}

/// How a process ended: an exit code, or the signal that killed it; both null when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// A fact of a transition that is not a figure of the run; `kind` names it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NoteRecord {
    /// Into `ready` without a `[ready]` probe: ready when started.
    NoReadyProbe,
    /// The same, after launchd relaunched the job.
    RelaunchedNoReadyProbe,
    /// Into `started`: launchd relaunches the job itself (KeepAlive).
    LaunchdRelaunches,
    /// Killed after its stop timeout (`STOP_TIMEOUT`).
    KilledAfterStopTimeout,
    /// A clean exit under `on-failure`: not restarted (`RESTART_POLICY`).
    CleanExitNotRestarted,
    /// An exit under policy `never` (`RESTART_POLICY`).
    PolicyNever,
    /// Into `failed`: `starts` restarts after failures within `period_ms`.
    StartLimit { starts: u32, period_ms: f64 },
}

/// What a reload did, or would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadReport {
    pub dry_run: bool,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Unchanged units cycled because something they require changed.
    pub cycled: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Parses a request line. The version is checked before the request's shape, since another
/// version may well have requests this one does not know. The error is the code and message
/// to answer (a whole `Response` would make every `Result` here as large as the largest one).
pub fn parse_request(line: &[u8]) -> Result<Request, (ErrorCode, String)> {
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
        refusal(
            ErrorCode::Malformed,
            format!("the request is not JSON: {e}"),
        )
    })?;
    match value.get("version").map(serde_json::Value::as_u64) {
        Some(Some(version)) if version == u64::from(PROTOCOL_VERSION) => {}
        Some(Some(version)) => {
            return Err(refusal(
                ErrorCode::Version,
                format!(
                    "the client speaks protocol version {version}, this daemon speaks version {PROTOCOL_VERSION}"
                ),
            ));
        }
        Some(None) => {
            return Err(refusal(
                ErrorCode::Malformed,
                "\"version\" must be a non-negative integer",
            ));
        }
        None => {
            return Err(refusal(
                ErrorCode::Malformed,
                "the request must be a JSON object with a \"version\"",
            ));
        }
    }
    serde_json::from_value::<Envelope>(value)
        .map(|envelope| envelope.request)
        .map_err(|e| refusal(ErrorCode::Malformed, format!("not a valid request: {e}")))
}

fn refusal(code: ErrorCode, message: impl Into<String>) -> (ErrorCode, String) {
    (code, message.into())
}
