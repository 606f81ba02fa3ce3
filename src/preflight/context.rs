//! How preflight sees the host: the PATH launchd gives jobs, who launchgraph runs as, and the
//! user database (for home directories, hence `~/.npmrc`, and for permission checks).
//!
//! Everything host-specific that the checks read, besides the files themselves, comes through
//! [`PreflightContext`], so tests can describe a host without being one.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// The PATH launchd gives a job whose plist sets none: `default environment = { PATH =>
/// /usr/bin:/bin:/usr/sbin:/sbin }` in every `launchctl print` (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html; openclaw/openclaw#74944).
pub const LAUNCHD_DEFAULT_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";

/// One user entry, as far as preflight needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    pub home: PathBuf,
}

/// The user database.
pub trait Accounts: Send + Sync {
    fn by_name(&self, name: &str) -> Option<UserEntry>;
    fn by_uid(&self, uid: u32) -> Option<UserEntry>;
}

/// The host's user database (`getpwnam`, `getpwuid`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemAccounts;

impl Accounts for SystemAccounts {
    fn by_name(&self, name: &str) -> Option<UserEntry> {
        nix::unistd::User::from_name(name).ok().flatten().map(entry)
    }

    fn by_uid(&self, uid: u32) -> Option<UserEntry> {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(entry)
    }
}

fn entry(u: nix::unistd::User) -> UserEntry {
    UserEntry {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir,
    }
}

/// What preflight needs to know about the host.
#[derive(Clone)]
pub struct PreflightContext {
    /// The PATH a launchd job gets when its plist sets none. launchd's default unless an
    /// admin changed it with `launchctl config system|user path` (launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html).
    pub launchd_path: String,
    /// The effective uid launchgraph runs as: an `exec` unit without `user` runs as it.
    pub euid: u32,
    pub accounts: Arc<dyn Accounts>,
}

impl PreflightContext {
    /// This host: launchd's default PATH, our effective uid, the system user database.
    pub fn host() -> Self {
        Self {
            launchd_path: LAUNCHD_DEFAULT_PATH.to_owned(),
            euid: nix::unistd::geteuid().as_raw(),
            accounts: Arc::new(SystemAccounts),
        }
    }

    /// Whether launchgraph runs as root.
    pub(crate) fn running_as_root(&self) -> bool {
        self.euid == 0
    }

    /// A user given by name or, failing that, as a numeric uid.
    pub(crate) fn user(&self, name_or_uid: &str) -> Option<UserEntry> {
        self.accounts.by_name(name_or_uid).or_else(|| {
            name_or_uid
                .parse::<u32>()
                .ok()
                .and_then(|uid| self.accounts.by_uid(uid))
        })
    }
}

impl Default for PreflightContext {
    fn default() -> Self {
        Self::host()
    }
}

impl fmt::Debug for PreflightContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreflightContext")
            .field("launchd_path", &self.launchd_path)
            .field("euid", &self.euid)
            .finish_non_exhaustive()
    }
}
