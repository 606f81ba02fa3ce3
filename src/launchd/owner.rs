//! What a job's owner decided, which launchgraph does not undo: a job its owner disabled, and
//! a label its owner already loaded in another domain.
//!
//! - **Disabled.** launchgraph never runs `launchctl disable` (no command of it does), so a
//!   label `print-disabled` shows disabled, or a plist with `Disabled = true` and no override,
//!   was disabled by its owner: `openclaw gateway stop --disable`, or OpenClaw's self-update,
//!   which disables its job so that KeepAlive cannot respawn it while npm replaces its files
//!   and enables it again afterwards (openclaw/openclaw src/daemon/launchd-stop.ts
//!   `parkCurrentLaunchAgentForMaintenance`, `stopLaunchAgent`; enabling it in the middle
//!   races npm, openclaw/openclaw#66390). Such a job is neither enabled, bootstrapped nor
//!   kickstarted: the unit waits with [`Reason::DisabledByOwner`] until it is enabled again.
//!   Should launchgraph ever disable a job itself, it must record that in its state directory
//!   and tell its own disable from the owner's here.
//! - **Loaded elsewhere.** One label may be loaded in several domains at once, each a separate
//!   job: `brew services` without sudo loads into `gui/<uid>` from a GUI session and into
//!   `user/<uid>` over SSH (Homebrew/brew Library/Homebrew/services/system.rb `domain_target`;
//!   Homebrew/homebrew-services#638). Bootstrapping the unit's domain on top would run two
//!   `ollama serve` on one port, so the unit waits with [`Reason::LoadedInOtherDomain`].
//!
//! The launchd backend asks before it would start a job that is not running; `check` reports
//! both as warning findings. What is asked is launchctl's; which domains and what to say are
//! plain functions, tested here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::{Launchctl, PrintOutcome, ServiceInfo, service_target};
use crate::preflight::{Finding, FindingCode};
use crate::reason::Reason;
use crate::unit::LaunchdSpec;

/// How often a unit held by its owner is asked about again: a few launchctl calls, cheap
/// enough to notice an `enable` or a `bootout` within seconds.
pub(crate) const OWNER_RECHECK: Duration = Duration::from_secs(5);

/// Why a job is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disabled {
    /// An override in launchd's database (`launchctl disable`), shown by `print-disabled`.
    Override,
    /// The plist's own `Disabled = true`, with no override (launchd.plist(5) Disabled).
    PlistKey,
}

/// Whether `label` is disabled: an override wins over the plist's `Disabled` key, as in
/// launchd, where `enable` overrides the key (launchctl(1) enable/disable,
/// https://keith.github.io/xcode-man-pages/launchctl.1.html).
pub(crate) fn disabled(
    overrides: &BTreeMap<String, bool>,
    label: &str,
    plist_disabled: bool,
) -> Option<Disabled> {
    match overrides.get(label) {
        Some(true) => Some(Disabled::Override),
        Some(false) => None,
        None => plist_disabled.then_some(Disabled::PlistKey),
    }
}

/// The plist's `Disabled` key; false when it cannot be read (the file checks report that).
pub(crate) fn plist_disabled(path: &Path) -> bool {
    crate::fsutil::read_regular(path, crate::preflight::MAX_PLIST_BYTES)
        .ok()
        .and_then(|bytes| plist::Value::from_reader(std::io::Cursor::new(bytes)).ok())
        .and_then(|v| v.into_dictionary())
        .and_then(|d| d.get("Disabled").and_then(plist::Value::as_boolean))
        .unwrap_or(false)
}

