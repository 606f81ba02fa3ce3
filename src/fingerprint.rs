//! Fingerprints: what a unit ran the last time it became ready (resolved paths, sizes,
//! modification times, content hashes, the npm package version, node's version), stored per
//! unit, and the drift between two of them in plain sentences.
//!
//! It owns taking ([`take`]), storing atomically ([`store`]), loading ([`load`]) and comparing
//! ([`drift`]) fingerprints, and where they live ([`default_state_dir`]). What to fingerprint
//! comes from preflight's [`Target`](crate::preflight::Target); when to take one (after a
//! unit becomes ready) and when to show drift (`check`, the daemon after a failed start) is
//! the caller's business. The one child it runs, `<node> --version`, is a
//! [`BoundedCommand`](crate::process::BoundedCommand), run as the job's user.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::preflight::{self, PreflightContext};
use crate::process::{BoundedCommand, Capture, job_credentials};
use crate::unit::Unit;

/// The state directory of the `.pkg` install on macOS.
pub const PKG_STATE_DIR: &str = "/usr/local/var/launchgraph";
/// The state directory on Linux.
pub(crate) const LINUX_STATE_DIR: &str = "/var/lib/launchgraph";

/// A stored fingerprint is a few KiB; a file larger than this is not one.
const MAX_STORED_BYTES: u64 = 1024 * 1024;

/// Files up to this size are hashed; larger ones (node itself) are known by size and mtime.
const HASH_LIMIT: u64 = 8 * 1024 * 1024;

/// The bound on `<node> --version`.
const NODE_VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of `<node> --version`'s output read: one short line (`v22.11.0`) is expected.
const NODE_VERSION_BYTES: usize = 4096;

/// What a file is to the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    #[serde(rename = "plist")]
    Plist,
    #[serde(rename = "program")]
    Program,
    #[serde(rename = "interpreter")]
    Interpreter,
    #[serde(rename = "node")]
    Node,
    #[serde(rename = "entry")]
    Entry,
    #[serde(rename = "package.json")]
    PackageJson,
}

impl Role {
    /// The order of files in a fingerprint and of sentences in a drift.
    pub(crate) const ALL: [Role; 6] = [
        Role::Plist,
        Role::Program,
        Role::Interpreter,
        Role::Node,
        Role::Entry,
        Role::PackageJson,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Plist => "plist",
            Role::Program => "program",
            Role::Interpreter => "interpreter",
            Role::Node => "node",
            Role::Entry => "entry",
            Role::PackageJson => "package.json",
        }
    }
}

/// What was true of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFacts {
    pub role: Role,
    /// As written in the plist or unit.
    pub path: PathBuf,
    /// Where it resolved to, symlinks followed; `None` when it does not exist.
    pub realpath: Option<PathBuf>,
    pub exists: bool,
    pub size: Option<u64>,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: Option<i64>,
    /// Hex SHA-256 of the content, for files up to 8 MiB.
    pub sha256: Option<String>,
}

/// What a unit ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub unit: String,
    /// RFC 3339, UTC, whole seconds.
    pub recorded_at: String,
    pub files: Vec<FileFacts>,
    /// npm package name and version, from the nearest package.json (with a name) above the
    /// entry script.
    pub package: Option<(String, String)>,
    /// `<node> --version`, e.g. `v24.1.0`; `None` when there is no node or it gave no answer
    /// in time.
    pub node_version: Option<String>,
}

impl Fingerprint {
    pub fn file(&self, role: Role) -> Option<&FileFacts> {
        self.files.iter().find(|f| f.role == role)
    }
}

/// Fingerprints what a start of `unit` executes, as preflight resolves it.
pub async fn take(unit: &Unit, ctx: &PreflightContext) -> Fingerprint {
    let (mut fp, target) = {
        let (u, c) = (unit.clone(), ctx.clone());
        // Reading and hashing files blocks.
        match tokio::task::spawn_blocking(move || take_files(&u, &c)).await {
            Ok(taken) => taken,
            Err(_) => (empty(unit), preflight::Target::default()),
        }
    };
    fp.node_version = take_node_version(&target, ctx).await;
    fp
}

/// A fingerprint of `unit` with no facts, when they could not be taken.
fn empty(unit: &Unit) -> Fingerprint {
    Fingerprint {
        unit: unit.name.to_string(),
        recorded_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        files: Vec::new(),
        package: None,
        node_version: None,
    }
}

