//! The control socket's file: created safely, and removed when the server stops. The socket
//! file:
//! - is created with its final mode and group already set: it is bound inside a private
//!   (0700) directory next to its final path, given its mode and group there, and only then
//!   renamed into place, without replacing anything. Setting the mode with a `umask` around
//!   `bind` would be shorter, but the umask is process-wide, and other threads of the daemon
//!   create files at the same time;
//! - is `0600` (root, or the user running the daemon), or `0660` with the admin group as its
//!   group when one is configured;
//! - replaces a stale socket (one nobody listens on) but never a live one, nor anything that
//!   is not a socket;
//! - is removed when the server stops, unless another server has replaced it meanwhile.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

/// Why the control socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("launchgraph is already running: a daemon answers on {}", path.display())]
    AlreadyRunning { path: PathBuf },
    #[error("{} exists and is not a socket; it was left alone (remove it or choose another --socket)", path.display())]
    NotASocket { path: PathBuf },
    #[error("refusing to create the control socket in {}: {why}", dir.display())]
    UnsafeDirectory { dir: PathBuf, why: String },
    #[error("the admin group {group:?} does not exist")]
    UnknownGroup { group: String },
    #[error("the control socket path {} is too long: a unix socket path has at most {max} bytes, and binding needs {needed}", path.display())]
    PathTooLong {
        path: PathBuf,
        max: usize,
        needed: usize,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ControlError {
    pub(super) fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ControlError {
        let path = path.to_path_buf();
        move |source| ControlError::Io { what, path, source }
    }
}

/// Creates the socket's directory if missing, and refuses one where another user could
/// replace the socket with their own: it must belong to root or to us, and be writable by
/// nobody else unless sticky (as `/tmp` is).
pub(super) fn prepare_directory(dir: &Path) -> Result<(), ControlError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(ControlError::io("cannot create the directory", dir))?;
    }
    let meta = fs::metadata(dir).map_err(ControlError::io("cannot read the directory", dir))?;
    let unsafe_dir = |why: String| ControlError::UnsafeDirectory {
        dir: dir.to_path_buf(),
        why,
    };
    if !meta.is_dir() {
        return Err(unsafe_dir("it is not a directory".to_owned()));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(unsafe_dir(format!(
            "it belongs to uid {}, not to root or uid {euid}",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(unsafe_dir(format!(
            "others can write to it (mode {:04o}) and it is not sticky",
            mode & 0o7777
        )));
    }
    Ok(())
}

/// The longest socket path the platform takes, without its terminating NUL.
fn max_socket_path() -> usize {
    // SAFETY: `sockaddr_un` is plain old data, for which all zeroes is a valid value.
    let addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_path.len() - 1
}

/// A socket bound in a private directory next to its final path, with its final mode and
/// group already set. Dropping it removes what is left of the directory.
pub(super) struct Staged {
    dir: PathBuf,
    socket: PathBuf,
    pub(super) listener: Option<std::os::unix::net::UnixListener>,
}

impl Staged {
    /// `gid`: the admin group's, which the socket then belongs to.
    pub(super) fn create(
        parent: &Path,
        path: &Path,
        mode: u32,
        gid: Option<u32>,
    ) -> Result<Staged, ControlError> {
        // Short names, since a socket path is limited to about a hundred bytes.
        let dir = (0..16)
            .find_map(|_| {
                let name = format!(".lg{}", fastrand::u32(..));
                let dir = parent.join(name);
                match fs::DirBuilder::new().mode(0o700).create(&dir) {
                    Ok(()) => Some(Ok(dir)),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
                    Err(e) => Some(Err(e)),
                }
            })
            .unwrap_or_else(|| Err(io::Error::from(io::ErrorKind::AlreadyExists)))
            .map_err(ControlError::io(
                "cannot create a private directory to bind the control socket in",
                parent,
            ))?;
        let mut staged = Staged {
            socket: dir.join("s"),
            dir,
            listener: None,
        };
        let needed = staged.socket.as_os_str().len().max(path.as_os_str().len());
        if needed > max_socket_path() {
            return Err(ControlError::PathTooLong {
                path: path.to_path_buf(),
                max: max_socket_path(),
                needed,
            });
        }
        let listener = std::os::unix::net::UnixListener::bind(&staged.socket)
            .map_err(ControlError::io("cannot bind the control socket", path))?;
        // Registered with the runtime only in `serve`, which needs it non-blocking.
        listener.set_nonblocking(true).map_err(ControlError::io(
            "cannot configure the control socket",
            path,
        ))?;
        staged.listener = Some(listener);
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&staged.socket, None, Some(gid)).map_err(ControlError::io(
                "cannot give the admin group the control socket",
                path,
            ))?;
        }
        fs::set_permissions(&staged.socket, fs::Permissions::from_mode(mode)).map_err(
            ControlError::io("cannot set the mode of the control socket", path),
        )?;
        Ok(staged)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // After a successful rename only the empty directory is left.
        let _ = fs::remove_file(&self.socket);
        let _ = fs::remove_dir(&self.dir);
    }
}

