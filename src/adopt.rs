//! `adopt` and `release`: handing the start of a launchd job to launchgraph, and giving it
//! back.
//!
//! launchd starts a job whose plist says `RunAtLoad` or `KeepAlive` by itself, at boot or
//! login and whenever it sees fit (launchd.plist(5),
//! https://keith.github.io/xcode-man-pages/launchd.plist.5.html), before any probe: the order
//! launchgraph keeps is not kept then. Homebrew's service plists and OpenClaw's gateway
//! LaunchAgent set both (Homebrew/brew Library/Homebrew/service.rb `to_plist`;
//! openclaw/openclaw src/daemon/launchd-plist.ts). Adopting a job backs its plist up once, in
//! `<state-dir>/adopted/<label>.plist` (the original bytes, mode and owner), rewrites the plist
//! with `RunAtLoad = false` and without `KeepAlive` (every other key, the format, the owner and
//! the mode kept), and reloads the job when it is loaded, since launchd reads a plist only at
//! bootstrap (github.com/openclaw/openclaw/pull/34829). Releasing restores the backup and
//! reloads the job, so launchd runs it as before.
//!
//! A running job is not stopped unless asked (`--restart`): the rewritten file takes effect at
//! the next boot or login, or when launchgraph next stops and starts the unit (its stop of a
//! KeepAlive job is a bootout, its start a bootstrap of the file). A job that is loaded and not
//! running is reloaded at once: nothing stops. Release always reloads (a running job restarts
//! at once, since the restored `RunAtLoad` starts it): once launchgraph is gone, a job left
//! without the KeepAlive its plist asks for would stay down after a crash.
//!
//! Release also gives back what launchgraph left unloaded: the launchd backend boots a
//! KeepAlive job out to stop it, which unloads it until the next bootstrap, login or boot, and
//! records it ([`crate::booted_out`]). Once the daemon has stopped for good, nobody would load
//! those jobs again: [`give_back`] bootstraps each recorded job that is still not loaded and
//! removes its record. Releasing an adopted job loads it too, so its record goes with it.
//!
//! This module decides ([`rewrite`], [`decide`]) and acts ([`adopt`], [`release`],
//! [`give_back`]), and says exactly what it did as typed [`Step`]s; the binary renders them.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plist::Value;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::booted_out;
use crate::fsutil::{Replace, write_atomic_as};
use crate::launchd::{ConsoleUser, Launchctl, LaunchctlError, PrintOutcome, service_target};
use crate::unit::Domain;

/// The directory under the state directory that holds the backups and records.
pub const ADOPTED_DIR: &str = "adopted";
/// How long a bootstrap is retried while launchd drains the bootout before it (5, 37).
const BOOTSTRAP_RETRY_FOR: Duration = Duration::from_secs(15);
/// How often `print` is asked while waiting for a bootout to finish.
const PRINT_POLL: Duration = Duration::from_millis(100);
/// The stop bound when `print` shows no exit timeout: launchd's documented default
/// (launchd.plist(5) ExitTimeOut), as the backend uses.
const DEFAULT_EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest wait for a bootout taken from a job's exit timeout.
const MAX_BOOTOUT_WAIT: Duration = Duration::from_secs(10 * 60);

/// The launchd job a unit drives, as adopt records it: enough for `release --all` to give it
/// back without the units directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The unit's name.
    pub unit: String,
    pub label: String,
    pub plist: PathBuf,
    /// The unit's domain as written: `system`, `gui/<uid>`, `gui/console`, `user/<uid>`.
    pub domain: String,
}

/// What adopt keeps beside the backup: the job, and a hash of the plist it wrote, so that
/// release can tell whether someone changed the file since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub job: Job,
    /// SHA-256 of the bytes adopt last wrote to the plist, in hex.
    pub written_sha256: String,
}

/// The plist's serialization, kept on rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Binary,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Xml => "XML",
            Format::Binary => "binary",
        })
    }
}

/// One key adopt changes: its value before and after, `None` when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    pub key: &'static str,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl std::fmt::Display for KeyChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        let to = match &self.to {
            Some(v) => v.clone(),
            None => "(removed)".into(),
        };
        write!(f, "{}: {} -> {to}", self.key, show(&self.from))
    }
}

/// The plist as adopt would write it.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub changes: Vec<KeyChange>,
    pub format: Format,
    pub bytes: Vec<u8>,
}

fn format_of(bytes: &[u8]) -> Format {
    if bytes.starts_with(b"bplist") {
        Format::Binary
    } else {
        Format::Xml
    }
}

