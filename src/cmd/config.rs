//! The commands that read a units directory without a daemon: `check` (the configuration,
//! then each unit's preflight findings and drift), `plan` and `guards` (the runbook). Text a
//! user controls (paths, messages quoting them) is printed through [`escape`], one line per
//! line.

use std::io::Write;
use std::path::{Path, PathBuf};

use launchgraph::compile::compile_dir;
use launchgraph::diag::escape;
use launchgraph::guard::runbook::{GuardLive, Runbook};
use launchgraph::plan::Plan;

use super::Failure;

/// `check`: the configuration, then (unless `state_dir` is `None`) each unit's preflight
/// findings, what launchd has loaded against its plist (through `launchctl`), and drift
/// since its last good run.
pub(crate) fn check(
    dir: &Path,
    state_dir: Option<PathBuf>,
    launchctl: &launchgraph::launchd::Launchctl,
) -> Result<(), Failure> {
    match compile_dir(dir) {
        Ok(c) => {
            let mut out = std::io::stdout().lock();
            for note in c.notes() {
                let _ = writeln!(out, "note: {}", escape(&note));
            }
            let kinds = c
                .units
                .iter()
                .fold((0, 0, 0), |(e, l, x), u| match u.runner {
                    launchgraph::unit::Runner::Exec(_) => (e + 1, l, x),
                    launchgraph::unit::Runner::Launchd(_) => (e, l + 1, x),
                    launchgraph::unit::Runner::External(_) => (e, l, x + 1),
                });
            let external = match kinds.2 {
                0 => String::new(),
                n => format!(", {n} external"),
            };
            let _ = writeln!(
                out,
                "ok: {} units ({} exec, {} launchd{external}) in {}, {} start waves, no cycles",
                c.units.len(),
                kinds.0,
                kinds.1,
                escape(&dir.to_string_lossy()),
                c.graph.waves().len()
            );
            if let Some(f) = units_dir_exposed(dir) {
                let _ = writeln!(out, "units directory: {} {}", f.severity, f.code);
                if let Some(p) = &f.path {
                    let _ = writeln!(out, "  path: {}", escape(&p.to_string_lossy()));
                }
                let _ = writeln!(out, "  {}", escape(&f.message));
                let _ = writeln!(out, "  fix: {}", escape(&f.fix));
            }
            let mut blocking = 0;
            if let Some(state_dir) = &state_dir {
                let ctx = launchgraph::preflight::PreflightContext::host();
                let mut loaded = Loaded::new(launchctl);
                for u in &c.units {
                    let found = launchgraph::preflight::preflight(u, &ctx)
                        .into_iter()
                        .chain(held_port(u, state_dir))
                        .chain(loaded.finding(u))
                        .chain(loaded.owner_findings(u));
                    for f in found {
                        if f.blocks_start() {
                            blocking += 1;
                        }
                        let _ = writeln!(out, "{}: {} {}", u.name, f.severity, f.code);
                        if let Some(p) = &f.path {
                            let _ = writeln!(out, "  path: {}", escape(&p.to_string_lossy()));
                        }
                        let _ = writeln!(out, "  {}", escape(&f.message));
                        if !f.fix.is_empty() {
                            let _ = writeln!(out, "  fix: {}", escape(&f.fix));
                        }
                    }
                    for line in drift_of(u, state_dir, &ctx) {
                        let _ = writeln!(
                            out,
                            "{}: drift since the last good run: {}",
                            u.name,
                            escape(&line)
                        );
                    }
                }
            }
            if blocking > 0 {
                let _ = writeln!(
                    out,
                    "error: {blocking} preflight {} a start (see the fixes above)",
                    if blocking == 1 {
                        "error blocks"
                    } else {
                        "errors block"
                    }
                );
                return Err(Failure::Preflight);
            }
            Ok(())
        }
        Err(diags) => Err(report(dir, &diags)),
    }
}

