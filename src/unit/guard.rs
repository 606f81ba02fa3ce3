//! The validated guard model: what a unit's `[[guard]]` and `[[switch]]` tables mean once read.
//!
//! A guard watches one signal (time to first token, queue depth, swap writes, memory pressure,
//! free disk, a command's number), compares each sample (or a statistic over a sliding window)
//! with a threshold, trips when the condition has held for its trip window and clears when
//! the opposite, clear threshold has held for its clear window (hysteresis). A switch ties
//! several guards of one unit together (all or any of them tripped) and owns the actions.
//!
//! This module owns the types and the grammar of threshold values (`"2.5s"`, `"20MiB/s"`,
//! `"12%"`, `3`, `"warn"`), parsed once at load into typed [`Quantity`]s. Reading the TOML is
//! `load::guard`; deciding what a series of samples means is [`crate::guard::machine`]; taking
//! samples is not here at all.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::{UnitName, duration_ms};

/// A guard's or a switch's name, unique in its unit: `[a-z0-9][a-z0-9._-]*`, like a unit name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GuardName(String);

impl GuardName {
    /// Checks the name grammar; the error says what is allowed.
    pub fn parse(s: &str) -> Result<Self, String> {
        UnitName::parse(s)
            .map(|n| Self(n.as_str().to_owned()))
            .map_err(|e| e.replacen("a unit name", "a guard name", 1))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GuardName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A unit's guards and switches, in file order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Guards {
    pub guards: Vec<Guard>,
    pub switches: Vec<Switch>,
}

impl Guards {
    pub fn is_empty(&self) -> bool {
        self.guards.is_empty() && self.switches.is_empty()
    }
}

/// One `[[guard]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guard {
    pub name: GuardName,
    pub signal: Signal,
    /// Time between samples. Default per signal ([`Signal::default_every`]), at least
    /// [`Signal::min_every`].
    #[serde(with = "duration_ms")]
    pub every: Duration,
    /// One sample's bound. A `ttft` probe cut at it is a sample equal to it, not `unknown`.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// `above`: trips on values greater than `trip`; `below`: on values less than it.
    pub direction: Direction,
    pub trip: Quantity,
    /// A sample at or past this (at or below it for `above`, at or above it for `below`)
    /// counts toward clearing. Default: `trip`.
    pub clear: Quantity,
    /// Whether `clear` was written or is the default.
    pub clear_is_default: bool,
    /// How long the trip condition must hold. Default 3 samples, or 1 with a statistic.
    pub trip_window: Window,
    /// How long the clear condition must hold. Default: `trip_window`.
    pub clear_window: Window,
    /// Compare a statistic over a sliding window instead of each sample.
    pub stat: Option<StatWindow>,
    pub mode: Mode,
    /// Units that must not start while the guard is tripped.
    pub hold: Vec<UnitName>,
    pub on_trip: Option<Action>,
    pub on_clear: Option<Action>,
}

impl Guard {
    /// Whether a sample value meets the trip condition.
    pub fn trips_at(&self, v: f64) -> bool {
        match self.direction {
            Direction::Above => v > self.trip.canonical(),
            Direction::Below => v < self.trip.canonical(),
        }
    }

    /// Whether a sample value meets the clear condition.
    pub fn clears_at(&self, v: f64) -> bool {
        match self.direction {
            Direction::Above => v <= self.clear.canonical(),
            Direction::Below => v >= self.clear.canonical(),
        }
    }
}

/// What a guard watches, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Signal {
    /// Time to first token of a one-token streamed generation.
    Ttft {
        /// The server's base URL, e.g. `http://127.0.0.1:11434`.
        url: String,
        addr: SocketAddr,
        /// `None`: whatever model the server has loaded (a model is never loaded to be measured).
        model: Option<String>,
        api: LlmApi,
        /// Sent as the request's keep-alive, so probes do not change how long the model stays
        /// loaded; `None`: the server's default.
        keep_alive: Option<KeepAlive>,
        /// Keep only samples taken while the server had nothing else to do.
        idle_only: bool,
    },
    QueueDepth(QueueSource),
    /// Bytes written to swap per second.
    SwapOutRate,
    /// Linux: PSI `some` share of time stalled (a percent); macOS: the kernel's pressure level.
    MemoryPressure,
    /// Space an unprivileged writer can use on the volume holding `path`, in percent.
    DiskFree {
        path: PathBuf,
    },
    /// A command that prints one number.
    Exec {
        command: Vec<String>,
    },
}

