//! Snapshots: one gzipped tarball of what a host runs, taken before a change window, so that
//! what ran before it can be read (and put back by hand) after it.
//!
//! This module owns what goes into a snapshot and how it is written: the unit files (and the
//! check errors when they are invalid), the plists the units reference, each unit's resolved
//! environment, the stored fingerprints, the daemon's live status, Ollama's version and model
//! list, and OpenClaw's `doctor --json` report; the redaction of secrets in all of them; the
//! archive, written atomically under `<state>/snapshots/`; and listing the snapshots there.
//! It restores nothing and prints nothing: the CLI decides what to show.
//!
//! A snapshot is always written when the state directory is writable: whatever cannot be
//! collected (no daemon, no Ollama, no OpenClaw, a missing plist) becomes a warning, in the
//! returned [`Snapshot`] and in the archive's `manifest.json`. Only failing to write the
//! archive itself is an error, and then no file is left behind. The layout and the redaction
//! rules are documented in docs/snapshot.md.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value as Json, json};

use crate::compile::compile_dir;
use crate::control::client::{self, ClientError};
use crate::control::protocol::{Request, Response};
use crate::preflight::{self, PreflightContext};
use crate::process::{
    BoundedCommand, BoundedError, Capture, job_credentials, plan_credentials, unit_environment,
};
use crate::unit::{CANONICAL_PATH, ExecSpec, LaunchdSpec, Runner, Unit};

/// Where Ollama listens unless told otherwise: its own default bind address.
pub const DEFAULT_OLLAMA: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 11434));

/// The bound on each thing a snapshot asks of another process: the daemon's status, Ollama's
/// two endpoints together, `openclaw doctor --json`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// What a secret's value is replaced by.
pub const REDACTED: &str = "<redacted>";

/// A variable or key whose name contains one of these (in any case) holds a secret.
const SECRET_WORDS: [&str; 4] = ["TOKEN", "KEY", "SECRET", "PASSWORD"];

/// Secret values at least this long are also searched for, and redacted, everywhere else in
/// the snapshot (a token echoed in a doctor report, passed on a command line). Shorter ones
/// would match innocent text (a port number, a pid); they are redacted where their key is.
const MIN_SEARCHED_SECRET: usize = 6;

/// Snapshot files are `<PREFIX><stamp>[-<n>]<SUFFIX>`.
const PREFIX: &str = "launchgraph-snapshot-";
const SUFFIX: &str = ".tar.gz";

/// How many names one second may give (`…Z.tar.gz`, `…Z-1.tar.gz`, …) before giving up.
const MAX_NAMES_PER_SECOND: u32 = 1000;

/// Unit files, plists and env files larger than this are not what launchgraph reads; they are
/// left out with a warning rather than filling the archive.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The most of an Ollama answer that is kept (a model list is a few KiB per model).
const MAX_OLLAMA_BYTES: usize = 8 * 1024 * 1024;

/// The most of `openclaw doctor --json`'s output that is kept.
const MAX_DOCTOR_BYTES: usize = 16 * 1024 * 1024;

/// How much of the doctor's stderr (its end) is kept for a warning.
const MAX_STDERR_BYTES: usize = 16 * 1024;

/// What to snapshot and where.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// The units directory, valid or not.
    pub units_dir: PathBuf,
    /// The state directory: fingerprints are read from `<state>/fingerprints/`, the snapshot
    /// is written to `<state>/snapshots/`.
    pub state_dir: PathBuf,
    /// The daemon's control socket, asked for the live status. `None`: not asked (a warning
    /// says so).
    pub socket: Option<PathBuf>,
    /// Ollama's API; `None`: [`DEFAULT_OLLAMA`].
    pub ollama: Option<SocketAddr>,
    /// An `openclaw` executable for `openclaw doctor --json`. `None`: found from the units
    /// (the OpenClaw unit's node and entry script, or an `openclaw` next to its node).
    pub openclaw: Option<PathBuf>,
    /// The bound on each outside answer (see [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

impl SnapshotOptions {
    /// Options with no socket, the default Ollama address, OpenClaw found from the units and
    /// the default timeout.
    pub fn new(units_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            units_dir: units_dir.into(),
            state_dir: state_dir.into(),
            socket: None,
            ollama: None,
            openclaw: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A snapshot that was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `<state>/snapshots/launchgraph-snapshot-<stamp>[-<n>].tar.gz`.
    pub path: PathBuf,
    /// The archive's entries, in order; `manifest.json` first.
    pub entries: Vec<String>,
    /// What could not be collected, and why (also in `manifest.json`).
    pub warnings: Vec<String>,
}

/// Why no snapshot was written. Nothing is left behind in that case.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: no free snapshot name for {stamp} after {MAX_NAMES_PER_SECOND} tries", dir.display())]
    NoFreeName { dir: PathBuf, stamp: String },
}

impl SnapshotError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io { what, path, source }
    }
}

/// Whether a variable or key named `name` holds a secret: its name contains TOKEN, KEY,
/// SECRET or PASSWORD, in any case.
pub fn is_secret_key(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// Where the snapshots of `state_dir` are.
pub fn snapshots_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("snapshots")
}