/// The part of [`take`] that reads files, and blocks: everything but node's version, and the
/// target it was taken of. When [`asks_node`] says so, [`take_node_version`] completes it.
pub(crate) fn take_files(unit: &Unit, ctx: &PreflightContext) -> (Fingerprint, preflight::Target) {
    let target = preflight::target(unit, ctx);
    let (files, package) = file_facts(&target);
    let fp = Fingerprint {
        files,
        package,
        ..empty(unit)
    };
    (fp, target)
}

/// Whether a fingerprint of `target` includes `<node> --version`.
pub(crate) fn asks_node(target: &preflight::Target) -> bool {
    target.node.as_ref().is_some_and(|node| node.exists())
}

/// `<node> --version` for `target`, if it has a node ([`asks_node`]).
pub(crate) async fn take_node_version(
    target: &preflight::Target,
    ctx: &PreflightContext,
) -> Option<String> {
    match &target.node {
        Some(node) if asks_node(target) => node_version(node, target, ctx).await,
        _ => None,
    }
}

/// Whether two fingerprints say the same of what ran: all but when they were recorded. A
/// start that ran the same as last time has nothing new to store.
pub(crate) fn same_apart_from_time(a: &Fingerprint, b: &Fingerprint) -> bool {
    let Fingerprint {
        unit,
        recorded_at: _,
        files,
        package,
        node_version,
    } = a;
    *unit == b.unit && *files == b.files && *package == b.package && *node_version == b.node_version
}

type Package = Option<(String, String)>;

fn file_facts(t: &preflight::Target) -> (Vec<FileFacts>, Package) {
    let package = t.entry.as_deref().and_then(preflight::package_of);
    // One file, one role: a program that is node itself is recorded as node, and so is an
    // interpreter that is node. When the program is node, whatever runs node (a wrapper
    // script's `#!` line) is not part of what the job runs.
    let program = t.program.clone().filter(|p| Some(p) != t.node.as_ref());
    let interpreter = t
        .interpreter
        .clone()
        .filter(|p| Some(p) != t.node.as_ref() && t.program != t.node);
    let files = [
        (Role::Plist, t.plist.clone()),
        (Role::Program, program),
        (Role::Interpreter, interpreter),
        (Role::Node, t.node.clone()),
        (Role::Entry, t.entry.clone()),
        (
            Role::PackageJson,
            package.as_ref().map(|p| p.manifest.clone()),
        ),
    ]
    .into_iter()
    .filter_map(|(role, path)| path.map(|p| facts(role, &p)))
    .collect();
    let package = package.and_then(|p| Some((p.name, p.version?)));
    (files, package)
}

fn facts(role: Role, path: &Path) -> FileFacts {
    let meta = fs::metadata(path).ok();
    let sha256 = meta
        .as_ref()
        .filter(|m| m.is_file() && m.len() <= HASH_LIMIT)
        .and_then(|_| sha256_file(path).ok().flatten());
    FileFacts {
        role,
        path: path.to_path_buf(),
        realpath: path.canonicalize().ok(),
        exists: meta.is_some(),
        size: meta.as_ref().map(|m| m.len()),
        mtime: meta.as_ref().map(|m| m.mtime()),
        sha256,
    }
}

/// What identifies a file's content without reading it: device, inode, size, and the
/// modification and change times to the nanosecond. Any write changes `ctime`.
type FileKey = (u64, u64, u64, (i64, i64), (i64, i64));

/// Hashes already computed, by [`FileKey`]: many units run the same program, and a unit
/// becomes ready again and again with the same files.
static HASHES: Mutex<Option<HashMap<FileKey, String>>> = Mutex::new(None);

/// More files than any configuration runs; past it the cache starts over.
const HASHES_KEPT: usize = 4096;

/// A file changed more recently than this is hashed but not remembered: file times move in
/// clock ticks, so a second write within the tick of the first may leave every time as it
/// was. Git's index has the same problem and answer ("racy git",
/// git/git:Documentation/technical/racy-git.txt).
const HASH_SETTLED_AFTER: Duration = Duration::from_secs(2);

