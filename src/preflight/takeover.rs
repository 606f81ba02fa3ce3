//! Takeover: a launchd job launchgraph orders after its requirements must not also be started
//! by launchd on its own. `RunAtLoad` starts it when the job is loaded (at boot or login), and
//! `KeepAlive` (true or a dict) implies RunAtLoad and relaunches it whenever launchd sees fit
//! (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html; Homebrew/brew Library/Homebrew/services/cli.rb `launchctl_load`; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html): either way it runs before its requirements are ready.
//!
//! The fix is `launchgraph adopt UNIT` ([`crate::adopt`]); a reinstall that writes the keys
//! back brings the findings back, and adopting again re-applies.
//!
//! Units nothing requires, and units that require nothing, may keep both keys: a Homebrew
//! service plist (`brew services`, with its `LimitLoadToSessionType` and all) is accepted as
//! it is unless the unit orders it after something.

use plist::Value;

use super::finding::{Finding, FindingCode};
use crate::unit::{LaunchdSpec, Unit};

/// The KeepAlive value as a person reads it in the plist.
fn describe_keep_alive(v: &Value) -> Option<String> {
    match v {
        Value::Boolean(true) => Some("KeepAlive = true".to_owned()),
        Value::Dictionary(d) => {
            let keys: Vec<&str> = d.keys().map(String::as_str).collect();
            Some(format!("KeepAlive = {{{}}}", keys.join(", ")))
        }
        _ => None,
    }
}

fn is_openclaw(spec: &LaunchdSpec) -> bool {
    spec.label.0.starts_with("ai.openclaw.")
}

fn is_homebrew(spec: &LaunchdSpec) -> bool {
    spec.label.0.starts_with("homebrew.mxcl.")
}

/// The fix shared by both findings: `launchgraph adopt UNIT`, which also undoes what a
/// reinstall wrote back.
fn fix(unit: &Unit, spec: &LaunchdSpec) -> String {
    let mut fix = format!(
        "run `sudo launchgraph adopt {unit}`: it backs {plist} up, sets RunAtLoad to false and \
         removes KeepAlive in it, and reloads the job so launchd rereads it; launchgraph then \
         kickstarts it once its requirements are ready and restarts it itself \
         (`launchgraph release {unit}` gives it back to launchd). Or run it as an `exec` unit \
         and unload the launchd job",
        unit = unit.name,
        plist = spec.plist.display()
    );
    if is_homebrew(spec) {
        fix.push_str(&format!(
            ". `brew services` rewrites this plist (start, restart, upgrade) with both keys: \
             this warning then comes back, and `launchgraph adopt {}` again re-applies; or \
             prefer the `exec` unit after `brew services stop`",
            unit.name
        ));
    }
    // External-supervisor mode: openclaw/openclaw docs/cli/gateway.md, "External supervisors".
    if is_openclaw(spec) {
        fix.push_str(&format!(
            ". For the OpenClaw gateway set OPENCLAW_SUPERVISOR_MODE=external and \
             OPENCLAW_SERVICE_REPAIR_POLICY=external, or its install and doctor put \
             RunAtLoad and KeepAlive back (this warning then comes back: `launchgraph adopt \
             {}` again re-applies)",
            unit.name
        ));
    }
    fix
}

/// The takeover findings of one launchd unit, from its parsed plist.
pub(crate) fn check(unit: &Unit, spec: &LaunchdSpec, dict: &plist::Dictionary) -> Vec<Finding> {
    if unit.requires.is_empty() {
        return Vec::new();
    }
    let requires: Vec<&str> = unit.requires.iter().map(|r| r.as_str()).collect();
    let requires = requires.join(", ");
    let mut out = Vec::new();
    if dict.get("RunAtLoad").and_then(Value::as_boolean) == Some(true) {
        out.push(Finding::new(
            FindingCode::TakeoverRunAtLoad,
            Some(spec.plist.clone()),
            format!(
                "{} sets RunAtLoad = true: launchd starts {} whenever it loads the job (at \
                 boot or login), before {requires} is ready",
                spec.plist.display(),
                spec.label
            ),
            fix(unit, spec),
        ));
    }
    if let Some(keep_alive) = dict.get("KeepAlive").and_then(describe_keep_alive) {
        out.push(Finding::new(
            FindingCode::TakeoverKeepAlive,
            Some(spec.plist.clone()),
            format!(
                "{} sets {keep_alive}: launchd starts {} at load and relaunches it on its own, \
                 before {requires} is ready and outside the order launchgraph keeps",
                spec.plist.display(),
                spec.label
            ),
            fix(unit, spec),
        ));
    }
    out
}
