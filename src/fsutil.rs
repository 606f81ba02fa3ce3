//! Files the daemon writes: always atomically, so a crash leaves the old content or the new,
//! never a torn file. And opening a file to read it without blocking on what it turns out
//! to be.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `data` to `path` atomically: a temporary file in the same directory is written and
/// synced, renamed over `path`, and the directory is synced. Creates the directory if needed.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_via_rename(path, data, mode, true)
}

/// Like [`write_atomic`] (readers see the old content or the new, never a torn file) but
/// without syncing to disk: for records that lose their meaning with a power loss anyway.
pub fn replace(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_via_rename(path, data, mode, false)
}

fn write_via_rename(path: &Path, data: &[u8], mode: u32, sync: bool) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no directory", path.display())))?;
    fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if sync {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Opens `path` for reading without blocking on it (a FIFO put where a file was expected
/// never stalls the caller) and checks what was opened with `fstat`: `Ok(None)` unless it
/// is a regular file. Read it with a bound (`Read::take`): it may grow after the check.
pub fn open_regular(path: &Path) -> io::Result<Option<(File, fs::Metadata)>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    Ok(meta.is_file().then_some((file, meta)))
}