/// The hash of a regular file of at most [`HASH_LIMIT`] bytes; `None` when it is not one
/// (anymore: it was checked before, and may have changed since).
fn sha256_file(path: &Path) -> io::Result<Option<String>> {
    let Some((file, meta)) = crate::fsutil::open_regular(path)? else {
        return Ok(None);
    };
    if meta.len() > HASH_LIMIT {
        return Ok(None);
    }
    let key: FileKey = (
        meta.dev(),
        meta.ino(),
        meta.len(),
        (meta.mtime(), meta.mtime_nsec()),
        (meta.ctime(), meta.ctime_nsec()),
    );
    let cached = |map: &Option<HashMap<FileKey, String>>| map.as_ref()?.get(&key).cloned();
    if let Some(hash) = cached(&HASHES.lock().unwrap_or_else(PoisonError::into_inner)) {
        return Ok(Some(hash));
    }
    let hash = sha256_read(file)?;
    let changed = UNIX_EPOCH
        + Duration::new(
            u64::try_from(meta.ctime()).unwrap_or(0),
            u32::try_from(meta.ctime_nsec()).unwrap_or(0),
        );
    let settled = SystemTime::now()
        .duration_since(changed)
        .is_ok_and(|age| age >= HASH_SETTLED_AFTER);
    if let Some(hash) = hash.as_ref().filter(|_| settled) {
        let mut map = HASHES.lock().unwrap_or_else(PoisonError::into_inner);
        let map = map.get_or_insert_with(HashMap::new);
        if map.len() >= HASHES_KEPT {
            map.clear();
        }
        map.insert(key, hash.clone());
    }
    Ok(hash)
}

/// The hash of what `file` holds, if it is at most [`HASH_LIMIT`] bytes.
fn sha256_read(file: fs::File) -> io::Result<Option<String>> {
    let mut f = file.take(HASH_LIMIT + 1);
    let mut hasher = Sha256::new();
    let mut read = 0u64;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        hasher.update(&buf[..n]);
    }
    if read > HASH_LIMIT {
        return Ok(None);
    }
    Ok(Some(
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    ))
}

/// `<node> --version`, run as the job would run it: the job's PATH and HOME, and, when
/// launchgraph is root, the job's user and groups, so a plist a user can edit never makes root
/// run a program the job itself would not. Bounded by [`NODE_VERSION_TIMEOUT`]; its process
/// group is killed when the bound passes.
async fn node_version(
    node: &Path,
    target: &preflight::Target,
    ctx: &PreflightContext,
) -> Option<String> {
    let mut cmd = BoundedCommand::new(node, NODE_VERSION_TIMEOUT)
        .arg("--version")
        .env("PATH", &target.path_var)
        .current_dir("/")
        .stdout(Capture::Head(NODE_VERSION_BYTES));
    if let Some(home) = &target.home {
        cmd = cmd.env("HOME", home);
    }
    if ctx.running_as_root()
        && let Some(uid) = target.uid.filter(|u| *u != 0)
    {
        match job_credentials(uid, target.gid) {
            Ok(creds) => cmd = cmd.credentials(Some(creds)),
            Err(e) => {
                // Never as root instead.
                tracing::debug!(node = %node.display(), uid, error = %e, "cannot run node --version as the job's user");
                return None;
            }
        }
    }
    match cmd.run().await {
        Ok(out) if out.timed_out => {
            tracing::debug!(node = %node.display(), "node --version gave no answer in time");
            None
        }
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().next()?.trim();
            (!line.is_empty() && line.len() <= 64).then(|| line.to_owned())
        }
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(node = %node.display(), error = %e, "cannot run node --version");
            None
        }
    }
}

/// Unit names are file stems, but a name from elsewhere must not leave the directory.
fn file_for(state_dir: &Path, unit: &str) -> io::Result<PathBuf> {
    if unit.is_empty() || unit.starts_with('.') || unit.contains('/') || unit.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{unit:?} is not a unit name"),
        ));
    }
    Ok(state_dir.join("fingerprints").join(format!("{unit}.json")))
}

/// Stores `fp` as `<state_dir>/fingerprints/<unit>.json`, atomically: a temporary file in
/// the same directory is written and synced, renamed over the old one, and the directory is
/// synced, so a crash leaves the old fingerprint or the new one, never a torn file.
pub fn store(state_dir: &Path, fp: &Fingerprint) -> io::Result<()> {
    let path = file_for(state_dir, &fp.unit)?;
    let mut json = serde_json::to_vec_pretty(fp).map_err(io::Error::other)?;
    json.push(b'\n');
    crate::fsutil::write_atomic(&path, &json, 0o644)
}

/// The stored fingerprint of `unit`, `None` if there is none.
pub fn load(state_dir: &Path, unit: &str) -> io::Result<Option<Fingerprint>> {
    let path = file_for(state_dir, unit)?;
    let file = match crate::fsutil::open_regular(&path) {
        Ok(Some((file, _))) => file,
        Ok(None) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a regular file", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    file.take(MAX_STORED_BYTES + 1).read_to_end(&mut text)?;
    if text.len() as u64 > MAX_STORED_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: more than {MAX_STORED_BYTES} bytes, not a fingerprint",
                path.display()
            ),
        ));
    }
    serde_json::from_slice(&text).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a fingerprint: {e}", path.display()),
        )
    })
}