/// Takes a snapshot (see the module documentation) and writes it atomically.
///
/// Collecting never fails: each thing that could not be collected is a warning. The daemon,
/// Ollama and OpenClaw are asked at the same time, each bounded by `opts.timeout`.
pub async fn take(opts: &SnapshotOptions) -> Result<Snapshot, SnapshotError> {
    let now = SystemTime::now();

    let local = {
        let (units_dir, state_dir, openclaw) = (
            opts.units_dir.clone(),
            opts.state_dir.clone(),
            opts.openclaw.clone(),
        );
        tokio::task::spawn_blocking(move || collect_local(&units_dir, &state_dir, openclaw))
            .await
            .unwrap_or_else(|e| {
                let mut c = Collected::default();
                c.warn(format!(
                    "reading the units and the state directory failed: {e}"
                ));
                Local {
                    collected: c,
                    doctor: None,
                }
            })
    };
    let mut c = local.collected;

    let (status, ollama, doctor) = tokio::join!(
        live_status(opts.socket.as_deref(), opts.timeout),
        ollama(opts.ollama.unwrap_or(DEFAULT_OLLAMA), opts.timeout),
        async {
            match local.doctor {
                Some(cmd) => run_doctor(cmd, opts.timeout).await,
                None => Collected::warning(
                    "openclaw doctor not run: no unit runs OpenClaw, and no openclaw was given"
                        .to_owned(),
                ),
            }
        },
    );
    c.extend(status);
    c.extend(ollama);
    c.extend(doctor);

    let manifest_base = json!({
        "format": 1,
        "launchgraph_version": env!("CARGO_PKG_VERSION"),
        "host": host_name(),
        "created_at": humantime::format_rfc3339_seconds(now).to_string(),
        "units_dir": opts.units_dir,
        "state_dir": opts.state_dir,
        "redaction": format!(
            "values of variables and keys whose name contains {} (any case) are replaced by \
             {REDACTED:?}, in environments, plists, unit files and the env file; those values \
             are also replaced wherever else they appear",
            SECRET_WORDS.join(", ")
        ),
    });
    let stamp = stamp(now);
    let mtime = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let dir = snapshots_dir(&opts.state_dir);

    // Compressing and writing block.
    tokio::task::spawn_blocking(move || {
        let (entries, warnings) = c.finish(manifest_base);
        let names: Vec<String> = entries.iter().map(|(n, _)| n.clone()).collect();
        let path = publish(&dir, &stamp, |file| write_archive(file, &entries, mtime))?;
        Ok(Snapshot {
            path,
            entries: names,
            warnings,
        })
    })
    .await
    .map_err(|e| SnapshotError::Io {
        what: "write the snapshot in",
        path: snapshots_dir(&opts.state_dir),
        source: io::Error::other(e.to_string()),
    })?
}

/// The snapshots in `<state_dir>/snapshots/`, oldest first: path, size in bytes, modification
/// time. Temporary files of snapshots being written are not listed. No directory: none.
pub fn list(state_dir: &Path) -> io::Result<Vec<(PathBuf, u64, SystemTime)>> {
    let dir = snapshots_dir(state_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(order) = name.to_str().and_then(name_order) else {
            continue;
        };
        // Only regular files: a link placed in the directory is not a snapshot we wrote.
        let meta = match entry.path().symlink_metadata() {
            Ok(m) if m.is_file() => m,
            _ => continue,
        };
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        found.push((order, entry.path(), meta.len(), mtime));
    }
    // By the time in the name, then the suffix: names sort the way they were taken, which
    // file times, copied or touched, need not.
    found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    Ok(found.into_iter().map(|(_, p, s, t)| (p, s, t)).collect())
}

/// `(stamp, n)` of a snapshot file name, `None` for any other name.
fn name_order(name: &str) -> Option<(String, u32)> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (stamp, n) = match rest.split_once('-') {
        Some((s, n)) => (s, n.parse().ok()?),
        None => (rest, 0),
    };
    let valid = stamp.len() == 16
        && stamp.ends_with('Z')
        && stamp.as_bytes()[8] == b'T'
        && stamp
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 8 || i == 15 || b.is_ascii_digit());
    valid.then(|| (stamp.to_owned(), n))
}

/// `20261124T004512Z`: UTC, whole seconds, no separators, so names sort by time.
fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace(['-', ':'], "")
}

fn file_name(stamp: &str, n: u32) -> String {
    if n == 0 {
        format!("{PREFIX}{stamp}{SUFFIX}")
    } else {
        format!("{PREFIX}{stamp}-{n}{SUFFIX}")
    }
}

// ---------------------------------------------------------------------------------------------
// Writing.

/// Removes a temporary file unless it was handed over; also when the writer fails, panics, or
/// the task is dropped.
struct TempFile {
    path: PathBuf,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Writes a new snapshot file in `dir` atomically: `write` fills a temporary file
/// (`.launchgraph-snapshot-<stamp>.tar.gz.tmp`, 0600) in the same directory, which is synced
/// and then given its final name without replacing anything, and the directory is synced. A
/// final name is therefore only ever seen with complete content; on any failure the
/// temporary file is removed. Two snapshots in the same second get `-1`, `-2`, ….
fn publish(
    dir: &Path,
    stamp: &str,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<PathBuf, SnapshotError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(SnapshotError::io("create the snapshots directory", dir))?;

    let exists = |p: &Path| p.symlink_metadata().is_ok();
    let mut n = 0;
    let (mut file, temp) = loop {
        if n >= MAX_NAMES_PER_SECOND {
            return Err(SnapshotError::NoFreeName {
                dir: dir.to_path_buf(),
                stamp: stamp.to_owned(),
            });
        }
        let name = file_name(stamp, n);
        if exists(&dir.join(&name)) {
            n += 1;
            continue;
        }
        let temp = dir.join(format!(".{name}.tmp"));
        // create_new: a temporary file of the same name is another snapshot being written.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
        {
            Ok(f) => break (f, TempFile { path: temp }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(SnapshotError::io("create", &temp)(e)),
        }
    };

    write(&mut file).map_err(SnapshotError::io("write", &temp.path))?;
    file.sync_all()
        .map_err(SnapshotError::io("sync", &temp.path))?;
    drop(file);

    // A hard link never replaces an existing name, so a snapshot taken meanwhile under the
    // same name is not overwritten; where links are not supported, a rename after a check.
    let path = loop {
        if n >= MAX_NAMES_PER_SECOND {
            return Err(SnapshotError::NoFreeName {
                dir: dir.to_path_buf(),
                stamp: stamp.to_owned(),
            });
        }
        let target = dir.join(file_name(stamp, n));
        match fs::hard_link(&temp.path, &target) {
            Ok(()) => break target,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
            Err(_) if !exists(&target) => {
                fs::rename(&temp.path, &target)
                    .map_err(SnapshotError::io("rename the snapshot to", &target))?;
                break target;
            }
            Err(_) => n += 1,
        }
    };
    // The temporary name goes (TempFile's drop); then the directory is synced so that the
    // new name survives a crash.
    drop(temp);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SnapshotError::io("sync the directory", dir))?;
    Ok(path)
}

/// The tar.gz of `entries`, each a regular file with mode 0644 and time `mtime`.
fn write_archive(file: &mut File, entries: &[(String, Vec<u8>)], mtime: u64) -> io::Result<()> {
    let gz = flate2::write::GzEncoder::new(
        io::BufWriter::new(&mut *file),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        tar.append_data(&mut header, name, data.as_slice())?;
    }
    let gz = tar.into_inner()?;
    let mut buffered = gz.finish()?;
    buffered.flush()
}

// ---------------------------------------------------------------------------------------------
// Collecting.

/// One entry's content before the last redaction pass.
enum Content {
    Text(String),
    Json(Json),
    /// A plist as read: stored byte for byte unless something in it must be redacted.
    Plist {
        original: Vec<u8>,
        value: plist::Value,
    },
}

/// Entries, warnings, and every secret value met so far.
#[derive(Default)]
struct Collected {
    entries: Vec<(String, Content)>,
    warnings: Vec<String>,
    secrets: Secrets,
}

impl Collected {
    fn warning(w: String) -> Self {
        let mut c = Self::default();
        c.warn(w);
        c
    }

