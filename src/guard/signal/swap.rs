//! `swap-out-rate`: bytes per second written to swap, from the kernel's cumulative count of
//! pages swapped out, between two samples.
//!
//! - Linux: `pswpout` in `/proc/vmstat` (pages written to swap since boot).
//! - macOS: `swapouts` of `host_statistics64(HOST_VM_INFO64)`, the counter `vm_stat` prints as
//!   "Swapouts:" (apple-oss-distributions/system_cmds: `vm_stat/vm_stat.c`). xnu adds the
//!   pages of each compressed segment it writes (apple-oss-distributions/xnu:
//!   `osfmk/vm/vm_compressor_backing_store.c`), so on macOS this is compressed bytes written.
//!
//! Both count pages of the kernel's page size, which is asked, not assumed: on Linux
//! `sysconf(_SC_PAGESIZE)` ([`page_size`]); on macOS `vm_kernel_page_size`, the size
//! `vm_stat` prints in its header (16 KiB on Apple silicon), which is also right for a
//! process translated by Rosetta, whose own pages are 4 KiB.
//! The first sample has no rate yet, nor does one after the counter went back: both are
//! unknown, and the next sample measures from there.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{CounterReading, Quantity, Reading, Sample, Signal, Unit, counter_rate, page_size};

/// Where the counter is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapOutParams {
    /// Linux: the vmstat file (tests point it at a capture). Unused on macOS.
    pub vmstat_path: PathBuf,
}

impl Default for SwapOutParams {
    fn default() -> Self {
        Self {
            vmstat_path: PathBuf::from("/proc/vmstat"),
        }
    }
}

/// One rate: bytes per second, and what it was computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwapOutReading {
    pub bytes_per_second: f64,
    /// Pages swapped out between the two samples.
    pub pages: u64,
    pub interval: Duration,
    pub page_size: u64,
    /// The kernel's count of pages swapped out since boot, at this sample.
    pub total_pages: u64,
}

impl Reading for SwapOutReading {
    fn quantity(&self) -> Quantity {
        Quantity::new(self.bytes_per_second, Unit::BytesPerSecond)
    }
}

/// The `swap-out-rate` sampler. Keeps the previous counter reading.
#[derive(Debug)]
pub struct SwapOutRate {
    params: SwapOutParams,
    page_size: u64,
    previous: Option<CounterReading>,
}

impl SwapOutRate {
    pub fn new(params: SwapOutParams) -> Self {
        Self {
            params,
            page_size: kernel_page_size(),
            previous: None,
        }
    }

    /// The page size the counter is multiplied by (tests with captures from another host
    /// set the capture's).
    pub fn with_page_size(mut self, page_size: u64) -> Self {
        self.page_size = page_size;
        self
    }

    /// Folds one counter reading (or the reason there is none) into a sample.
    pub fn advance(&mut self, counter: Result<u64, String>, at: Instant) -> Sample<SwapOutReading> {
        let value = match counter {
            Ok(v) => v,
            // The previous reading stays: the next good one measures from it.
            Err(reason) => return Sample::unknown(reason),
        };
        let current = CounterReading { value, at };
        let Some(previous) = self.previous.replace(current) else {
            return Sample::unknown("first sample: a rate needs two");
        };
        match counter_rate(previous, current) {
            Ok(pages_per_second) => Sample::Known(SwapOutReading {
                bytes_per_second: pages_per_second * self.page_size as f64,
                pages: value - previous.value,
                interval: at.saturating_duration_since(previous.at),
                page_size: self.page_size,
                total_pages: value,
            }),
            Err(e) => Sample::unknown(format!("swapped-out pages: {e}")),
        }
    }
}

impl Signal for SwapOutRate {
    type Reading = SwapOutReading;

    async fn sample(&mut self) -> Sample<SwapOutReading> {
        let counter = read_swapouts(&self.params);
        self.advance(counter, Instant::now())
    }
}

/// `name value` lines of `/proc/vmstat`: the value of `field`.
pub fn parse_vmstat(text: &str, field: &str) -> Result<u64, String> {
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        if words.next() == Some(field) {
            let value = words.next().unwrap_or("");
            return value.parse().map_err(|_| {
                format!(
                    "vmstat {field}: not a counter: {}",
                    super::quote(value.as_bytes())
                )
            });
        }
    }
    Err(format!(
        "vmstat has no {field} (a kernel without swap support?)"
    ))
}

#[cfg(not(target_os = "macos"))]
fn kernel_page_size() -> u64 {
    page_size()
}

#[cfg(target_os = "macos")]
fn kernel_page_size() -> u64 {
    macos::kernel_page_size()
}

#[cfg(target_os = "linux")]
fn read_swapouts(params: &SwapOutParams) -> Result<u64, String> {
    let text = super::read_kernel_text(&params.vmstat_path)?;
    parse_vmstat(&text, "pswpout")
}