/// A plist value as a person reads it: `true`, `{SuccessfulExit = false}`.
fn show(v: &Value) -> String {
    match v {
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Dictionary(d) => {
            let items: Vec<String> = d
                .iter()
                .map(|(k, v)| match v {
                    Value::Boolean(_) | Value::Integer(_) | Value::String(_) => {
                        format!("{k} = {}", show(v))
                    }
                    _ => k.clone(),
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        _ => "(a value)".into(),
    }
}

/// Whether a plist dictionary has launchd start the job by itself: `RunAtLoad = true`, or any
/// `KeepAlive` but `false` (which "implies RunAtLoad", launchd.plist(5)).
pub fn starts_by_itself(dict: &plist::Dictionary) -> bool {
    dict.get("RunAtLoad").and_then(Value::as_boolean) == Some(true)
        || dict
            .get("KeepAlive")
            .is_some_and(|v| v.as_boolean() != Some(false))
}

/// The plist `original` with `RunAtLoad = false` and no `KeepAlive`, every other key kept in
/// its place, in the same format; `None` when launchd would not start the job by itself
/// already.
pub fn rewrite(original: &[u8]) -> Result<Option<Rewritten>, String> {
    let value = Value::from_reader(std::io::Cursor::new(original))
        .map_err(|e| format!("is not a valid plist (XML or binary): {e}"))?;
    let Value::Dictionary(mut dict) = value else {
        return Err("has no dictionary at its root".into());
    };
    if !starts_by_itself(&dict) {
        return Ok(None);
    }
    let mut changes = Vec::new();
    let run_at_load = dict.get("RunAtLoad").map(show);
    if run_at_load.as_deref() != Some("false") {
        changes.push(KeyChange {
            key: "RunAtLoad",
            from: run_at_load,
            to: Some("false".into()),
        });
    }
    match dict.get_mut("RunAtLoad") {
        Some(v) => *v = Value::Boolean(false),
        None => {
            dict.insert("RunAtLoad".into(), Value::Boolean(false));
        }
    }
    if let Some(keep_alive) = dict.get("KeepAlive") {
        changes.push(KeyChange {
            key: "KeepAlive",
            from: Some(show(keep_alive)),
            to: None,
        });
        // `retain`, not `remove`: the dictionary's `remove` moves the last key into the gap.
        dict.retain(|k, _| k != "KeepAlive");
    }
    let format = format_of(original);
    let mut bytes = Vec::new();
    let value = Value::Dictionary(dict);
    match format {
        Format::Binary => value.to_writer_binary(&mut bytes),
        Format::Xml => value.to_writer_xml(&mut bytes),
    }
    .map_err(|e| format!("cannot be written back: {e}"))?;
    if format == Format::Xml && original.ends_with(b"\n") && !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    Ok(Some(Rewritten {
        changes,
        format,
        bytes,
    }))
}

/// What launchd has loaded for the job, from `print`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    NotLoaded,
    /// The domain does not exist (nobody logged in at the GUI for `gui/<uid>`).
    NoDomain,
    Loaded {
        pid: Option<u32>,
        running: bool,
        /// `print` shows RunAtLoad or KeepAlive among its properties: the loaded definition
        /// starts the job by itself, whatever the file says now.
        starts_by_itself: bool,
        /// The job's exit timeout, when `print` shows it.
        exit_timeout: Option<u64>,
    },
}

impl Loaded {
    fn from_print(p: PrintOutcome) -> Self {
        match p {
            PrintOutcome::NotLoaded => Loaded::NotLoaded,
            PrintOutcome::NoDomain { .. } => Loaded::NoDomain,
            PrintOutcome::Loaded(info) => Loaded::Loaded {
                pid: info.pid,
                running: info.is_running(),
                starts_by_itself: info.keepalive() || info.runatload(),
                exit_timeout: info.exit_timeout,
            },
        }
    }
}

/// What adopt does about the loaded job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Not loaded: launchd reads the file when it is next bootstrapped (boot, login, or a
    /// start by launchgraph).
    NotLoaded,
    /// No such domain now: launchd reads the file at the next login.
    NoDomain,
    /// Loaded from a definition that does not start it by itself, and the file is unchanged.
    UpToDate,
    /// Loaded, not running: bootout and bootstrap; nothing stops.
    Now,
    /// Loaded and running: left running with the definition launchd loaded.
    Deferred { pid: Option<u32> },
    /// Loaded and running, and `--restart` was given: bootout (which stops it) and bootstrap.
    Restart { pid: Option<u32> },
    /// Loaded but disabled (`launchctl disable`): a bootout would leave it unloaded, since a
    /// disabled job cannot be bootstrapped (launchctl exit statuses as captured in
    /// DeterminateSystems/nix-installer#530).
    Disabled,
}

impl Reload {
    /// Whether this runs bootout and bootstrap.
    pub fn reloads(self) -> bool {
        matches!(self, Reload::Now | Reload::Restart { .. })
    }
}

/// What adopt does about the loaded job, given whether it rewrites the file.
pub fn decide(file_changes: bool, loaded: &Loaded, restart: bool) -> Reload {
    match *loaded {
        Loaded::NotLoaded => Reload::NotLoaded,
        Loaded::NoDomain => Reload::NoDomain,
        Loaded::Loaded {
            starts_by_itself: false,
            ..
        } if !file_changes => Reload::UpToDate,
        Loaded::Loaded {
            running: true, pid, ..
        } => match restart {
            true => Reload::Restart { pid },
            false => Reload::Deferred { pid },
        },
        Loaded::Loaded { running: false, .. } => Reload::Now,
    }
}

/// One thing adopt or release did, or (in a dry run) would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The original plist was copied to the backup, with its mode and owner.
    BackedUp {
        plist: PathBuf,
        backup: PathBuf,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A backup from an earlier adopt exists and was kept as it is.
    BackupKept { backup: PathBuf },
    /// The plist was rewritten with these changes.
    Rewrote {
        plist: PathBuf,
        format: Format,
        changes: Vec<KeyChange>,
    },
    /// The plist already does not have launchd start the job by itself.
    FileAlreadyAdopted { plist: PathBuf },
    /// The backup was written back over the plist, with its mode and owner.
    Restored {
        plist: PathBuf,
        backup: PathBuf,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// The plist already holds the backup's bytes.
    AlreadyRestored { plist: PathBuf },
    /// A launchctl command run (or to run), without the program: `["bootout", "system/x"]`.
    Launchctl(Vec<String>),
    /// What happens to the loaded job.
    Reload(Reload),
    /// The backup and its record were removed.
    Forgot { backup: PathBuf },
    /// The record of a job launchgraph had booted out was removed: it is loaded again, or
    /// cannot be ([`GiveBack`]).
    ForgotBootout { record: PathBuf },
}

/// Why adopt or release did not do (all of) it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plist or a backup cannot be read or is not a plist.
    #[error("{0}")]
    File(String),
    /// Writing the plist, the backup or its record failed.
    #[error("{0}")]
    Write(String),
    /// `launchctl` failed; the steps done before are in `done`.
    #[error("{message}")]
    Launchd { message: String, done: Vec<Step> },
    /// The plist changed since adopt wrote it, and release was not forced.
    #[error("{0}")]
    Changed(String),
    /// The job's domain cannot be resolved (`gui/console` with nobody at the console).
    #[error("{0}")]
    Domain(String),
}

/// Where the backup and the record of `label` are.
pub fn backup_paths(state_dir: &Path, label: &str) -> (PathBuf, PathBuf) {
    let dir = state_dir.join(ADOPTED_DIR);
    (
        dir.join(format!("{label}.plist")),
        dir.join(format!("{label}.json")),
    )
}

/// A label usable as a file name: no `/`, no leading `.`, not empty.
fn check_label(label: &str) -> Result<(), Error> {
    if label.is_empty() || label.starts_with('.') || label.contains('/') || label.contains('\0') {
        return Err(Error::File(format!(
            "the label {label:?} cannot name a backup file (expected a reverse-DNS label such \
             as homebrew.mxcl.ollama)"
        )));
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The plist's bytes and metadata. A symbolic link is refused: the atomic rewrite would
/// replace the link with a file.
fn read_plist(path: &Path) -> Result<(Vec<u8>, fs::Metadata), Error> {
    let lmeta = fs::symlink_metadata(path).map_err(|e| {
        Error::File(if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "the plist {} does not exist (check `plist` in the unit file)",
                path.display()
            )
        } else {
            format!("the plist {} cannot be read: {e}", path.display())
        })
    })?;
    if lmeta.file_type().is_symlink() {
        let target = fs::read_link(path).map(|t| t.display().to_string());
        return Err(Error::File(format!(
            "the plist {} is a symbolic link (to {}); adopt rewrites regular files only: \
             point `plist` in the unit file at the file itself",
            path.display(),
            target.unwrap_or_else(|_| "an unreadable target".into())
        )));
    }
    let bytes =
        crate::fsutil::read_regular(path, crate::preflight::MAX_PLIST_BYTES).map_err(|e| {
            Error::File(format!(
                "the plist {} {}",
                path.display(),
                e.describe("a plist")
            ))
        })?;
    Ok((bytes, lmeta))
}

fn read_record(path: &Path) -> Result<Option<Record>, Error> {
    match crate::fsutil::read_regular(path, 64 * 1024) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::File(format!("the record {} is not valid: {e}", path.display()))),
        Err(crate::fsutil::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(Error::File(format!(
            "the record {} {}",
            path.display(),
            e.describe("a record")
        ))),
    }
}