impl Signal {
    /// The name written in `signal = "..."`.
    pub fn kind(&self) -> SignalKind {
        match self {
            Signal::Ttft { .. } => SignalKind::Ttft,
            Signal::QueueDepth(_) => SignalKind::QueueDepth,
            Signal::SwapOutRate => SignalKind::SwapOutRate,
            Signal::MemoryPressure => SignalKind::MemoryPressure,
            Signal::DiskFree { .. } => SignalKind::DiskFree,
            Signal::Exec { .. } => SignalKind::Exec,
        }
    }
}

/// The kinds of signal, as written in `signal = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignalKind {
    Ttft,
    QueueDepth,
    SwapOutRate,
    MemoryPressure,
    DiskFree,
    Exec,
}

impl SignalKind {
    pub const ALL: [SignalKind; 6] = [
        SignalKind::Ttft,
        SignalKind::QueueDepth,
        SignalKind::SwapOutRate,
        SignalKind::MemoryPressure,
        SignalKind::DiskFree,
        SignalKind::Exec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Ttft => "ttft",
            SignalKind::QueueDepth => "queue-depth",
            SignalKind::SwapOutRate => "swap-out-rate",
            SignalKind::MemoryPressure => "memory-pressure",
            SignalKind::DiskFree => "disk-free",
            SignalKind::Exec => "exec",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// What its samples measure, which decides the units a threshold may be written in.
    pub fn measure(self) -> Measure {
        match self {
            SignalKind::Ttft => Measure::Latency,
            SignalKind::QueueDepth | SignalKind::Exec => Measure::Number,
            SignalKind::SwapOutRate => Measure::Rate,
            SignalKind::MemoryPressure => Measure::Pressure,
            SignalKind::DiskFree => Measure::Percent,
        }
    }

    /// `every`'s default: a TTFT probe generates a token and touches the model's keep-alive,
    /// so it runs least often; free disk changes slowly; host counters are cheap.
    pub fn default_every(self) -> Duration {
        Duration::from_secs(match self {
            SignalKind::Ttft | SignalKind::Exec => 30,
            SignalKind::QueueDepth => 15,
            SignalKind::SwapOutRate | SignalKind::MemoryPressure => 10,
            SignalKind::DiskFree => 60,
        })
    }

    /// The shortest `every`: a TTFT probe more often than this keeps the model server busy
    /// with the guard's own requests.
    pub fn min_every(self) -> Duration {
        Duration::from_secs(match self {
            SignalKind::Ttft => 10,
            _ => 1,
        })
    }

    /// `timeout`'s default.
    pub fn default_timeout(self) -> Duration {
        Duration::from_secs(match self {
            SignalKind::Ttft => 30,
            SignalKind::QueueDepth | SignalKind::Exec => 10,
            _ => 5,
        })
    }
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long the server keeps a model loaded after a request (Ollama's `keep_alive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeepAlive {
    #[serde(with = "duration_ms")]
    For(Duration),
    /// Until the server is told otherwise (Ollama's negative `keep_alive`, e.g. `-1`).
    Forever,
}

impl KeepAlive {
    /// As Ollama's API takes it: seconds (`"900s"`), or `"-1"` for ever.
    pub fn to_ollama(self) -> String {
        match self {
            KeepAlive::For(d) => format!("{}s", d.as_secs()),
            KeepAlive::Forever => "-1".to_owned(),
        }
    }
}

/// The HTTP API a `ttft` probe speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LlmApi {
    /// `/api/ps`, then a streamed `/api/generate`.
    Ollama,
    /// A streamed `/v1/chat/completions` (llama.cpp's server, vLLM, Ollama's `/v1`).
    Openai,
}

/// Where a `queue-depth` guard reads the depth.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "source")]
pub enum QueueSource {
    /// A command printing one number, or JSON of which `select` picks the number (OpenClaw's
    /// `openclaw gateway call diagnostics.lanes --json`: lane `main`, field `queuedCount`).
    Command {
        command: Vec<String>,
        select: Option<JsonSelect>,
    },
    /// One series of a Prometheus text exposition, e.g. llama.cpp's
    /// `llamacpp:requests_deferred`; the labels must all match (the series may have more).
    Prometheus {
        url: String,
        addr: SocketAddr,
        metric: String,
        labels: BTreeMap<String, String>,
    },
}

/// Which number of a command's JSON output is the sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JsonSelect {
    /// `field` of the element of the top-level `lanes` array whose `lane` is `lane`.
    Lane { lane: String, field: String },
    /// An RFC 6901 JSON pointer, e.g. `/lanes/0/queuedCount`.
    Pointer(String),
}

