//! OpenClaw: `openclaw doctor --json`, run as the OpenClaw unit would run it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value as Json;

use super::collect::ResolvedUnit;
use super::collect::{CollectFuture, Collected, Collector, Content};
use super::redact::redact_json_keys;
use crate::process::{BoundedCommand, BoundedError, Capture, job_credentials};
use crate::unit::{CANONICAL_PATH, Runner};

/// The most of `openclaw doctor --json`'s output that is kept.
const MAX_DOCTOR_BYTES: usize = 16 * 1024 * 1024;

/// How much of the doctor's stderr (its end) is kept for a warning.
const MAX_STDERR_BYTES: usize = 16 * 1024;

/// Runs `openclaw doctor --json`: the `openclaw` given, or the one the OpenClaw unit runs.
pub(super) struct Doctor {
    given: Option<PathBuf>,
    command: Option<DoctorCommand>,
}

impl Doctor {
    pub(super) fn new(given: Option<PathBuf>) -> Self {
        Self {
            given,
            command: None,
        }
    }
}

impl Collector for Doctor {
    fn name(&self) -> &'static str {
        "openclaw doctor"
    }

    fn prepare(&mut self, units: &[ResolvedUnit], c: &mut Collected) {
        self.command = doctor_command(units, self.given.take(), c);
    }

    fn collect(self: Box<Self>, timeout: Duration) -> CollectFuture {
        Box::pin(async move {
            match self.command {
                Some(cmd) => run_doctor(cmd, timeout).await,
                None => Collected::warning(
                    "openclaw doctor not run: no unit runs OpenClaw, and no openclaw was given"
                        .to_owned(),
                ),
            }
        })
    }
}

