//! `memory-pressure`: how hard the kernel is working to find memory.
//!
//! - macOS: `sysctl kern.memorystatus_vm_pressure_level`, the level the kernel announces to
//!   dispatch memory-pressure sources: **1 normal, 2 warning, 4 critical** (xnu
//!   `bsd/kern/kern_memorystatus_notify.c`, values `NOTE_MEMORYSTATUS_PRESSURE_*` in
//!   `bsd/sys/event_private.h`; not 0/1/2). xnu already smooths the level (a decrease waits
//!   5 s, a notification rests 25 s), so one read is a settled value. Unit: pressure level.
//! - Linux: PSI, `/proc/pressure/memory` (<https://docs.kernel.org/accounting/psi.html>). The
//!   sample is the share of wall time, between this sample and the previous one, in which
//!   at least one task (`some`, the default) or all non-idle tasks (`full`) stalled on memory:
//!   the delta of the line's `total=` (microseconds) over the elapsed time. Not `avg10`: that
//!   is the kernel's own moving average over 10 s, updated every 2 s, so a guard sampling
//!   every 30 s would see a 10 s slice of its interval, and its window would smooth twice.
//!   The delta covers exactly the interval, whatever it is. `avg10` is kept beside it for
//!   people. Unit: ratio. The first sample, and one after the total went back, is unknown; so
//!   is every sample on a kernel without PSI (no file: built without `CONFIG_PSI`, or booted
//!   with `psi=0`).
//!
//! The two units differ on purpose: a threshold for this signal is written for one OS.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{CounterReading, Quantity, Reading, Sample, Signal, Unit, counter_rate};

/// Which PSI line is read on Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PsiLine {
    /// Some task stalled: the early sign (reclaim, swap-in, refaults).
    #[default]
    Some,
    /// All non-idle tasks stalled at once: thrashing.
    Full,
}

impl PsiLine {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Some => "some",
            Self::Full => "full",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPressureParams {
    /// Linux: the PSI file (tests point it at a capture). Unused on macOS.
    pub psi_path: PathBuf,
    pub line: PsiLine,
}

impl Default for MemoryPressureParams {
    fn default() -> Self {
        Self {
            psi_path: PathBuf::from("/proc/pressure/memory"),
            line: PsiLine::Some,
        }
    }
}

/// macOS's memory pressure level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PressureLevel {
    Normal = 1,
    Warning = 2,
    Critical = 4,
}

impl PressureLevel {
    /// The level from the sysctl's integer; any other value is reported, not guessed.
    pub fn from_sysctl(raw: i32) -> Result<Self, String> {
        match raw {
            1 => Ok(Self::Normal),
            2 => Ok(Self::Warning),
            4 => Ok(Self::Critical),
            other => Err(format!(
                "kern.memorystatus_vm_pressure_level is {other}, not 1, 2 or 4"
            )),
        }
    }
}

/// One reading of memory pressure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryPressureReading {
    /// macOS.
    Level(PressureLevel),
    /// Linux PSI.
    Stall {
        /// Share of the interval with a stall, 0 to 1.
        ratio: f64,
        interval: Duration,
        /// The kernel's 10 s average of the same line, as a ratio.
        avg10: f64,
        /// The line's `total=`: microseconds stalled since boot.
        total_us: u64,
        line: PsiLine,
    },
}

impl Reading for MemoryPressureReading {
    fn quantity(&self) -> Quantity {
        match *self {
            Self::Level(level) => Quantity::new(f64::from(level as u8), Unit::PressureLevel),
            Self::Stall { ratio, .. } => Quantity::new(ratio, Unit::Ratio),
        }
    }
}

/// One PSI line: `some avg10=0.00 avg60=0.00 avg300=0.00 total=0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PsiLineValues {
    /// Percent, as the kernel prints it.
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Microseconds of stall since boot.
    pub total_us: u64,
}