#[cfg(target_os = "macos")]
fn read_swapouts(_params: &SwapOutParams) -> Result<u64, String> {
    macos::swapouts()
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn read_swapouts(_params: &SwapOutParams) -> Result<u64, String> {
    Err("swap-out-rate is read on Linux and macOS only".into())
}

#[cfg(target_os = "macos")]
mod macos {
    use std::sync::OnceLock;

    // Declared in <mach/vm_page_size.h>, exported by libSystem; the libc crate has only
    // `vm_page_size`, the task's own page size.
    unsafe extern "C" {
        static vm_kernel_page_size: libc::vm_size_t;
    }

    pub(super) fn kernel_page_size() -> u64 {
        // SAFETY: set by libSystem before main and never written again.
        let size = unsafe { vm_kernel_page_size };
        u64::try_from(size)
            .ok()
            .filter(|&s| s > 0)
            .unwrap_or_else(super::page_size)
    }

    /// `swapouts` of `host_statistics64(HOST_VM_INFO64)`.
    pub(super) fn swapouts() -> Result<u64, String> {
        // mach_host_self returns a new send right on each call; one is kept for the process.
        static HOST: OnceLock<libc::mach_port_t> = OnceLock::new();
        // SAFETY: no preconditions.
        #[allow(deprecated)]
        let host = *HOST.get_or_init(|| unsafe { libc::mach_host_self() });
        // SAFETY: a plain-data struct, zero is a valid value.
        let mut info: libc::vm_statistics64 = unsafe { std::mem::zeroed() };
        let mut count = libc::HOST_VM_INFO64_COUNT;
        // SAFETY: `info` has room for HOST_VM_INFO64_COUNT integers, as `count` says.
        let kr = unsafe {
            libc::host_statistics64(
                host,
                libc::HOST_VM_INFO64,
                (&raw mut info).cast(),
                &raw mut count,
            )
        };
        if kr != libc::KERN_SUCCESS {
            return Err(format!(
                "host_statistics64(HOST_VM_INFO64) failed: kern_return {kr}"
            ));
        }
        Ok(info.swapouts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines of /proc/vmstat (Linux 6.18, 4 KiB pages) captured 2 s apart while a perl loop
    // touched 128 MiB in a 64 MiB memory cgroup with a swap file on: 41,655 pages.
    const BEFORE: &str = "nr_free_pages 389056\npgpgin 21082909\npswpin 40100\npswpout 88292\n";
    const AFTER: &str = "nr_free_pages 403932\npgpgin 21244577\npswpin 80446\npswpout 129947\n";

    #[test]
    fn the_rate_is_pages_times_the_page_size_per_second() {
        let mut s = SwapOutRate::new(SwapOutParams::default()).with_page_size(4096);
        let t0 = Instant::now();
        let first = s.advance(parse_vmstat(BEFORE, "pswpout"), t0);
        assert_eq!(first.reason(), Some("first sample: a rate needs two"));
        let second = s.advance(parse_vmstat(AFTER, "pswpout"), t0 + Duration::from_secs(2));
        let r = *second.known().unwrap();
        assert_eq!(r.pages, 41_655);
        assert_eq!(r.bytes_per_second, 41_655.0 * 4096.0 / 2.0);
        // 81.4 MiB/s, as the kernel wrote it.
        assert!((r.bytes_per_second / (1024.0 * 1024.0) - 81.4).abs() < 0.05);
        assert_eq!(second.quantity().unwrap().unit, Unit::BytesPerSecond);
    }

    #[test]
    fn sixteen_kib_pages_count_four_times_as_much() {
        let mut s = SwapOutRate::new(SwapOutParams::default()).with_page_size(16384);
        let t0 = Instant::now();
        s.advance(Ok(10), t0);
        let r = s.advance(Ok(20), t0 + Duration::from_secs(1));
        assert_eq!(r.known().unwrap().bytes_per_second, 163_840.0);
    }

    #[test]
    fn a_counter_that_went_back_is_unknown_and_the_next_sample_measures_from_it() {
        let mut s = SwapOutRate::new(SwapOutParams::default()).with_page_size(4096);
        let t0 = Instant::now();
        s.advance(Ok(u64::MAX - 5), t0);
        let wrapped = s.advance(Ok(3), t0 + Duration::from_secs(1));
        assert!(
            wrapped.reason().unwrap().contains("went back"),
            "{wrapped:?}"
        );
        let next = s.advance(Ok(13), t0 + Duration::from_secs(2));
        assert_eq!(next.known().unwrap().pages, 10);
    }

    #[test]
    fn a_failed_read_is_unknown_and_keeps_the_previous_reading() {
        let mut s = SwapOutRate::new(SwapOutParams::default()).with_page_size(4096);
        let t0 = Instant::now();
        s.advance(Ok(0), t0);
        let failed = s.advance(Err("gone".into()), t0 + Duration::from_secs(1));
        assert_eq!(failed.reason(), Some("gone"));
        let next = s.advance(Ok(4), t0 + Duration::from_secs(4));
        assert_eq!(next.known().unwrap().bytes_per_second, 4096.0);
    }

    #[test]
    fn vmstat_fields_are_found_exactly_or_reported_missing() {
        assert_eq!(parse_vmstat(AFTER, "pswpin"), Ok(80446));
        // `pswp` is a prefix of both fields, not a field.
        assert!(parse_vmstat(AFTER, "pswp").unwrap_err().contains("no pswp"));
        assert!(
            parse_vmstat("pswpout x1\n", "pswpout")
                .unwrap_err()
                .contains("not a counter")
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_live_vmstat_gives_a_rate_on_the_second_sample() {
        let mut s = SwapOutRate::new(SwapOutParams::default());
        assert!(
            s.sample()
                .await
                .reason()
                .unwrap()
                .starts_with("first sample")
        );
        // Some time must pass on the monotonic clock; any amount will do.
        let before = Instant::now();
        while Instant::now() == before {
            std::hint::spin_loop();
        }
        let r = s.sample().await;
        let r = r.known().expect("a rate from /proc/vmstat");
        assert!(r.bytes_per_second >= 0.0 && r.page_size == page_size());
    }
}