    fn warn(&mut self, w: impl Into<String>) {
        self.warnings.push(w.into());
    }

    fn add(&mut self, name: impl Into<String>, content: Content) {
        self.entries.push((name.into(), content));
    }

    fn extend(&mut self, other: Collected) {
        self.entries.extend(other.entries);
        self.warnings.extend(other.warnings);
        self.secrets.0.extend(other.secrets.0);
    }

    /// The archive's entries, `manifest.json` first, with every known secret value replaced
    /// wherever it still appears; and the warnings, scrubbed the same way.
    fn finish(self, mut manifest: Json) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
        let secrets = self.secrets;
        let mut warnings: Vec<String> = self
            .warnings
            .iter()
            .map(|w| secrets.scrub(w).into_owned())
            .collect();
        let mut out = Vec::with_capacity(self.entries.len() + 1);
        for (name, content) in self.entries {
            match render(content, &secrets) {
                Ok(bytes) => out.push((name, bytes)),
                Err(e) => warnings.push(format!("{name} left out: {e}")),
            }
        }
        manifest["entries"] = Json::Array(
            std::iter::once("manifest.json".to_owned())
                .chain(out.iter().map(|(n, _)| n.clone()))
                .map(Json::String)
                .collect(),
        );
        manifest["warnings"] = Json::Array(warnings.iter().cloned().map(Json::String).collect());
        let mut manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        manifest_bytes.push(b'\n');
        out.insert(0, ("manifest.json".to_owned(), manifest_bytes));
        (out, warnings)
    }
}

fn render(content: Content, secrets: &Secrets) -> io::Result<Vec<u8>> {
    match content {
        Content::Text(t) => Ok(secrets.scrub(&t).into_owned().into_bytes()),
        Content::Json(mut v) => {
            secrets.scrub_json(&mut v);
            let mut bytes = serde_json::to_vec_pretty(&v).map_err(io::Error::other)?;
            bytes.push(b'\n');
            Ok(bytes)
        }
        Content::Plist { original, value } => {
            let mut redacted = value.clone();
            redact_plist(&mut redacted, secrets);
            if redacted == value {
                return Ok(original);
            }
            let mut bytes = Vec::new();
            redacted
                .to_writer_xml(&mut bytes)
                .map_err(io::Error::other)?;
            Ok(bytes)
        }
    }
}

/// What is read from the units and the state directory, and how OpenClaw's doctor would run.
struct Local {
    collected: Collected,
    doctor: Option<DoctorCommand>,
}

fn collect_local(units_dir: &Path, state_dir: &Path, openclaw: Option<PathBuf>) -> Local {
    let mut c = Collected::default();
    unit_files(units_dir, &mut c);

    let units: Vec<Unit> = match compile_dir(units_dir) {
        Ok(compiled) => compiled.units,
        Err(diags) => {
            let mut text = format!(
                "launchgraph check: the units directory {} is invalid ({} problem{}):\n\n",
                units_dir.display(),
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            );
            for d in &diags {
                text.push_str(&d.to_string());
                text.push('\n');
            }
            c.add("units/INVALID.txt", Content::Text(text));
            c.warn(format!(
                "the units directory is invalid ({} problems, in units/INVALID.txt); the \
                 plists and environments of the unit files that are valid on their own are \
                 included",
                diags.len()
            ));
            // The files that are valid on their own still say what runs.
            crate::unit::load::read_dir(units_dir)
                .units
                .into_iter()
                .map(|p| p.unit)
                .collect()
        }
    };

    let ctx = PreflightContext::host();
    let mut plists = Vec::new();
    let mut environments = Vec::new();
    let mut resolved: Vec<(Unit, BTreeMap<String, String>, preflight::Target)> = Vec::new();
    for unit in &units {
        let target = preflight::target(unit, &ctx);
        let env = match &unit.runner {
            Runner::Exec(spec) => Some(exec_environment(
                unit,
                spec,
                &target,
                &mut environments,
                &mut c,
            )),
            Runner::Launchd(spec) => launchd_environment(
                unit,
                spec,
                &target,
                &ctx,
                &mut plists,
                &mut environments,
                &mut c,
            ),
        };
        if let Some(env) = env {
            resolved.push((unit.clone(), env, target));
        }
    }
    for (name, content) in plists.into_iter().chain(environments) {
        c.add(name, content);
    }
    fingerprints(state_dir, &mut c);

    let doctor = doctor_command(&resolved, openclaw, &mut c);
    Local {
        collected: c,
        doctor,
    }
}

/// Every `*.toml` of the units directory (hidden files aside, as the loader does), secrets
/// redacted.
fn unit_files(units_dir: &Path, c: &mut Collected) {
    let entries = match fs::read_dir(units_dir) {
        Ok(e) => e,
        Err(e) => {
            c.warn(format!(
                "cannot read the units directory {}: {e}",
                units_dir.display()
            ));
            return;
        }
    };
    let mut files: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (!name.starts_with('.') && name.ends_with(".toml") && !name.contains('/'))
                .then(|| (name, e.path()))
        })
        .collect();
    files.sort();
    for (name, path) in files {
        match read_small(&path) {
            Ok(Some(bytes)) => {
                let text = String::from_utf8_lossy(&bytes);
                let (redacted, found) = redact_toml(&text);
                for s in found {
                    c.secrets.add(&s);
                }
                c.add(format!("units/{name}"), Content::Text(redacted));
            }
            // A directory or a FIFO named *.toml: the loader reports it, nothing to copy.
            Ok(None) => {}
            Err(e) => c.warn(format!("unit file {} not copied: {e}", path.display())),
        }
    }
}

