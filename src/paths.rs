//! Where launchgraph looks for things when it is not told: the documented per-platform
//! defaults for the units directory (and, later, the state directory and control socket).
//!
//! The command line (`--units`) wins, then the environment (`LAUNCHGRAPH_UNITS`, handled by the
//! CLI), then these defaults.

use std::path::{Path, PathBuf};

/// The units directory of the `.pkg` install on macOS.
pub const PKG_UNITS_DIR: &str = "/usr/local/etc/launchgraph/units";
/// The units directory on Linux.
pub const LINUX_UNITS_DIR: &str = "/etc/launchgraph/units";

/// The platform default units directory.
///
/// - macOS, installed by Homebrew: `$(brew --prefix)/etc/launchgraph/units`, where the prefix
///   is found from the running binary (`<prefix>/bin/launchgraph` or
///   `<prefix>/Cellar/launchgraph/<version>/bin/launchgraph`, with `<prefix>/bin/brew` present);
/// - macOS otherwise (the `.pkg`): `/usr/local/etc/launchgraph/units`;
/// - Linux and others: `/etc/launchgraph/units`.
pub fn default_units_dir() -> PathBuf {
    if cfg!(target_os = "macos") {
        let exe = std::env::current_exe().ok();
        match exe.as_deref().and_then(homebrew_prefix) {
            Some(prefix) => prefix.join("etc/launchgraph/units"),
            None => PathBuf::from(PKG_UNITS_DIR),
        }
    } else {
        PathBuf::from(LINUX_UNITS_DIR)
    }
}

/// The Homebrew prefix a binary was installed under, if any.
pub fn homebrew_prefix(exe: &Path) -> Option<PathBuf> {
    let bin = exe.parent()?;
    let mut candidate = bin.parent()?;
    // <prefix>/Cellar/<formula>/<version>/bin/launchgraph
    if let Some(cellar) = candidate.parent().and_then(Path::parent)
        && cellar.file_name().is_some_and(|n| n == "Cellar")
    {
        candidate = cellar.parent()?;
    }
    candidate
        .join("bin/brew")
        .exists()
        .then(|| candidate.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homebrew_prefix_from_bin_and_cellar_layouts() {
        let root = tempfile::tempdir().unwrap();
        let prefix = root.path();
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        std::fs::write(prefix.join("bin/brew"), "").unwrap();
        assert_eq!(
            homebrew_prefix(&prefix.join("bin/launchgraph")).as_deref(),
            Some(prefix)
        );
        assert_eq!(
            homebrew_prefix(&prefix.join("Cellar/launchgraph/0.1.0/bin/launchgraph")).as_deref(),
            Some(prefix)
        );
        let plain = tempfile::tempdir().unwrap();
        assert_eq!(homebrew_prefix(&plain.path().join("bin/launchgraph")), None);
    }
}