fn ensure_adopted_dir(state_dir: &Path) -> Result<(), Error> {
    let dir = state_dir.join(ADOPTED_DIR);
    // 0700: plists carry environments, and OpenClaw's its gateway token.
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::Write(format!(
            "cannot create {}: {e}",
            dir.display()
        ))),
    }
}

fn write_record(path: &Path, record: &Record) -> Result<(), Error> {
    let json = serde_json::to_vec_pretty(record).expect("a record serializes");
    write_atomic_as(path, &json, 0o600, None, Replace::Yes)
        .map_err(|e| Error::Write(format!("cannot write {}: {e}", path.display())))
}

/// The domain and service targets of a job, `gui/console` resolved now; `None` when nobody
/// is logged in at the console, so that no `gui/<uid>` domain exists to act in (the file is
/// still adopted or released: launchd reads it at the next login).
pub fn targets(job: &Job, console: &ConsoleUser) -> Result<Option<(String, String)>, Error> {
    let domain = Domain::parse(&job.domain).map_err(Error::Domain)?;
    match crate::launchd::domain_target(&domain, console) {
        Ok(domain) => {
            let target = service_target(&domain, &job.label);
            Ok(Some((domain, target)))
        }
        Err(crate::launchd::NoConsoleUser::LoginWindow { .. }) => Ok(None),
        Err(e) => Err(Error::Domain(format!("{}: {e}", job.unit))),
    }
}