/// The domains other than `own` that may hold the label: `system`, and `gui/<uid>` and
/// `user/<uid>` of each of `uids` (the plist's owner, the unit's domain user, the console
/// user), each once.
pub(crate) fn other_domains(own: &str, uids: &[u32]) -> Vec<String> {
    let mut out = vec!["system".to_owned()];
    for uid in uids {
        for kind in ["gui", "user"] {
            let d = format!("{kind}/{uid}");
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out.retain(|d| d != own.trim_end_matches('/'));
    out
}

/// The uids whose domains may hold the unit's label: the plist's owner (a LaunchAgent's
/// user), the unit's domain user, and, for a `system` unit, whoever is at the console.
pub(crate) fn owner_uids(plist: &Path, domain_uid: Option<u32>, console: Option<u32>) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(plist).ok().map(|m| m.uid());
    let mut uids: Vec<u32> = Vec::new();
    let console = console.filter(|_| domain_uid.is_none());
    for uid in [owner, domain_uid, console].into_iter().flatten() {
        // Root has no GUI domain, and a root-owned daemon plist says nothing about a user.
        if uid != 0 && !uids.contains(&uid) {
            uids.push(uid);
        }
    }
    uids
}

/// Something the owner decided that keeps the unit from starting: the reason, what it is and
/// how to clear it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnerHold {
    pub reason: Reason,
    pub message: String,
    pub fix: String,
}

impl OwnerHold {
    /// The cause status and the log show.
    pub(crate) fn detail(&self) -> String {
        format!("{} Fix: {}", self.message, self.fix)
    }

    /// The same, as `check` reports it.
    fn finding(&self, plist: &Path) -> Finding {
        let code = match self.reason {
            Reason::DisabledByOwner => FindingCode::DisabledByOwner,
            _ => FindingCode::LoadedInOtherDomain,
        };
        Finding::new(
            code,
            Some(plist.to_owned()),
            self.message.clone(),
            self.fix.clone(),
        )
    }
}

/// `DISABLED_BY_OWNER` for `label` in `domain`.
pub(crate) fn disabled_hold(domain: &str, label: &str, how: Disabled) -> OwnerHold {
    let target = service_target(domain, label);
    let how = match how {
        Disabled::Override => format!("`launchctl print-disabled {domain}` shows it disabled"),
        Disabled::PlistKey => "its plist sets Disabled = true and no override enables it".into(),
    };
    OwnerHold {
        reason: Reason::DisabledByOwner,
        message: format!(
            "{target} is disabled ({how}). launchgraph never disables a job, so its owner \
             did (`openclaw gateway stop --disable`, OpenClaw parking it during a self-update, \
             an admin): launchgraph does not enable, bootstrap or kickstart it, and starts it \
             once it is enabled again (checked every {}s).",
            OWNER_RECHECK.as_secs()
        ),
        fix: format!(
            "`launchctl enable {target}` when the owner is done with it (OpenClaw: `openclaw \
             gateway start`; its self-update enables the job again by itself)"
        ),
    }
}

/// `LOADED_IN_OTHER_DOMAIN`: `label` is loaded in `other`, the unit's domain is `own`.
pub(crate) fn elsewhere_hold(own: &str, other: &str, label: &str, info: &ServiceInfo) -> OwnerHold {
    let state = match info.pid.filter(|_| info.is_running()) {
        Some(pid) => format!("running as pid {pid}"),
        None => "loaded, not running".to_owned(),
    };
    let from = info
        .path
        .as_ref()
        .map(|p| format!(" from {}", p.display()))
        .unwrap_or_default();
    OwnerHold {
        reason: Reason::LoadedInOtherDomain,
        message: format!(
            "{label} is already loaded in {other} ({state}{from}), and the unit's domain is \
             {own}: a bootstrap into {own} would run a second copy of it (two servers on one \
             port). `brew services` without sudo loads into gui/UID from a GUI session and \
             into user/UID over SSH (Homebrew/homebrew-services#638)."
        ),
        fix: format!(
            "`launchctl bootout {}` (or `brew services stop` from the kind of session that \
             started it), and launchgraph bootstraps it into {own}; or set `domain = \
             \"{other}\"` in the unit to drive that copy",
            service_target(other, label)
        ),
    }
}

/// Whether the owner disabled `label` in `domain`. `None` also when `print-disabled` fails:
/// then nothing is known, and a bootstrap of a disabled job fails visibly by itself.
pub(crate) async fn check_disabled(
    lc: &Launchctl,
    domain: &str,
    label: &str,
    plist: &Path,
) -> Option<OwnerHold> {
    match lc.print_disabled(domain).await {
        Ok(overrides) => disabled(&overrides, label, plist_disabled(plist))
            .map(|how| disabled_hold(domain, label, how)),
        Err(e) => {
            tracing::debug!(domain, error = %e, "print-disabled failed");
            None
        }
    }
}

