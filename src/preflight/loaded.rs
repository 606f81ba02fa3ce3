//! `LOADED_DEFINITION_STALE`: the job launchd has loaded against the unit's plist file.
//!
//! Preflight reads files only, so this check takes what `launchctl print` said as an input;
//! `check` and the launchd backend run `print` and hand it over. The comparison itself is
//! [`crate::launchd::drift`].

use super::finding::{Finding, FindingCode};
use super::plist;
use crate::launchd::{FileDefinition, ServiceInfo, drift};
use crate::unit::LaunchdSpec;

/// The finding for a job whose loaded definition (`loaded`) differs from its plist file, in
/// domain target `domain` (`system`, `gui/501`). `None` when they agree, or when the plist
/// cannot be read (the file checks report that).
pub(crate) fn check(spec: &LaunchdSpec, domain: &str, loaded: &ServiceInfo) -> Option<Finding> {
    let dict = plist::read(spec).ok()?.dict.ok()?;
    let file = FileDefinition::from_dict(&dict);
    let differences = drift(&spec.plist, &file, loaded);
    if differences.is_empty() {
        return None;
    }
    let target = crate::launchd::service_target(domain, &spec.label.0);
    let listed: Vec<String> = differences.iter().map(ToString::to_string).collect();
    let running = if loaded.is_running() {
        "the running process was started from the loaded definition"
    } else {
        "a kickstart would run the loaded definition"
    };
    Some(Finding::new(
        FindingCode::LoadedDefinitionStale,
        Some(spec.plist.clone()),
        format!(
            "launchd has {target} loaded from an older definition than {}: {}; launchd reads \
             a plist only at bootstrap, so {running}, not the file (openclaw/openclaw#34829)",
            spec.plist.display(),
            listed.join("; ")
        ),
        format!(
            "`launchctl bootout {target}`, then `launchctl bootstrap {domain} {}`; launchgraph \
             does this itself before it starts the job when it is not running (for a running \
             one, `launchgraph restart` the unit)",
            spec.plist.display()
        ),
    ))
}