/// The `line` of a PSI file (`/proc/pressure/*`, a cgroup's `memory.pressure`).
pub fn parse_psi(text: &str, line: PsiLine) -> Result<PsiLineValues, String> {
    let name = line.as_str();
    let Some(found) = text
        .lines()
        .find(|l| l.split_ascii_whitespace().next() == Some(name))
    else {
        return Err(format!("the PSI file has no \"{name}\" line"));
    };
    let mut avg = [None; 3];
    let mut total = None;
    for field in found.split_ascii_whitespace().skip(1) {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        let slot = match key {
            "avg10" => &mut avg[0],
            "avg60" => &mut avg[1],
            "avg300" => &mut avg[2],
            "total" => {
                total = value.parse::<u64>().ok();
                continue;
            }
            _ => continue,
        };
        *slot = value.parse::<f64>().ok().filter(|v| v.is_finite());
    }
    match (avg, total) {
        ([Some(avg10), Some(avg60), Some(avg300)], Some(total_us)) => Ok(PsiLineValues {
            avg10,
            avg60,
            avg300,
            total_us,
        }),
        _ => Err(format!(
            "the PSI \"{name}\" line is not avg10= avg60= avg300= total=: {}",
            super::quote(found.as_bytes())
        )),
    }
}

/// The `memory-pressure` sampler.
#[derive(Debug)]
pub struct MemoryPressure {
    params: MemoryPressureParams,
    previous: Option<CounterReading>,
}

impl MemoryPressure {
    pub fn new(params: MemoryPressureParams) -> Self {
        Self {
            params,
            previous: None,
        }
    }

    /// Folds one PSI file's text (or the reason there is none) into a sample.
    pub fn advance_psi(
        &mut self,
        text: Result<String, String>,
        at: Instant,
    ) -> Sample<MemoryPressureReading> {
        let values = match text.and_then(|t| parse_psi(&t, self.params.line)) {
            Ok(v) => v,
            Err(reason) => return Sample::unknown(reason),
        };
        let current = CounterReading {
            value: values.total_us,
            at,
        };
        let Some(previous) = self.previous.replace(current) else {
            return Sample::unknown("first sample: a stall share needs two");
        };
        match counter_rate(previous, current) {
            Ok(us_per_second) => Sample::Known(MemoryPressureReading::Stall {
                // Clamped: the kernel's clock and ours tick apart by a little.
                ratio: (us_per_second / 1e6).clamp(0.0, 1.0),
                interval: at.saturating_duration_since(previous.at),
                avg10: values.avg10 / 100.0,
                total_us: values.total_us,
                line: self.params.line,
            }),
            Err(e) => Sample::unknown(format!("PSI total: {e}")),
        }
    }
}

impl Signal for MemoryPressure {
    type Reading = MemoryPressureReading;

    #[cfg(target_os = "macos")]
    async fn sample(&mut self) -> Sample<MemoryPressureReading> {
        match macos::pressure_level().and_then(PressureLevel::from_sysctl) {
            Ok(level) => Sample::Known(MemoryPressureReading::Level(level)),
            Err(reason) => Sample::unknown(reason),
        }
    }

    #[cfg(not(target_os = "macos"))]
    async fn sample(&mut self) -> Sample<MemoryPressureReading> {
        let path = &self.params.psi_path;
        let text = match super::read_kernel_text(path) {
            Err(_) if !path.exists() => Err(format!(
                "no {}: this kernel has no PSI (built without CONFIG_PSI, or booted with psi=0)",
                path.display()
            )),
            other => other,
        };
        self.advance_psi(text, Instant::now())
    }
}