/// The socket file the server created: removed on drop, if it is still ours.
#[derive(Debug)]
pub(super) struct SocketFile {
    pub(super) path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Another daemon may have replaced a socket it found stale; its file is not ours.
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino => {
                if let Err(error) = fs::remove_file(&self.path) {
                    warn!(path = %self.path.display(), %error, "cannot remove the control socket");
                }
            }
            _ => {}
        }
    }
}

/// What is at the socket's path now.
enum Found {
    Nothing,
    /// A socket nobody listens on.
    Stale,
    Live,
    NotASocket,
}

/// Moves the staged socket to `path`, replacing a stale socket but nothing else.
pub(super) fn place(staged: &Staged, path: &Path) -> Result<SocketFile, ControlError> {
    let meta = fs::symlink_metadata(&staged.socket)
        .map_err(ControlError::io("cannot read the control socket", path))?;
    // A few rounds, in case another daemon starting at the same moment takes the path
    // between the look and the rename; then the next look finds it live.
    for _ in 0..3 {
        match look(path)? {
            Found::Live => {
                return Err(ControlError::AlreadyRunning {
                    path: path.to_path_buf(),
                });
            }
            Found::NotASocket => {
                return Err(ControlError::NotASocket {
                    path: path.to_path_buf(),
                });
            }
            Found::Stale => match fs::remove_file(path) {
                Ok(()) => debug!(path = %path.display(), "removed a stale control socket"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ControlError::io("cannot remove the stale socket", path)(e)),
            },
            Found::Nothing => {}
        }
        match rename_noreplace(&staged.socket, path) {
            Ok(()) => {
                // The rename kept the inode, so this identifies the file we placed.
                return Ok(SocketFile {
                    path: path.to_path_buf(),
                    dev: meta.dev(),
                    ino: meta.ino(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(ControlError::io("cannot move the control socket to", path)(
                    e,
                ));
            }
        }
    }
    Err(ControlError::AlreadyRunning {
        path: path.to_path_buf(),
    })
}

/// Looks at the path without following a symbolic link, and asks a socket whether anyone
/// listens on it.
fn look(path: &Path) -> Result<Found, ControlError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => return Err(ControlError::io("cannot look at", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Ok(Found::NotASocket);
    }
    match probe(path) {
        Ok(()) => Ok(Found::Live),
        Err(e) => match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Ok(Found::Stale),
            // A full backlog: someone listens, but is slow to accept.
            Some(libc::EAGAIN) | Some(libc::EINPROGRESS) => Ok(Found::Live),
            Some(libc::ENOENT) => Ok(Found::Nothing),
            _ => Err(ControlError::io(
                "cannot tell whether a daemon listens on",
                path,
            )(e)),
        },
    }
}

/// Connects without blocking: a blocking connect to a live daemon whose backlog is full would
/// wait for it, possibly forever.
fn probe(path: &Path) -> io::Result<()> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType, connect, socket};
    let addr = SocketAddrUnix::new(path)?;
    let fd = socket(AddressFamily::UNIX, SocketType::STREAM, None)?;
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK)?;
    connect(&fd, &addr)?;
    Ok(())
}

/// Renames `from` to `to` unless `to` exists (then `AlreadyExists`), in one step.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    // renameat2(RENAME_NOREPLACE) on Linux, renameatx_np(RENAME_EXCL) on macOS.
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(io::Error::from)
    }
    // Elsewhere, a look then a rename: `place` has just seen nothing at `to`.
    #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
    {
        if to.symlink_metadata().is_ok() {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        fs::rename(from, to)
    }
}
