//! The samplers of guard signals: what each signal reads on macOS and on Linux, in what unit,
//! and when it cannot tell.
//!
//! Every sampler implements [`Signal`]: [`Signal::sample`] takes one reading and returns a
//! [`Sample`], either a typed reading (whose [`Reading::quantity`] is the number a threshold
//! is compared with, with its [`Unit`]) or [`Sample::Unknown`] with a reason. "Unknown" is a
//! fact, not an error: a rate before its second sample, a model that is not loaded, a command
//! that printed something else. Deciding what a series of samples means (windows, hysteresis,
//! actions) is not done here.
//!
//! Each signal has its own module and parameter struct (plain Rust types). Parsing of what the
//! OS or a service returns is in OS-neutral functions, tested on Linux with verbatim captures;
//! the few `cfg(target_os = "macos")` functions only fetch the raw numbers.
//!
//! - `swap`: bytes per second written to swap.
//! - `pressure`: memory pressure (macOS level 1/2/4, Linux PSI stall ratio).
//! - `disk`: the share and the bytes of a volume an unprivileged writer may still use.
//! - `exec`: a command that prints one number.
//! - `queue`: queue depth, from a command's JSON (OpenClaw lanes) or a Prometheus metric.
//! - `ttft`: time to first token of a loaded model, split into phases.
//! - `prometheus`: the Prometheus text-format parser `queue` and `ttft` use.
//! - `http`: the loopback HTTP/1 client with timestamps, a deadline and a byte cap.

pub mod disk;
pub mod exec;
pub mod http;
pub mod pressure;
pub mod prometheus;
pub mod queue;
pub mod swap;
pub mod ttft;

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// How many characters of a helper's or a server's unexpected answer a reason quotes.
pub const QUOTE_CHARS: usize = 200;

/// A signal: something that can be sampled, one reading at a time.
pub trait Signal {
    /// What one successful sample holds.
    type Reading: Reading;

    /// Takes one reading. Bounded in time by the signal's own parameters; never an `Err`.
    fn sample(&mut self) -> impl Future<Output = Sample<Self::Reading>> + Send;
}

/// A reading: whatever detail it carries, one number in a unit is what a threshold sees.
pub trait Reading {
    fn quantity(&self) -> Quantity;
}

/// One sample of a signal.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample<R> {
    Known(R),
    /// The signal could not be read, or has no value yet; `reason` says which, for a person.
    Unknown {
        reason: String,
    },
}

impl<R> Sample<R> {
    pub fn unknown(reason: impl Into<String>) -> Self {
        Self::Unknown {
            reason: reason.into(),
        }
    }

    pub fn known(&self) -> Option<&R> {
        match self {
            Self::Known(r) => Some(r),
            Self::Unknown { .. } => None,
        }
    }

    /// The reason, when the sample is unknown.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Known(_) => None,
            Self::Unknown { reason } => Some(reason),
        }
    }
}

impl<R: Reading> Sample<R> {
    pub fn quantity(&self) -> Option<Quantity> {
        self.known().map(Reading::quantity)
    }
}

/// The unit of a signal's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// A plain count (queued requests).
    Count,
    Bytes,
    BytesPerSecond,
    Seconds,
    /// A fraction, 0 to 1 (disk free, a PSI stall share). Written as a percentage.
    Ratio,
    /// macOS memory pressure level: 1 normal, 2 warning, 4 critical.
    PressureLevel,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Bytes => "bytes",
            Self::BytesPerSecond => "bytes/s",
            Self::Seconds => "seconds",
            Self::Ratio => "ratio",
            Self::PressureLevel => "pressure-level",
        }
    }
}

/// A number with its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity {
    pub value: f64,
    pub unit: Unit,
}

