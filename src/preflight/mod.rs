//! Preflight: before every start, check what launchd (or the process layer) is about to
//! execute, so that an upgrade that broke it is a finding with a fix instead of a job that
//! launchd respawns forever.
//!
//! It owns the checks and their findings: the plist file (parses, label, ownership), the
//! program and its `#!` interpreter on the PATH the job really gets, OpenClaw's node + entry
//! layouts, versioned Cellar paths, mixed install roots, the npm global prefix, version
//! managers, working and log directories, and the takeover rules for jobs launchgraph orders.
//! It also says which files to watch to re-run it ([`watched_paths`]). It does not start,
//! stop or watch anything, and runs no program: reading files is all it does.
//!
//! - `finding`: [`Finding`], [`Severity`], [`FindingCode`] (documented in docs/preflight.md).
//! - `context`: [`PreflightContext`], how the host is seen.
//! - `job`: what a start executes, read from a plist or an exec unit.
//! - `agent_user`: whose LaunchAgent a plist is, and whether the unit's domain is theirs.
//! - `plist`: the plist file's own rules. `takeover`: RunAtLoad and KeepAlive.
//! - `shebang`: `#!` lines. `node`: node layouts, install roots, npm's prefix.
//! - `analyze`: the pass that runs the checks and resolves the [`Target`].
//! - `exposure`: which components of a path a non-root user may replace (for root jobs).
//! - `loaded`: the loaded job (as `launchctl print` shows it, handed in) against the plist
//!   file: [`loaded_definition`].

mod agent_user;
mod analyze;
mod context;
mod exposure;
mod finding;
mod job;
mod loaded;
mod node;
mod plist;
mod shebang;
mod takeover;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub(crate) use analyze::Target;
pub use context::{Accounts, LAUNCHD_DEFAULT_PATH, PreflightContext, SystemAccounts, UserEntry};
pub use exposure::{Exposed, exposed};
pub use finding::{Finding, FindingCode, Severity, blocks_start};
pub use node::{PackageInfo, parse_env_file};
pub(crate) use plist::MAX_PLIST_BYTES;

use crate::unit::{Runner, Unit};

/// Every finding for one unit, takeover rules included, in the order the start would meet
/// them. A finding of severity [`Severity::Error`] means the start must not happen.
pub fn preflight(unit: &Unit, ctx: &PreflightContext) -> Vec<Finding> {
    analyze::analyze(unit, ctx).1
}

/// What a start of `unit` will execute: the plist, program, interpreter, node, entry, npm
/// prefix and npmrc files, resolved as far as the files allow.
pub fn target(unit: &Unit, ctx: &PreflightContext) -> Target {
    analyze::analyze(unit, ctx).0
}

/// `LOADED_DEFINITION_STALE` for a `launchd` unit whose loaded job, as `launchctl print`
/// showed it (`loaded`) in domain target `domain`, differs from its plist file; `None` when
/// they agree, when the unit is not a `launchd` unit, or when the plist cannot be read. Runs
/// no program: the caller ran `print`.
pub fn loaded_definition(
    unit: &Unit,
    domain: &str,
    loaded: &crate::launchd::ServiceInfo,
) -> Option<Finding> {
    match &unit.runner {
        Runner::Launchd(spec) => loaded::check(spec, domain, loaded),
        _ => None,
    }
}

/// [`loaded_definition`] for a unit's `[launchd]` table.
pub(crate) fn loaded_definition_of(
    spec: &crate::unit::LaunchdSpec,
    domain: &str,
    loaded: &crate::launchd::ServiceInfo,
) -> Option<Finding> {
    loaded::check(spec, domain, loaded)
}

/// `AGENT_DOMAIN_OTHER_USER` for a `launchd` unit whose plist (owned by `owner_uid`) is one
/// user's LaunchAgent while its domain, resolved to `domain_uid` (for `gui/console`, the
/// console user's uid read at start), is another user's. Runs no program.
pub(crate) fn agent_domain_other_user(
    spec: &crate::unit::LaunchdSpec,
    owner_uid: u32,
    domain_uid: u32,
    accounts: &dyn Accounts,
) -> Option<Finding> {
    agent_user::other_user(spec, owner_uid, domain_uid, accounts)
}

/// Only the takeover findings of one unit (a `launchd` unit that requires others and whose
/// plist has RunAtLoad or KeepAlive). [`preflight`] includes them; `check` may want them
/// alone.
pub fn takeover(unit: &Unit) -> Vec<Finding> {
    let Runner::Launchd(spec) = &unit.runner else {
        return Vec::new();
    };
    match plist::read(spec).ok().and_then(|f| f.dict.ok()) {
        Some(dict) => takeover::check(unit, spec, &dict),
        None => Vec::new(),
    }
}

/// The nearest `package.json` with a `name` above `script`.
pub(crate) fn package_of(script: &Path) -> Option<PackageInfo> {
    node::nearest_package(script)
}

/// [`watched_paths`] with a given context.
pub fn watched_paths_with(unit: &Unit, ctx: &PreflightContext) -> Vec<PathBuf> {
    let t = target(unit, ctx);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut add = |p: PathBuf| {
        if seen.insert(p.clone()) {
            out.push(p);
        }
    };
    let package = t.entry.as_deref().and_then(node::nearest_package);
    let files = [
        t.plist,
        t.program,
        t.interpreter,
        t.wrapper,
        t.env_file,
        t.node,
        t.entry,
        package.map(|p| p.manifest),
    ];
    for p in files.into_iter().flatten().chain(t.npmrc_files) {
        let real = p.canonicalize().ok().filter(|r| *r != p);
        add(p);
        if let Some(r) = real {
            add(r);
        }
    }
    out
}