/// `WRITABLE_BY_NON_ROOT` as a warning, when `check` runs as root (as the daemon does when
/// installed as a LaunchDaemon) and a user other than root may replace the units directory
/// or a directory above it: whoever can write there can add a unit that root runs. Intel
/// Homebrew's `/usr/local/etc` is its installing admin's (Homebrew/install#850).
fn units_dir_exposed(dir: &Path) -> Option<launchgraph::preflight::Finding> {
    use launchgraph::preflight::{Finding, FindingCode, Severity, exposed};
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let found = exposed(&dir);
    let first = found.first()?;
    let name_of = |uid: u32| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    };
    let why: Vec<String> = found.iter().map(|e| e.describe(name_of)).collect();
    let mut f = Finding::new(
        FindingCode::WritableByNonRoot,
        Some(first.path.clone()),
        format!(
            "the units directory {} is read by launchgraph running as root, but {}: a user \
                 other than root can add or change a unit that root runs",
            dir.display(),
            why.join("; ")
        ),
        format!(
            "`sudo chown root {}` and `sudo chmod go-w {}` for each path named, or keep \
                 the units of a root daemon in a root-owned directory such as \
                 /Library/Application Support/launchgraph/units",
            first.path.display(),
            first.path.display()
        ),
    );
    // The units are read, not run: the daemon may not even run as root.
    f.severity = Severity::Warning;
    Some(f)
}

/// Who holds the port the unit's readiness probe dials, when that is not the unit
/// (`PORT_HELD_BY_OTHER`). Not part of preflight: on macOS it runs `lsof`.
fn held_port(
    unit: &launchgraph::unit::Unit,
    state_dir: &Path,
) -> Option<launchgraph::preflight::Finding> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(launchgraph::listener::check_finding(unit, state_dir))
}

/// Asks launchd, through `launchctl print`, what it has loaded for each `launchd` unit, and
/// compares it with the plist file (`LOADED_DEFINITION_STALE`); and what its owner decided
/// (`DISABLED_BY_OWNER`, `LOADED_IN_OTHER_DOMAIN`). On a host without that
/// launchctl it asks nothing; when a call fails otherwise it says so, once per unit, as a
/// note.
struct Loaded<'a> {
    launchctl: &'a launchgraph::launchd::Launchctl,
    runtime: Option<tokio::runtime::Runtime>,
}

impl<'a> Loaded<'a> {
    fn new(launchctl: &'a launchgraph::launchd::Launchctl) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok();
        Self { launchctl, runtime }
    }

    fn finding(&mut self, u: &launchgraph::unit::Unit) -> Option<launchgraph::preflight::Finding> {
        use launchgraph::launchd::{ConsoleUser, PrintOutcome, domain_target, service_target};
        let launchgraph::unit::Runner::Launchd(spec) = &u.runner else {
            return None;
        };
        let rt = self.runtime.as_ref()?;
        // No GUI session for `gui/console`: nothing is loaded there to compare.
        let domain = domain_target(&spec.domain, &ConsoleUser::default()).ok()?;
        let target = service_target(&domain, &spec.label.0);
        match rt.block_on(self.launchctl.print(&target)) {
            Ok(PrintOutcome::Loaded(info)) => {
                launchgraph::preflight::loaded_definition(u, &domain, &info)
            }
            Ok(_) => None,
            Err(e) if matches!(&e.failure, launchgraph::launchd::Failure::Io(io) if io.kind() == std::io::ErrorKind::NotFound) =>
            {
                // No launchd here (Linux): nothing is loaded anywhere.
                self.runtime = None;
                None
            }
            Err(e) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "note: {}: what launchd has loaded was not compared with the plist: {}",
                    u.name,
                    escape(&e.to_string())
                );
                None
            }
        }
    }
}

impl Loaded<'_> {
    /// `DISABLED_BY_OWNER` and `LOADED_IN_OTHER_DOMAIN`, as the daemon would meet them at
    /// start. Nothing once launchctl turned out to be absent.
    fn owner_findings(
        &mut self,
        u: &launchgraph::unit::Unit,
    ) -> Vec<launchgraph::preflight::Finding> {
        let launchgraph::unit::Runner::Launchd(spec) = &u.runner else {
            return Vec::new();
        };
        let Some(rt) = self.runtime.as_ref() else {
            return Vec::new();
        };
        let console = launchgraph::launchd::ConsoleUser::default();
        rt.block_on(launchgraph::launchd::owner_findings(
            self.launchctl,
            spec,
            &console,
        ))
    }
}