impl Quantity {
    pub const fn new(value: f64, unit: Unit) -> Self {
        Self { value, unit }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unit {
            Unit::Ratio => write!(f, "{:.1}%", self.value * 100.0),
            Unit::Seconds => write!(f, "{:.3}s", self.value),
            Unit::Bytes => write!(f, "{} B", self.value),
            Unit::BytesPerSecond => write!(f, "{:.0} B/s", self.value),
            Unit::Count | Unit::PressureLevel => write!(f, "{}", self.value),
        }
    }
}

/// A plain number is a reading of itself.
impl Reading for Quantity {
    fn quantity(&self) -> Quantity {
        *self
    }
}

/// One reading of a cumulative counter, and when it was taken (monotonic clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterReading {
    pub value: u64,
    pub at: Instant,
}

/// Why two counter readings give no rate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("the counter went back from {previous} to {current} (it wrapped, or was reset)")]
    WentBack { previous: u64, current: u64 },
    #[error("no time passed between the two readings")]
    NoTime,
}

/// Units per second between two readings of a counter. A counter that went back (a 32-bit
/// counter that wrapped, a reset) gives no rate: its true increase is not knowable, and
/// guessing one wrap could invent a burst. The caller starts again from the new reading.
pub fn counter_rate(previous: CounterReading, current: CounterReading) -> Result<f64, RateError> {
    let Some(delta) = current.value.checked_sub(previous.value) else {
        return Err(RateError::WentBack {
            previous: previous.value,
            current: current.value,
        });
    };
    let elapsed = current.at.saturating_duration_since(previous.at);
    if elapsed == Duration::ZERO {
        return Err(RateError::NoTime);
    }
    Ok(delta as f64 / elapsed.as_secs_f64())
}

/// The first [`QUOTE_CHARS`] characters of `text`, trimmed, lossy, with "..." when cut.
pub fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut out: String = text.chars().take(QUOTE_CHARS).collect();
    if text.chars().nth(QUOTE_CHARS).is_some() {
        out.push_str("...");
    }
    format!("{out:?}")
}

/// The size of a memory page, in bytes, as the kernel counts pages: 4 KiB on x86_64, but 16 KiB
/// on Apple silicon and 4, 16 or 64 KiB on arm64 Linux, depending on how the kernel was built
/// (`CONFIG_ARM64_*K_PAGES`), so it is asked, never assumed.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 on an unknown name.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Reads a small kernel text file (`/proc/vmstat`, `/proc/pressure/memory`) with a bound.
#[cfg(not(target_os = "macos"))]
pub(crate) fn read_kernel_text(path: &std::path::Path) -> Result<String, String> {
    // /proc files report a size of 0; the bound applies to what is read.
    const CAP: u64 = 256 * 1024;
    crate::fsutil::read_regular(path, CAP)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| {
            format!(
                "{} {}",
                path.display(),
                e.describe("a kernel statistics file")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_refuse_counters_that_went_back_and_zero_intervals() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let r = |value, at| CounterReading { value, at };
        assert_eq!(counter_rate(r(100, t0), r(300, t1)), Ok(100.0));
        assert_eq!(
            counter_rate(r(300, t0), r(100, t1)),
            Err(RateError::WentBack {
                previous: 300,
                current: 100
            })
        );
        assert_eq!(counter_rate(r(1, t0), r(2, t0)), Err(RateError::NoTime));
        // The largest increase is still a number.
        assert!(counter_rate(r(0, t0), r(u64::MAX, t1)).unwrap() > 9.0e18);
    }

    #[test]
    fn quotes_are_cut_at_200_characters() {
        let long = "x".repeat(300);
        let q = quote(long.as_bytes());
        assert_eq!(q, format!("\"{}...\"", "x".repeat(200)));
        assert_eq!(quote(b"  ok \n"), "\"ok\"");
    }

    #[test]
    fn the_page_size_is_a_power_of_two_of_at_least_4_kib() {
        let p = page_size();
        assert!(p >= 4096 && p.is_power_of_two(), "{p}");
    }
}
