//! Snapshots: one gzipped tarball of what a host runs, taken before a change window, so that
//! what ran before it can be read (and put back by hand) after it.
//!
//! A snapshot holds the unit files (and the check errors when they are invalid), the runbook
//! of their guards and switches (text and JSON), the plists the units reference, each unit's
//! resolved environment, the stored fingerprints, the daemon's live status, Ollama's version
//! and model list, and OpenClaw's `doctor --json` report, with the secrets in all of them
//! redacted. It is written atomically under `<state>/snapshots/`. This module restores
//! nothing and prints nothing: the CLI decides what to show.
//!
//! A snapshot is always written when the state directory is writable: whatever cannot be
//! collected (no daemon, no Ollama, no OpenClaw, a missing plist) becomes a warning, in the
//! returned [`Snapshot`] and in the archive's `manifest.json`. Only failing to write the
//! archive itself is an error, and then no file is left behind. The layout and the redaction
//! rules are documented in docs/snapshot.md.
//!
//! - `local`: what is read on this host (unit files, the runbook of their guards, plists,
//!   environments, fingerprints).
//! - `collect`: the entries being collected, and `Collector`, the
//!   interface of every source beyond the local files, asked all at once by [`take`]:
//!   `status` (the daemon), `ollama`, `openclaw`. Only `collectors` names them.
//! - `redact`: which keys hold secrets, and replacing their values everywhere.
//! - `archive`: snapshot file names, writing the tarball atomically, listing.

mod archive;
mod collect;
mod local;
mod ollama;
mod openclaw;
mod redact;
mod status;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

pub use archive::{list, snapshots_dir};
pub(crate) use ollama::DEFAULT_OLLAMA;
pub use redact::{REDACTED, is_secret_key};

use archive::{MAX_NAMES_PER_SECOND, publish, stamp, write_archive};
use collect::{Collected, Collector};
use redact::SECRET_WORDS;

/// The bound on each thing a snapshot asks of another process: the daemon's status, Ollama's
/// two endpoints together, `openclaw doctor --json`.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

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

/// Takes a snapshot (see the module documentation) and writes it atomically.
///
/// Collecting never fails: each thing that could not be collected is a warning. The daemon,
/// Ollama and OpenClaw are asked at the same time, each bounded by `opts.timeout`.
pub async fn take(opts: &SnapshotOptions) -> Result<Snapshot, SnapshotError> {
    let now = SystemTime::now();

    let prepared = {
        let (units_dir, state_dir) = (opts.units_dir.clone(), opts.state_dir.clone());
        let mut collectors = collectors(opts);
        tokio::task::spawn_blocking(move || {
            let (mut c, units) = local::collect(&units_dir, &state_dir);
            for collector in &mut collectors {
                collector.prepare(&units, &mut c);
            }
            (c, collectors)
        })
        .await
    };
    let (mut c, collectors) = prepared.unwrap_or_else(|e| {
        let c = Collected::warning(format!(
            "reading the units and the state directory failed: {e}"
        ));
        (c, collectors(opts))
    });
    for asked in ask_all(collectors, opts.timeout).await {
        c.extend(asked);
    }

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

/// Everything asked beyond the local files, in the order their entries appear: the one place
/// that names them.
fn collectors(opts: &SnapshotOptions) -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(status::LiveStatus::new(opts.socket.clone())),
        Box::new(ollama::Ollama::new(opts.ollama.unwrap_or(DEFAULT_OLLAMA))),
        Box::new(openclaw::Doctor::new(opts.openclaw.clone())),
    ]
}

/// Asks every collector at the same time, each a task of its own; the results in the
/// collectors' order. Dropping the future aborts them all (and a helper they run is killed).
async fn ask_all(collectors: Vec<Box<dyn Collector>>, timeout: Duration) -> Vec<Collected> {
    let mut tasks = tokio::task::JoinSet::new();
    let names: Vec<&'static str> = collectors.iter().map(|c| c.name()).collect();
    for (i, collector) in collectors.into_iter().enumerate() {
        let asked = collector.collect(timeout);
        tasks.spawn(async move { (i, asked.await) });
    }
    let mut results: Vec<Option<Collected>> = names.iter().map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, asked)) = done {
            results[i] = Some(asked);
        }
    }
    results
        .into_iter()
        .zip(names)
        .map(|(asked, name)| {
            asked.unwrap_or_else(|| {
                Collected::warning(format!("{name} not collected: its collector failed"))
            })
        })
        .collect()
}

/// This host's name, for the manifest.
fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