/// What a signal's samples measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    /// A duration; samples in seconds.
    Latency,
    /// Bytes per second.
    Rate,
    /// 0 to 100.
    Percent,
    /// A plain number.
    Number,
    /// Memory pressure: a percent (Linux PSI) or a level (macOS).
    Pressure,
}

impl Measure {
    /// How a threshold of this measure is written, for error messages.
    pub fn expected(self) -> &'static str {
        match self {
            Measure::Latency => "a duration such as \"2.5s\" or \"800ms\"",
            Measure::Rate => "a rate such as \"20MiB/s\" or \"512KiB/s\"",
            Measure::Percent => "a percent such as \"12%\"",
            Measure::Number => "a plain number such as 3",
            Measure::Pressure => {
                "a percent such as \"10%\" (Linux PSI) or a level, \"warn\" or \"critical\" (macOS)"
            }
        }
    }

    /// What it is, for error messages: "a ttft signal is a latency".
    pub fn noun(self) -> &'static str {
        match self {
            Measure::Latency => "a latency",
            Measure::Rate => "a rate",
            Measure::Percent => "a percent",
            Measure::Number => "a plain number",
            Measure::Pressure => "a pressure",
        }
    }

    fn accepts(self, q: &Quantity) -> bool {
        matches!(
            (self, q),
            (Measure::Latency, Quantity::Latency(_))
                | (Measure::Rate, Quantity::Rate(_))
                | (Measure::Percent, Quantity::Percent(_))
                | (Measure::Number, Quantity::Number(_))
                | (Measure::Pressure, Quantity::Percent(_) | Quantity::Level(_))
        )
    }
}

/// A typed threshold value, parsed once at load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quantity {
    #[serde(with = "duration_ms")]
    Latency(Duration),
    /// Bytes per second.
    Rate(f64),
    Percent(f64),
    Number(f64),
    Level(PressureLevel),
}

impl Quantity {
    /// The value samples are compared with, in the signal's sample unit: seconds, bytes per
    /// second, percent, the number, or the level's kernel value (1, 2, 4).
    pub fn canonical(&self) -> f64 {
        match *self {
            Quantity::Latency(d) => d.as_secs_f64(),
            Quantity::Rate(x) | Quantity::Percent(x) | Quantity::Number(x) => x,
            Quantity::Level(l) => f64::from(l.value()),
        }
    }

    /// What kind of value it is, for error messages: "\"12%\" is a percent".
    pub fn noun(&self) -> &'static str {
        match self {
            Quantity::Latency(_) => "a duration",
            Quantity::Rate(_) => "a rate",
            Quantity::Percent(_) => "a percent",
            Quantity::Number(_) => "a plain number",
            Quantity::Level(_) => "a pressure level",
        }
    }

    /// Whether a guard on `measure` can compare with it.
    pub fn fits(&self, measure: Measure) -> bool {
        measure.accepts(self)
    }

    /// Whether both are of one kind (a clear threshold must be of its trip threshold's).
    pub fn same_kind(&self, other: &Quantity) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// Parses a threshold written as a string: `"2.5s"`, `"800ms"`, `"20MiB/s"`, `"12%"`,
    /// `"warn"`, `"critical"`, or a plain number. Numbers written as TOML numbers are
    /// [`Quantity::Number`] without coming here.
    pub fn parse(s: &str) -> Result<Quantity, String> {
        let t = s.trim();
        if let Some(l) = PressureLevel::parse(t) {
            return Ok(Quantity::Level(l));
        }
        if let Some(num) = t.strip_suffix('%') {
            let x = parse_number(num).ok_or_else(|| format!("{s:?} is not a percent"))?;
            if x > 100.0 {
                return Err(format!("{s:?} is more than 100%"));
            }
            return Ok(Quantity::Percent(x));
        }
        if let Some(size) = t.strip_suffix("/s") {
            return parse_rate(size)
                .map(Quantity::Rate)
                .ok_or_else(|| format!("{s:?} is not a rate"));
        }
        if let Some(x) = parse_number(t) {
            return Ok(Quantity::Number(x));
        }
        match parse_latency(t) {
            Ok(d) => Ok(Quantity::Latency(d)),
            Err(LatencyError::NotALatency) => Err(format!(
                "{s:?} is not a threshold: expected a duration (\"2.5s\"), a rate (\"20MiB/s\"), a percent (\"12%\"), a number, or \"warn\"/\"critical\""
            )),
            Err(LatencyError::TooLong) => Err(format!(
                "{s:?} is longer than the maximum of {MAX_LATENCY_TEXT}"
            )),
        }
    }
}