/// `print` of the job, or [`Loaded::NoDomain`] when its domain cannot exist now.
async fn loaded_of(lc: &Launchctl, resolved: &Option<(String, String)>) -> Result<Loaded, Error> {
    match resolved {
        None => Ok(Loaded::NoDomain),
        Some((_, target)) => Ok(Loaded::from_print(
            lc.print(target).await.map_err(launchd_error(vec![]))?,
        )),
    }
}

/// The `Label` of a plist must be the unit's: launchgraph would reload another job than the
/// one this file describes.
fn check_plist_label(job: &Job, bytes: &[u8]) -> Result<(), Error> {
    let found = Value::from_reader(std::io::Cursor::new(bytes))
        .ok()
        .and_then(Value::into_dictionary)
        .and_then(|d| d.get("Label").and_then(Value::as_string).map(str::to_owned));
    match found {
        Some(l) if l == job.label => Ok(()),
        // Not a plist at all: `rewrite` says so.
        None if Value::from_reader(std::io::Cursor::new(bytes)).is_err() => Ok(()),
        other => Err(Error::File(format!(
            "the plist {} has Label {}, but unit {} drives {:?} (PLIST_LABEL_MISMATCH in \
             `launchgraph check`); nothing was changed",
            job.plist.display(),
            other.map_or_else(|| "(none)".to_owned(), |l| format!("{l:?}")),
            job.unit,
            job.label
        ))),
    }
}

/// The targets to show and use: for a domain that cannot exist now, the unit's own words
/// (`gui/console/ai.openclaw.gateway`); no launchctl call is made then.
fn display_targets(job: &Job, resolved: &Option<(String, String)>) -> (String, String) {
    resolved
        .clone()
        .unwrap_or_else(|| (job.domain.clone(), service_target(&job.domain, &job.label)))
}

/// How adopt and release reach launchd.
pub struct Launchd<'a> {
    pub launchctl: &'a Launchctl,
    pub console: &'a ConsoleUser,
}

/// What adopt planned or did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub service_target: String,
    pub steps: Vec<Step>,
    /// Nothing was (or would be) changed: the job was adopted already.
    pub nothing_to_do: bool,
}

/// `adopt`: see the module's documentation. With `dry_run`, only plans.
pub async fn adopt(
    job: &Job,
    state_dir: &Path,
    launchd: &Launchd<'_>,
    restart: bool,
    dry_run: bool,
) -> Result<Outcome, Error> {
    check_label(&job.label)?;
    let resolved = targets(job, launchd.console)?;
    let (domain, target) = display_targets(job, &resolved);
    let (original, meta) = read_plist(&job.plist)?;
    check_plist_label(job, &original)?;
    let rewritten = rewrite(&original)
        .map_err(|why| Error::File(format!("the plist {} {why}", job.plist.display())))?;
    let (backup, record_path) = backup_paths(state_dir, &job.label);
    let has_backup = fs::symlink_metadata(&backup).is_ok();
    let lc = launchd.launchctl;
    let loaded = loaded_of(lc, &resolved).await?;
    let mut reload = decide(rewritten.is_some(), &loaded, restart);
    if reload.reloads() && disabled(lc, &domain, &job.label).await {
        reload = Reload::Disabled;
    }

    let mut steps = Vec::new();
    if rewritten.is_some() {
        steps.push(match has_backup {
            true => Step::BackupKept {
                backup: backup.clone(),
            },
            false => Step::BackedUp {
                plist: job.plist.clone(),
                backup: backup.clone(),
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            },
        });
    }
    steps.push(match &rewritten {
        Some(r) => Step::Rewrote {
            plist: job.plist.clone(),
            format: r.format,
            changes: r.changes.clone(),
        },
        None => Step::FileAlreadyAdopted {
            plist: job.plist.clone(),
        },
    });
    let reload_argv = [
        vec!["bootout".to_owned(), target.clone()],
        vec![
            "bootstrap".to_owned(),
            domain.clone(),
            job.plist.display().to_string(),
        ],
    ];
    let nothing_to_do = rewritten.is_none() && !reload.reloads();
    if dry_run {
        if reload.reloads() {
            steps.extend(reload_argv.iter().cloned().map(Step::Launchctl));
        }
        steps.push(Step::Reload(reload));
        return Ok(Outcome {
            service_target: target,
            steps,
            nothing_to_do,
        });
    }

    if let Some(r) = &rewritten {
        ensure_adopted_dir(state_dir)?;
        if !has_backup {
            // Never replaces a backup: the first one holds what launchd ran before adopt.
            write_atomic_as(
                &backup,
                &original,
                meta.mode() & 0o7777,
                Some((meta.uid(), meta.gid())),
                Replace::No,
            )
            .map_err(|e| Error::Write(format!("cannot back up to {}: {e}", backup.display())))?;
        }
        // The record before the rewrite: a crash between the two leaves a plist equal to
        // its backup, which release restores without asking.
        write_record(
            &record_path,
            &Record {
                job: job.clone(),
                written_sha256: sha256_hex(&r.bytes),
            },
        )?;
        write_atomic_as(
            &job.plist,
            &r.bytes,
            meta.mode() & 0o7777,
            Some((meta.uid(), meta.gid())),
            Replace::Yes,
        )
        .map_err(|e| Error::Write(format!("cannot rewrite {}: {e}", job.plist.display())))?;
    }
    if reload.reloads() {
        let bound = exit_bound(&loaded);
        reload_job(lc, &domain, &target, &job.plist, bound, &mut steps).await?;
    }
    steps.push(Step::Reload(reload));
    Ok(Outcome {
        service_target: target,
        steps,
        nothing_to_do,
    })
}

