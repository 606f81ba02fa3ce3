//! Where launchgraph looks for things when it is not told: the documented per-platform
//! defaults for the units directory (and, later, the state directory and control socket).
//!
//! The command line (`--units`) wins, then the environment (`LAUNCHGRAPH_UNITS`, handled by the
//! CLI), then these defaults.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The units directory of the `.pkg` install on macOS.
pub const PKG_UNITS_DIR: &str = "/usr/local/etc/launchgraph/units";
/// The units directory on Linux.
pub(crate) const LINUX_UNITS_DIR: &str = "/etc/launchgraph/units";

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
pub(crate) fn homebrew_prefix(exe: &Path) -> Option<PathBuf> {
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

/// The control socket on macOS, where the daemon runs as root under launchd.
pub(crate) const MACOS_SOCKET: &str = "/var/run/launchgraph.sock";
/// The control socket of a Linux daemon running as root.
pub(crate) const LINUX_SYSTEM_SOCKET: &str = "/run/launchgraph/launchgraph.sock";
/// The socket's file name inside a per-user directory.
const SOCKET_FILE_NAME: &str = "launchgraph.sock";

/// The platform default control socket of the daemon.
///
/// - macOS: `/var/run/launchgraph.sock`;
/// - Linux (and others) as root: `/run/launchgraph/launchgraph.sock`;
/// - Linux as another user: `$XDG_RUNTIME_DIR/launchgraph.sock` when `XDG_RUNTIME_DIR` is set
///   to an absolute path, else `/tmp/launchgraph-<uid>/launchgraph.sock`.
///
/// The command line (`--socket PATH`) wins, then the environment (`LAUNCHGRAPH_SOCKET`,
/// handled by the CLI), then this default. The server creates the socket's directory when it
/// is missing, and refuses a directory that someone else could replace the socket in.
pub fn default_socket_path() -> PathBuf {
    socket_path_for(
        cfg!(target_os = "macos"),
        nix::unistd::geteuid().as_raw(),
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
    )
}

/// Where the CLI looks for the daemon when not told.
///
/// The same as [`default_socket_path`], except for a user other than root on Linux: there a
/// member of the admin group usually talks to the system daemon, so the per-user socket is
/// used only when it exists, and `/run/launchgraph/launchgraph.sock` otherwise.
pub fn default_client_socket_path() -> PathBuf {
    let own = default_socket_path();
    if cfg!(target_os = "macos") || own.symlink_metadata().is_ok() {
        own
    } else {
        PathBuf::from(LINUX_SYSTEM_SOCKET)
    }
}

/// The default control socket for a platform (`macos`), an effective uid and the value of
/// `XDG_RUNTIME_DIR`: the rules of [`default_socket_path`], as parameters so that every case
/// can be checked whoever runs the tests.
pub fn socket_path_for(macos: bool, euid: u32, xdg_runtime_dir: Option<&OsStr>) -> PathBuf {
    if macos {
        return PathBuf::from(MACOS_SOCKET);
    }
    if euid == 0 {
        return PathBuf::from(LINUX_SYSTEM_SOCKET);
    }
    // The XDG base directory rules say a relative value is invalid and must be ignored.
    match xdg_runtime_dir.map(Path::new) {
        Some(dir) if dir.is_absolute() => dir.join(SOCKET_FILE_NAME),
        _ => PathBuf::from(format!("/tmp/launchgraph-{euid}")).join(SOCKET_FILE_NAME),
    }
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