impl fmt::Display for Quantity {
    /// As a person writes it: `2.5s`, `20MiB/s`, `12%`, `3`, `warn`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Quantity::Latency(d)
                if d < Duration::from_secs(1) && d.subsec_nanos() % 1_000_000 == 0 =>
            {
                write!(f, "{}ms", d.as_millis())
            }
            Quantity::Latency(d) => write!(f, "{}s", trim_float(d.as_secs_f64())),
            Quantity::Rate(x) => {
                const UNITS: [(f64, &str); 4] = [
                    ((1u64 << 30) as f64, "GiB/s"),
                    ((1u64 << 20) as f64, "MiB/s"),
                    ((1u64 << 10) as f64, "KiB/s"),
                    (1.0, "B/s"),
                ];
                let (div, unit) = UNITS
                    .iter()
                    .copied()
                    .find(|(d, _)| x >= *d)
                    .unwrap_or((1.0, "B/s"));
                write!(f, "{}{unit}", trim_float(x / div))
            }
            Quantity::Percent(x) => write!(f, "{}%", trim_float(x)),
            Quantity::Number(x) => write!(f, "{}", trim_float(x)),
            Quantity::Level(l) => f.write_str(l.as_str()),
        }
    }
}

/// A number without trailing zeros, to at most three decimals.
fn trim_float(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// The largest latency threshold: a day, far from any overflow.
pub const MAX_LATENCY: Duration = Duration::from_secs(24 * 60 * 60);
const MAX_LATENCY_TEXT: &str = "24h";

/// The largest plain number or rate a threshold may be: past it, f64 stops counting in ones.
pub const MAX_NUMBER: f64 = 1e15;

/// A non-negative, finite decimal number of at most [`MAX_NUMBER`]: `3`, `2.5`, `.5`.
fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    // Only digits and one point: no signs, exponents, "inf" or "NaN".
    if s.is_empty()
        || !s.chars().all(|c| c.is_ascii_digit() || c == '.')
        || s.chars().filter(|&c| c == '.').count() > 1
        || s == "."
    {
        return None;
    }
    let x: f64 = s.parse().ok()?;
    (x.is_finite() && x <= MAX_NUMBER).then_some(x)
}

enum LatencyError {
    NotALatency,
    TooLong,
}

/// `"2.5s"`, `"800ms"`, `"1.5m"`, `"250us"`: a decimal number and one unit.
fn parse_latency(s: &str) -> Result<Duration, LatencyError> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or(LatencyError::NotALatency)?;
    let (num, unit) = s.split_at(split);
    let x = parse_number(num).ok_or(LatencyError::NotALatency)?;
    let scale = match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(LatencyError::NotALatency),
    };
    let secs = x * scale;
    if !secs.is_finite() || secs > MAX_LATENCY.as_secs_f64() {
        return Err(LatencyError::TooLong);
    }
    Duration::try_from_secs_f64(secs).map_err(|_| LatencyError::TooLong)
}

/// `"20MiB"` (of `"20MiB/s"`): a decimal number and a byte unit, as bytes.
fn parse_rate(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let x = parse_number(num)?;
    let mult: f64 = match unit.trim() {
        "B" => 1.0,
        "KB" | "kB" => 1e3,
        "KiB" => 1024.0,
        "MB" => 1e6,
        "MiB" => 1024.0 * 1024.0,
        "GB" => 1e9,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = x * mult;
    (bytes.is_finite() && bytes <= MAX_NUMBER).then_some(bytes)
}

/// macOS memory pressure levels, with the kernel's values
/// (`kern.memorystatus_vm_pressure_level`: 1 normal, 2 warn, 4 critical; apple-oss-distributions/xnu
/// `bsd/sys/event_private.h` `NOTE_MEMORYSTATUS_PRESSURE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PressureLevel {
    Normal,
    Warn,
    Critical,
}

impl PressureLevel {
    pub fn value(self) -> u8 {
        match self {
            PressureLevel::Normal => 1,
            PressureLevel::Warn => 2,
            PressureLevel::Critical => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PressureLevel::Normal => "normal",
            PressureLevel::Warn => "warn",
            PressureLevel::Critical => "critical",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "normal" => Some(PressureLevel::Normal),
            "warn" => Some(PressureLevel::Warn),
            "critical" => Some(PressureLevel::Critical),
            _ => None,
        }
    }
}

/// Which side of the threshold trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Above,
    Below,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Above => "above",
            Direction::Below => "below",
        }
    }
}