/// What release planned or did.
#[derive(Debug, Clone)]
pub struct Released {
    pub service_target: String,
    pub steps: Vec<Step>,
}

/// `release`: restores the backup of `record`'s job (only over a plist that is the one adopt
/// wrote, unless `force`), reloads the job, and removes the backup.
pub async fn release(
    record: &Record,
    state_dir: &Path,
    launchd: &Launchd<'_>,
    force: bool,
    dry_run: bool,
) -> Result<Released, Error> {
    let job = &record.job;
    check_label(&job.label)?;
    let resolved = targets(job, launchd.console)?;
    let (domain, target) = display_targets(job, &resolved);
    let (backup, record_path) = backup_paths(state_dir, &job.label);
    let saved =
        crate::fsutil::read_regular(&backup, crate::preflight::MAX_PLIST_BYTES).map_err(|e| {
            Error::File(format!(
                "the backup {} {}",
                backup.display(),
                e.describe("a plist")
            ))
        })?;
    let bmeta = fs::metadata(&backup)
        .map_err(|e| Error::File(format!("the backup {}: {e}", backup.display())))?;
    let current = match fs::symlink_metadata(&job.plist) {
        Ok(_) => Some(read_plist(&job.plist)?.0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Error::File(format!(
                "the plist {} cannot be read: {e}",
                job.plist.display()
            )));
        }
    };
    let already = current.as_deref() == Some(saved.as_slice());
    let ours = current
        .as_deref()
        .is_some_and(|c| sha256_hex(c) == record.written_sha256);
    if !already && !ours && !force {
        let what = match &current {
            None => "no longer exists".to_owned(),
            Some(c) => {
                let again = Value::from_reader(std::io::Cursor::new(c))
                    .ok()
                    .and_then(Value::into_dictionary)
                    .is_some_and(|d| starts_by_itself(&d));
                match again {
                    true => "was changed since adopt wrote it, and has launchd start the job by \
                             itself again (`brew services` and `openclaw gateway install` \
                             rewrite their plists)"
                        .to_owned(),
                    false => "was changed since adopt wrote it".to_owned(),
                }
            }
        };
        return Err(Error::Changed(format!(
            "{}: the plist {} {what}; restoring the backup {} would undo that change, so \
             nothing was done. Compare the two, then run `launchgraph release {} --force` to \
             restore the backup anyway, or `launchgraph adopt {}` to adopt the current file",
            job.unit,
            job.plist.display(),
            backup.display(),
            job.unit,
            job.unit
        )));
    }
    let mut steps = Vec::new();
    let (mode, uid, gid) = (bmeta.mode() & 0o7777, bmeta.uid(), bmeta.gid());
    let cmeta = fs::metadata(&job.plist).ok();
    let same_meta = cmeta
        .as_ref()
        .is_some_and(|m| m.mode() & 0o7777 == mode && m.uid() == uid && m.gid() == gid);
    steps.push(match already && same_meta {
        true => Step::AlreadyRestored {
            plist: job.plist.clone(),
        },
        false => Step::Restored {
            plist: job.plist.clone(),
            backup: backup.clone(),
            mode,
            uid,
            gid,
        },
    });
    let lc = launchd.launchctl;
    let loaded = loaded_of(lc, &resolved).await?;
    let disabled = matches!(loaded, Loaded::Loaded { .. } | Loaded::NotLoaded)
        && disabled(lc, &domain, &job.label).await;
    let argv_bootstrap = vec![
        "bootstrap".to_owned(),
        domain.clone(),
        job.plist.display().to_string(),
    ];
    let plan: Vec<Vec<String>> = match (&loaded, disabled) {
        (Loaded::NoDomain, _) | (_, true) => vec![],
        (Loaded::NotLoaded, false) => vec![argv_bootstrap],
        (Loaded::Loaded { .. }, false) => {
            vec![vec!["bootout".to_owned(), target.clone()], argv_bootstrap]
        }
    };
    let reload = match (&loaded, disabled) {
        (Loaded::NoDomain, _) => Reload::NoDomain,
        (_, true) => Reload::Disabled,
        (Loaded::NotLoaded, false) => Reload::NotLoaded,
        (
            Loaded::Loaded {
                running: true, pid, ..
            },
            false,
        ) => Reload::Restart { pid: *pid },
        (Loaded::Loaded { .. }, false) => Reload::Now,
    };
    let booted_out_record =
        booted_out::path_of(state_dir, &job.label).map_err(|e| Error::File(e.to_string()))?;
    if dry_run {
        steps.extend(plan.into_iter().map(Step::Launchctl));
        steps.push(Step::Reload(reload));
        steps.push(Step::Forgot { backup });
        if booted_out_record.exists() {
            steps.push(Step::ForgotBootout {
                record: booted_out_record,
            });
        }
        return Ok(Released {
            service_target: target,
            steps,
        });
    }
    if matches!(steps.first(), Some(Step::Restored { .. })) {
        write_atomic_as(&job.plist, &saved, mode, Some((uid, gid)), Replace::Yes).map_err(|e| {
            Error::Write(format!(
                "cannot restore {} from {}: {e}",
                job.plist.display(),
                backup.display()
            ))
        })?;
    }
    match &loaded {
        Loaded::Loaded { .. } if !disabled => {
            reload_job(
                lc,
                &domain,
                &target,
                &job.plist,
                exit_bound(&loaded),
                &mut steps,
            )
            .await?;
        }
        Loaded::NotLoaded if !disabled => {
            bootstrap(lc, &domain, &target, &job.plist, &mut steps).await?;
        }
        _ => {}
    }
    steps.push(Step::Reload(reload));
    // Only once launchd has the restored definition: until then the backup is what a second
    // release needs.
    for path in [&record_path, &backup] {
        if let Err(e) = fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(Error::Write(format!(
                "cannot remove {}: {e}",
                path.display()
            )));
        }
    }
    steps.push(Step::Forgot { backup });
    // launchgraph's own bootout of the job, if any, is undone by the reload above; and when
    // the job could not be loaded (no domain, disabled), giving it back would not load it
    // either.
    if booted_out::forget(state_dir, &job.label).map_err(|e| Error::Write(e.to_string()))? {
        steps.push(Step::ForgotBootout {
            record: booted_out_record,
        });
    }
    Ok(Released {
        service_target: target,
        steps,
    })
}

