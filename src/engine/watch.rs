//! The file watcher: re-runs preflight when a file a unit depends on changes (a plist, a
//! program, an npm tree), so a unit blocked by preflight starts as soon as it is fixed, and a
//! running unit whose files broke is reported before its next start. It only reports which
//! units' files changed; what to do about it is the runtime's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::events::{EpochTx, UnitId};
use super::gate::PREFLIGHT_RETRY;
use crate::preflight::{self, PreflightContext};
use crate::unit::Unit;

/// File events closer together than this are one change (editors write in several steps).
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(250);

/// Watches the directories holding each unit's files and reports, debounced, which units'
/// files changed. Dropping it stops the watching.
pub(crate) struct FileWatch {
    _watcher: Option<notify::RecommendedWatcher>,
}

impl FileWatch {
    /// Starts watching; changed units are sent on `changed`. A watcher that cannot start is
    /// logged and replaced by the periodic retry alone.
    pub(crate) fn start(units: &[Unit], ctx: &PreflightContext, changed: EpochTx<UnitId>) -> Self {
        // Watch directories, not files: an upgrade replaces files (rename over, relink), which
        // a watch on the old inode would miss.
        let mut by_dir: BTreeMap<PathBuf, HashSet<UnitId>> = BTreeMap::new();
        let mut by_file: HashMap<PathBuf, HashSet<UnitId>> = HashMap::new();
        for (i, u) in units.iter().enumerate() {
            for p in preflight::watched_paths_with(u, ctx) {
                if let Some(dir) = p.parent() {
                    by_dir.entry(dir.to_path_buf()).or_default().insert(i);
                }
                by_file.entry(p).or_default().insert(i);
            }
        }
        let by_file = Arc::new(by_file);
        let pending: Arc<std::sync::Mutex<HashSet<UnitId>>> = Arc::default();
        let handle = tokio::runtime::Handle::current();
        let handler = {
            let by_file = by_file.clone();
            move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                // Opening or reading a file changes nothing a start depends on, and a
                // directory like /usr/bin is opened all day long by every exec on the host.
                if event.kind.is_access() || event.kind.is_other() {
                    return;
                }
                let mut hit = HashSet::new();
                for p in &event.paths {
                    if let Some(units) = by_file.get(p) {
                        hit.extend(units.iter().copied());
                    }
                }
                for u in hit {
                    // One report per burst of events for a unit.
                    if !pending.lock().expect("not poisoned").insert(u) {
                        continue;
                    }
                    let pending = pending.clone();
                    let changed = changed.clone();
                    handle.spawn(async move {
                        tokio::time::sleep(DEBOUNCE).await;
                        pending.lock().expect("not poisoned").remove(&u);
                        let _ = changed.send(u);
                    });
                }
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(
                    "cannot watch unit files ({e}); preflight is retried every {}s instead",
                    PREFLIGHT_RETRY.as_secs()
                );
                return Self { _watcher: None };
            }
        };
        let mut watched = 0;
        for dir in by_dir.keys() {
            if watch_existing(&mut watcher, dir) {
                watched += 1;
            }
        }
        tracing::debug!(directories = watched, "watching unit files");
        Self {
            _watcher: Some(watcher),
        }
    }
}

/// Watches `dir`, or its nearest existing ancestor when it does not exist yet (a missing
/// directory that appears later is itself a change worth noticing).
fn watch_existing(watcher: &mut notify::RecommendedWatcher, dir: &Path) -> bool {
    let mut d = Some(dir);
    while let Some(cur) = d {
        if cur.is_dir() {
            return watcher.watch(cur, RecursiveMode::NonRecursive).is_ok();
        }
        d = cur.parent();
    }
    false
}