/// How long a condition must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Window {
    /// This many consecutive real samples (`samples = N`).
    Samples(u32),
    /// Held continuously this long, from the first sample that met it to one that still does
    /// (`for = "5m"`); time without a sample (`unknown`) does not count.
    #[serde(with = "duration_ms")]
    Lasting(Duration),
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Samples(1) => f.write_str("1 sample"),
            Window::Samples(n) => write!(f, "{n} samples"),
            Window::Lasting(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

/// A statistic over the real samples of a sliding time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatWindow {
    pub stat: Stat,
    #[serde(with = "duration_ms")]
    pub window: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stat {
    /// The median (`p50` and `median` are the same).
    P50,
    P90,
    Max,
    Mean,
}

impl Stat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "p50" | "median" => Some(Stat::P50),
            "p90" => Some(Stat::P90),
            "max" => Some(Stat::Max),
            "mean" => Some(Stat::Mean),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stat::P50 => "p50",
            Stat::P90 => "p90",
            Stat::Max => "max",
            Stat::Mean => "mean",
        }
    }
}

/// `act`: run the actions; `advise`: log and export what would run, and run nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Act,
    Advise,
}

/// `on-trip` or `on-clear`: what runs on one edge, and how it is confirmed in time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    /// Commands run in order; the first to fail ends the sequence. Each argv[0] is absolute.
    pub run: Vec<Vec<String>>,
    /// Run the commands (and `verify`) as this user.
    pub user: Option<String>,
    /// Units restarted, in dependency order, once the commands succeeded.
    pub restart: Vec<UnitName>,
    /// Polled after the commands until it exits 0 (and prints `verify_contains`, when set).
    pub verify: Option<Vec<String>>,
    pub verify_contains: Option<String>,
    /// The time box: from the edge, everything (commands, restarts, verify) is done by then,
    /// or the action is timed out. Default 2 minutes.
    #[serde(with = "duration_ms")]
    pub complete_within: Duration,
}

impl Action {
    pub const DEFAULT_COMPLETE_WITHIN: Duration = Duration::from_secs(120);
}

/// One `[[switch]]`: trips when all (or any) of its guards are tripped, clears only when all
/// are clear again, and owns the actions for them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Switch {
    pub name: GuardName,
    /// Guards of the same unit, none of which has actions, holds or a mode of its own.
    pub guards: Vec<GuardName>,
    pub when: When,
    pub mode: Mode,
    pub hold: Vec<UnitName>,
    pub on_trip: Option<Action>,
    pub on_clear: Option<Action>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum When {
    All,
    Any,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_into_typed_values() {
        let ok = [
            ("2.5s", Quantity::Latency(Duration::from_millis(2500))),
            ("800ms", Quantity::Latency(Duration::from_millis(800))),
            ("1.5m", Quantity::Latency(Duration::from_secs(90))),
            ("250us", Quantity::Latency(Duration::from_micros(250))),
            ("20MiB/s", Quantity::Rate(20.0 * 1024.0 * 1024.0)),
            ("1.5 KB/s", Quantity::Rate(1500.0)),
            ("12%", Quantity::Percent(12.0)),
            ("0.5%", Quantity::Percent(0.5)),
            ("3", Quantity::Number(3.0)),
            ("warn", Quantity::Level(PressureLevel::Warn)),
        ];
        for (s, q) in ok {
            assert_eq!(Quantity::parse(s), Ok(q), "{s}");
        }
        for bad in [
            "",
            "-1s",
            "1e3s",
            "NaN",
            "inf",
            "101%",
            "-5%",
            "20MiB",
            "5 parsecs",
            "1..5s",
            ".",
            "s",
            "2.5 parsecs/s",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn absurd_thresholds_are_errors_not_panics() {
        for s in [
            "18446744073709551615s",
            "99999999999999999999999999999999h",
            "1000000000000000000000MiB/s",
            "25h",
            "99999999999999999999",
        ] {
            let e = Quantity::parse(s).unwrap_err();
            assert!(!e.is_empty(), "{s}");
        }
        assert_eq!(
            Quantity::parse("25h").unwrap_err(),
            "\"25h\" is longer than the maximum of 24h"
        );
    }

    #[test]
    fn thresholds_render_as_written() {
        for s in ["2.5s", "800ms", "20MiB/s", "12%", "3", "warn", "1.5s"] {
            assert_eq!(Quantity::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn measures_accept_only_their_units() {
        let pct = Quantity::parse("12%").unwrap();
        assert!(!pct.fits(SignalKind::Ttft.measure()));
        assert!(pct.fits(SignalKind::DiskFree.measure()));
        assert!(pct.fits(SignalKind::MemoryPressure.measure()));
        let lvl = Quantity::parse("critical").unwrap();
        assert!(lvl.fits(Measure::Pressure));
        assert!(!lvl.fits(Measure::Number));
        assert_eq!(lvl.canonical(), 4.0);
    }
}