#[cfg(target_os = "macos")]
mod macos {
    /// `kern.memorystatus_vm_pressure_level`: readable by name without privilege on macOS,
    /// though hidden from `sysctl -a`.
    pub(super) fn pressure_level() -> Result<i32, String> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>();
        // SAFETY: a NUL-terminated name, and `value`'s address with its size in `len`.
        let rc = unsafe {
            libc::sysctlbyname(
                c"kern.memorystatus_vm_pressure_level".as_ptr(),
                (&raw mut value).cast(),
                &raw mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!("sysctl kern.memorystatus_vm_pressure_level: {e}"));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // /proc/pressure/memory (Linux 6.18) captured 2 s apart while a 64 MiB memory cgroup
    // swapped: 508,710 µs of `some` stall in 2 s.
    const BEFORE: &str = "some avg10=4.18 avg60=0.87 avg300=0.26 total=1209201\n\
                          full avg10=2.43 avg60=0.52 avg300=0.16 total=823762\n";
    const AFTER: &str = "some avg10=7.41 avg60=1.56 avg300=0.41 total=1717911\n\
                         full avg10=4.35 avg60=0.93 avg300=0.25 total=1137551\n";

    #[test]
    fn psi_lines_parse_with_their_averages_and_total() {
        let some = parse_psi(AFTER, PsiLine::Some).unwrap();
        assert_eq!(
            some,
            PsiLineValues {
                avg10: 7.41,
                avg60: 1.56,
                avg300: 0.41,
                total_us: 1_717_911
            }
        );
        assert_eq!(parse_psi(AFTER, PsiLine::Full).unwrap().total_us, 1_137_551);
        // Kernels before 5.13 print no "full" line for cpu; a file without it says so.
        let only_some = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert!(
            parse_psi(only_some, PsiLine::Full)
                .unwrap_err()
                .contains("no \"full\"")
        );
        assert!(
            parse_psi("some avg10=x total=1\n", PsiLine::Some)
                .unwrap_err()
                .contains("not avg10=")
        );
    }

    #[test]
    fn the_stall_share_is_the_total_delta_over_the_interval() {
        let mut p = MemoryPressure::new(MemoryPressureParams::default());
        let t0 = Instant::now();
        let first = p.advance_psi(Ok(BEFORE.into()), t0);
        assert!(first.reason().unwrap().starts_with("first sample"));
        let s = p.advance_psi(Ok(AFTER.into()), t0 + Duration::from_secs(2));
        let MemoryPressureReading::Stall { ratio, avg10, .. } = *s.known().unwrap() else {
            panic!("{s:?}")
        };
        assert!((ratio - 0.254_355).abs() < 1e-6, "{ratio}");
        assert!((avg10 - 0.0741).abs() < 1e-9);
        assert_eq!(s.quantity().unwrap().unit, Unit::Ratio);

        let mut full = MemoryPressure::new(MemoryPressureParams {
            line: PsiLine::Full,
            ..Default::default()
        });
        full.advance_psi(Ok(BEFORE.into()), t0);
        let s = full.advance_psi(Ok(AFTER.into()), t0 + Duration::from_secs(2));
        let q = s.quantity().unwrap().value;
        assert!((q - 0.156_894_5).abs() < 1e-6, "{q}");
    }

    #[test]
    fn a_total_that_went_back_is_unknown() {
        let mut p = MemoryPressure::new(MemoryPressureParams::default());
        let t0 = Instant::now();
        p.advance_psi(Ok(AFTER.into()), t0);
        let s = p.advance_psi(Ok(BEFORE.into()), t0 + Duration::from_secs(1));
        assert!(s.reason().unwrap().contains("went back"), "{s:?}");
    }

    #[test]
    fn macos_levels_are_1_2_4_and_nothing_else() {
        assert_eq!(PressureLevel::from_sysctl(1), Ok(PressureLevel::Normal));
        assert_eq!(PressureLevel::from_sysctl(2), Ok(PressureLevel::Warning));
        assert_eq!(PressureLevel::from_sysctl(4), Ok(PressureLevel::Critical));
        for wrong in [0, 3, -1] {
            assert!(PressureLevel::from_sysctl(wrong).is_err());
        }
        let q = MemoryPressureReading::Level(PressureLevel::Critical).quantity();
        assert_eq!(q, Quantity::new(4.0, Unit::PressureLevel));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_live_psi_file_is_read_when_the_kernel_has_one() {
        let mut p = MemoryPressure::new(MemoryPressureParams::default());
        let first = p.sample().await;
        if !std::path::Path::new("/proc/pressure/memory").exists() {
            assert!(first.reason().unwrap().contains("has no PSI"), "{first:?}");
            return;
        }
        assert!(
            first.reason().unwrap().starts_with("first sample"),
            "{first:?}"
        );
        let before = Instant::now();
        while Instant::now() == before {
            std::hint::spin_loop();
        }
        let s = p.sample().await;
        let q = s.quantity().expect("a stall share");
        assert!((0.0..=1.0).contains(&q.value));
    }

    #[cfg(not(target_os = "macos"))]
    #[tokio::test]
    async fn a_missing_psi_file_is_unknown_with_why() {
        let mut p = MemoryPressure::new(MemoryPressureParams {
            psi_path: "/nonexistent/pressure/memory".into(),
            ..Default::default()
        });
        let s = p.sample().await;
        assert!(s.reason().unwrap().contains("has no PSI"), "{s:?}");
    }
}
