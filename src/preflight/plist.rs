//! The plist file of a `launchd` unit: reading it (XML or binary), and the rules launchd
//! applies to the file itself before it reads a key: owner, mode and name (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html),
//! and the `Label` that must match the unit's.

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use plist::{Dictionary, Value};

use super::finding::{Finding, FindingCode};
use crate::unit::{Domain, LaunchdSpec};

/// The most a plist may hold; launchd job plists are a few KiB.
pub(crate) const MAX_PLIST_BYTES: u64 = 1 << 20;

/// A plist that was found and read, whatever its contents turned out to be.
pub(crate) struct PlistFile {
    pub meta: Metadata,
    pub dict: Result<Dictionary, Finding>,
}

/// Reads the unit's plist. `Err` when there is no file to read at all.
pub(crate) fn read(spec: &LaunchdSpec) -> Result<PlistFile, Finding> {
    let path = &spec.plist;
    let meta = std::fs::metadata(path).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound {
            "does not exist".to_owned()
        } else {
            format!("cannot be read: {e}")
        };
        Finding::new(
            FindingCode::PlistUnreadable,
            Some(path.clone()),
            format!("the plist {} of job {} {what}", path.display(), spec.label),
            "write the plist (reinstall the service that owns it, e.g. `openclaw gateway \
             install --force` or `brew services start <formula>`), or fix `plist` in the \
             unit file",
        )
    })?;
    let unreadable = |why: String| {
        Finding::new(
            FindingCode::PlistUnreadable,
            Some(path.clone()),
            format!("the plist {} {why}", path.display()),
            format!(
                "check it with `plutil -lint {}` and rewrite it (reinstalling the service \
                 that owns it rewrites it)",
                path.display()
            ),
        )
    };
    // Read from the file opened without blocking and bounded: a FIFO or a device put where
    // the plist should be is a finding, not a hang or an endless read.
    let dict = match crate::fsutil::read_regular(path, MAX_PLIST_BYTES) {
        Err(e) => Err(unreadable(e.describe("a plist"))),
        Ok(bytes) => match Value::from_reader(std::io::Cursor::new(bytes)) {
            Ok(Value::Dictionary(d)) => Ok(d),
            Ok(_) => Err(unreadable("has no dictionary at its root".into())),
            Err(e) => Err(unreadable(format!(
                "is not a valid plist (XML or binary): {e}"
            ))),
        },
    };
    Ok(PlistFile { meta, dict })
}

/// Whether the plist must be owned by root: a LaunchDaemon's (the system domain, or a file in
/// a `LaunchDaemons` directory), or a LaunchAgent's in `/Library/LaunchAgents` (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html:
/// "LaunchAgents in /Library must be root-owned").
fn is_daemon(spec: &LaunchdSpec) -> bool {
    spec.domain == Domain::System
        || spec
            .plist
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "LaunchDaemons")
        || spec.plist.starts_with("/Library/LaunchAgents")
}

/// launchd's ownership rule (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html, "Path had bad ownership/permissions"): LaunchDaemon
/// plists owned by root, LaunchAgent plists by root or the domain's user, and no plist
/// group- or world-writable (`mode & 0o022 == 0`). The console user of `gui/console` is only
/// known at start, so any owner passes there. `owner_reported`: the owner is already reported
/// (`AGENT_DOMAIN_OTHER_USER`, one user's agent in another user's domain), only the mode is
/// checked.
pub(crate) fn ownership(
    spec: &LaunchdSpec,
    meta: &Metadata,
    owner_reported: bool,
) -> Option<Finding> {
    let path = &spec.plist;
    let mode = meta.permissions().mode() & 0o7777;
    let uid = meta.uid();
    let daemon = is_daemon(spec);
    let allowed: Option<Vec<u32>> = if daemon {
        Some(vec![0])
    } else {
        match spec.domain {
            Domain::Gui(u) | Domain::User(u) => Some(vec![0, u]),
            Domain::GuiConsole | Domain::System => None,
        }
    };
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    if let Some(allowed) = &allowed
        && !owner_reported
        && !allowed.contains(&uid)
    {
        let who = if daemon {
            "a LaunchDaemon plist must be owned by root".to_owned()
        } else {
            format!(
                "a LaunchAgent plist in {} must be owned by root or uid {}",
                spec.domain,
                allowed.last().copied().unwrap_or(0)
            )
        };
        problems.push(format!("it is owned by uid {uid}, and {who}"));
        fixes.push(if daemon {
            format!("sudo chown root:wheel {}", path.display())
        } else {
            format!(
                "sudo chown {} {}",
                allowed.last().copied().unwrap_or(0),
                path.display()
            )
        });
    }
    if mode & 0o022 != 0 {
        problems.push(format!(
            "its mode {mode:04o} lets its group or others write it"
        ));
        fixes.push(format!("sudo chmod 644 {}", path.display()));
    }
    if problems.is_empty() {
        return None;
    }
    Some(Finding::new(
        FindingCode::PlistBadOwnership,
        Some(path.clone()),
        format!(
            "launchd refuses the plist {} (\"Path had bad ownership/permissions\"): {}",
            path.display(),
            problems.join("; ")
        ),
        fixes.join(" && "),
    ))
}

/// Pre-10.10 launchctl skipped files not named `*.plist` (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html).
pub(crate) fn name(spec: &LaunchdSpec) -> Option<Finding> {
    let path = &spec.plist;
    if path.extension().is_some_and(|e| e == "plist") {
        return None;
    }
    let suggested = path.with_file_name(format!("{}.plist", spec.label));
    Some(Finding::new(
        FindingCode::PlistBadName,
        Some(path.clone()),
        format!(
            "the plist {} is not named *.plist; launchctl has been known to skip such files",
            path.display()
        ),
        format!(
            "rename it to {} and update `plist` in the unit file",
            suggested.display()
        ),
    ))
}

/// The plist's `Label` must be the unit's: launchgraph drives the job by its label, so a
/// mismatch means it would start or stop another job than the one this file describes.
pub(crate) fn label(spec: &LaunchdSpec, dict: &Dictionary) -> Option<Finding> {
    let path = &spec.plist;
    let found = dict.get("Label").and_then(Value::as_string);
    if found == Some(spec.label.0.as_str()) {
        return None;
    }
    let message = match found {
        Some(l) => format!(
            "the plist {} has Label {l:?}, but the unit drives {:?}",
            path.display(),
            spec.label.0
        ),
        None => format!(
            "the plist {} has no Label string; the unit drives {:?}",
            path.display(),
            spec.label.0
        ),
    };
    Some(Finding::new(
        FindingCode::PlistLabelMismatch,
        Some(path.clone()),
        message,
        match found {
            Some(l) => format!(
                "set `label = {l:?}` in the unit file, or point `plist` at the plist of {:?}",
                spec.label.0
            ),
            None => format!(
                "add <key>Label</key><string>{}</string> to the plist",
                spec.label.0
            ),
        },
    ))
}