/// A regular file's bytes, at most [`MAX_FILE_BYTES`]; `None` for anything but a regular file.
fn read_small(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Ok(None);
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(io::Error::other(format!(
            "{} bytes, more than the {MAX_FILE_BYTES} a snapshot copies",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// An exec unit's environment: its `env` plus the PATH it gets, and, when it runs as another
/// user, HOME, USER and LOGNAME from that account, as the daemon (root) would start it.
fn exec_environment(
    unit: &Unit,
    spec: &ExecSpec,
    target: &preflight::Target,
    environments: &mut Vec<(String, Content)>,
    c: &mut Collected,
) -> BTreeMap<String, String> {
    let creds = plan_credentials(spec, unit.name.as_str(), true)
        .ok()
        .flatten();
    let env = unit_environment(spec, creds.as_ref());
    c.secrets.add_env(&env);
    let doc = json!({
        "unit": unit.name.as_str(),
        "kind": "exec",
        "user": spec.user,
        "path_origin": if spec.env.contains_key("PATH") {
            "the unit's env"
        } else {
            "the PATH exec units get when their env sets none"
        },
        "environment": redact_env(&env),
    });
    environments.push((
        format!("environment/{}.json", unit.name),
        Content::Json(doc),
    ));
    // The doctor runs with what the job would have; the job's own HOME when it has none.
    let mut job_env = env;
    if let Some(home) = &target.home {
        job_env
            .entry("HOME".into())
            .or_insert_with(|| home.to_string_lossy().into_owned());
    }
    job_env
}

/// A launchd unit's plist (queued for the archive) and environment: the plist's
/// EnvironmentVariables, PATH and HOME as the job gets them, then OpenClaw's env file when
/// the ProgramArguments use its wrapper layout. Returns the unredacted environment, `None`
/// when the plist cannot be read.
fn launchd_environment(
    unit: &Unit,
    spec: &LaunchdSpec,
    target: &preflight::Target,
    ctx: &PreflightContext,
    plists: &mut Vec<(String, Content)>,
    environments: &mut Vec<(String, Content)>,
    c: &mut Collected,
) -> Option<BTreeMap<String, String>> {
    let path = &spec.plist;
    let original = match read_small(path) {
        Ok(Some(b)) => b,
        Ok(None) => {
            c.warn(format!(
                "unit {}: the plist {} is not a regular file; not copied",
                unit.name,
                path.display()
            ));
            return None;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            c.warn(format!(
                "unit {}: the plist {} does not exist",
                unit.name,
                path.display()
            ));
            return None;
        }
        Err(e) => {
            c.warn(format!(
                "unit {}: the plist {} cannot be read: {e}",
                unit.name,
                path.display()
            ));
            return None;
        }
    };
    let value = match plist::Value::from_reader(Cursor::new(&original)) {
        Ok(v) => v,
        Err(e) => {
            // Its secrets cannot be found, so it is not copied at all.
            c.warn(format!(
                "unit {}: the plist {} is not a valid plist ({e}); not copied, since its \
                 secrets could not be redacted",
                unit.name,
                path.display()
            ));
            return None;
        }
    };

    // "Values other than strings will be ignored" by launchd; they are not the environment.
    let plist_env: BTreeMap<String, String> = value
        .as_dictionary()
        .and_then(|d| d.get("EnvironmentVariables"))
        .and_then(plist::Value::as_dictionary)
        .map(|d| {
            d.iter()
                .filter_map(|(k, v)| v.as_string().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    c.secrets.add_env(&plist_env);
    // Two units of an invalid directory may name one label: each keeps its own copy.
    let mut name = format!("plists/{}.plist", safe_component(&spec.label.0));
    if plists.iter().any(|(n, _)| *n == name) {
        name = format!(
            "plists/{}.{}.plist",
            safe_component(&spec.label.0),
            unit.name
        );
    }
    plists.push((name, Content::Plist { original, value }));

    let mut env = plist_env.clone();
    let path_origin = if env.contains_key("PATH") {
        "the plist's EnvironmentVariables"
    } else {
        env.insert("PATH".into(), ctx.launchd_path.clone());
        "launchd's default, since the plist's EnvironmentVariables set no PATH"
    };
    if let Some(home) = &target.home {
        env.entry("HOME".into())
            .or_insert_with(|| home.to_string_lossy().into_owned());
    }
    let env_file = target.env_file.as_ref().map(|file| {
        let vars = match read_small(file) {
            Ok(Some(bytes)) => crate::preflight::parse_env_file(&String::from_utf8_lossy(&bytes)),
            Ok(None) => {
                c.warn(format!(
                    "unit {}: OpenClaw's env file {} is not a regular file",
                    unit.name,
                    file.display()
                ));
                BTreeMap::new()
            }
            Err(e) => {
                c.warn(format!(
                    "unit {}: OpenClaw's env file {} cannot be read: {e}",
                    unit.name,
                    file.display()
                ));
                BTreeMap::new()
            }
        };
        c.secrets.add_env(&vars);
        // The wrapper sources the file and then execs the command: its values win.
        env.extend(vars.clone());
        json!({ "path": file, "variables": redact_env(&vars) })
    });
    let doc = json!({
        "unit": unit.name.as_str(),
        "kind": "launchd",
        "label": spec.label.0,
        "plist": path,
        "plist_environment": redact_env(&plist_env),
        "path_origin": path_origin,
        "env_file": env_file,
        "environment": redact_env(&env),
    });
    environments.push((
        format!("environment/{}.json", unit.name),
        Content::Json(doc),
    ));
    Some(env)
}

/// The stored fingerprints, `<state>/fingerprints/*.json`, of current and former units alike.
fn fingerprints(state_dir: &Path, c: &mut Collected) {
    let dir = state_dir.join("fingerprints");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            c.warn(format!(
                "cannot read the fingerprints in {}: {e}",
                dir.display()
            ));
            return;
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let unit = name.strip_suffix(".json")?;
            (!unit.is_empty() && !unit.starts_with('.')).then(|| unit.to_owned())
        })
        .collect();
    names.sort();
    for unit in names {
        match crate::fingerprint::load(state_dir, &unit) {
            Ok(Some(fp)) => match serde_json::to_value(&fp) {
                Ok(v) => c.add(format!("fingerprints/{unit}.json"), Content::Json(v)),
                Err(e) => c.warn(format!("fingerprint of {unit}: {e}")),
            },
            Ok(None) => {}
            Err(e) => c.warn(format!("fingerprint of {unit} not included: {e}")),
        }
    }
}

/// A label as one file name: launchd labels are reverse-DNS names, but nothing stops a `/`.
fn safe_component(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|ch| if ch == '/' || ch == '\0' { '_' } else { ch })
        .collect();
    if cleaned.is_empty() || cleaned.starts_with('.') {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

// ---------------------------------------------------------------------------------------------
// Redaction.

/// Secret values met anywhere, searched for everywhere else before anything is written.
#[derive(Default)]
struct Secrets(BTreeSet<String>);

impl Secrets {
    fn add(&mut self, value: &str) {
        if value.chars().count() >= MIN_SEARCHED_SECRET && value != REDACTED {
            self.0.insert(value.to_owned());
        }
    }

    fn add_env(&mut self, env: &BTreeMap<String, String>) {
        for (k, v) in env {
            if is_secret_key(k) {
                self.add(v);
            }
        }
    }

    /// `text` with every secret replaced: as written, and as it appears escaped in JSON,
    /// TOML basic strings or XML.
    fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        // Longest first, so a secret that contains another is replaced whole.
        let mut secrets: Vec<&String> = self.0.iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for s in secrets {
            let quoted = serde_json::to_string(s).unwrap_or_default();
            let json = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or_default();
            let xml = s
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&apos;");
            for form in [s.as_str(), json, xml.as_str()] {
                if !form.is_empty() && out.contains(form) {
                    out = Cow::Owned(out.replace(form, REDACTED));
                }
            }
        }
        out
    }

    /// Every string in `v` scrubbed; numbers and keys are left as they are.
    fn scrub_json(&self, v: &mut Json) {
        match v {
            Json::String(s) => {
                if let Cow::Owned(new) = self.scrub(s) {
                    *s = new;
                }
            }
            Json::Array(a) => a.iter_mut().for_each(|v| self.scrub_json(v)),
            Json::Object(o) => o.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }
}

/// `env` with the values of secret keys replaced.
fn redact_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) {
                REDACTED
            } else {
                v.as_str()
            };
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// Redacts a plist: the values of secret keys in `EnvironmentVariables`, and every known
/// secret value in any string.
fn redact_plist(v: &mut plist::Value, secrets: &Secrets) {
    if let Some(env) = v
        .as_dictionary_mut()
        .and_then(|d| d.get_mut("EnvironmentVariables"))
        .and_then(plist::Value::as_dictionary_mut)
    {
        for (k, val) in env.iter_mut() {
            if is_secret_key(k) {
                *val = plist::Value::String(REDACTED.to_owned());
            }
        }
    }
    scrub_plist(v, secrets);
}

fn scrub_plist(v: &mut plist::Value, secrets: &Secrets) {
    match v {
        plist::Value::String(s) => {
            if let Cow::Owned(new) = secrets.scrub(s) {
                *s = new;
            }
        }
        plist::Value::Array(a) => a.iter_mut().for_each(|v| scrub_plist(v, secrets)),
        plist::Value::Dictionary(d) => d.values_mut().for_each(|v| scrub_plist(v, secrets)),
        _ => {}
    }
}

/// Strings under secret keys, anywhere in a JSON document (the doctor's report), replaced.
fn redact_json_keys(v: &mut Json, under_secret: bool) {
    match v {
        Json::String(s) if under_secret => *s = REDACTED.to_owned(),
        Json::Array(a) => a.iter_mut().for_each(|v| redact_json_keys(v, under_secret)),
        Json::Object(o) => {
            for (k, v) in o.iter_mut() {
                redact_json_keys(v, under_secret || is_secret_key(k));
            }
        }
        _ => {}
    }
}

/// A unit file with the values of secret keys (at any depth: `env.API_TOKEN`, an inline
/// table) replaced, keeping the file as written otherwise; and the values it replaced.
///
/// A file that is not valid TOML cannot be read key by key: from the first secret-looking
/// key on a line, the rest of the line after its `=` is replaced.
fn redact_toml(text: &str) -> (String, Vec<String>) {
    let Ok(table) = text.parse::<toml::Table>() else {
        return redact_toml_lines(text);
    };
    let mut found = Vec::new();
    collect_toml_secrets(&toml::Value::Table(table.clone()), false, &mut found);
    if found.is_empty() {
        return (text.to_owned(), found);
    }
    // Replacing the values in the text keeps comments and layout. A short value is only
    // replaced where it is written as a whole quoted string: "1" would match too much else.
    let mut values: Vec<&String> = found.iter().filter(|s| !s.is_empty()).collect();
    values.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut redacted = text.to_owned();
    for v in &values {
        for q in ['"', '\''] {
            redacted = redacted.replace(&format!("{q}{v}{q}"), &format!("\"{REDACTED}\""));
        }
    }
    let mut long = Secrets::default();
    for v in values {
        long.add(v);
    }
    let redacted = long.scrub(&redacted).into_owned();
    if redacted
        .parse::<toml::Table>()
        .is_ok_and(|t| toml_is_redacted(&toml::Value::Table(t), false))
    {
        return (redacted, found);
    }
    // A value written with escapes the text search does not know (or an empty one): the file
    // is written again from its parsed form, without comments.
    let mut value = toml::Value::Table(table);
    redact_toml_value(&mut value, false);
    let rewritten = toml::to_string(&value).unwrap_or_default();
    (
        format!(
            "# launchgraph snapshot: rewritten with its secrets redacted; comments and layout \
             are not kept\n{rewritten}"
        ),
        found,
    )
}

fn collect_toml_secrets(v: &toml::Value, under_secret: bool, out: &mut Vec<String>) {
    match v {
        toml::Value::String(s) if under_secret => out.push(s.clone()),
        toml::Value::Array(a) => a
            .iter()
            .for_each(|v| collect_toml_secrets(v, under_secret, out)),
        toml::Value::Table(t) => {
            for (k, v) in t {
                collect_toml_secrets(v, under_secret || is_secret_key(k), out);
            }
        }
        _ => {}
    }
}

fn toml_is_redacted(v: &toml::Value, under_secret: bool) -> bool {
    match v {
        // An empty value hides nothing.
        toml::Value::String(s) if under_secret => s == REDACTED || s.is_empty(),
        toml::Value::Array(a) => a.iter().all(|v| toml_is_redacted(v, under_secret)),
        toml::Value::Table(t) => t
            .iter()
            .all(|(k, v)| toml_is_redacted(v, under_secret || is_secret_key(k))),
        _ => true,
    }
}

fn redact_toml_value(v: &mut toml::Value, under_secret: bool) {
    match v {
        toml::Value::String(s) if under_secret => *s = REDACTED.to_owned(),
        toml::Value::Array(a) => a
            .iter_mut()
            .for_each(|v| redact_toml_value(v, under_secret)),
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let secret = under_secret || is_secret_key(k);
                redact_toml_value(v, secret);
            }
        }
        _ => {}
    }
}

fn redact_toml_lines(text: &str) -> (String, Vec<String>) {
    let mut found = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let upper = body.to_ascii_uppercase();
        let at = SECRET_WORDS.iter().filter_map(|w| upper.find(w)).min();
        match at.and_then(|i| body[i..].find('=').map(|j| i + j + 1)) {
            Some(eq) => {
                let value = body[eq..].trim();
                let quoted = ['"', '\''].into_iter().find(|q| value.starts_with(*q));
                let inner = match quoted {
                    Some(q) => value[1..].split(q).next().unwrap_or(""),
                    None => value.split([',', '}', ' ']).next().unwrap_or(""),
                };
                if !inner.is_empty() {
                    found.push(inner.to_owned());
                }
                out.push_str(&body[..eq]);
                out.push_str(&format!(" \"{REDACTED}\""));
            }
            None => out.push_str(body),
        }
        out.push_str(end);
    }
    (out, found)
}

// ---------------------------------------------------------------------------------------------
// Asking others: the daemon, Ollama, OpenClaw.

/// The daemon's status of every unit, as `launchgraph status` gets it.
async fn live_status(socket: Option<&Path>, timeout: Duration) -> Collected {
    let Some(socket) = socket else {
        return Collected::warning(
            "live status not collected: no control socket was given".to_owned(),
        );
    };
    let answer = tokio::time::timeout(
        timeout,
        client::request(socket, Request::Status { unit: None }),
    )
    .await;
    match answer {
        Ok(Ok(Response::Status { units })) => {
            let mut c = Collected::default();
            c.add(
                "status.json",
                Content::Json(json!({ "socket": socket, "units": units })),
            );
            c
        }
        Ok(Ok(Response::Error { code, message })) => Collected::warning(format!(
            "live status not collected: the daemon at {} answered {code:?}: {message}",
            socket.display()
        )),
        Ok(Ok(other)) => Collected::warning(format!(
            "live status not collected: the daemon at {} answered a status request with {other:?}",
            socket.display()
        )),
        Ok(Err(ClientError::NotRunning { path })) => Collected::warning(format!(
            "daemon not running: nothing answers at {}",
            path.display()
        )),
        Ok(Err(e)) => Collected::warning(format!("live status not collected: {e}")),
        Err(_) => Collected::warning(format!(
            "live status not collected: the daemon at {} gave no answer within {}",
            socket.display(),
            humantime::format_duration(timeout)
        )),
    }
}

/// `GET /api/version` and `GET /api/tags`, together bounded by `timeout`. No proxy (one from
/// the environment would answer for Ollama), no redirects, HTTP/1 only, as the probes do.
async fn ollama(addr: SocketAddr, timeout: Duration) -> Collected {
    let mut c = Collected::default();
    let http = match reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .http1_only()
        .user_agent(concat!(
            "launchgraph/",
            env!("CARGO_PKG_VERSION"),
            " snapshot"
        ))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            c.warn(format!("ollama not asked: no HTTP client: {e}"));
            return c;
        }
    };
    let deadline = tokio::time::Instant::now() + timeout;
    for endpoint in ["version", "tags"] {
        let url = format!("http://{addr}/api/{endpoint}");
        let attempt = async {
            let mut response = http.get(&url).send().await?;
            let status = response.status();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_OLLAMA_BYTES {
                    return Ok((status, None));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, Some(body)))
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Err(_) => {
                c.warn(format!(
                    "ollama at {addr}: GET /api/{endpoint} gave no answer within {}",
                    humantime::format_duration(timeout)
                ));
                break;
            }
            Ok(Err(e)) if e.is_connect() => {
                c.warn(format!(
                    "ollama not reachable at {addr}: {}",
                    innermost_cause(&e)
                ));
                break;
            }
            Ok(Err(e)) => c.warn(format!(
                "ollama at {addr}: GET /api/{endpoint}: {}",
                innermost_cause(&e)
            )),
            Ok(Ok((status, _))) if status != reqwest::StatusCode::OK => c.warn(format!(
                "ollama at {addr}: GET /api/{endpoint} answered {status}"
            )),
            Ok(Ok((_, None))) => c.warn(format!(
                "ollama at {addr}: GET /api/{endpoint} answered more than {MAX_OLLAMA_BYTES} \
                 bytes; not kept"
            )),
            Ok(Ok((_, Some(body)))) => match serde_json::from_slice::<Json>(&body) {
                Ok(v) => c.add(format!("ollama/{endpoint}.json"), Content::Json(v)),
                Err(e) => c.warn(format!(
                    "ollama at {addr}: GET /api/{endpoint} did not answer JSON: {e}"
                )),
            },
        }
    }
    c
}

