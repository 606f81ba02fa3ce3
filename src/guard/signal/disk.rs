//! `disk-free`: the share, and the bytes, of the volume holding a path that an unprivileged
//! writer may still use.
//!
//! Free means `f_bavail` (blocks available to unprivileged users), over `f_blocks`, never
//! `f_bfree`: `f_bfree` also counts the blocks a file system reserves for root (5% by default
//! on ext4), which Ollama, running as its own user, cannot write to. On a 128 MiB ext4 with
//! `-m 5` after writing 100 MiB, `f_bavail / f_blocks` is 4.8% while `f_bfree / f_blocks` is
//! 12.6%: the two straddle a 12% line. This is what `df` calls "Available".
//!
//! - Linux: `statvfs(3)`; the block unit is `f_frsize`.
//! - macOS: `statfs(2)`, whose counts are 64-bit (`statvfs` there has 32-bit counts); the
//!   block unit is `f_bsize`. On APFS, volumes of one container share their free space, and
//!   Finder's "available" adds purgeable space (local snapshots, caches the system may evict)
//!   that `f_bavail` leaves out (<https://eclecticlight.co/2021/12/04/explainer-disk-free-space/>):
//!   this sampler reports the conservative figure.
//!
//! The call runs on a blocking thread with a deadline, because a path on a hung network
//! mount blocks `statfs` indefinitely; past the deadline the sample is unknown.

use std::path::PathBuf;
use std::time::Duration;

use super::{Quantity, Reading, Sample, Signal, Unit};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFreeParams {
    /// Any path on the volume to measure (Ollama's models directory, a log directory).
    pub path: PathBuf,
    /// How long the file system may take to answer.
    pub deadline: Duration,
}

impl DiskFreeParams {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            deadline: Duration::from_secs(5),
        }
    }
}

/// The counts the file system reported, in its own block unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockCounts {
    pub block_size: u64,
    pub blocks: u64,
    /// Free blocks, root's reserve included.
    pub free: u64,
    /// Free blocks an unprivileged writer may use.
    pub available: u64,
}

/// One reading: the share and the bytes available.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskFreeReading {
    /// `available / blocks`, 0 to 1.
    pub ratio: f64,
    pub available_bytes: u64,
    pub total_bytes: u64,
    /// The share root's reserve included (`f_bfree`), for people comparing with monit or
    /// older `df` readings; never compared with thresholds.
    pub ratio_including_reserved: f64,
}

impl Reading for DiskFreeReading {
    fn quantity(&self) -> Quantity {
        Quantity::new(self.ratio, Unit::Ratio)
    }
}

impl DiskFreeReading {
    /// The bytes available, for thresholds written in bytes.
    pub fn available(&self) -> Quantity {
        Quantity::new(self.available_bytes as f64, Unit::Bytes)
    }
}

/// The reading from a file system's counts. A file system reporting no blocks (some
/// pseudo file systems) has no share to speak of.
pub fn disk_free(c: BlockCounts) -> Result<DiskFreeReading, String> {
    if c.blocks == 0 || c.block_size == 0 {
        return Err("the file system reports no blocks (a pseudo file system?)".into());
    }
    // Available can exceed the total only on a file system that lies; the share stays ≤ 1.
    let ratio = (c.available as f64 / c.blocks as f64).min(1.0);
    Ok(DiskFreeReading {
        ratio,
        available_bytes: c.available.saturating_mul(c.block_size),
        total_bytes: c.blocks.saturating_mul(c.block_size),
        ratio_including_reserved: (c.free as f64 / c.blocks as f64).min(1.0),
    })
}

/// The `disk-free` sampler.
#[derive(Debug)]
pub struct DiskFree {
    params: DiskFreeParams,
}

impl DiskFree {
    pub fn new(params: DiskFreeParams) -> Self {
        Self { params }
    }

    /// The path whose volume it measures.
    pub fn path(&self) -> &std::path::Path {
        &self.params.path
    }
}

impl Signal for DiskFree {
    type Reading = DiskFreeReading;

    async fn sample(&mut self) -> Sample<DiskFreeReading> {
        let path = self.params.path.clone();
        let call = tokio::task::spawn_blocking(move || block_counts(&path));
        let shown = self.params.path.display();
        match tokio::time::timeout(self.params.deadline, call).await {
            Err(_) => Sample::unknown(format!(
                "{shown}: the file system gave no answer within {}",
                humantime::format_duration(self.params.deadline)
            )),
            Ok(Err(e)) => Sample::unknown(format!("{shown}: statfs did not finish: {e}")),
            Ok(Ok(Err(e))) => Sample::unknown(format!("{shown}: statfs: {e}")),
            Ok(Ok(Ok(counts))) => match disk_free(counts) {
                Ok(r) => Sample::Known(r),
                Err(reason) => Sample::unknown(format!("{shown}: {reason}")),
            },
        }
    }
}

#[cfg(not(target_os = "macos"))]
fn block_counts(path: &std::path::Path) -> std::io::Result<BlockCounts> {
    let s = rustix::fs::statvfs(path)?;
    Ok(BlockCounts {
        block_size: s.f_frsize,
        blocks: s.f_blocks,
        free: s.f_bfree,
        available: s.f_bavail,
    })
}

#[cfg(target_os = "macos")]
fn block_counts(path: &std::path::Path) -> std::io::Result<BlockCounts> {
    let s = rustix::fs::statfs(path)?;
    Ok(BlockCounts {
        block_size: u64::from(s.f_bsize),
        blocks: s.f_blocks,
        free: s.f_bfree,
        available: s.f_bavail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_is_available_over_total_not_free_over_total() {
        // statvfs of a 128 MiB ext4 made with `mkfs.ext4 -m 5`, after 100 MiB written
        // (Linux 6.18): f_bavail is 4.8% of the blocks, f_bfree 12.6%; `df` said 95% used.
        let r = disk_free(BlockCounts {
            block_size: 1024,
            blocks: 117_203,
            free: 14_788,
            available: 5_614,
        })
        .unwrap();
        assert!((r.ratio - 0.048).abs() < 0.001, "{}", r.ratio);
        assert!((r.ratio_including_reserved - 0.126).abs() < 0.001);
        assert_eq!(r.available_bytes, 5_614 * 1024);
        assert_eq!(r.quantity(), Quantity::new(r.ratio, Unit::Ratio));
        assert_eq!(r.available().unit, Unit::Bytes);
    }

    #[test]
    fn no_blocks_is_no_share() {
        let none = BlockCounts {
            block_size: 4096,
            blocks: 0,
            free: 0,
            available: 0,
        };
        assert!(disk_free(none).is_err());
    }

    #[tokio::test]
    async fn the_volume_of_a_real_path_is_measured_and_a_missing_path_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskFree::new(DiskFreeParams::new(dir.path()))
            .sample()
            .await;
        let r = s.known().expect("statvfs of a temporary directory");
        assert!(r.ratio > 0.0 && r.ratio <= 1.0 && r.total_bytes > 0);

        let gone = dir.path().join("missing");
        let s = DiskFree::new(DiskFreeParams::new(&gone)).sample().await;
        assert!(s.reason().unwrap().contains("missing"), "{s:?}");
    }
}