fn short(sha: &str) -> String {
    format!("{}…", &sha[..sha.len().min(8)])
}

fn when(secs: i64) -> String {
    let t = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// How a file is named in a sentence: the plist by its file name (its directory says
/// nothing new), the rest by full path.
fn shown(f: &FileFacts) -> String {
    match f.role {
        Role::Plist => f.path.file_name().map_or_else(
            || f.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        _ => f.path.display().to_string(),
    }
}

/// What changed from `old` to `new`, one plain sentence per change, e.g.
/// `openclaw 2026.9.6 -> 2026.10.1`, `node /opt/homebrew/Cellar/node/25.5.0/bin/node no
/// longer exists`, `node v24.1.0 -> v25.0.0`, `plist ai.openclaw.gateway.plist changed
/// (sha256 ab12cd34… -> 9f8e7d6c…)`, `program /x now resolves to /y`. Empty: no drift.
pub fn drift(old: &Fingerprint, new: &Fingerprint) -> Vec<String> {
    let mut out = Vec::new();
    let package_changed = old.package != new.package;
    match (&old.package, &new.package) {
        (Some((on, ov)), Some((nn, nv))) if on == nn && ov != nv => {
            out.push(format!("{on} {ov} -> {nv}"));
        }
        (Some((on, ov)), Some((nn, nv))) if on != nn => {
            out.push(format!("package {on} {ov} -> {nn} {nv}"));
        }
        (Some((n, v)), None) => out.push(format!("package {n} {v} is no longer found")),
        (None, Some((n, v))) => out.push(format!("package {n} {v} is now found")),
        _ => {}
    }
    for role in Role::ALL {
        let r = role.as_str();
        match (old.file(role), new.file(role)) {
            (Some(o), Some(n)) if o.path != n.path => {
                let mut s = format!("{r} {} -> {}", o.path.display(), n.path.display());
                if !n.exists {
                    s.push_str(", which does not exist");
                }
                out.push(s);
            }
            (Some(o), Some(n)) => {
                if o.exists && !n.exists {
                    out.push(format!("{r} {} no longer exists", shown(o)));
                } else if !o.exists && n.exists {
                    out.push(format!("{r} {} exists again", shown(n)));
                } else if o.exists {
                    file_drift(o, n, role == Role::PackageJson && package_changed, &mut out);
                }
            }
            (Some(o), None) => out.push(format!("{r} {} is no longer used", shown(o))),
            (None, Some(n)) => out.push(format!("{r} {} is now used", shown(n))),
            (None, None) => {}
        }
        if role == Role::Node {
            match (&old.node_version, &new.node_version) {
                (Some(a), Some(b)) if a != b => out.push(format!("node {a} -> {b}")),
                (Some(a), None) if new.file(Role::Node).is_some_and(|f| f.exists) => {
                    out.push(format!("node {a} -> unknown (`--version` gave no answer)"));
                }
                _ => {}
            }
        }
    }
    out
}

/// The drift of one existing file at one path.
fn file_drift(o: &FileFacts, n: &FileFacts, content_expected: bool, out: &mut Vec<String>) {
    let r = o.role.as_str();
    if let (Some(a), Some(b)) = (&o.realpath, &n.realpath)
        && a != b
    {
        // Another file now: its size, time and hash differ as a matter of course.
        out.push(format!("{r} {} now resolves to {}", shown(o), b.display()));
        return;
    }
    if content_expected {
        return;
    }
    match (&o.sha256, &n.sha256) {
        (Some(a), Some(b)) if a != b => {
            out.push(format!(
                "{r} {} changed (sha256 {} -> {})",
                shown(o),
                short(a),
                short(b)
            ));
        }
        (Some(_), Some(_)) => {}
        _ if o.size != n.size => {
            let size = |s: Option<u64>| s.map_or("?".to_owned(), |s| s.to_string());
            out.push(format!(
                "{r} {} changed (size {} -> {} bytes)",
                shown(o),
                size(o.size),
                size(n.size)
            ));
        }
        _ if o.mtime != n.mtime => {
            let t = |m: Option<i64>| m.map_or("?".to_owned(), when);
            out.push(format!(
                "{r} {} changed (modified {} -> {})",
                shown(o),
                t(o.mtime),
                t(n.mtime)
            ));
        }
        _ => {}
    }
}

/// Where launchgraph keeps its state (fingerprints under `fingerprints/`):
///
/// - macOS, installed by Homebrew: `$(brew --prefix)/var/launchgraph`, the prefix found from
///   the running binary as for the units directory ([`crate::paths::homebrew_prefix`]);
/// - macOS otherwise (the `.pkg`): `/usr/local/var/launchgraph`;
/// - Linux and others, as root: `/var/lib/launchgraph`;
/// - Linux and others, as another user (a foreground supervisor of one's own):
///   `$XDG_STATE_HOME/launchgraph`, else `~/.local/state/launchgraph`.
pub fn default_state_dir() -> PathBuf {
    if cfg!(target_os = "macos") {
        let exe = std::env::current_exe().ok();
        match exe.as_deref().and_then(crate::paths::homebrew_prefix) {
            Some(prefix) => prefix.join("var/launchgraph"),
            None => PathBuf::from(PKG_STATE_DIR),
        }
    } else if nix::unistd::geteuid().is_root() {
        PathBuf::from(LINUX_STATE_DIR)
    } else if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        PathBuf::from(xdg).join("launchgraph")
    } else if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        PathBuf::from(home).join(".local/state/launchgraph")
    } else {
        PathBuf::from(LINUX_STATE_DIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(role: Role, path: &str, sha: Option<&str>) -> FileFacts {
        FileFacts {
            role,
            path: path.into(),
            realpath: Some(path.into()),
            exists: true,
            size: Some(1),
            mtime: Some(0),
            sha256: sha.map(Into::into),
        }
    }

    fn fp(files: Vec<FileFacts>) -> Fingerprint {
        Fingerprint {
            unit: "u".into(),
            recorded_at: "2026-01-01T00:00:00Z".into(),
            files,
            package: None,
            node_version: None,
        }
    }

    #[test]
    fn no_drift_between_equal_fingerprints() {
        let a = fp(vec![file(Role::Plist, "/L/x.plist", Some("ab"))]);
        assert!(drift(&a, &a.clone()).is_empty());
    }

    #[test]
    fn roles_appearing_and_going() {
        let a = fp(vec![file(Role::Interpreter, "/usr/bin/node", None)]);
        let b = fp(vec![file(Role::Program, "/x", None)]);
        assert_eq!(
            drift(&a, &b),
            [
                "program /x is now used",
                "interpreter /usr/bin/node is no longer used"
            ]
        );
    }

    #[test]
    fn size_and_mtime_for_unhashed_files() {
        let a = fp(vec![file(Role::Node, "/n", None)]);
        let mut b = a.clone();
        b.files[0].mtime = Some(60);
        assert_eq!(
            drift(&a, &b),
            ["node /n changed (modified 1970-01-01T00:00:00Z -> 1970-01-01T00:01:00Z)"]
        );
        b.files[0].size = Some(2);
        assert_eq!(drift(&a, &b), ["node /n changed (size 1 -> 2 bytes)"]);
    }

    #[test]
    fn the_time_alone_is_no_difference() {
        let a = fp(vec![file(Role::Program, "/x", Some("ab"))]);
        let mut b = a.clone();
        b.recorded_at = "2026-02-01T00:00:00Z".into();
        assert!(same_apart_from_time(&a, &b));
        b.files[0].sha256 = Some("cd".into());
        assert!(!same_apart_from_time(&a, &b));
        let mut c = a.clone();
        c.node_version = Some("v24.1.0".into());
        assert!(!same_apart_from_time(&a, &c));
    }

    fn sha256_of(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A file rewritten at once, to the same size, within the same clock tick (so possibly
    /// with the same times): its new hash, not a remembered one.
    #[test]
    fn a_file_rewritten_at_once_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("program");
        fs::write(&path, b"one").unwrap();
        assert_eq!(sha256_file(&path).unwrap().unwrap(), sha256_of(b"one"));
        fs::write(&path, b"two").unwrap();
        assert_eq!(sha256_file(&path).unwrap().unwrap(), sha256_of(b"two"));
    }

    /// A file that has not changed for a while is hashed once and remembered.
    #[test]
    fn a_settled_file_is_remembered() {
        let path = Path::new("/bin/sh");
        let meta = fs::metadata(path).unwrap();
        let first = sha256_file(path).unwrap().unwrap();
        let key: FileKey = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            (meta.mtime(), meta.mtime_nsec()),
            (meta.ctime(), meta.ctime_nsec()),
        );
        let map = HASHES.lock().unwrap();
        assert_eq!(map.as_ref().and_then(|m| m.get(&key)), Some(&first));
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        let dir = Path::new("/tmp/x");
        assert!(file_for(dir, "../etc").is_err());
        assert!(file_for(dir, "a/b").is_err());
        assert!(file_for(dir, "gateway").is_ok());
    }
}