/// The last cause in an error's chain: "connection refused", not the URL again.
fn innermost_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// How `openclaw doctor --json` runs: the program (and entry script), and the job's
/// environment and user.
struct DoctorCommand {
    argv: Vec<PathBuf>,
    env: BTreeMap<String, String>,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// The OpenClaw command: `openclaw` when given, else from the unit that runs OpenClaw (the
/// gateway first): an `openclaw` it runs directly, its node and entry script, or an
/// `openclaw` next to its node. Either way it gets that unit's environment and user.
fn doctor_command(
    resolved: &[(Unit, BTreeMap<String, String>, preflight::Target)],
    given: Option<PathBuf>,
    c: &mut Collected,
) -> Option<DoctorCommand> {
    let is_file = |p: &Path| p.is_file();
    let mut candidates: Vec<&(Unit, BTreeMap<String, String>, preflight::Target)> = resolved
        .iter()
        .filter(|(unit, _, t)| {
            let label = match &unit.runner {
                Runner::Launchd(s) => s.label.0.as_str(),
                Runner::Exec(_) => "",
            };
            label.starts_with("ai.openclaw.")
                || t.entry
                    .as_ref()
                    .is_some_and(|e| e.to_string_lossy().contains("/node_modules/openclaw/"))
                || t.program
                    .as_ref()
                    .is_some_and(|p| p.file_name().is_some_and(|n| n == "openclaw"))
        })
        .collect();
    // The gateway's environment is the one doctor checks.
    candidates.sort_by_key(|(unit, _, _)| {
        let gateway = matches!(&unit.runner, Runner::Launchd(s) if s.label.0 == "ai.openclaw.gateway")
            || unit.name.as_str().contains("gateway");
        !gateway
    });

    let from_unit = candidates.iter().find_map(|(unit, env, t)| {
        let argv = if let Some(p) = t
            .program
            .clone()
            .filter(|p| p.file_name().is_some_and(|n| n == "openclaw") && is_file(p))
        {
            vec![p]
        } else if let (Some(node), Some(entry)) = (&t.node, &t.entry)
            && is_file(node)
            && is_file(entry)
        {
            vec![node.clone(), entry.clone()]
        } else if let Some(bin) = t
            .node
            .as_ref()
            .map(|n| n.with_file_name("openclaw"))
            .filter(|b| is_file(b))
        {
            vec![bin]
        } else {
            c.warn(format!(
                "unit {} runs OpenClaw, but neither its node and entry script nor an openclaw \
                 next to its node exist",
                unit.name
            ));
            return None;
        };
        Some(DoctorCommand {
            argv,
            env: env.clone(),
            uid: t.uid,
            gid: t.gid,
        })
    });

    match (given, from_unit) {
        (Some(openclaw), Some(found)) => Some(DoctorCommand {
            argv: vec![openclaw],
            ..found
        }),
        (Some(openclaw), None) => {
            let mut env = BTreeMap::from([("PATH".to_owned(), CANONICAL_PATH.to_owned())]);
            if let Some(home) = std::env::var_os("HOME") {
                env.insert("HOME".into(), home.to_string_lossy().into_owned());
            }
            Some(DoctorCommand {
                argv: vec![openclaw],
                env,
                uid: None,
                gid: None,
            })
        }
        (None, found) => found,
    }
}

/// Runs `openclaw doctor --json` (read-only, non-interactive; it exits 0 once a report is
/// produced, even one with `ok: false`), bounded by `timeout`: stdin from /dev/null, its own
/// process group, killed as a whole when the bound passes. When launchgraph is root it runs
/// as the job's user, so a file the job's user can edit never makes root run it.
async fn run_doctor(cmd: DoctorCommand, timeout: Duration) -> Collected {
    let mut c = Collected::default();
    let shown = cmd
        .argv
        .iter()
        .map(|a| a.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let what = format!("openclaw doctor --json ({shown} doctor --json)");

    let mut command = BoundedCommand::new(&cmd.argv[0], timeout)
        .args(&cmd.argv[1..])
        .args(["doctor", "--json"])
        .envs(&cmd.env)
        .current_dir("/")
        .stdout(Capture::Head(MAX_DOCTOR_BYTES))
        .stderr(Capture::Tail(MAX_STDERR_BYTES));
    if nix::unistd::geteuid().is_root()
        && let Some(uid) = cmd.uid.filter(|u| *u != 0)
    {
        match job_credentials(uid, cmd.gid) {
            Ok(creds) => command = command.credentials(Some(creds)),
            Err(e) => {
                c.warn(format!("{what} not run: cannot run it as uid {uid}: {e}"));
                return c;
            }
        }
    }
    let out = match command.run().await {
        Ok(out) => out,
        Err(BoundedError::NotReaped { .. }) => {
            c.warn(format!(
                "{what} gave no answer within {}; its process group was killed",
                humantime::format_duration(timeout)
            ));
            return c;
        }
        Err(BoundedError::Spawn { source, .. }) => {
            c.warn(format!("{what} could not be started: {source}"));
            return c;
        }
        Err(BoundedError::Wait { source, .. }) => {
            c.warn(format!("{what}: cannot collect its exit: {source}"));
            return c;
        }
    };
    if out.timed_out {
        c.warn(format!(
            "{what} gave no answer within {}; its process group was killed",
            humantime::format_duration(timeout)
        ));
        return c;
    }
    let (status, err) = (out.status, out.stderr);
    if out.stdout_truncated {
        c.warn(format!(
            "{what} printed more than {MAX_DOCTOR_BYTES} bytes; not kept"
        ));
        return c;
    }
    match serde_json::from_slice::<Json>(&out.stdout) {
        Ok(mut report) => {
            redact_json_keys(&mut report, false);
            c.add("openclaw/doctor.json", Content::Json(report));
            if !status.success() {
                c.warn(format!(
                    "{what} exited with {status} (it exits 0 whenever it produces a report)"
                ));
            }
        }
        Err(e) => {
            let tail = excerpt_tail(&err);
            c.warn(format!(
                "{what} printed no JSON report ({e}); it exited with {status}{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!("; stderr: {tail}")
                }
            ));
        }
    }
    c
}

/// The end of a stream of text as one short line: errors come last.
fn excerpt_tail(bytes: &[u8]) -> String {
    const KEEP: usize = 300;
    let text = String::from_utf8_lossy(bytes)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let count = text.chars().count();
    if count > KEEP {
        format!("…{}", text.chars().skip(count - KEEP).collect::<String>())
    } else {
        text
    }
}

/// This host's name, for the manifest.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secret_keys() {
        for k in [
            "API_TOKEN",
            "openai_api_key",
            "OPENCLAW_GATEWAY_TOKEN",
            "Db_Password",
            "CLIENT_SECRET",
            "KEYCHAIN",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "OLLAMA_HOST",
            "PATH",
            "HOME",
            "OLLAMA_KEEP_ALIVE",
            "NODE_OPTIONS",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn stamps_and_names_sort_by_time() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_480_000);
        let s = stamp(t);
        assert_eq!(s.len(), 16, "{s}");
        assert!(name_order(&file_name(&s, 0)).is_some());
        assert_eq!(name_order(&file_name(&s, 3)), Some((s.clone(), 3)));
        assert_eq!(name_order(&format!(".{}.tmp", file_name(&s, 0))), None);
        assert_eq!(name_order("launchgraph-snapshot-x.tar.gz"), None);
        assert_eq!(
            name_order("launchgraph-snapshot-20261124T004512Z.tar.gz"),
            Some(("20261124T004512Z".into(), 0))
        );
    }

    #[test]
    fn toml_values_are_redacted_in_place() {
        let text = "# the model server\n[exec]\ncommand = [\"/bin/x\", \"--token\", \"s3cret-value-1\"]\n\
                    env = { API_TOKEN = \"s3cret-value-1\", OLLAMA_HOST = \"127.0.0.1:11434\" }\n";
        let (out, found) = redact_toml(text);
        assert_eq!(found, vec!["s3cret-value-1".to_owned()]);
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.starts_with("# the model server\n"), "{out}");
        assert!(out.contains("OLLAMA_HOST = \"127.0.0.1:11434\""), "{out}");
        let t: toml::Table = out.parse().unwrap();
        assert_eq!(t["exec"]["env"]["API_TOKEN"].as_str(), Some(REDACTED));

        let table = "[exec]\ncommand = [\"/bin/x\"]\n[exec.env]\nDB_PASSWORD = 'pw-value-22'\nUSER_NAME = \"me\"\n";
        let (out, _) = redact_toml(table);
        assert!(!out.contains("pw-value-22"), "{out}");
        assert!(out.contains("USER_NAME = \"me\""), "{out}");
    }

    #[test]
    fn short_and_empty_toml_values_are_redacted_only_where_they_are() {
        let text = "# keep me\n[exec]\ncommand = [\"/opt/ab1/bin/x\"]\nenv = { API_KEY = 'ab1', EMPTY_TOKEN = \"\", HOST = \"ab1x\" }\n";
        let (out, _) = redact_toml(text);
        assert_eq!(
            out,
            "# keep me\n[exec]\ncommand = [\"/opt/ab1/bin/x\"]\nenv = { API_KEY = \"<redacted>\", EMPTY_TOKEN = \"\", HOST = \"ab1x\" }\n"
        );
    }

    #[test]
    fn toml_values_with_escapes_are_rewritten() {
        let text = "[exec]\ncommand = [\"/bin/x\"]\nenv = { API_KEY = \"a\\u0062c-def-ghi\" }\n";
        let (out, _) = redact_toml(text);
        assert!(
            !out.contains("abc-def-ghi") && !out.contains("u0062c-def"),
            "{out}"
        );
        let t: toml::Table = out
            .lines()
            .skip(1)
            .collect::<Vec<_>>()
            .join("\n")
            .parse()
            .unwrap();
        assert_eq!(t["exec"]["env"]["API_KEY"].as_str(), Some(REDACTED));
    }

    #[test]
    fn invalid_toml_is_redacted_by_line() {
        let text = "[exec\nenv = { API_TOKEN = \"tok-123456\", B = \"c\" }\nsecret_password=hunter22\nplain = 1\n";
        let (out, found) = redact_toml(text);
        assert!(
            !out.contains("tok-123456") && !out.contains("hunter22"),
            "{out}"
        );
        assert!(out.contains("plain = 1"), "{out}");
        assert!(found.contains(&"tok-123456".to_owned()));
        assert!(found.contains(&"hunter22".to_owned()));
    }

    #[test]
    fn secrets_are_scrubbed_in_every_escaped_form() {
        let mut s = Secrets::default();
        s.add("a\"b<c>&d-token");
        s.add("short");
        let text =
            r#"raw a"b<c>&d-token json a\"b<c>&d-token xml a&quot;b&lt;c&gt;&amp;d-token short"#;
        let out = s.scrub(text);
        assert!(!out.contains("d-token"), "{out}");
        assert!(
            out.contains("short"),
            "short values are only redacted by key: {out}"
        );
    }

    #[test]
    fn env_files_parse_as_preflight_reads_them() {
        let env = crate::preflight::parse_env_file(
            "# comment\nexport OPENCLAW_STATE_DIR=\"/s\"\nOPENAI_API_KEY='sk-1'\nbad key=1\nPLAIN=x=y\n",
        );
        assert_eq!(env["OPENCLAW_STATE_DIR"], "/s");
        assert_eq!(env["OPENAI_API_KEY"], "sk-1");
        assert_eq!(env["PLAIN"], "x=y");
        assert_eq!(env.len(), 3);
    }

    #[test]
    fn a_failing_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = dir.path().join("snapshots");
        let err = publish(&snaps, "20261124T004512Z", |f| {
            f.write_all(&[0u8; 4096])?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        let left: Vec<_> = fs::read_dir(&snaps).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn same_second_snapshots_get_suffixes() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = snapshots_dir(dir.path());
        let stamp = "20261124T004512Z";
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| publish(&snaps, stamp, |f| f.write_all(&[i])).unwrap())
            .collect();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "launchgraph-snapshot-20261124T004512Z.tar.gz",
                "launchgraph-snapshot-20261124T004512Z-1.tar.gz",
                "launchgraph-snapshot-20261124T004512Z-2.tar.gz",
            ]
        );
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(fs::read(p).unwrap(), [i as u8]);
            assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let listed: Vec<PathBuf> = list(dir.path()).unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(listed, paths);
    }

    #[test]
    fn listing_a_state_dir_without_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
        fs::create_dir(snapshots_dir(dir.path())).unwrap();
        fs::write(snapshots_dir(dir.path()).join("notes.txt"), "x").unwrap();
        fs::write(
            snapshots_dir(dir.path()).join(".launchgraph-snapshot-20261124T004512Z.tar.gz.tmp"),
            "x",
        )
        .unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn doctor_reports_lose_values_under_secret_keys() {
        let mut v = json!({"ok": false, "gateway": {"token": "abc", "tokenSet": true, "port": 18789},
                           "findings": [{"checkId": "x", "apiKeys": ["k1", "k2"]}]});
        redact_json_keys(&mut v, false);
        assert_eq!(v["gateway"]["token"], REDACTED);
        assert_eq!(v["gateway"]["tokenSet"], true);
        assert_eq!(v["gateway"]["port"], 18789);
        assert_eq!(v["findings"][0]["apiKeys"], json!([REDACTED, REDACTED]));
        assert_eq!(v["findings"][0]["checkId"], "x");
    }
}