/// What [`give_back`] found of a job launchgraph had booted out, and did (or would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveBack {
    /// It was not loaded: bootstrapped, so launchd runs it as its plist says.
    LoadedAgain,
    /// Loaded already: someone loaded it since (a login, an admin, a release), or the
    /// daemon's own start of it was cut short after its bootstrap.
    AlreadyLoaded,
    /// Its plist no longer exists: there is nothing to load.
    PlistGone,
    /// Its domain does not exist now (nobody is logged in at the GUI): launchd loads the
    /// LaunchAgents of a user at their next login.
    NoDomain,
    /// Its owner disabled it (`launchctl print-disabled`): launchd would refuse the
    /// bootstrap, and launchgraph never lifts an owner's disable.
    Disabled,
}

/// What [`give_back`] planned or did.
#[derive(Debug, Clone)]
pub struct GivenBack {
    pub service_target: String,
    pub outcome: GiveBack,
    pub steps: Vec<Step>,
}

/// Gives a job launchgraph booted out back to launchd: bootstraps it in the domain it was
/// unloaded from when it is still not loaded there (retried while launchd drains, 5/37; a
/// bootstrap answered "already loaded" is a success), then removes its record. A plist that
/// no longer exists, a domain that does not exist now, or an owner's disable are reported
/// and the record removed: nothing launchgraph could do loads the job. A failed bootstrap
/// keeps the record, so that the next `release` tries again. With `dry_run`, only plans.
pub async fn give_back(
    record: &booted_out::Record,
    state_dir: &Path,
    launchd: &Launchd<'_>,
    dry_run: bool,
) -> Result<GivenBack, Error> {
    let path =
        booted_out::path_of(state_dir, &record.label).map_err(|e| Error::File(e.to_string()))?;
    let (domain, plist) = (record.domain.as_str(), record.plist.as_path());
    let target = service_target(domain, &record.label);
    let lc = launchd.launchctl;
    let loaded = lc.print(&target).await.map_err(launchd_error(vec![]))?;
    let outcome = match loaded {
        PrintOutcome::Loaded(_) => GiveBack::AlreadyLoaded,
        PrintOutcome::NoDomain { .. } => GiveBack::NoDomain,
        PrintOutcome::NotLoaded if !plist.exists() => GiveBack::PlistGone,
        PrintOutcome::NotLoaded if disabled(lc, domain, &record.label).await => GiveBack::Disabled,
        PrintOutcome::NotLoaded => GiveBack::LoadedAgain,
    };
    let mut steps = Vec::new();
    if outcome == GiveBack::LoadedAgain {
        match dry_run {
            true => steps.push(Step::Launchctl(argv(&[
                "bootstrap",
                domain,
                &plist.display().to_string(),
            ]))),
            false => bootstrap(lc, domain, &target, plist, &mut steps)
                .await
                .map_err(|e| match e {
                    Error::Launchd { message, done } => Error::Launchd {
                        message: format!(
                            "{message}; the record {} is kept, so that `launchgraph release` \
                             tries again",
                            path.display()
                        ),
                        done,
                    },
                    other => other,
                })?,
        }
    }
    if !dry_run {
        booted_out::forget(state_dir, &record.label).map_err(|e| Error::Write(e.to_string()))?;
    }
    steps.push(Step::ForgotBootout { record: path });
    Ok(GivenBack {
        service_target: target,
        outcome,
        steps,
    })
}

