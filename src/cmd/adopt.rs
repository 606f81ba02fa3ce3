//! `adopt` and `release`: finds the unit's launchd job, checks the caller may act, runs
//! [`launchgraph::adopt`], and says exactly what was done (or, with `--dry-run`, would be).
//! Paths are printed through [`escape`].

use std::path::Path;

use launchgraph::adopt::{Error, Job, Launchd, Record, Reload, Step};
use launchgraph::diag::escape;
use launchgraph::launchd::{ConsoleUser, Launchctl};

use super::{Failure, print, runtime};
use crate::cli::LaunchdArgs;

/// `adopt UNIT`.
pub(crate) fn adopt(
    name: &str,
    units_dir: &Path,
    state_dir: &Path,
    args: &LaunchdArgs,
    restart: bool,
    dry_run: bool,
) -> Result<(), Failure> {
    let job = launchd_job(name, units_dir, "adopt")?;
    if !dry_run {
        need_root(&format!(
            "adopt rewrites {} and keeps its backup in {}, and reloads the job with launchctl: \
             run it as root (sudo launchgraph adopt {name}); --dry-run needs no root",
            escape(&job.plist.to_string_lossy()),
            escape(
                &state_dir
                    .join(launchgraph::adopt::ADOPTED_DIR)
                    .to_string_lossy()
            )
        ))?;
    }
    let launchctl = Launchctl::new(&args.launchctl);
    let console = ConsoleUser::new(&args.console_device);
    let launchd = Launchd {
        launchctl: &launchctl,
        console: &console,
    };
    let outcome = runtime()?.block_on(launchgraph::adopt::adopt(
        &job, state_dir, &launchd, restart, dry_run,
    ));
    let outcome = outcome.map_err(|e| failure(&job.unit, e, dry_run, Verb::Adopt))?;
    let mut out = match (dry_run, outcome.nothing_to_do) {
        (_, true) => format!(
            "{}: {} is adopted already: nothing to do\n",
            job.unit, outcome.service_target
        ),
        (true, false) => format!(
            "{}: adopt {}, dry run: nothing was changed\n",
            job.unit, outcome.service_target
        ),
        (false, false) => format!("{}: adopted {}\n", job.unit, outcome.service_target),
    };
    for step in &outcome.steps {
        for line in render(
            step,
            &job.unit,
            &outcome.service_target,
            dry_run,
            Verb::Adopt,
        ) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    let rewrote = outcome
        .steps
        .iter()
        .any(|s| matches!(s, Step::Rewrote { .. }));
    if let Some(note) = rewrote.then(|| rewritten_back(&job)).flatten() {
        out.push_str(&format!("  note: {note}\n"));
    }
    print(&out)
}

/// Who writes RunAtLoad and KeepAlive back into this job's plist, when it is known.
fn rewritten_back(job: &Job) -> Option<String> {
    let again = format!(
        "`launchgraph check` then warns again (TAKEOVER_RUNATLOAD, TAKEOVER_KEEPALIVE) and \
         `launchgraph adopt {}` re-applies",
        job.unit
    );
    if job.label.starts_with("homebrew.mxcl.") {
        // Homebrew/brew Library/Homebrew/service.rb `to_plist`: run_at_load defaults to true.
        return Some(format!(
            "`brew services start` and `restart` write this plist again with RunAtLoad and \
             KeepAlive: {again}"
        ));
    }
    if job.label.starts_with("ai.openclaw.") {
        // openclaw/openclaw src/daemon/launchd-plist.ts; docs/cli/gateway.md "External
        // supervisors".
        return Some(format!(
            "`openclaw gateway install` and `openclaw doctor` write this plist again with \
             RunAtLoad and KeepAlive unless the job's environment has \
             OPENCLAW_SUPERVISOR_MODE=external and OPENCLAW_SERVICE_REPAIR_POLICY=external: \
             {again}"
        ));
    }
    None
}

/// `release UNIT` or, with `None`, `release --all`.
pub(crate) fn release(
    name: Option<&str>,
    units_dir: &Path,
    state_dir: &Path,
    args: &LaunchdArgs,
    force: bool,
    dry_run: bool,
) -> Result<(), Failure> {
    let adopted =
        launchgraph::adopt::adopted(state_dir).map_err(|e| Failure::Data(e.to_string()))?;
    let records: Vec<Record> = match name {
        None => adopted,
        Some(name) => match adopted
            .iter()
            .find(|r| r.job.unit == name || r.job.label == name)
        {
            Some(r) => vec![r.clone()],
            None => return not_adopted(name, units_dir, state_dir, &adopted),
        },
    };
    if records.is_empty() {
        return print(&format!(
            "no adopted jobs in {}: nothing to release\n",
            escape(
                &state_dir
                    .join(launchgraph::adopt::ADOPTED_DIR)
                    .to_string_lossy()
            )
        ));
    }
    if !dry_run {
        need_root(&format!(
            "release restores plists from {} and reloads their jobs with launchctl: run it as \
             root (sudo launchgraph release ...); --dry-run needs no root",
            escape(
                &state_dir
                    .join(launchgraph::adopt::ADOPTED_DIR)
                    .to_string_lossy()
            )
        ))?;
    }
    let launchctl = Launchctl::new(&args.launchctl);
    let console = ConsoleUser::new(&args.console_device);
    let launchd = Launchd {
        launchctl: &launchctl,
        console: &console,
    };
    let rt = runtime()?;
    let mut failures = Vec::new();
    for record in &records {
        let unit = &record.job.unit;
        match rt.block_on(launchgraph::adopt::release(
            record, state_dir, &launchd, force, dry_run,
        )) {
            Ok(done) => {
                let mut out = match dry_run {
                    true => format!(
                        "{unit}: release {}, dry run: nothing was changed\n",
                        done.service_target
                    ),
                    false => format!("{unit}: released {}\n", done.service_target),
                };
                for step in &done.steps {
                    for line in render(step, unit, &done.service_target, dry_run, Verb::Release) {
                        out.push_str(&format!("  {line}\n"));
                    }
                }
                print(&out)?;
            }
            Err(e) => {
                let f = failure(unit, e, dry_run, Verb::Release);
                if records.len() == 1 {
                    return Err(f);
                }
                // Each job on its own: one that cannot be released does not keep the others.
                eprintln!("launchgraph: {}", message_of(&f));
                failures.push((unit.clone(), f));
            }
        }
    }
    match failures.len() {
        0 => Ok(()),
        n => {
            let names: Vec<&str> = failures.iter().map(|(u, _)| u.as_str()).collect();
            let message = format!(
                "{n} of {} adopted jobs were not released ({}): see above",
                records.len(),
                names.join(", ")
            );
            Err(match failures.remove(0).1 {
                Failure::Usage(_) => Failure::Usage(message),
                Failure::Data(_) => Failure::Data(message),
                Failure::Io(_) => Failure::Io(Some(message)),
                _ => Failure::Software(message),
            })
        }
    }
}

/// `release NAME` with no record of NAME: what the units directory says of it.
fn not_adopted(
    name: &str,
    units_dir: &Path,
    state_dir: &Path,
    adopted: &[Record],
) -> Result<(), Failure> {
    let dir = state_dir.join(launchgraph::adopt::ADOPTED_DIR);
    match launchd_job(name, units_dir, "release") {
        Ok(job) => print(&format!(
            "{name}: {} is not adopted (no backup in {}): nothing to do\n",
            job.label,
            escape(&dir.to_string_lossy())
        )),
        Err(Failure::Usage(m)) => Err(Failure::Usage(m)),
        // The units directory is invalid or gone (an uninstall): say what is adopted.
        Err(_) => {
            let names: Vec<&str> = adopted.iter().map(|r| r.job.unit.as_str()).collect();
            Err(Failure::Usage(format!(
                "no adopted job named `{name}` in {} (adopted: {}); release takes the name of \
                 an adopted unit or its label, or --all",
                escape(&dir.to_string_lossy()),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )))
        }
    }
}

/// The launchd job of unit `name` in `units_dir`, or a usage error that names the unit and
/// says what `verb` takes.
fn launchd_job(name: &str, units_dir: &Path, verb: &str) -> Result<Job, Failure> {
    if let Err(why) = launchgraph::unit::UnitName::parse(name) {
        return Err(Failure::Usage(format!(
            "`{}` is not a unit name: {why}; {verb} takes the name of a [launchd] unit",
            escape(name)
        )));
    }
    let compiled = launchgraph::compile::compile_dir(units_dir)
        .map_err(|diags| super::config::report(units_dir, &diags))?;
    let launchd_units: Vec<&str> = compiled
        .units
        .iter()
        .filter(|u| matches!(u.runner, launchgraph::unit::Runner::Launchd(_)))
        .map(|u| u.name.as_str())
        .collect();
    let Some(unit) = compiled.units.iter().find(|u| u.name.as_str() == name) else {
        return Err(Failure::Usage(format!(
            "no unit named `{name}` in {}; {verb} takes the name of a [launchd] unit (there: {})",
            escape(&units_dir.to_string_lossy()),
            if launchd_units.is_empty() {
                "none".to_owned()
            } else {
                launchd_units.join(", ")
            }
        )));
    };
    match &unit.runner {
        launchgraph::unit::Runner::Launchd(spec) => Ok(Job {
            unit: name.to_owned(),
            label: spec.label.0.clone(),
            plist: spec.plist.clone(),
            domain: spec.domain.to_string(),
        }),
        other => {
            let kind = match other {
                launchgraph::unit::Runner::Exec(_) => "exec",
                _ => "external",
            };
            Err(Failure::Usage(format!(
                "unit `{name}` ({}) is an [{kind}] unit; {verb} takes a [launchd] unit: it \
                 rewrites the plist launchd loads the job from",
                escape(&unit.file.to_string_lossy())
            )))
        }
    }
}

fn need_root(why: &str) -> Result<(), Failure> {
    match nix::unistd::geteuid().is_root() {
        true => Ok(()),
        false => Err(Failure::NoPermission(why.to_owned())),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Adopt,
    Release,
}

fn failure(unit: &str, e: Error, dry_run: bool, verb: Verb) -> Failure {
    match e {
        Error::File(m) | Error::Domain(m) => Failure::Data(format!("{unit}: {}", escape(&m))),
        Error::Write(m) => Failure::Io(Some(format!("{unit}: {}", escape(&m)))),
        Error::Changed(m) => Failure::Usage(escape(&m).into_owned()),
        Error::Launchd { message, done } => {
            let mut text = format!("{unit}: launchctl failed: {}", escape(&message));
            if !done.is_empty() {
                text.push_str("; done before that:");
                for step in &done {
                    for line in render(step, unit, "", dry_run, verb) {
                        text.push_str(&format!("\n  {line}"));
                    }
                }
            }
            Failure::Software(text)
        }
    }
}

fn message_of(f: &Failure) -> String {
    match f {
        Failure::Usage(m)
        | Failure::Data(m)
        | Failure::Software(m)
        | Failure::Unavailable(m)
        | Failure::NoPermission(m)
        | Failure::Io(Some(m)) => m.clone(),
        _ => "failed".to_owned(),
    }
}

/// The lines of one step, in the past tense, or as a plan in a dry run.
fn render(step: &Step, unit: &str, target: &str, dry_run: bool, verb: Verb) -> Vec<String> {
    let p = |path: &Path| escape(&path.to_string_lossy()).into_owned();
    let would = |done: &str, planned: &str| match dry_run {
        true => planned.to_owned(),
        false => done.to_owned(),
    };
    match step {
        Step::BackedUp {
            plist,
            backup,
            mode,
            uid,
            gid,
        } => vec![format!(
            "{} {} to {} (mode {mode:04o}, owner {uid}:{gid})",
            would("backed up", "would back up"),
            p(plist),
            p(backup)
        )],
        Step::BackupKept { backup } => vec![format!(
            "{} the backup {} from the first adopt (a backup is never replaced)",
            would("kept", "would keep"),
            p(backup)
        )],
        Step::Rewrote {
            plist,
            format,
            changes,
        } => {
            let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
            vec![format!(
                "{} {} ({format}, same owner and mode): {}",
                would("rewrote", "would rewrite"),
                p(plist),
                changes.join("; ")
            )]
        }
        Step::FileAlreadyAdopted { plist } => vec![format!(
            "{} has no RunAtLoad = true and no KeepAlive: launchd does not start the job by \
             itself",
            p(plist)
        )],
        Step::Restored {
            plist,
            backup,
            mode,
            uid,
            gid,
        } => vec![format!(
            "{} {} from {} (its bytes, mode {mode:04o}, owner {uid}:{gid})",
            would("restored", "would restore"),
            p(plist),
            p(backup)
        )],
        Step::AlreadyRestored { plist } => {
            vec![format!("{} already holds the backup's bytes", p(plist))]
        }
        Step::Launchctl(args) => vec![format!(
            "{}: launchctl {}",
            would("ran", "would run"),
            escape(&args.join(" "))
        )],
        Step::Forgot { backup } => vec![format!(
            "{} the backup {} and its record",
            would("removed", "would remove"),
            p(backup)
        )],
        Step::Reload(r) => match verb {
            Verb::Adopt => adopt_reload(*r, unit, target, dry_run),
            Verb::Release => release_reload(*r, target, dry_run),
        },
    }
}

fn pid(pid: Option<u32>) -> String {
    pid.map_or_else(String::new, |p| format!(" (pid {p})"))
}

fn adopt_reload(r: Reload, unit: &str, target: &str, dry_run: bool) -> Vec<String> {
    let line = match r {
        Reload::NotLoaded => format!(
            "{target} is not loaded: launchd reads the plist when the job is next bootstrapped \
             (at boot or login, or when launchgraph starts {unit})"
        ),
        Reload::NoDomain => format!(
            "{target}: its domain does not exist now (nobody is logged in): launchd reads the \
             plist at the next login"
        ),
        Reload::UpToDate => format!(
            "{target} is loaded from a definition that does not start it by itself: no reload \
             needed"
        ),
        Reload::Now if dry_run => format!(
            "{target} is loaded and not running: the reload stops nothing, and afterwards \
             launchd no longer starts it by itself"
        ),
        Reload::Now => format!(
            "{target} is loaded and not running: launchd no longer starts it by itself; \
             launchgraph starts it once its requirements are ready"
        ),
        Reload::Deferred { pid: p } => format!(
            "{target} is running{} and {} stopped: launchd keeps the definition it loaded \
             (RunAtLoad, KeepAlive) until the job is booted out. The rewritten plist takes \
             effect at the next boot or login, when launchgraph next stops and starts {unit}, \
             or now with `launchgraph adopt {unit} --restart` (which stops it)",
            pid(p),
            if dry_run { "would not be" } else { "was not" }
        ),
        Reload::Restart { pid: p } => format!(
            "{target} was running{}: the bootout {} it, and launchd no longer starts it by \
             itself: launchgraph's daemon starts it in order as its restart policy says, or \
             `launchgraph start {unit}` does",
            pid(p),
            if dry_run { "would stop" } else { "stopped" }
        ),
        Reload::Disabled => format!(
            "{target} is disabled (launchctl print-disabled): it {} booted out, since launchd \
             would not bootstrap it again; it keeps the definition it loaded until \
             `launchctl enable {target}` and `launchgraph adopt {unit}` again",
            if dry_run { "would not be" } else { "was not" }
        ),
    };
    vec![line]
}

fn release_reload(r: Reload, target: &str, dry_run: bool) -> Vec<String> {
    let runs = if dry_run {
        "launchd would run it from the restored plist, as before adopt"
    } else {
        "launchd runs it from the restored plist, as before adopt"
    };
    let line = match r {
        Reload::NotLoaded => format!("{target} was not loaded: {runs}"),
        Reload::Now | Reload::UpToDate => format!("{target} was loaded and not running: {runs}"),
        Reload::Restart { pid: p } | Reload::Deferred { pid: p } => format!(
            "{target} was running{}: the bootout {} it, and {runs} (started again at once if \
             it says RunAtLoad or KeepAlive)",
            pid(p),
            if dry_run { "would stop" } else { "stopped" }
        ),
        Reload::NoDomain => format!(
            "{target}: its domain does not exist now (nobody is logged in): launchd loads the \
             restored plist at the next login"
        ),
        Reload::Disabled => format!(
            "{target} is disabled (launchctl print-disabled): not reloaded; `launchctl enable \
             {target}`, then `launchctl bootstrap`, loads the restored plist"
        ),
    };
    vec![line]
}