/// What changed since the unit's last good run, if one was recorded.
fn drift_of(
    unit: &launchgraph::unit::Unit,
    state_dir: &Path,
    ctx: &launchgraph::preflight::PreflightContext,
) -> Vec<String> {
    let old = match launchgraph::fingerprint::load(state_dir, unit.name.as_str()) {
        Ok(Some(old)) => old,
        Ok(None) => return Vec::new(),
        Err(e) => {
            return vec![format!(
                "unknown: its last fingerprint in {} cannot be read ({e})",
                state_dir.display()
            )];
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let now = rt.block_on(launchgraph::fingerprint::take(unit, ctx));
    launchgraph::fingerprint::drift(&old, &now)
}

pub(crate) fn plan(dir: &Path, json: bool) -> Result<(), Failure> {
    match compile_dir(dir) {
        Ok(c) => {
            let plan = Plan::new(&c);
            // One write per buffer, not per line: a large plan is megabytes.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = if json {
                serde_json::to_writer_pretty(&mut out, &plan)
                    .map_err(std::io::Error::from)
                    .and_then(|()| writeln!(out))
            } else {
                out.write_all(plan.render().as_bytes())
            };
            match written.and_then(|()| out.flush()) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(Failure::Io(Some(format!("cannot write the plan: {e}")))),
            }
        }
        Err(diags) => Err(report(dir, &diags)),
    }
}

/// `guards`: the runbook of the units' guards and switches, from the unit files alone. No
/// daemon is asked, so every row's [`launchgraph::guard::runbook::GuardLive`] stays empty; a
/// daemon's answer would join through [`Runbook::attach_live`].
/// `guards`: the runbook from the units, with each row's state from the daemon on `socket`
/// when one answers there (a daemon that has not loaded these units yet leaves their rows
/// without state).
pub(crate) fn guards(dir: &Path, json: bool, socket: &Path) -> Result<(), Failure> {
    let c = compile_dir(dir).map_err(|diags| report(dir, &diags))?;
    let mut book = Runbook::new(&c, &dir.to_string_lossy());
    if !book.units.is_empty() {
        match super::control::guard_states(socket) {
            Ok(states) => book.attach_live(|unit, name| {
                states
                    .iter()
                    .find(|g| g.unit == unit && g.guard == name)
                    .map(live_of)
            }),
            Err(why) => eprintln!(
                "note: no state from the daemon ({}): the runbook alone",
                escape(&why)
            ),
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &book)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        out.write_all(escape_lines(&book.render()).as_bytes())
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Io(Some(format!("cannot write the runbook: {e}")))),
    }
}

/// What the runbook shows of a guard's state now.
fn live_of(g: &launchgraph::control::protocol::GuardStatus) -> GuardLive {
    let mut state = g.state.clone();
    if g.forced {
        state.push_str(" (forced by hand)");
    }
    if let Some(cause) = &g.unknown_cause {
        state.push_str(&format!(": {cause}"));
    }
    GuardLive {
        state,
        last_value: g
            .value
            .map(|v| launchgraph::control::render::guard_value(v, &g.value_unit)),
        window: g.window.as_ref().map(|w| {
            let held = std::time::Duration::from_millis(w.held_ms.max(0.0) as u64);
            format!(
                "condition held {} sample{} over {}",
                w.held_samples,
                if w.held_samples == 1 { "" } else { "s" },
                humantime::format_duration(std::time::Duration::from_secs(held.as_secs()))
            )
        }),
    }
}

/// Each line of `text` through [`escape`]: the runbook quotes commands and paths from the
/// unit files.
fn escape_lines(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for line in text.lines() {
        s.push_str(&escape(line));
        s.push('\n');
    }
    s
}

/// Prints every problem and a summary line to stderr.
pub(super) fn report(dir: &Path, diags: &[launchgraph::diag::Diagnostic]) -> Failure {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
    let files: std::collections::BTreeSet<_> = diags.iter().map(|d| &d.file).collect();
    let _ = writeln!(
        err,
        "error: {} problem{} in {} file{} under {}; nothing was started",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" },
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        escape(&dir.to_string_lossy())
    );
    Failure::Config(None)
}