/// The first domain of [`other_domains`] where `label` is loaded. A domain that does not
/// exist, or a `print` that fails, holds nothing.
pub(crate) async fn check_elsewhere(
    lc: &Launchctl,
    own: &str,
    label: &str,
    uids: &[u32],
) -> Option<OwnerHold> {
    for other in other_domains(own, uids) {
        if let Ok(PrintOutcome::Loaded(info)) = lc.print(&service_target(&other, label)).await {
            return Some(elsewhere_hold(own, &other, label, &info));
        }
    }
    None
}

/// What `check` reports of the owner's decisions for a launchd unit: `DISABLED_BY_OWNER` and
/// `LOADED_IN_OTHER_DOMAIN`, as warnings. Nothing when its domain cannot be resolved (no GUI
/// session for `gui/console`).
pub async fn owner_findings(
    lc: &Launchctl,
    spec: &LaunchdSpec,
    console: &super::ConsoleUser,
) -> Vec<Finding> {
    let Ok((domain, domain_uid)) = super::domain::resolve(&spec.domain, console) else {
        return Vec::new();
    };
    let label = &spec.label.0;
    let uids = owner_uids(&spec.plist, domain_uid, console.uid().ok());
    let mut out = Vec::new();
    if let Some(h) = check_disabled(lc, &domain, label, &spec.plist).await {
        out.push(h.finding(&spec.plist));
    }
    if let Some(h) = check_elsewhere(lc, &domain, label, &uids).await {
        out.push(h.finding(&spec.plist));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_wins_over_the_plist_key() {
        let mut o = BTreeMap::new();
        assert_eq!(disabled(&o, "a", false), None);
        assert_eq!(disabled(&o, "a", true), Some(Disabled::PlistKey));
        o.insert("a".to_owned(), true);
        assert_eq!(disabled(&o, "a", false), Some(Disabled::Override));
        o.insert("a".to_owned(), false);
        assert_eq!(disabled(&o, "a", true), None, "enable overrides Disabled");
        assert_eq!(disabled(&o, "b", false), None);
    }

    #[test]
    fn other_domains_are_system_and_each_user_s_gui_and_user_domains_but_its_own() {
        assert_eq!(
            other_domains("gui/501", &[501]),
            vec!["system", "user/501"],
            "brew services over SSH"
        );
        assert_eq!(
            other_domains("system", &[501, 502, 501]),
            vec!["gui/501", "user/501", "gui/502", "user/502"]
        );
        assert_eq!(
            other_domains("user/501/", &[501]),
            vec!["system", "gui/501"]
        );
    }

    #[test]
    fn holds_name_the_target_the_domain_and_the_fix() {
        let h = disabled_hold("gui/501", "ai.openclaw.gateway", Disabled::Override);
        assert_eq!(h.reason, Reason::DisabledByOwner);
        assert!(
            h.message.starts_with(
                "gui/501/ai.openclaw.gateway is disabled (`launchctl print-disabled gui/501` \
                 shows it disabled)"
            ),
            "{}",
            h.message
        );
        assert!(
            h.fix
                .starts_with("`launchctl enable gui/501/ai.openclaw.gateway` when the owner"),
            "{}",
            h.fix
        );
        let info = crate::launchd::parse_print(
            "user/501/homebrew.mxcl.ollama = {\n\tstate = running\n\tpid = 42\n\
             \tpath = /Users/a/Library/LaunchAgents/homebrew.mxcl.ollama.plist\n}\n",
        );
        let h = elsewhere_hold("gui/501", "user/501", "homebrew.mxcl.ollama", &info);
        assert_eq!(h.reason, Reason::LoadedInOtherDomain);
        assert!(
            h.message.starts_with(
                "homebrew.mxcl.ollama is already loaded in user/501 (running as pid 42 from \
                 /Users/a/Library/LaunchAgents/homebrew.mxcl.ollama.plist), and the unit's \
                 domain is gui/501"
            ),
            "{}",
            h.message
        );
        assert!(
            h.fix
                .starts_with("`launchctl bootout user/501/homebrew.mxcl.ollama`"),
            "{}",
            h.fix
        );
        assert!(h.fix.contains("`domain = \"user/501\"`"), "{}", h.fix);
    }
}