/// The record of every adopted job, by label.
pub fn adopted(state_dir: &Path) -> Result<Vec<Record>, Error> {
    let dir = state_dir.join(ADOPTED_DIR);
    let paths = crate::fsutil::json_files_in(&dir)
        .map_err(|e| Error::File(format!("cannot list {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for p in paths {
        if let Some(r) = read_record(&p)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The record of `label`, if it is adopted.
pub fn record_of(state_dir: &Path, label: &str) -> Result<Option<Record>, Error> {
    check_label(label)?;
    read_record(&backup_paths(state_dir, label).1)
}

/// Whether `print-disabled` says the label is disabled in the domain. Unknown (the call
/// failed) counts as enabled: the bootstrap then says so itself.
async fn disabled(lc: &Launchctl, domain: &str, label: &str) -> bool {
    lc.print_disabled(domain)
        .await
        .is_ok_and(|m| m.get(label).copied().unwrap_or(false))
}

fn exit_bound(loaded: &Loaded) -> Duration {
    let secs = match loaded {
        Loaded::Loaded {
            exit_timeout: Some(s),
            ..
        } if *s > 0 => Duration::from_secs(*s),
        _ => DEFAULT_EXIT_TIMEOUT,
    };
    secs.min(MAX_BOOTOUT_WAIT)
        .saturating_add(Duration::from_secs(5))
}

fn launchd_error(done: Vec<Step>) -> impl FnOnce(LaunchctlError) -> Error {
    move |e| Error::Launchd {
        message: e.to_string(),
        done,
    }
}

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// `bootout`, a wait until `print` no longer finds the job (a bootout returns before the job
/// has stopped, and answers 36 while it stops, osquery/osquery#5698), then [`bootstrap`].
async fn reload_job(
    lc: &Launchctl,
    domain: &str,
    target: &str,
    plist: &Path,
    bound: Duration,
    steps: &mut Vec<Step>,
) -> Result<(), Error> {
    lc.bootout(target)
        .await
        .map_err(launchd_error(steps.clone()))?;
    steps.push(Step::Launchctl(argv(&["bootout", target])));
    let deadline = crate::clock::deadline(bound);
    loop {
        match lc.print(target).await {
            Ok(PrintOutcome::NotLoaded | PrintOutcome::NoDomain { .. }) => break,
            Ok(PrintOutcome::Loaded(_)) | Err(_) if Instant::now() >= deadline => {
                return Err(Error::Launchd {
                    message: format!(
                        "{target} is still loaded {} after `launchctl bootout {target}`; the \
                         plist is as reported above: bootstrap it once the job is gone with \
                         `launchctl bootstrap {domain} {}`",
                        humantime::format_duration(bound),
                        plist.display()
                    ),
                    done: steps.clone(),
                });
            }
            _ => tokio::time::sleep(PRINT_POLL).await,
        }
    }
    bootstrap(lc, domain, target, plist, steps).await
}

/// `bootstrap`, retried while launchd still drains an earlier bootout (5, 37:
/// openclaw/openclaw#136453); a job found loaded after a failed bootstrap was loaded by
/// someone else meanwhile (launchgraph's daemon starting the unit), from the same file.
async fn bootstrap(
    lc: &Launchctl,
    domain: &str,
    target: &str,
    plist: &Path,
    steps: &mut Vec<Step>,
) -> Result<(), Error> {
    let until = crate::clock::deadline(BOOTSTRAP_RETRY_FOR);
    let mut delay = Duration::from_millis(100);
    loop {
        match lc.bootstrap(domain, plist).await {
            Ok(()) => break,
            Err(e) if e.is_transient() && Instant::now() < until => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                if matches!(lc.print(target).await, Ok(PrintOutcome::Loaded(_))) {
                    break;
                }
                return Err(launchd_error(steps.clone())(e));
            }
        }
    }
    steps.push(Step::Launchctl(argv(&[
        "bootstrap",
        domain,
        &plist.display().to_string(),
    ])));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(pairs: &[(&str, Value)]) -> plist::Dictionary {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn xml(d: &plist::Dictionary) -> Vec<u8> {
        let mut out = Vec::new();
        Value::Dictionary(d.clone())
            .to_writer_xml(&mut out)
            .unwrap();
        out.push(b'\n');
        out
    }

    #[test]
    fn rewrite_sets_runatload_false_drops_keepalive_and_keeps_every_other_key_in_place() {
        let before = dict(&[
            ("Label", Value::String("homebrew.mxcl.ollama".into())),
            ("KeepAlive", Value::Boolean(true)),
            (
                "ProgramArguments",
                Value::Array(vec![Value::String(
                    "/opt/homebrew/opt/ollama/bin/ollama".into(),
                )]),
            ),
            ("RunAtLoad", Value::Boolean(true)),
            (
                "WorkingDirectory",
                Value::String("/opt/homebrew/var".into()),
            ),
        ]);
        let r = rewrite(&xml(&before)).unwrap().expect("a change");
        assert_eq!(r.format, Format::Xml);
        let shown: Vec<String> = r.changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            ["RunAtLoad: true -> false", "KeepAlive: true -> (removed)"]
        );
        let after = Value::from_reader(std::io::Cursor::new(&r.bytes))
            .unwrap()
            .into_dictionary()
            .unwrap();
        let keys: Vec<&str> = after.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["Label", "ProgramArguments", "RunAtLoad", "WorkingDirectory"]
        );
        assert_eq!(after.get("RunAtLoad"), Some(&Value::Boolean(false)));
        assert!(r.bytes.ends_with(b"</plist>\n"));
        // Rewriting what adopt wrote changes nothing.
        assert!(rewrite(&r.bytes).unwrap().is_none());
    }

    #[test]
    fn a_keepalive_dictionary_alone_is_dropped_and_runatload_written_false() {
        let before = dict(&[
            ("Label", Value::String("x".into())),
            (
                "KeepAlive",
                Value::Dictionary(dict(&[("SuccessfulExit", Value::Boolean(false))])),
            ),
        ]);
        let mut bin = Vec::new();
        Value::Dictionary(before)
            .to_writer_binary(&mut bin)
            .unwrap();
        let r = rewrite(&bin).unwrap().expect("a change");
        assert_eq!(r.format, Format::Binary);
        assert!(r.bytes.starts_with(b"bplist00"));
        let shown: Vec<String> = r.changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                "RunAtLoad: (absent) -> false",
                "KeepAlive: {SuccessfulExit = false} -> (removed)"
            ]
        );
    }

    #[test]
    fn nothing_to_rewrite_when_launchd_would_not_start_the_job() {
        let plain = dict(&[
            ("Label", Value::String("x".into())),
            ("KeepAlive", Value::Boolean(false)),
        ]);
        assert!(rewrite(&xml(&plain)).unwrap().is_none());
        assert!(
            rewrite(b"not a plist")
                .unwrap_err()
                .contains("not a valid plist")
        );
    }

    #[test]
    fn a_running_job_is_not_stopped_unless_asked() {
        let running = Loaded::Loaded {
            pid: Some(7),
            running: true,
            starts_by_itself: true,
            exit_timeout: None,
        };
        assert_eq!(
            decide(true, &running, false),
            Reload::Deferred { pid: Some(7) }
        );
        assert_eq!(
            decide(true, &running, true),
            Reload::Restart { pid: Some(7) }
        );
        let idle = Loaded::Loaded {
            pid: None,
            running: false,
            starts_by_itself: true,
            exit_timeout: None,
        };
        assert_eq!(decide(true, &idle, false), Reload::Now);
        // The file was adopted already, but launchd still runs the old definition.
        assert_eq!(decide(false, &idle, false), Reload::Now);
        let adopted = Loaded::Loaded {
            pid: None,
            running: false,
            starts_by_itself: false,
            exit_timeout: None,
        };
        assert_eq!(decide(false, &adopted, true), Reload::UpToDate);
        assert_eq!(decide(true, &Loaded::NotLoaded, true), Reload::NotLoaded);
        assert_eq!(decide(true, &Loaded::NoDomain, true), Reload::NoDomain);
    }

    #[test]
    fn labels_that_cannot_name_a_file_are_refused() {
        for bad in ["", ".hidden", "a/b", "../x"] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
        assert!(check_label("ai.openclaw.gateway").is_ok());
    }
}