/// How `openclaw doctor --json` runs: the program (and entry script), and the job's
/// environment and user.
struct DoctorCommand {
    argv: Vec<PathBuf>,
    env: BTreeMap<String, String>,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// The OpenClaw command: `openclaw` when given, else from the unit that runs OpenClaw (the
/// gateway first): an `openclaw` it runs directly, its node and entry script, or an
/// `openclaw` next to its node. Either way it gets that unit's environment and user.
fn doctor_command(
    resolved: &[ResolvedUnit],
    given: Option<PathBuf>,
    c: &mut Collected,
) -> Option<DoctorCommand> {
    let is_file = |p: &Path| p.is_file();
    let mut candidates: Vec<&ResolvedUnit> = resolved
        .iter()
        .filter(
            |ResolvedUnit {
                 unit, target: t, ..
             }| {
                let label = match &unit.runner {
                    Runner::Launchd(s) => s.label.0.as_str(),
                    Runner::Exec(_) | Runner::External(_) => "",
                };
                label.starts_with("ai.openclaw.")
                    || t.entry
                        .as_ref()
                        .is_some_and(|e| e.to_string_lossy().contains("/node_modules/openclaw/"))
                    || t.program
                        .as_ref()
                        .is_some_and(|p| p.file_name().is_some_and(|n| n == "openclaw"))
            },
        )
        .collect();
    // The gateway's environment is the one doctor checks.
    candidates.sort_by_key(|ResolvedUnit { unit, .. }| {
        let gateway = matches!(&unit.runner, Runner::Launchd(s) if s.label.0 == "ai.openclaw.gateway")
            || unit.name.as_str().contains("gateway");
        !gateway
    });

    let from_unit = candidates.iter().find_map(
        |ResolvedUnit {
             unit,
             env,
             target: t,
         }| {
            let argv = if let Some(p) = t
                .program
                .clone()
                .filter(|p| p.file_name().is_some_and(|n| n == "openclaw") && is_file(p))
            {
                vec![p]
            } else if let (Some(node), Some(entry)) = (&t.node, &t.entry)
                && is_file(node)
                && is_file(entry)
            {
                vec![node.clone(), entry.clone()]
            } else if let Some(bin) = t
                .node
                .as_ref()
                .map(|n| n.with_file_name("openclaw"))
                .filter(|b| is_file(b))
            {
                vec![bin]
            } else {
                c.warn(format!(
                    "unit {} runs OpenClaw, but neither its node and entry script nor an openclaw \
                 next to its node exist",
                    unit.name
                ));
                return None;
            };
            Some(DoctorCommand {
                argv,
                env: env.clone(),
                uid: t.uid,
                gid: t.gid,
            })
        },
    );

    match (given, from_unit) {
        (Some(openclaw), Some(found)) => Some(DoctorCommand {
            argv: vec![openclaw],
            ..found
        }),
        (Some(openclaw), None) => {
            let mut env = BTreeMap::from([("PATH".to_owned(), CANONICAL_PATH.to_owned())]);
            if let Some(home) = std::env::var_os("HOME") {
                env.insert("HOME".into(), home.to_string_lossy().into_owned());
            }
            Some(DoctorCommand {
                argv: vec![openclaw],
                env,
                uid: None,
                gid: None,
            })
        }
        (None, found) => found,
    }
}

/// Runs `openclaw doctor --json` (read-only, non-interactive; it exits 0 once a report is
/// produced, even one with `ok: false`), bounded by `timeout`: stdin from /dev/null, its own
/// process group, killed as a whole when the bound passes. When launchgraph is root it runs
/// as the job's user, so a file the job's user can edit never makes root run it.
async fn run_doctor(cmd: DoctorCommand, timeout: Duration) -> Collected {
    let mut c = Collected::default();
    let shown = cmd
        .argv
        .iter()
        .map(|a| a.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let what = format!("openclaw doctor --json ({shown} doctor --json)");

    let mut command = BoundedCommand::new(&cmd.argv[0], timeout)
        .args(&cmd.argv[1..])
        .args(["doctor", "--json"])
        .envs(&cmd.env)
        .current_dir("/")
        .stdout(Capture::Head(MAX_DOCTOR_BYTES))
        .stderr(Capture::Tail(MAX_STDERR_BYTES));
    if nix::unistd::geteuid().is_root()
        && let Some(uid) = cmd.uid.filter(|u| *u != 0)
    {
        match job_credentials(uid, cmd.gid) {
            Ok(creds) => command = command.credentials(Some(creds)),
            Err(e) => {
                c.warn(format!("{what} not run: cannot run it as uid {uid}: {e}"));
                return c;
            }
        }
    }
    let out = match command.run().await {
        Ok(out) => out,
        Err(BoundedError::NotReaped { .. }) => {
            c.warn(format!(
                "{what} gave no answer within {}; its process group was killed",
                humantime::format_duration(timeout)
            ));
            return c;
        }
        Err(BoundedError::Spawn { source, .. }) => {
            c.warn(format!("{what} could not be started: {source}"));
            return c;
        }
        Err(BoundedError::Wait { source, .. }) => {
            c.warn(format!("{what}: cannot collect its exit: {source}"));
            return c;
        }
    };
    if out.timed_out {
        c.warn(format!(
            "{what} gave no answer within {}; its process group was killed",
            humantime::format_duration(timeout)
        ));
        return c;
    }
    let (status, err) = (out.status, out.stderr);
    if out.stdout_truncated {
        c.warn(format!(
            "{what} printed more than {MAX_DOCTOR_BYTES} bytes; not kept"
        ));
        return c;
    }
    match serde_json::from_slice::<Json>(&out.stdout) {
        Ok(mut report) => {
            redact_json_keys(&mut report, false);
            c.add("openclaw/doctor.json", Content::Json(report));
            if !status.success() {
                c.warn(format!(
                    "{what} exited with {status} (it exits 0 whenever it produces a report)"
                ));
            }
        }
        Err(e) => {
            let tail = excerpt_tail(&err);
            c.warn(format!(
                "{what} printed no JSON report ({e}); it exited with {status}{}{}",
                if out.output_cut_short {
                    "; something it started outside its process group kept its output open"
                } else {
                    ""
                },
                if tail.is_empty() {
                    String::new()
                } else {
                    format!("; stderr: {tail}")
                }
            ));
        }
    }
    c
}

/// The end of a stream of text as one short line: errors come last.
fn excerpt_tail(bytes: &[u8]) -> String {
    const KEEP: usize = 300;
    let text = String::from_utf8_lossy(bytes)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let count = text.chars().count();
    if count > KEEP {
        format!("…{}", text.chars().skip(count - KEEP).collect::<String>())
    } else {
        text
    }
}
